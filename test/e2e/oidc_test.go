package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// oidcProvider is a real OpenID Connect provider (the oidc-provider npm
// package, installed by ./scripts/test) on loopback.
type oidcProvider struct {
	URL     string
	t       *testing.T
	port    int
	keyFile string
	cmd     *exec.Cmd
}

func startOIDCProvider(t *testing.T) *oidcProvider {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node not found: the end-to-end identity tests need Node.js")
	}
	if _, err := os.Stat("oidc/node_modules/oidc-provider"); err != nil {
		t.Fatal("oidc-provider is not installed: run ./scripts/test (or npm ci in test/e2e/oidc)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &oidcProvider{t: t, port: ln.Addr().(*net.TCPAddr).Port, keyFile: t.TempDir() + "/keys.json"}
	ln.Close()
	p.start()
	t.Cleanup(p.stop)
	return p
}

// stop kills the provider process.
func (p *oidcProvider) stop() {
	if p.cmd != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

// start runs the provider, with the keys it had before if it ran already.
func (p *oidcProvider) start() {
	t := p.t
	cmd := exec.Command("node", "server.js", fmt.Sprint(p.port), p.keyFile)
	cmd.Dir = "oidc"
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "oidc-provider ready "); ok {
				ready <- u
			}
		}
	}()
	select {
	case u := <-ready:
		p.URL = u
	case <-time.After(30 * time.Second):
		t.Fatal("oidc-provider did not start")
	}
}

// clientCredentials gets an access token for a client with the
// client_credentials grant (client_secret_basic).
func (p *oidcProvider) clientCredentials(t *testing.T, id, secret, scope string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", p.URL+"/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}.Encode()))
	req.SetBasicAuth(id, secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token endpoint: %d %s", resp.StatusCode, body)
	}
	return tok.AccessToken
}

func kidOf(t *testing.T, token string) string {
	h, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(raw, &hdr)
	return hdr.Kid
}

// TestOIDCProviderClientCredentials: tokens from a real OpenID Connect
// provider, obtained with the client-credentials grant, pass the gateway;
// another audience and a tampered token do not; the provider's key rotation
// is picked up without restarting the gateway.
func TestOIDCProviderClientCredentials(t *testing.T) {
	p := startOIDCProvider(t)
	up := newUpstream(t)
	g := startGateway(t, fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: real-oidc, type: oidc, issuer: %q, audiences: ["urn:orders-api"] }
services:
  - name: orders
    upstream: %q
    routes:
      - name: read
        match: { methods: [GET], path: "/orders/**" }
        allow: { identity_types: [app], apps: [orders-client], scopes: [orders.read] }
`, p.URL, up.URL))

	tok := p.clientCredentials(t, "orders-client", "orders-secret", "orders.read")
	if s, b, _ := do(t, "GET", g.URL+"/orders/1", tok, nil); s != 200 {
		t.Fatalf("client-credentials token: got %d %s, want 200", s, b)
	}
	if len(up.Requests()) != 1 {
		t.Fatalf("upstream saw %d requests, want 1", len(up.Requests()))
	}
	other := p.clientCredentials(t, "other-client", "other-secret", "other.read")
	if s, b, _ := do(t, "GET", g.URL+"/orders/1", other, nil); s != 401 || decodeError(t, b).Reason != "wrong_audience" {
		t.Fatalf("other audience: got %d %s, want 401 wrong_audience", s, b)
	}
	parts := strings.Split(tok, ".")
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(claims), "orders-client", "admin-client", 1))) + "." + parts[2]
	if s, b, _ := do(t, "GET", g.URL+"/orders/1", forged, nil); s != 401 || decodeError(t, b).Reason != "bad_signature" {
		t.Fatalf("tampered token: got %d %s, want 401 bad_signature", s, b)
	}

	// Key rotation: the provider switches to the key it published ahead.
	resp, err := http.Post(p.URL+"/__rotate", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rotated := p.clientCredentials(t, "orders-client", "orders-secret", "orders.read")
	if kidOf(t, rotated) == kidOf(t, tok) {
		t.Fatal("the provider did not rotate its signing key")
	}
	if s, b, _ := do(t, "GET", g.URL+"/orders/2", rotated, nil); s != 200 {
		t.Fatalf("token signed by the rotated key: got %d %s, want 200 without a restart", s, b)
	}
	// The earlier token, signed by the old key, stays valid while published.
	if s, _, _ := do(t, "GET", g.URL+"/orders/3", tok, nil); s != 200 {
		t.Fatalf("token signed by the previous key: got %d, want 200", s)
	}
}

// TestOIDCProviderUnannouncedRotation: the provider starts signing with a key
// it never published and retires the old ones. The first token from the new
// key passes (an unknown key id refreshes the keys at once, at most every 5
// minutes); a token from a retired key is refused, cached or not, and never
// reaches the upstream.
func TestOIDCProviderUnannouncedRotation(t *testing.T) {
	p := startOIDCProvider(t)
	up := newUpstream(t)
	g := startGateway(t, oidcGatewayConfig(p, up, ""))
	old := p.clientCredentials(t, "orders-client", "orders-secret", "orders.read")
	if s, _, _ := do(t, "GET", g.URL+"/orders/1", old, nil); s != 200 {
		t.Fatalf("before: %d", s)
	}
	resp, err := http.Post(p.URL+"/__rotate?unannounced=1", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	fresh := p.clientCredentials(t, "orders-client", "orders-secret", "orders.read")
	if s, b, _ := do(t, "GET", g.URL+"/orders/2", fresh, nil); s != 200 {
		t.Fatalf("first token from the unannounced key: got %d %s, want 200", s, b)
	}
	up.Reset()
	if s, b, _ := do(t, "GET", g.URL+"/orders/3", old, nil); s != 401 || decodeError(t, b).Reason != "unknown_kid" {
		t.Fatalf("token from the retired key: got %d %s, want 401 unknown_kid", s, b)
	}
	if n := len(up.Requests()); n != 0 {
		t.Fatalf("the upstream saw %d refused requests", n)
	}
}
