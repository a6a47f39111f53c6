package explain

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztgate/ztgate/internal/config"
)

const workloadConfig = `listen: { address: "127.0.0.1:0", tls: { cert_file: gw.pem, key_file: gw.key, client_auth: optional } }
identity:
  providers:
    - { name: corp, type: oidc, issuer: "https://idp.example", audiences: [api] }
  mtls: { trust_bundle: ca.pem, trust_domains: [prod.example] }
services:
  - name: orders
    upstream: http://127.0.0.1:1
    routes:
      - name: sync
        match: { path: "/sync/**" }
        require_client_cert: true
        allow: { identity_types: [workload], workloads: ["spiffe://prod.example/ns/billing/*/*"] }
      - name: reports
        match: { path: "/reports/**" }
        allow: { all_of: [ { roles: [Reports.Read] }, { workloads: ["spiffe://prod.example/ns/orders/**"] } ] }
`

func TestExplainWorkload(t *testing.T) {
	cfg, err := config.Parse("ztgate.yaml", []byte(workloadConfig), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	alice := map[string]any{"sub": "alice", "roles": []any{"Reports.Read"}}
	tests := []struct {
		name     string
		req      Request
		decision string
		status   int
		reason   string
		subject  string
		workload string
	}{
		{"workload alone", Request{URL: "/sync/orders", Workload: "spiffe://prod.example/ns/billing/sa/api"}, "allow", 200, "", "spiffe://prod.example/ns/billing/sa/api", "spiffe://prod.example/ns/billing/sa/api"},
		{"workload not allowed", Request{URL: "/sync/orders", Workload: "spiffe://prod.example/ns/orders/sa/api"}, "deny", 403, "workload_not_allowed", "spiffe://prod.example/ns/orders/sa/api", "spiffe://prod.example/ns/orders/sa/api"},
		{"another trust domain", Request{URL: "/sync/orders", Workload: "spiffe://evil.example/ns/billing/sa/api"}, "deny", 401, "trust_domain_not_allowed", "", ""},
		{"bad SPIFFE ID", Request{URL: "/sync/orders", Workload: "spiffe://prod.example/ns/../billing"}, "deny", 401, "bad_spiffe_id", "", ""},
		{"source not in identity_from", Request{URL: "/sync/orders", Workload: "dns:billing.internal"}, "deny", 401, "no_workload_id", "", ""},
		{"no certificate where one is required", Request{URL: "/sync/orders", Claims: alice}, "deny", 401, "cert_missing", "", ""},
		{"claims through an allowed workload", Request{URL: "/reports/q3", Claims: alice, Workload: "spiffe://prod.example/ns/orders/sa/api"}, "allow", 200, "", "alice", "spiffe://prod.example/ns/orders/sa/api"},
		{"claims without a workload", Request{URL: "/reports/q3", Claims: alice}, "deny", 403, "workload_missing", "alice", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Explain(context.Background(), cfg, tt.req, Options{Offline: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.Decision != tt.decision || res.Status != tt.status || res.Reason != tt.reason {
				t.Fatalf("got %s %d %q, want %s %d %q (auth %v, reasons %v)", res.Decision, res.Status, res.Reason, tt.decision, tt.status, tt.reason, res.Auth, res.Reasons)
			}
			if tt.subject == "" {
				return
			}
			if res.Identity == nil || res.Identity.Subject != tt.subject || res.Identity.Workload != tt.workload {
				t.Fatalf("got identity %+v, want subject %q workload %q", res.Identity, tt.subject, tt.workload)
			}
			var b bytes.Buffer
			res.WriteText(&b)
			if tt.workload != "" && !strings.Contains(b.String(), "client certificate given directly: workload "+tt.workload) {
				t.Errorf("the explanation does not say the certificate was assumed:\n%s", b.String())
			}
		})
	}
}

func TestPolicyTestsWithWorkloads(t *testing.T) {
	cfg, err := config.Parse("ztgate.yaml", []byte(workloadConfig), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tests.yaml")
	os.WriteFile(path, []byte(`tests:
  - name: billing syncs
    request: { method: POST, url: /sync/orders, workload: "spiffe://prod.example/ns/billing/sa/api" }
    expect: { decision: allow }
  - name: a user cannot sync
    request: { method: POST, url: /sync/orders, claims: { sub: alice } }
    expect: { decision: deny, reason: cert_missing, status: 401 }
  - name: wrong expectation
    request: { method: POST, url: /sync/orders, workload: "spiffe://prod.example/ns/orders/sa/api" }
    expect: { decision: allow }
`), 0o600)
	tf, err := LoadTests(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if failed := RunTests(context.Background(), cfg, tf, &out); failed != 1 || !strings.Contains(out.String(), "FAIL wrong expectation") {
		t.Fatalf("got %d failures, want 1 (wrong expectation):\n%s", failed, out.String())
	}
}
