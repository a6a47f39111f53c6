package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// verifyingUpstream is a backend that trusts only what it verifies itself,
// as a real one would with any JWT library: the token in header (from the
// Authorization header when header is Authorization) must be signed by a
// key of the JWKS at jwksURL, carry issuer and be for audience. It answers
// 200 with the token's claims, or 401 with the reason.
type verifyingUpstream struct {
	*httptest.Server
	header   string
	issuer   string
	audience string
	jwksURL  atomic.Pointer[string]

	mu   sync.Mutex
	seen [][]string // every request's values of header, as received
}

func newVerifyingUpstream(t *testing.T, header, issuer, audience string) *verifyingUpstream {
	t.Helper()
	u := &verifyingUpstream{header: header, issuer: issuer, audience: audience}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *verifyingUpstream) setJWKS(url string) { u.jwksURL.Store(&url) }

func (u *verifyingUpstream) serve(w http.ResponseWriter, r *http.Request) {
	vals := r.Header.Values(u.header)
	u.mu.Lock()
	u.seen = append(u.seen, vals)
	u.mu.Unlock()
	fail := func(format string, args ...any) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, format, args...)
	}
	if len(vals) != 1 {
		fail("want one %s header, got %d", u.header, len(vals))
		return
	}
	tok := vals[0]
	if u.header == "Authorization" {
		var ok bool
		if tok, ok = strings.CutPrefix(tok, "Bearer "); !ok {
			fail("not a bearer token")
			return
		}
	}
	// The keys are fetched for every request: a test may rotate them.
	set, err := jwk.Fetch(r.Context(), *u.jwksURL.Load())
	if err != nil {
		fail("fetch JWKS: %v", err)
		return
	}
	parsed, err := jwt.Parse([]byte(tok), jwt.WithKeySet(set), jwt.WithIssuer(u.issuer), jwt.WithAudience(u.audience))
	if err != nil {
		fail("verify: %v", err)
		return
	}
	claims := map[string]any{}
	for _, k := range parsed.Keys() {
		var v any
		if err := parsed.Get(k, &v); err == nil {
			claims[k] = v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(claims)
}

func (u *verifyingUpstream) requests() [][]string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([][]string(nil), u.seen...)
}

// TestIdentityAssertion: upstreams verify the gateway's identity assertion
// with the key set it publishes, an assertion for one service is refused by
// another, and a client's own assertion header never reaches an upstream
// as sent. The signing key is generated once and kept beside the
// configuration.
func TestIdentityAssertion(t *testing.T) {
	const header, gwIssuer = "X-Caller-Assertion", "https://gw.e2e.test"
	is := newIssuer(t)
	orders := newVerifyingUpstream(t, header, gwIssuer, "orders")
	billing := newVerifyingUpstream(t, header, gwIssuer, "api://billing")
	legacy := newUpstream(t)
	cfg := fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
assertion:
  issuer: %q
  header: %s
  ttl: 30s
services:
  - name: orders
    upstream: %q
    inject: { identity_assertion: true }
    routes:
      - { name: read-orders, match: { methods: [GET], path: "/orders/**" }, allow: { roles: [Orders.Read] } }
  - name: billing
    upstream: %q
    inject: { identity_assertion: true, assertion_audience: "api://billing" }
    routes:
      - { name: invoices, match: { path: "/billing/**" }, allow: { authenticated: true } }
  - name: legacy
    upstream: %q
    routes:
      - { name: everything, match: { path: "/**" }, allow: { authenticated: true } }
`, is.URL, gwIssuer, header, orders.URL, billing.URL, legacy.URL)
	dir := t.TempDir()
	g := startGatewayIn(t, dir, cfg)
	orders.setJWKS(g.URL + "/.well-known/jwks.json")
	billing.setJWKS(g.URL + "/.well-known/jwks.json")
	alice := is.TokenFor(t, "alice", "Orders.Read")
	spoof := map[string]string{header: "forged", "X_Caller_Assertion": "forged-underscore", "X-Ztgate-Identity": "forged-default"}

	// The keys are public: no token, never routed (legacy's /** would
	// otherwise match), and the legacy upstream sees nothing.
	s, jwks, hdr := do(t, "GET", g.URL+"/.well-known/jwks.json", "", nil)
	if s != 200 || !strings.Contains(hdr.Get("Content-Type"), "jwk-set+json") {
		t.Fatalf("JWKS: got %d %q %s, want 200 application/jwk-set+json", s, hdr.Get("Content-Type"), jwks)
	}
	set, err := jwk.Parse(jwks)
	if err != nil || set.Len() != 1 {
		t.Fatalf("JWKS: %v, %d keys; want one key", err, set.Len())
	}
	if strings.Contains(string(jwks), `"d":`) {
		t.Fatalf("the JWKS publishes a private key: %s", jwks)
	}

	// The orders upstream verifies the assertion it gets and reads the
	// caller from it.
	s, body, hdr := do(t, "GET", g.URL+"/orders/42", alice, spoof)
	if s != 200 {
		t.Fatalf("orders: got %d %s, want 200 (the upstream verified the assertion)", s, body)
	}
	var claims map[string]any
	if err := json.Unmarshal(body, &claims); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"iss": gwIssuer, "sub": "alice", "oid": "oid-alice", "tid": "demo-tenant", "route": "read-orders", "idtyp": "user", "idp": is.URL, "jti": hdr.Get("X-Request-Id")} {
		if claims[k] != want {
			t.Errorf("claim %s: got %v, want %v", k, claims[k], want)
		}
	}
	if fmt.Sprint(claims["roles"]) != "[Orders.Read]" || fmt.Sprint(claims["aud"]) != "[orders]" {
		t.Errorf("roles %v aud %v: want [Orders.Read] and [orders]", claims["roles"], claims["aud"])
	}
	seen := orders.requests()
	if len(seen) != 1 || len(seen[0]) != 1 || strings.HasPrefix(seen[0][0], "forged") {
		t.Fatalf("orders upstream saw %q, want the gateway's assertion only", seen)
	}
	captured := seen[0][0]

	// Replay to another service: the billing upstream refuses an orders
	// assertion (audience), however it gets there.
	req, _ := http.NewRequest("GET", billing.URL+"/billing/1", nil)
	req.Header.Set(header, captured)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	reason, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(reason), "aud") {
		t.Fatalf("orders assertion replayed to billing: got %d %s, want 401 for the audience", resp.StatusCode, reason)
	}
	s, body, _ = do(t, "GET", g.URL+"/billing/1", alice, map[string]string{header: captured})
	if s != 200 {
		t.Fatalf("billing through the gateway: got %d %s, want 200", s, body)
	}
	if b := billing.requests(); len(b) != 2 || len(b[1]) != 1 || b[1][0] == captured {
		t.Fatalf("billing upstream saw %q, want its own assertion, not the replayed one", b)
	}
	if err := json.Unmarshal(body, &claims); err != nil || fmt.Sprint(claims["aud"]) != "[api://billing]" || claims["route"] != "invoices" {
		t.Fatalf("billing claims %v: want aud [api://billing] and route invoices", claims)
	}

	// A service without assertions still never sees a client's copy.
	if s, b, _ := do(t, "GET", g.URL+"/legacy/1", alice, spoof); s != 200 {
		t.Fatalf("legacy: got %d %s", s, b)
	}
	lr := legacy.Requests()
	if len(lr) != 1 {
		t.Fatalf("legacy upstream saw %d requests, want 1 (the JWKS request must not reach it)", len(lr))
	}
	for k := range lr[0].Header {
		if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), header) || strings.EqualFold(k, "X-Ztgate-Identity") {
			t.Errorf("legacy upstream received the client's %s: %q", k, lr[0].Header[k])
		}
	}

	// No token, no assertion: a refused request reaches nobody.
	if s, _, _ := do(t, "GET", g.URL+"/orders/42", "", spoof); s != 401 {
		t.Fatalf("without a token: got %d, want 401", s)
	}
	if n := len(orders.requests()); n != 1 {
		t.Fatalf("orders upstream saw %d requests, want 1", n)
	}

	// The generated key is kept (0600) and used again after a restart.
	fi, err := os.Stat(filepath.Join(dir, "ztgate-assertion-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("generated key mode: got %o, want 600", fi.Mode().Perm())
	}
	kid := func(doc []byte) string {
		set, err := jwk.Parse(doc)
		if err != nil || set.Len() == 0 {
			t.Fatalf("JWKS %s: %v", doc, err)
		}
		k, _ := set.Key(0)
		id, _ := k.KeyID()
		return id
	}
	before := kid(jwks)
	g.Signal(syscall.SIGTERM)
	<-g.Done
	g.Done <- nil // for the cleanup
	g2 := startGatewayIn(t, dir, cfg)
	_, jwks2, _ := do(t, "GET", g2.URL+"/.well-known/jwks.json", "", nil)
	if after := kid(jwks2); after != before {
		t.Fatalf("after a restart the key id is %s, want %s (the kept key)", after, before)
	}
}

// TestIdentityAssertionRotation: a reload to a new signing key publishes
// it at once and keeps the previous key published for the overlap, so an
// assertion signed just before the reload still verifies.
func TestIdentityAssertionRotation(t *testing.T) {
	is := newIssuer(t)
	orders := newVerifyingUpstream(t, "X-Ztgate-Identity", "urn:ztgate:e2e", "orders")
	dir := t.TempDir()
	for _, name := range []string{"a.pem", "b.pem"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalECPrivateKey(key)
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := func(key string) string {
		return fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
assertion: { issuer: "urn:ztgate:e2e", keys: [ { file: %s } ], rotation_overlap: 10m }
services:
  - name: orders
    upstream: %q
    inject: { identity_assertion: true }
    routes:
      - { name: read, match: { path: "/orders/**" }, allow: { authenticated: true } }
`, is.URL, key, orders.URL)
	}
	g := startGatewayIn(t, dir, cfg("a.pem"))
	orders.setJWKS(g.URL + "/.well-known/jwks.json")
	alice := is.TokenFor(t, "alice")
	if s, b, _ := do(t, "GET", g.URL+"/orders/1", alice, nil); s != 200 {
		t.Fatalf("before rotation: got %d %s", s, b)
	}
	signedByA := orders.requests()[0][0]
	keys := func() int {
		_, doc, _ := do(t, "GET", g.URL+"/.well-known/jwks.json", "", nil)
		set, err := jwk.Parse(doc)
		if err != nil {
			t.Fatal(err)
		}
		return set.Len()
	}

	if err := os.WriteFile(g.CfgPath, []byte(cfg("b.pem")), 0o600); err != nil {
		t.Fatal(err)
	}
	g.Signal(syscall.SIGHUP)
	waitFor(t, "the reload to publish the new key", func() bool { return keys() == 2 })
	if s, b, _ := do(t, "GET", g.URL+"/orders/2", alice, nil); s != 200 {
		t.Fatalf("after rotation: got %d %s", s, b)
	}
	signedByB := orders.requests()[1][0]
	if kidOf(t, signedByA) == kidOf(t, signedByB) {
		t.Fatal("the reload did not change the signing key")
	}
	// The assertion signed before the reload still verifies (overlap).
	req, _ := http.NewRequest("GET", orders.URL+"/orders/1", nil)
	req.Header.Set("X-Ztgate-Identity", signedByA)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("assertion of the previous key during the overlap: got %d %s, want 200", resp.StatusCode, b)
	}
}

// TestUpstreamClientCredentials: the gateway gets its own access token from
// a real OpenID Connect provider with the client credentials grant and
// sends it to the backend, which verifies it with the provider's keys. The
// caller's token never reaches the backend; the token is reused across
// requests; a token endpoint that cannot be reached refuses the request
// with 503 upstream_token_unavailable before any upstream sees it.
func TestUpstreamClientCredentials(t *testing.T) {
	p := startOIDCProvider(t)
	backend := newVerifyingUpstream(t, "Authorization", p.URL, "urn:backend-api")
	backend.setJWKS(jwksURI(t, p.URL))
	unreached := newUpstream(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadTokenURL := "http://" + ln.Addr().String() + "/token"
	ln.Close()
	t.Setenv("ZT_E2E_GATEWAY_SECRET", "gateway-secret")
	g := startGateway(t, fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: real-oidc, type: oidc, issuer: %q, audiences: ["urn:orders-api"] }
services:
  - name: backend
    upstream: %q
    inject:
      client_credentials:
        token_url: %q
        client_id: ztgate-gateway
        client_secret: "${env:ZT_E2E_GATEWAY_SECRET}"
        scopes: [backend.call]
        resource: "urn:backend-api"
    routes:
      - { name: call, match: { path: "/backend/**" }, allow: { apps: [orders-client] } }
  - name: broken
    upstream: %q
    inject:
      client_credentials: { token_url: %q, client_id: ztgate-gateway, client_secret: "${env:ZT_E2E_GATEWAY_SECRET}" }
    routes:
      - { name: call, match: { path: "/broken/**" }, allow: { apps: [orders-client] } }
`, p.URL, backend.URL, p.URL+"/token", unreached.URL, deadTokenURL))

	caller := p.clientCredentials(t, "orders-client", "orders-secret", "orders.read")
	for i := range 3 {
		s, body, _ := do(t, "GET", fmt.Sprintf("%s/backend/%d", g.URL, i), caller, nil)
		if s != 200 {
			t.Fatalf("request %d: got %d %s, want 200 (the backend verified the gateway's token)", i, s, body)
		}
		var claims map[string]any
		if err := json.Unmarshal(body, &claims); err != nil {
			t.Fatal(err)
		}
		if claims["client_id"] != "ztgate-gateway" || claims["scope"] != "backend.call" {
			t.Fatalf("backend token claims %v: want client_id ztgate-gateway, scope backend.call", claims)
		}
	}
	seen := backend.requests()
	for i, vals := range seen {
		if len(vals) != 1 || vals[0] == "Bearer "+caller {
			t.Fatalf("backend request %d carried %q, want the gateway's token, not the caller's", i, vals)
		}
		if vals[0] != seen[0][0] {
			t.Fatalf("backend request %d carried another token: the token was not reused", i)
		}
	}

	s, body, _ := do(t, "GET", g.URL+"/broken/1", caller, nil)
	if s != 503 || decodeError(t, body).Reason != "upstream_token_unavailable" {
		t.Fatalf("unreachable token endpoint: got %d %s, want 503 upstream_token_unavailable", s, body)
	}
	if n := len(unreached.Requests()); n != 0 {
		t.Fatalf("the upstream of the failing service saw %d requests, want 0", n)
	}

	// One fetch served the three backend requests; the failure is counted
	// and raised as an alert.
	_, metrics, _ := do(t, "GET", g.Admin+"/metrics", "", nil)
	for _, want := range []string{
		`ztgate_upstream_token_fetches_total{kind="client_credentials",result="ok",service="backend"} 1`,
		`ztgate_upstream_token_fetches_total{kind="client_credentials",result="error",service="broken"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	g.WaitLog("an upstream_token_unavailable alert in the logs", `"alert":"upstream_token_unavailable"`)
}

// TestUpstreamTokenExchange: for each caller, the gateway exchanges the
// caller's own token at a real OpenID Connect provider (RFC 8693) for one
// narrowed to the backend, which verifies it with the provider's keys and
// finds the caller as sub and the gateway as act. The exchanged token is
// reused for the same caller token; the caller's token never reaches the
// backend.
func TestUpstreamTokenExchange(t *testing.T) {
	p := startOIDCProvider(t)
	backend := newVerifyingUpstream(t, "Authorization", p.URL, "urn:backend-api")
	backend.setJWKS(jwksURI(t, p.URL))
	t.Setenv("ZT_E2E_GATEWAY_SECRET", "gateway-secret")
	g := startGateway(t, fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: real-oidc, type: oidc, issuer: %q, audiences: ["urn:orders-api"] }
services:
  - name: backend
    upstream: %q
    inject:
      token_exchange:
        token_url: %q
        client_id: ztgate-gateway
        client_secret: "${env:ZT_E2E_GATEWAY_SECRET}"
        audience: "urn:backend-api"
        scopes: [backend.call]
    routes:
      - { name: call, match: { path: "/backend/**" }, allow: { apps: [orders-client] } }
`, p.URL, backend.URL, p.URL+"/token"))

	caller := p.clientCredentials(t, "orders-client", "orders-secret", "orders.read")
	for i := range 2 {
		s, body, _ := do(t, "GET", fmt.Sprintf("%s/backend/%d", g.URL, i), caller, nil)
		if s != 200 {
			t.Fatalf("request %d: got %d %s, want 200 (the backend verified the exchanged token)", i, s, body)
		}
		var claims map[string]any
		if err := json.Unmarshal(body, &claims); err != nil {
			t.Fatal(err)
		}
		if claims["sub"] != "orders-client" || claims["client_id"] != "orders-client" || fmt.Sprint(claims["act"]) != "map[sub:ztgate-gateway]" {
			t.Fatalf("exchanged token claims %v: want the caller as sub and client_id, the gateway as act", claims)
		}
	}
	seen := backend.requests()
	if len(seen) != 2 || seen[0][0] == "Bearer "+caller || seen[1][0] != seen[0][0] {
		t.Fatalf("backend saw %d requests; want the same exchanged token twice, never the caller's", len(seen))
	}
}

// jwksURI reads an OpenID provider's jwks_uri from its discovery document.
func jwksURI(t *testing.T, issuer string) string {
	t.Helper()
	resp, err := http.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || d.JWKSURI == "" {
		t.Fatalf("discovery: %v", err)
	}
	return d.JWKSURI
}
