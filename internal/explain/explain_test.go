package explain

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/policy"
)

var update = flag.Bool("update", false, "rewrite golden files")

func loadConfig(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.ValidateConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// monday0930 is 09:30 in Berlin on a Monday.
var monday0930 = time.Date(2026, 11, 23, 8, 30, 0, 0, time.UTC)

func TestExplainGolden(t *testing.T) {
	cfg := loadConfig(t, "testdata/gateway.yaml")
	reader := map[string]any{"sub": "alice", "tid": "t1", "roles": []any{"Orders.Read"}, "amr": []any{"pwd"}}
	tests := []struct {
		name string
		req  Request
	}{
		{"allowed-from-office-network", Request{Method: "GET", URL: "https://api.example.com/orders/42/items", IP: "10.1.2.3", Claims: reader}},
		{"denied-by-cel-outside-network", Request{Method: "GET", URL: "https://api.example.com/orders/42/items", IP: "203.0.113.9", Claims: reader}},
		{"param-route-beats-rest", Request{Method: "GET", URL: "https://api.example.com/orders/42", IP: "10.1.2.3", Claims: reader}},
		{"write-role-missing", Request{Method: "POST", URL: "https://api.example.com/orders/42", Claims: reader}},
		{"write-mfa-missing", Request{Method: "POST", URL: "https://api.example.com/orders/42", Claims: map[string]any{"sub": "bob", "roles": []any{"Orders.Write"}, "amr": []any{"pwd"}}}},
		{"no-route", Request{Method: "GET", URL: "https://api.example.com/nowhere", Claims: reader}},
		{"path-traversal-normalised", Request{Method: "GET", URL: "https://api.example.com/orders/../admin/x", Claims: reader}},
		{"bad-path-refused", Request{Method: "GET", URL: "https://api.example.com/orders/%2e%2e%2fadmin", Claims: reader}},
		{"default-deny-admin", Request{Method: "GET", URL: "https://api.example.com/admin/keys", Claims: reader}},
		{"report-only-would-deny", Request{Method: "GET", URL: "https://api.example.com/reports/q3", Claims: reader}},
		{"office-hours-ok", Request{Method: "GET", URL: "https://api.example.com/payroll/run", Time: monday0930, Claims: map[string]any{"sub": "carol", "groups": []any{"payroll"}, "scp": "payroll.read"}}},
		{"office-hours-weekend", Request{Method: "GET", URL: "https://api.example.com/payroll/run", Time: monday0930.Add(-48 * time.Hour), Claims: map[string]any{"sub": "carol", "groups": []any{"payroll"}, "scp": "payroll.read"}}},
		{"host-route-app", Request{Method: "GET", URL: "https://partner.example.com/feed", Claims: map[string]any{"sub": "partner-app", "azp": "partner-app", "idtyp": "app"}}},
		{"no-credentials", Request{Method: "GET", URL: "https://api.example.com/orders/1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.req.Time.IsZero() {
				tt.req.Time = monday0930
			}
			res, err := Explain(context.Background(), cfg, tt.req, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			res.WriteText(&b)
			golden := filepath.Join("testdata", "golden", tt.name+".txt")
			if *update {
				if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -update creates it)", err)
			}
			if d := cmp.Diff(string(want), b.String()); d != "" {
				t.Errorf("%s (-want +got):\n%s", golden, d)
			}
		})
	}
}

func TestPolicyTests(t *testing.T) {
	cfg := loadConfig(t, "../../examples/demo/ztgate.yaml")
	tf, err := LoadTests("../../examples/demo/policy_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if failed := RunTests(context.Background(), cfg, tf, &out); failed != 0 {
		t.Fatalf("the demo's policy tests fail:\n%s", out.String())
	}

	// A wrong expectation fails with a readable diff.
	wrong := &TestFile{Tests: []Case{{
		Name:    "reader may write (wrong on purpose)",
		Request: Request{Method: "POST", URL: "http://127.0.0.1:8080/orders/1", Claims: map[string]any{"sub": "alice", "roles": []any{"Orders.Read"}}},
		Expect:  Expect{Decision: "allow", Route: "orders/write-orders"},
	}}}
	out.Reset()
	if failed := RunTests(context.Background(), cfg, wrong, &out); failed != 1 {
		t.Fatalf("got %d failures, want 1:\n%s", failed, out.String())
	}
	for _, want := range []string{"FAIL reader may write (wrong on purpose)", "decision:\n     -  allow\n     +  deny\n", "reasons [role_missing mfa_missing]", "1 tests, 0 passed, 1 failed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestLoadTestsErrors(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown key": "tests: [ { name: a, request: { url: /x }, expect: { decision: allow }, extra: 1 } ]",
		"no tests":    "tests: []",
		"token":       "tests: [ { name: a, request: { url: /x, token: abc }, expect: { decision: allow } } ]",
		"no decision": "tests: [ { name: a, request: { url: /x } } ]",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
		os.WriteFile(p, []byte(body), 0o600)
		if _, err := LoadTests(p); err == nil {
			t.Errorf("%s: got no error", name)
		}
	}
}
