package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func oidcGatewayConfig(p *oidcProvider, up *upstream, extra string) string {
	return fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: real-oidc, type: oidc, issuer: %q, audiences: ["urn:orders-api"] }
services:
  - name: orders
    upstream: %q
    routes:
      - { name: read, match: { methods: [GET], path: "/orders/**" }, allow: { scopes: [orders.read] } }
      - { name: admin, match: { path: "/admin/**" }, allow: { roles: [Admin] } }%s
`, p.URL, up.URL, extra)
}

// TestFaultIdentityProviderDownAndBack: with the provider's process killed,
// cached keys keep serving and a token from an unknown key is refused; when
// it returns, new tokens pass again. Nothing is let through meanwhile.
func TestFaultIdentityProviderDownAndBack(t *testing.T) {
	p := startOIDCProvider(t)
	up := newUpstream(t)
	g := startGateway(t, oidcGatewayConfig(p, up, ""))
	tok := p.clientCredentials(t, "orders-client", "orders-secret", "orders.read")
	if s, _, _ := do(t, "GET", g.URL+"/orders/1", tok, nil); s != 200 {
		t.Fatalf("before: %d", s)
	}
	p.stop()
	for range 20 {
		if s, b, _ := do(t, "GET", g.URL+"/orders/1", tok, nil); s != 200 {
			t.Fatalf("provider down, known key: got %d %s, want 200 from cached keys", s, b)
		}
		if s, _, _ := do(t, "GET", g.URL+"/admin/x", tok, nil); s != 403 {
			t.Fatalf("provider down: admin got %d, want 403", s)
		}
	}
	if s, _, _ := do(t, "GET", g.URL+"/orders/1", "", nil); s != 401 {
		t.Fatalf("provider down, no token: got %d", s)
	}
	p.start()
	fresh := p.clientCredentials(t, "orders-client", "orders-secret", "orders.read")
	if s, b, _ := do(t, "GET", g.URL+"/orders/2", fresh, nil); s != 200 {
		t.Fatalf("provider back: got %d %s", s, b)
	}
}

// TestFaultKeyRotationUnderLoad: tokens keep flowing while the provider
// rotates its signing key; not one is refused.
func TestFaultKeyRotationUnderLoad(t *testing.T) {
	p := startOIDCProvider(t)
	up := newUpstream(t)
	g := startGateway(t, oidcGatewayConfig(p, up, ""))
	var refused, ok atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				tok := p.clientCredentials(t, "orders-client", "orders-secret", "orders.read")
				s, _, _, err := tryDo("GET", g.URL+"/orders/1", tok)
				if err != nil || s != 200 {
					refused.Add(1)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	resp, err := http.Post(p.URL+"/__rotate", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()
	if refused.Load() != 0 || ok.Load() < 20 {
		t.Fatalf("during the rotation: %d passed, %d refused; want none refused", ok.Load(), refused.Load())
	}
}

// TestFaultReloadUnderLoad: the configuration is rewritten twenty times while
// requests flow; allowed requests keep passing, denied ones never pass, and
// nothing fails.
func TestFaultReloadUnderLoad(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	g := startGateway(t, baseConfig(is, up))
	reader := is.TokenFor(t, "alice", "Orders.Read")
	var mu sync.Mutex
	bad := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range []struct {
		path string
		want int
	}{{"/orders/1", 200}, {"/admin/keys", 403}, {"/orders/2", 200}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, _, _, err := tryDo("GET", g.URL+c.path, reader)
				if err != nil || s != c.want {
					mu.Lock()
					bad[fmt.Sprintf("%s -> %d (%v)", c.path, s, err)]++
					mu.Unlock()
				}
			}
		}()
	}
	base := baseConfig(is, up)
	for i := range 20 {
		// A real change each time (an extra route) so every write reloads.
		cfg := base + fmt.Sprintf("      - name: extra%d\n        match: { path: \"/extra%d/**\" }\n        allow: { authenticated: true }\n", i, i)
		if err := os.WriteFile(g.CfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		g.Signal(syscall.SIGHUP)
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(t, "the reloads", func() bool { return strings.Count(g.Logs.String(), "configuration reloaded") >= 20 })
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("requests answered wrongly during reloads: %v", bad)
	}
}
