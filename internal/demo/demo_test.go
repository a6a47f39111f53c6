package demo

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite examples/demo/ztgate.yaml")

// TestExampleConfig keeps examples/demo/ztgate.yaml equal to the demo's own
// configuration rendered with fixed addresses (go test -update rewrites it).
func TestExampleConfig(t *testing.T) {
	const path = "../../examples/demo/ztgate.yaml"
	got := Render("127.0.0.1:8080", "127.0.0.1:9090", "http://127.0.0.1:8081", "http://127.0.0.1:8082", "examples/demo/ztgate.yaml")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s is stale (-want +got); run go test ./internal/demo -update:\n%s", path, d)
	}
}

// TestGuideShowsAssessment: the guide says how to produce the maturity
// report, on the command line and from the admin API.
func TestGuideShowsAssessment(t *testing.T) {
	var b strings.Builder
	printGuide(&b, Info{GatewayURL: "http://127.0.0.1:8080", AdminURL: "http://127.0.0.1:9090", ConfigFile: "/tmp/d/ztgate.yaml"})
	for _, want := range []string{
		"ztgate assess --config /tmp/d/ztgate.yaml --out assessment.html",
		"curl -s 'http://127.0.0.1:9090/v1/assess?format=md'",
		"docs/assessment-demo.html",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the guide lacks %q", want)
		}
	}
}
