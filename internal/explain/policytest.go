package explain

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/ztgate/ztgate/internal/config"
)

// TestFile is a file of declarative policy tests.
type TestFile struct {
	Tests []Case `yaml:"tests"`
}

// Case is one policy test: a request, who makes it, and what must happen.
type Case struct {
	Name    string  `yaml:"name"`
	Request Request `yaml:"request"`
	Expect  Expect  `yaml:"expect"`
}

// Expect is the expected outcome. Empty fields are not checked.
type Expect struct {
	Decision string `yaml:"decision"` // allow | deny | would_deny
	Reason   string `yaml:"reason,omitempty"`
	Route    string `yaml:"route,omitempty"` // service/route
	Status   int    `yaml:"status,omitempty"`
}

// LoadTests reads a test file strictly (unknown keys are errors).
func LoadTests(path string) (*TestFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var tf TestFile
	if err := dec.Decode(&tf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(tf.Tests) == 0 {
		return nil, fmt.Errorf("%s: no tests", path)
	}
	for i, c := range tf.Tests {
		if c.Name == "" || c.Request.URL == "" || c.Expect.Decision == "" {
			return nil, fmt.Errorf("%s: test %d: name, request.url and expect.decision are required", path, i+1)
		}
		if c.Request.Token != "" {
			return nil, fmt.Errorf("%s: test %q: policy tests run offline; give identity claims (request.claims), not a token", path, c.Name)
		}
	}
	return &tf, nil
}

// RunTests runs every case against cfg offline and writes a report; it
// returns the number of failures.
func RunTests(ctx context.Context, cfg *config.Config, tf *TestFile, w io.Writer) int {
	failed := 0
	for _, c := range tf.Tests {
		res, err := Explain(ctx, cfg, c.Request, Options{Offline: true})
		if err != nil {
			failed++
			fmt.Fprintf(w, "FAIL %s\n     %v\n", c.Name, err)
			continue
		}
		got := Expect{Decision: res.Decision}
		want := c.Expect
		if want.Reason != "" {
			got.Reason = res.Reason
		}
		if want.Route != "" {
			got.Route = res.Route
		}
		if want.Status != 0 {
			got.Status = res.Status
		}
		if d := diff(want, got); d != "" {
			failed++
			fmt.Fprintf(w, "FAIL %s\n%s", c.Name, d)
			fmt.Fprintf(w, "     route %q, reasons %v\n", res.Route, res.Reasons)
			continue
		}
		fmt.Fprintf(w, "ok   %s\n", c.Name)
	}
	fmt.Fprintf(w, "%d tests, %d passed, %d failed\n", len(tf.Tests), len(tf.Tests)-failed, failed)
	return failed
}

// diff lists the fields that differ, one per line: "- want" then "+ got".
func diff(want, got Expect) string {
	var b bytes.Buffer
	line := func(field string, w, g any) {
		fmt.Fprintf(&b, "     %s:\n     -  %v\n     +  %v\n", field, w, g)
	}
	if want.Decision != got.Decision {
		line("decision", want.Decision, got.Decision)
	}
	if want.Reason != got.Reason {
		line("reason", want.Reason, got.Reason)
	}
	if want.Route != got.Route {
		line("route", want.Route, got.Route)
	}
	if want.Status != got.Status {
		line("status", want.Status, got.Status)
	}
	return b.String()
}
