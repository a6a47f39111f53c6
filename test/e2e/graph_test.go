package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/ztgate/ztgate/internal/msgraph/graphtest"
)

const (
	entraTenant  = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	entraAPI     = "6f1d4c9e-5a3b-4c2d-8e1f-0a9b8c7d6e5f" // the protected API's application id
	entraGateway = "11111111-2222-4333-8444-555555555555" // the gateway's own application
	entraSecret  = "e2e~graph.client-secret"
	payrollGroup = "a0b1c2d3-0000-4000-8000-000000000001"
	aliceOID     = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
	bobOID       = "4f2504e0-4f89-41d3-9a0c-0305e82c3302"
)

// entraIssuer is a local Microsoft Entra ID for one tenant, laid out as
// login.microsoftonline.com is (v1.0 and v2.0 metadata and keys, the token
// endpoint under /{tenant}/oauth2/v2.0/token), so that a provider's
// authority_host can point at it.
type entraIssuer struct {
	URL string
	key *rsa.PrivateKey
}

func newEntraIssuer(t *testing.T, tokenEndpoint http.Handler) *entraIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ei := &entraIssuer{key: key}
	keys := func(w http.ResponseWriter, _ *http.Request) {
		pub, err := jwk.Import(key.Public())
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_ = pub.Set(jwk.KeyIDKey, "entra1")
		_ = pub.Set(jwk.KeyUsageKey, "sig")
		set := jwk.NewSet()
		_ = set.AddKey(pub)
		_ = json.NewEncoder(w).Encode(set)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": "https://sts.windows.net/" + r.PathValue("tenant") + "/", "jwks_uri": ei.URL + "/" + r.PathValue("tenant") + "/discovery/keys"})
	})
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": ei.URL + "/" + r.PathValue("tenant") + "/v2.0", "jwks_uri": ei.URL + "/" + r.PathValue("tenant") + "/discovery/v2.0/keys",
			"token_endpoint": ei.URL + "/" + r.PathValue("tenant") + "/oauth2/v2.0/token"})
	})
	mux.HandleFunc("GET /{tenant}/discovery/keys", keys)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", keys)
	mux.Handle("POST /{tenant}/oauth2/v2.0/token", tokenEndpoint)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ei.URL = srv.URL
	return ei
}

// overageToken is a v2.0 access token for the API in Entra ID's group
// overage shape: no groups claim, the groups named by reference.
func (ei *entraIssuer) overageToken(t *testing.T, oid string) string {
	t.Helper()
	now := time.Now().Unix()
	claims := map[string]any{
		"aud": entraAPI, "iss": ei.URL + "/" + entraTenant + "/v2.0", "iat": now, "nbf": now, "exp": now + 3600,
		"tid": entraTenant, "oid": oid, "sub": "sub-" + oid, "ver": "2.0", "azp": entraGateway, "azpacr": "1",
		"scp": "directory.read", "preferred_username": oid + "@contoso.com",
		"_claim_names":   map[string]any{"groups": "src1"},
		"_claim_sources": map[string]any{"src1": map[string]any{"endpoint": "https://graph.windows.net/" + entraTenant + "/users/" + oid + "/getMemberObjects"}},
	}
	payload, _ := json.Marshal(claims)
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, "entra1")
	_ = hdr.Set(jws.TypeKey, "JWT")
	tok, err := jws.Sign(payload, jws.WithKey(jwa.RS256(), ei.key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

// TestEntraGroupOverage: the real binary with an Entra ID provider whose
// tokens carry too many groups to list them. A route that tests groups
// allows by the groups Microsoft Graph (a local stand-in that follows its
// contract; the real one cannot be reached here) resolves, reusing the
// answer; with Graph stopped it denies with groups_unknown, in the 403 body,
// the audit event, the admin API's explanation and ztgate explain, while a
// route that does not test groups keeps allowing.
func TestEntraGroupOverage(t *testing.T) {
	graph := graphtest.New(t, entraGateway, entraSecret)
	graph.SetUser(entraTenant, aliceOID, graphtest.Group{ID: payrollGroup, SecurityEnabled: true})
	graph.SetUser(entraTenant, bobOID, graphtest.Group{ID: payrollGroup, SecurityEnabled: true})
	ei := newEntraIssuer(t, graph.TokenHandler())
	up := newUpstream(t)
	t.Setenv("ZTGATE_E2E_GRAPH_SECRET", entraSecret)
	cfg := fmt.Sprintf(`listen: { address: "127.0.0.1:0", shutdown_timeout: 10s }
admin: { address: "127.0.0.1:0" }
store: { driver: sqlite, dsn: audit.db }
identity:
  providers:
    - name: corp
      type: entra
      tenant: %s
      client_id: %s
      authority_host: %s
      group_overage:
        client_id: %s
        client_secret: "${env:ZTGATE_E2E_GRAPH_SECRET}"
        graph_url: %s
        timeout: 2s
services:
  - name: hr
    upstream: %s
    routes:
      - { name: payroll, match: { path: "/payroll/**" }, allow: { groups: [%s] } }
      - { name: directory, match: { path: "/directory/**" }, allow: { scopes: [directory.read] } }
`, entraTenant, entraAPI, ei.URL, entraGateway, graph.URL, up.URL, payrollGroup)
	g := startGatewayIn(t, t.TempDir(), cfg)
	alice, bob := ei.overageToken(t, aliceOID), ei.overageToken(t, bobOID)

	// Allowed by a group Graph resolves; the second request is answered
	// from the cache; a route without groups asks Graph nothing.
	for i := range 2 {
		if s, b, _ := do(t, "GET", g.URL+"/payroll/run", alice, nil); s != 200 {
			t.Fatalf("alice, request %d: got %d %s, want 200 by her resolved group", i+1, s, b)
		}
	}
	if s, b, _ := do(t, "GET", g.URL+"/directory/people", bob, nil); s != 200 {
		t.Fatalf("bob on a route without groups: got %d %s, want 200", s, b)
	}
	if n := graph.GraphCalls(); n != 1 {
		t.Fatalf("Graph calls: got %d, want 1 (alice once, then cached; bob's route tests no groups)", n)
	}
	if len(up.Requests()) != 3 {
		t.Fatalf("upstream saw %d requests, want 3", len(up.Requests()))
	}

	// Graph stops: bob, whose groups were never resolved, is denied on the
	// group route with groups_unknown and still allowed elsewhere.
	graph.Close()
	s, b, _ := do(t, "GET", g.URL+"/payroll/run", bob, nil)
	if s != 403 || decodeError(t, b).Reason != "groups_unknown" {
		t.Fatalf("bob with Graph down: got %d %s, want 403 groups_unknown", s, b)
	}
	if s, b, _ := do(t, "GET", g.URL+"/directory/people", bob, nil); s != 200 {
		t.Fatalf("bob on a route without groups, Graph down: got %d %s, want 200", s, b)
	}
	if n := len(up.Requests()); n != 4 {
		t.Fatalf("upstream saw %d requests, want 4 (the denied one never)", n)
	}

	// The audit event names the reason.
	s, b, _ = do(t, "GET", g.Admin+"/v1/audit/events?decision=deny", "", nil)
	var page struct {
		Events []struct {
			ResultDetails string   `json:"result_details"`
			Reasons       []string `json:"reasons"`
			Route         string   `json:"route"`
			Identity      string   `json:"identity"`
		} `json:"events"`
	}
	if err := json.Unmarshal(b, &page); err != nil || s != 200 {
		t.Fatalf("audit events: %d %s", s, b)
	}
	if len(page.Events) != 1 || page.Events[0].ResultDetails != "groups_unknown" || page.Events[0].Route != "payroll" ||
		page.Events[0].Identity != entraTenant+"/"+bobOID || strings.Join(page.Events[0].Reasons, ",") != "groups_unknown" {
		t.Errorf("audit: got %+v, want bob's deny on route payroll with groups_unknown", page.Events)
	}

	// The admin API's explanation says so.
	req, _ := json.Marshal(map[string]any{"method": "GET", "url": "http://x/payroll/run", "token": bob})
	resp, err := http.Post(g.Admin+"/v1/explain", "application/json", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	eb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var res struct {
		Decision string `json:"decision"`
		Reason   string `json:"reason"`
		Identity struct {
			GroupsUnknown bool `json:"groups_unknown"`
		} `json:"identity"`
	}
	if err := json.Unmarshal(eb, &res); err != nil || res.Decision != "deny" || res.Reason != "groups_unknown" || !res.Identity.GroupsUnknown {
		t.Errorf("admin explain: got %s, want deny groups_unknown with the groups unknown", eb)
	}

	// So does ztgate explain, which verifies the token and asks Graph itself.
	out, err := runBinary("explain", "--config", g.CfgPath, "--token", bob, "GET http://x/payroll/run")
	if err != nil || !strings.Contains(out, "decision  deny (403 groups_unknown)") || !strings.Contains(out, "groups unknown (group overage, not resolved)") {
		t.Errorf("ztgate explain: %v\n%s", err, out)
	}

	// Metrics count the lookups, their failure and the cache hit.
	_, m, _ := do(t, "GET", g.Admin+"/metrics", "", nil)
	for _, want := range []string{
		`ztgate_group_overage_lookups_total{provider="corp",result="ok"} 1`,
		`ztgate_group_overage_cache_hits_total{provider="corp"} 1`,
		`ztgate_denials_total{reason="groups_unknown",route="payroll",service="hr"} 1`,
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(string(m), `ztgate_group_overage_lookups_total{provider="corp",result="error"}`) {
		t.Error(`metrics lack ztgate_group_overage_lookups_total{result="error"}`)
	}
	if strings.Contains(g.Logs.String(), entraSecret) || strings.Contains(out, entraSecret) {
		t.Error("the Graph client secret appears in the gateway's output")
	}
	g.WaitLog("the log saying why bob's groups are unknown", "groups_unknown")
}
