package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztgate/ztgate/internal/demo"
	"github.com/ztgate/ztgate/internal/geo/geotest"
)

func policyConfig(is *issuer, up *upstream) string {
	return fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
services:
  - name: orders
    upstream: %q
    routes:
      - name: reports
        match: { methods: [GET], path: "/reports/**" }
        allow: { roles: [Reports.Read] }
        mode: report_only
      - name: read-orders
        match: { methods: [GET], path: "/orders/**" }
        allow: { roles: [Orders.Read] }
        when: 'request.ip in cidr("10.0.0.0/8") && request.headers["x-tenant"] == "t1"'
`, is.URL, up.URL)
}

// TestReportOnlyAndWhen: a report-only route lets a would-deny through and
// records would_deny with its reasons; a CEL condition denies with its reason.
func TestReportOnlyAndWhen(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	g := startGateway(t, policyConfig(is, up))
	reader := is.TokenFor(t, "alice", "Orders.Read")

	status, body, hdr := do(t, "GET", g.URL+"/reports/q3", reader, nil)
	if status != 200 || len(up.Requests()) != 1 {
		t.Fatalf("report-only: got %d %s, upstream saw %d; want 200 and forwarded", status, body, len(up.Requests()))
	}
	rid := hdr.Get("X-Request-Id")
	waitFor(t, "would_deny decision record", func() bool {
		for _, line := range strings.Split(g.Logs.String(), "\n") {
			if strings.Contains(line, rid) && strings.Contains(line, `"decision":"would_deny"`) && strings.Contains(line, `"reasons":["role_missing"]`) {
				return true
			}
		}
		return false
	})
	_, metrics, _ := do(t, "GET", g.Admin+"/metrics", "", nil)
	if !strings.Contains(string(metrics), `ztgate_requests_total{decision="would_deny",route="reports",service="orders",status="200"} 1`) {
		t.Error("metrics lack the would_deny request")
	}

	// The CEL condition: loopback is not in 10.0.0.0/8.
	status, body, _ = do(t, "GET", g.URL+"/orders/1", reader, map[string]string{"X-Tenant": "t1"})
	if e := decodeError(t, body); status != 403 || e.Reason != "when_false" {
		t.Fatalf("when: got %d %s, want 403 when_false", status, body)
	}
	// A CEL error (a missing header) denies too.
	status, body, _ = do(t, "GET", g.URL+"/orders/1", reader, nil)
	if status != 403 {
		t.Fatalf("when error: got %d %s, want 403", status, body)
	}

	// The admin API explains the same request, verifying the token.
	reqBody, _ := json.Marshal(map[string]any{"method": "GET", "url": "http://x/orders/1", "token": reader, "ip": "10.1.2.3", "headers": map[string]string{"X-Tenant": "t1"}})
	resp, err := http.Post(g.Admin+"/v1/explain", "application/json", bytes.NewReader(reqBody))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var res struct {
		Decision string   `json:"decision"`
		Route    string   `json:"route"`
		Reasons  []string `json:"reasons"`
		Auth     []string `json:"authentication"`
	}
	if err := json.Unmarshal(b, &res); err != nil || resp.StatusCode != 200 {
		t.Fatalf("explain API: %d %s", resp.StatusCode, b)
	}
	if res.Decision != "allow" || res.Route != "orders/read-orders" || strings.Join(res.Reasons, ",") != "role_ok,when_ok" || !strings.Contains(strings.Join(res.Auth, " "), "token verified") {
		t.Errorf("explain API: got %+v", res)
	}
	resp, err = http.Post(g.Admin+"/v1/explain", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("explain API with text/plain: got %d, want 415", resp.StatusCode)
	}

	// The CLI explains it too, verifying the token against the live issuer.
	out, err := runBinary("explain", "--config", g.CfgPath, "--token", reader, "--ip", "203.0.113.9", "-H", "X-Tenant: t1", "GET http://x/orders/1")
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	for _, want := range []string{"-> orders/read-orders", "token verified by provider test", "FAIL when", "decision  deny (403 when_false)"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
}

// TestPolicyTestCommand runs the shipped demo policy tests with the real
// binary, and a failing one.
func TestPolicyTestCommand(t *testing.T) {
	out, err := runBinary("policy", "test", "--config", "../../examples/demo/ztgate.yaml", "../../examples/demo/policy_test.yaml")
	if err != nil || !strings.Contains(out, "10 tests, 10 passed, 0 failed") {
		t.Fatalf("demo policy tests: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(`tests:
  - name: admin is open (wrong)
    request: { method: GET, url: "http://x/admin/keys", claims: { sub: a } }
    expect: { decision: allow }
`), 0o600)
	out, err = runBinary("policy", "test", "--config", "../../examples/demo/ztgate.yaml", bad)
	if err == nil || !strings.Contains(out, "FAIL admin is open (wrong)") || !strings.Contains(out, "decision:\n     -  allow\n     +  deny") {
		t.Fatalf("failing policy test: err=%v\n%s", err, out)
	}
}

// TestCountries: the client's country comes from a MaxMind-format database.
func TestCountries(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	db := geotest.WriteDB(t, map[string]string{"127.0.0.0/8": "DE"})
	g := startGateway(t, fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
policy:
  geoip_database: %q
services:
  - name: s
    upstream: %q
    routes:
      - { name: eu, match: { path: "/eu/**" }, allow: { countries: [DE, FR] } }
      - { name: fr, match: { path: "/fr/**" }, allow: { countries: [FR] } }
      - { name: cel, match: { path: "/cel/**" }, allow: { authenticated: true }, when: 'geo.country == "DE"' }
`, is.URL, db, up.URL))
	tok := is.TokenFor(t, "alice")
	if s, b, _ := do(t, "GET", g.URL+"/eu/x", tok, nil); s != 200 {
		t.Errorf("allowed country: got %d %s", s, b)
	}
	if s, b, _ := do(t, "GET", g.URL+"/fr/x", tok, nil); s != 403 || decodeError(t, b).Reason != "country_not_allowed" {
		t.Errorf("other country: got %d %s, want 403 country_not_allowed", s, b)
	}
	if s, b, _ := do(t, "GET", g.URL+"/cel/x", tok, nil); s != 200 {
		t.Errorf("geo.country in CEL: got %d %s", s, b)
	}
}

// TestStepUpClaimsChallenge: a route needing MFA answers a client that can
// handle claims challenges (xms_cc: cp1) with 401 insufficient_claims and
// the claims to obtain; other clients get 403 with the reason.
func TestStepUpClaimsChallenge(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	g := startGateway(t, fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
services:
  - name: s
    upstream: %q
    routes:
      - { name: pay, match: { path: "/pay/**" }, allow: { roles: [Pay], mfa: true } }
`, is.URL, up.URL))
	capable, err := is.Token(demo.TokenRequest{Subject: "alice", Roles: []string{"Pay"}, AMR: []string{"pwd"}, Extra: map[string]any{"xms_cc": []string{"cp1"}}})
	if err != nil {
		t.Fatal(err)
	}
	status, body, hdr := do(t, "POST", g.URL+"/pay/1", capable, nil)
	chal := hdr.Get("WWW-Authenticate")
	if status != 401 || decodeError(t, body).Reason != "mfa_missing" || !strings.Contains(chal, `error="insufficient_claims"`) {
		t.Fatalf("capable client: got %d %s, challenge %q; want 401 insufficient_claims", status, body, chal)
	}
	_, c, _ := strings.Cut(chal, `claims="`)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(c, `"`))
	if err != nil || string(raw) != `{"access_token":{"amr":{"essential":true,"values":["mfa"]}}}` {
		t.Errorf("claims: got %q, %v", raw, err)
	}
	plain := is.TokenFor(t, "bob", "Pay")
	status, body, hdr = do(t, "POST", g.URL+"/pay/1", plain, nil)
	if status != 403 || decodeError(t, body).Reason != "mfa_missing" || hdr.Get("WWW-Authenticate") != "" {
		t.Fatalf("plain client: got %d %s; want 403 mfa_missing without a challenge", status, body)
	}
	if len(up.Requests()) != 0 {
		t.Errorf("upstream saw %d requests", len(up.Requests()))
	}
}

// TestAuditTrail: every request's event is in the store before its response;
// report-only requests are recorded as would_deny with their reasons; after
// kill -9 every answered request is there and the chain verifies; an edited
// row is found by "ztgate audit verify".
func TestAuditTrail(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	dir := t.TempDir()
	cfg := strings.Replace(policyConfig(is, up), "admin: { address: \"127.0.0.1:0\" }\n", "admin: { address: \"127.0.0.1:0\" }\nstore: { driver: sqlite, dsn: audit.db }\naudit: { node: gw-1, hmac_key: test-key }\n", 1)
	g := startGatewayIn(t, dir, cfg)
	reader := is.TokenFor(t, "alice", "Orders.Read")

	_, _, hdr := do(t, "GET", g.URL+"/reports/q3", reader, nil)
	wouldDenyID := hdr.Get("X-Request-Id")
	do(t, "GET", g.URL+"/nowhere", reader, nil)
	out, err := runBinary("audit", "query", "--config", g.CfgPath, "--json", "--decision", "would_deny")
	if err != nil {
		t.Fatalf("audit query: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"request_id":"`+wouldDenyID+`"`) || !strings.Contains(out, `"reasons":["role_missing"]`) || !strings.Contains(out, `"status":200`) {
		t.Fatalf("the report-only request is not audited as would_deny with its reasons:\n%s", out)
	}
	if strings.Contains(out, reader) {
		t.Fatal("the audit trail holds a raw token")
	}
	if !strings.Contains(out, `"auth_methods":["pwd"]`) || !strings.Contains(out, `"token_lifetime_s":28800`) {
		t.Fatalf("the event lacks how the caller signed in (amr) or the token's lifetime (8h):\n%s", out)
	}

	// Under load, kill -9: every request that got a response has its event.
	answered := make(chan string, 10000)
	stop := make(chan struct{})
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _, h, err := tryDo("GET", g.URL+"/reports/x", reader)
				if err != nil {
					return // the gateway is gone
				}
				answered <- h.Get("X-Request-Id")
			}
		}()
	}
	waitFor(t, "some load", func() bool { return len(answered) > 200 })
	_ = g.Cmd.Process.Kill()
	close(stop)
	for range 4 {
		<-done
	}
	close(answered)
	out, err = runBinary("audit", "query", "--config", g.CfgPath, "--json", "--since", "1h", "--limit", "1000", "--route", "orders/reports")
	if err != nil {
		t.Fatalf("audit query after kill: %v\n%s", err, out)
	}
	n := 0
	for id := range answered {
		n++
		if !strings.Contains(out, `"request_id":"`+id+`"`) {
			t.Fatalf("request %s was answered but is not in the audit trail", id)
		}
	}
	t.Logf("%d answered requests, all audited", n)
	out, err = runBinary("audit", "verify", "--config", g.CfgPath)
	if err != nil || !strings.Contains(out, "node gw-1:") || !strings.Contains(out, "chain intact") {
		t.Fatalf("verify after kill -9: %v\n%s", err, out)
	}

	// Tampering is found.
	db := filepath.Join(dir, "audit.db")
	if out, err := exec.Command("sqlite3", db, `UPDATE audit_events SET body = replace(body, '"would_deny"', '"allow"') WHERE seq = 1`).CombinedOutput(); err != nil {
		t.Fatalf("sqlite3 (./scripts/test installs it): %v %s", err, out)
	}
	out, err = runBinary("audit", "verify", "--config", g.CfgPath)
	if err == nil || !strings.Contains(out, "FIRST PROBLEM at sequence 1: altered") {
		t.Fatalf("verify after an edit: %v\n%s", err, out)
	}
}
