package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeSecret replaces a secret file the way Kubernetes updates a secret
// volume: a new file renamed over the old one.
func writeSecret(t *testing.T, dir, name, value string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// TestInjectedSecretsFromFiles runs the binary with a file secret provider:
// the upstream gets the injected function key (header and query) and basic
// credentials in place of whatever the client sent; a rotated file is picked
// up after ttl without a restart; a removed one serves from the cache until
// max_stale, then the route fails closed with 503 secret_unavailable,
// audited, and the upstream sees nothing.
func TestInjectedSecretsFromFiles(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	dir := t.TempDir()
	secretDir := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secretDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeSecret(t, secretDir, "orders-function-key", "fn-key-one")
	writeSecret(t, secretDir, "orders-password", "basic-pw-one")
	const ttl, maxStale = time.Second, 4 * time.Second
	cfg := fmt.Sprintf(`listen:
  address: "127.0.0.1:0"
admin:
  address: "127.0.0.1:0"
store: { driver: sqlite, dsn: audit.db }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
secrets:
  ttl: %s
  max_stale: %s
  providers:
    - { name: files, type: file, dir: %q }
services:
  - name: orders
    upstream: %q
    inject:
      headers: { x-functions-key: "${secret:files/orders-function-key}" }
      basic_auth: { username: ztgate, password: "${secret:files/orders-password}" }
    routes:
      - name: read-orders
        match: { methods: [GET], path: "/orders/**" }
        allow: { roles: [Orders.Read] }
        inject:
          query: { code: "${secret:files/orders-function-key}" }
`, is.URL, ttl, maxStale, secretDir, up.URL)
	g := startGatewayIn(t, dir, cfg)
	reader := is.TokenFor(t, "alice", "Orders.Read")
	spoof := map[string]string{"x-functions-key": "client-key", "x_functions_key": "client-key-2"}
	get := func() (int, []byte, string) {
		s, b, h := do(t, "GET", g.URL+"/orders/1?code=client-code&CODE=x&page=2", reader, spoof)
		return s, b, h.Get("X-Request-Id")
	}
	last := func() (key string, q url.Values, user, pass string) {
		reqs := up.Requests()
		r := reqs[len(reqs)-1]
		if vs := r.Header.Values("X-Functions-Key"); len(vs) != 1 {
			t.Fatalf("upstream got x-functions-key %q, want exactly one value", vs)
		}
		if _, ok := r.Header["X_functions_key"]; ok {
			t.Fatal("upstream got the client's x_functions_key")
		}
		q, _ = url.ParseQuery(r.Query)
		b, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(r.Header.Get("Authorization"), "Basic "))
		user, pass, _ = strings.Cut(string(b), ":")
		return r.Header.Get("X-Functions-Key"), q, user, pass
	}

	// Injected values replace the client's.
	if s, b, _ := get(); s != 200 {
		t.Fatalf("got %d %s, want 200", s, b)
	}
	key, q, user, pass := last()
	if key != "fn-key-one" || user != "ztgate" || pass != "basic-pw-one" {
		t.Fatalf("upstream got key %q, basic %q:%q; want fn-key-one and ztgate:basic-pw-one in place of the client's", key, user, pass)
	}
	if got := q["code"]; len(got) != 1 || got[0] != "fn-key-one" || q.Get("CODE") != "" || q.Get("page") != "2" {
		t.Fatalf("upstream got query %v, want code=fn-key-one alone (the client's code and CODE removed) and page=2 kept", q)
	}

	// Rotation: the new file is served after ttl, without a restart.
	writeSecret(t, secretDir, "orders-function-key", "fn-key-two")
	rotated := time.Now()
	waitFor(t, "the rotated key upstream", func() bool {
		if s, _, _ := get(); s != 200 {
			t.Fatalf("during rotation: got %d, want 200", s)
		}
		k, q, _, _ := last()
		return k == "fn-key-two" && q.Get("code") == "fn-key-two"
	})
	if d := time.Since(rotated); d > ttl+3*time.Second {
		t.Errorf("rotation took %s, want about ttl (%s)", d, ttl)
	}

	// Removal: served from the cache until max_stale, then refused before
	// the upstream.
	if err := os.Remove(filepath.Join(secretDir, "orders-function-key")); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	if s, b, _ := get(); s != 200 {
		t.Fatalf("just after removal: got %d %s, want 200 from the cache", s, b)
	}
	if k, _, _, _ := last(); k != "fn-key-two" {
		t.Fatalf("just after removal: upstream got %q, want the cached fn-key-two", k)
	}
	var body []byte
	var refusedID string
	waitFor(t, "503 secret_unavailable", func() bool {
		s, b, id := get()
		if s == 503 {
			body, refusedID = b, id
			return true
		}
		time.Sleep(100 * time.Millisecond)
		return false
	})
	if d := time.Since(removed); d < maxStale-ttl-500*time.Millisecond {
		t.Errorf("refused %s after removal, want the cached value served until max_stale (%s after its last read)", d, maxStale)
	}
	e := decodeError(t, body)
	if e.Reason != "secret_unavailable" || e.RequestID != refusedID {
		t.Fatalf("got %+v (X-Request-Id %s), want reason secret_unavailable with the request id", e, refusedID)
	}
	seen := len(up.Requests())
	for range 3 {
		if s, _, _ := get(); s != 503 {
			t.Fatalf("got %d, want 503 while the secret is missing", s)
		}
	}
	if n := len(up.Requests()); n != seen {
		t.Fatalf("upstream got %d requests while the secret was unavailable, want none", n-seen)
	}
	for _, r := range up.Requests() {
		if r.Header.Get("X-Request-Id") == refusedID {
			t.Fatal("the refused request reached the upstream")
		}
	}

	// Audited as an error with the reason.
	s, b, _ := do(t, "GET", g.Admin+"/v1/audit/events?decision=error&limit=100", "", nil)
	if s != 200 {
		t.Fatalf("audit query: %d %s", s, b)
	}
	var page struct {
		Events []struct {
			RequestID     string `json:"request_id"`
			ResultDetails string `json:"result_details"`
			Status        int    `json:"status"`
		} `json:"events"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range page.Events {
		if ev.RequestID == refusedID {
			found = ev.ResultDetails == "secret_unavailable" && ev.Status == 503
		}
	}
	if !found {
		t.Fatalf("audit events %s: want %s with secret_unavailable and 503", b, refusedID)
	}

	// Back: a new file serves again.
	writeSecret(t, secretDir, "orders-function-key", "fn-key-three")
	waitFor(t, "serving again", func() bool {
		s, _, _ := get()
		if s != 200 {
			return false
		}
		k, _, _, _ := last()
		return k == "fn-key-three"
	})

	for _, v := range []string{"fn-key-one", "fn-key-two", "fn-key-three", "basic-pw-one"} {
		if strings.Contains(g.Logs.String(), v) {
			t.Errorf("gateway logs hold the secret %s", v)
		}
	}
}

// TestUpstreamClientCertificateFromSecret: the gateway's client certificate
// for an mTLS upstream comes from a secret (PEM certificate and key in one
// file, as Key Vault returns a PEM certificate); a renewed one is presented
// on new connections after ttl, without a restart; a missing one refuses
// requests with 503 secret_unavailable before the upstream.
func TestUpstreamClientCertificateFromSecret(t *testing.T) {
	is := newIssuer(t)
	dir := t.TempDir()
	secretDir := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secretDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca := newCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	pemOf := func(cn string) string {
		certFile, keyFile, _ := ca.issue(t, dir, cn, true)
		c, _ := os.ReadFile(certFile)
		k, _ := os.ReadFile(keyFile)
		return string(c) + string(k)
	}
	writeSecret(t, secretDir, "gw-client", pemOf("gateway-client-1"))
	_, _, upPair := ca.issue(t, dir, "upstream", false)
	var mu sync.Mutex
	var seenCN []string
	upSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenCN = append(seenCN, r.TLS.PeerCertificates[0].Subject.CommonName)
		mu.Unlock()
		fmt.Fprint(w, `{"ok":true}`)
	}))
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	upSrv.TLS = &tls.Config{Certificates: []tls.Certificate{upPair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	upSrv.StartTLS()
	defer upSrv.Close()
	lastCN := func() (string, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(seenCN) == 0 {
			return "", 0
		}
		return seenCN[len(seenCN)-1], len(seenCN)
	}

	cfg := fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
secrets:
  ttl: 1s
  max_stale: 3s
  providers:
    - { name: files, type: file, dir: %q }
services:
  - name: orders
    upstream: %q
    upstream_tls: { ca_file: %q, client_certificate: "${secret:files/gw-client}" }
    routes:
      - name: all
        match: { path: "/**" }
        allow: { roles: [Orders.Read] }
`, is.URL, secretDir, upSrv.URL, caFile)
	g := startGatewayIn(t, dir, cfg)
	reader := is.TokenFor(t, "alice", "Orders.Read")
	if s, b, _ := do(t, "GET", g.URL+"/orders/1", reader, nil); s != 200 {
		t.Fatalf("got %d %s, want 200 over mTLS", s, b)
	}
	if cn, _ := lastCN(); cn != "gateway-client-1" {
		t.Fatalf("upstream saw client %q, want gateway-client-1", cn)
	}

	writeSecret(t, secretDir, "gw-client", pemOf("gateway-client-2"))
	waitFor(t, "the renewed client certificate", func() bool {
		if s, b, _ := do(t, "GET", g.URL+"/orders/1", reader, nil); s != 200 {
			t.Fatalf("during renewal: got %d %s, want 200", s, b)
		}
		cn, _ := lastCN()
		return cn == "gateway-client-2"
	})

	if err := os.Remove(filepath.Join(secretDir, "gw-client")); err != nil {
		t.Fatal(err)
	}
	var body []byte
	waitFor(t, "503 secret_unavailable", func() bool {
		s, b, _ := do(t, "GET", g.URL+"/orders/1", reader, nil)
		body = b
		time.Sleep(100 * time.Millisecond)
		return s == 503
	})
	if e := decodeError(t, body); e.Reason != "secret_unavailable" {
		t.Fatalf("got %+v, want secret_unavailable", e)
	}
	_, before := lastCN()
	if s, _, _ := do(t, "GET", g.URL+"/orders/1", reader, nil); s != 503 {
		t.Fatalf("got %d, want 503", s)
	}
	if _, after := lastCN(); after != before {
		t.Fatal("a request reached the upstream without its client certificate")
	}
	if strings.Contains(g.Logs.String(), "PRIVATE KEY") {
		t.Error("gateway logs hold a private key")
	}
}
