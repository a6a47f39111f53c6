package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
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

// TestFaultAuditDiskFull: the audit store's disk fills up (a small tmpfs).
// Requests whose events cannot be written are refused with 503
// audit_unavailable; every answered request is in the trail; when space
// returns, requests pass again without a restart and the chain verifies.
func TestFaultAuditDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root; CI runs as root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	is, up := newIssuer(t), newUpstream(t)
	cfg := strings.Replace(baseConfig(is, up), "admin:\n  address: \"127.0.0.1:0\"\n", "admin:\n  address: \"127.0.0.1:0\"\nstore: { driver: sqlite, dsn: audit.db }\naudit: { node: gw-disk }\n", 1)
	g := startGatewayIn(t, dir, cfg)
	reader := is.TokenFor(t, "alice", "Orders.Read")
	answered := []string{}
	refused := 0
	for i := 0; i < 3000 && refused < 20; i++ {
		s, b, h := do(t, "GET", g.URL+"/orders/"+strings.Repeat("x", 200)+fmt.Sprint(i), reader, nil)
		switch s {
		case 200:
			answered = append(answered, h.Get("X-Request-Id"))
		case 503:
			if decodeError(t, b).Reason != "audit_unavailable" {
				t.Fatalf("got 503 %s, want audit_unavailable", b)
			}
			refused++
		default:
			t.Fatalf("got %d %s", s, b)
		}
	}
	if refused == 0 {
		t.Fatal("the disk never filled; the test proves nothing")
	}
	g.WaitLog("an alert for the refused requests", "ALERT")
	if out, err := exec.Command("mount", "-o", "remount,size=20m", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	waitFor(t, "requests pass again", func() bool {
		s, _, h := do(t, "GET", g.URL+"/orders/again", reader, nil)
		if s == 200 {
			answered = append(answered, h.Get("X-Request-Id"))
		}
		return s == 200
	})
	out, err := runBinary("audit", "query", "--config", g.CfgPath, "--json", "--limit", "1000")
	if err != nil {
		t.Fatalf("audit query: %v %s", err, out)
	}
	for _, id := range answered {
		if !strings.Contains(out, `"request_id":"`+id+`"`) {
			t.Fatalf("answered request %s is missing from the trail", id)
		}
	}
	if out, err := runBinary("audit", "verify", "--config", g.CfgPath); err != nil || !strings.Contains(out, "chain intact") {
		t.Fatalf("verify: %v %s", err, out)
	}
	t.Logf("%d answered and audited, %d refused while the disk was full", len(answered), refused)
}
