package e2e

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// redisServer is a real redis-server on loopback, stoppable and restartable
// on the same port.
type redisServer struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not found: ./scripts/test installs it (Debian package redis-server)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &redisServer{t: t, port: port}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *redisServer) start() {
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	waitFor(r.t, "redis up", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port))
		if err != nil {
			return false
		}
		defer c.Close()
		fmt.Fprint(c, "PING\r\n")
		buf := make([]byte, 7)
		n, _ := c.Read(buf)
		return strings.HasPrefix(string(buf[:n]), "+PONG")
	})
}

func (r *redisServer) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func limitConfig(is *issuer, up *upstream, redisURL, onFailure string, limit, burst int) string {
	return fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
state: { driver: redis, url: %q }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
services:
  - name: s
    upstream: %q
    routes:
      - name: limited
        match: { path: "/limited/**" }
        allow: { authenticated: true }
        rate_limit: { key: tenant, limit: %d, per: 1s, burst: %d, on_store_failure: %s }
`, redisURL, is.URL, up.URL, limit, burst, onFailure)
}

// hammer sends requests to each URL from several goroutines for d and
// counts statuses; it also notes when the first and last 200 were sent.
func hammer(t *testing.T, urls []string, token string, d time.Duration) map[int]int {
	counts, _ := hammerTimed(t, urls, token, d)
	return counts
}

func hammerTimed(t *testing.T, urls []string, token string, d time.Duration) (map[int]int, time.Duration) {
	var mu sync.Mutex
	counts := map[int]int{}
	var first, last time.Time
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	var errs atomic.Int32
	for _, u := range urls {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					sent := time.Now()
					status, _, _, err := tryDo("GET", u, token)
					if err != nil {
						errs.Add(1)
						continue
					}
					mu.Lock()
					counts[status]++
					if status == 200 {
						if first.IsZero() || sent.Before(first) {
							first = sent
						}
						if sent.After(last) {
							last = sent
						}
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if errs.Load() > 0 {
		t.Logf("%d transport errors", errs.Load())
	}
	return counts, last.Sub(first)
}

// TestRateLimitSharedInRedis: two gateway processes sharing one Redis hold
// one limit within 2%; with Redis stopped each follows on_store_failure, and
// sharing resumes when Redis returns.
func TestRateLimitSharedInRedis(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	rs := startRedis(t)
	cfg := limitConfig(is, up, rs.url(), "local", 50, 10)
	g1, g2 := startGateway(t, cfg), startGateway(t, cfg)
	tok := is.TokenFor(t, "alice")
	urls := []string{g1.URL + "/limited/x", g2.URL + "/limited/x"}

	counts, elapsed := hammerTimed(t, urls, tok, 4*time.Second)
	// The burst of 10, then 50 a second between the first and the last
	// allowed request.
	want := 10 + elapsed.Seconds()*50
	got := float64(counts[200])
	t.Logf("shared limit: %d allowed, %d refused in %v; want %.0f", counts[200], counts[429], elapsed.Round(time.Millisecond), want)
	if counts[429] < counts[200] {
		t.Fatalf("the load did not exceed the limit (%v); the test proves nothing", counts)
	}
	if got < want*0.98 || got > want*1.02 {
		t.Fatalf("two nodes allowed %.0f, want %.0f ± 2%%", got, want)
	}

	// Redis down, on_store_failure: local: each node limits on its own, so
	// together they allow about twice the rate, never unlimited.
	rs.stop()
	counts = hammer(t, urls, tok, 2*time.Second)
	t.Logf("redis down (local): %v", counts)
	if counts[429] == 0 || counts[200] > 2*(2*50+10)+20 || counts[200] < 50 {
		t.Fatalf("redis down, local fallback: %d allowed, want about %d (per-node limits)", counts[200], 2*(2*50+10))
	}
	_, m, _ := do(t, "GET", g1.Admin+"/metrics", "", nil)
	if !strings.Contains(string(m), "ztgate_ratelimit_store_failures_total") || strings.Contains(string(m), "ztgate_ratelimit_store_failures_total 0\n") {
		t.Error("store failures not counted")
	}
	g1.WaitLog("a log line for the store failure", "rate limit store unavailable")

	// Redis back: shared again.
	rs.start()
	// Let both nodes' connection pools reconnect before measuring.
	_ = hammer(t, urls, tok, time.Second)
	time.Sleep(time.Second)
	counts, elapsed = hammerTimed(t, urls, tok, 2*time.Second)
	want = 10 + elapsed.Seconds()*50
	t.Logf("redis back: %d allowed in %v; want %.0f", counts[200], elapsed.Round(time.Millisecond), want)
	if got := float64(counts[200]); got > want*1.05 {
		t.Fatalf("after redis returned: %v allowed, want about %.0f (shared again)", got, want)
	}
}

func TestRateLimitStoreFailureModes(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	rs := startRedis(t)
	tok := is.TokenFor(t, "alice")
	denyCfg := strings.Replace(limitConfig(is, up, rs.url(), "deny", 1000, 0), "state:", "store: { driver: sqlite, dsn: state.db }\nstate:", 1)
	deny := startGateway(t, denyCfg)
	allow := startGateway(t, limitConfig(is, up, rs.url(), "allow", 1, 1))
	rs.stop()
	status, body, _ := do(t, "GET", deny.URL+"/limited/x", tok, nil)
	if status != 503 || decodeError(t, body).Reason != "rate_limit_unavailable" {
		t.Errorf("deny mode: got %d %s, want 503 rate_limit_unavailable", status, body)
	}
	for range 5 {
		if status, body, _ := do(t, "GET", allow.URL+"/limited/x", tok, nil); status != 200 {
			t.Fatalf("allow mode: got %d %s, want 200 while redis is down", status, body)
		}
	}
	// The outage raised an alert: logged, counted and stored.
	waitFor(t, "alert stored", func() bool {
		out, err := runBinary("alerts", "--config", deny.CfgPath)
		return err == nil && strings.Contains(out, "rate_limit_store_unavailable")
	})
	_, m, _ := do(t, "GET", deny.Admin+"/metrics", "", nil)
	if !strings.Contains(string(m), `ztgate_alerts_total{rule="rate_limit_store_unavailable",severity="high"} 1`) {
		t.Error("alert not counted (or not throttled to one)")
	}
	_, a, _ := do(t, "GET", deny.Admin+"/v1/alerts?since=1h", "", nil)
	if !strings.Contains(string(a), "rate_limit_store_unavailable") {
		t.Errorf("admin API alerts: %s", a)
	}
	rs.start()
	waitFor(t, "deny mode recovers", func() bool {
		s, _, _ := do(t, "GET", deny.URL+"/limited/x", tok, nil)
		return s == 200
	})
	// And the allow-mode node limits again (1 per second).
	s1, _, _ := do(t, "GET", allow.URL+"/limited/x", tok, nil)
	s2, b2, h2 := do(t, "GET", allow.URL+"/limited/x", tok, nil)
	if s1 == 429 || s2 != 429 {
		t.Fatalf("allow mode after recovery: got %d then %d, want a 429 on the second", s1, s2)
	}
	if decodeError(t, b2).Reason != "rate_limited" || h2.Get("Retry-After") == "" || h2.Get("RateLimit-Limit") != "1" || h2.Get("RateLimit-Remaining") != "0" {
		t.Errorf("429 headers: %v", h2)
	}
}

// TestQuotas: calls per day per key, kept in Redis across a gateway
// restart and shared between nodes; in memory per node with driver local.
func TestQuotas(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	rs := startRedis(t)
	cfg := func(state string) string {
		return fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
state: %s
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
services:
  - name: s
    upstream: %q
    routes:
      - name: metered
        match: { path: "/metered/**" }
        allow: { authenticated: true }
        quota: { key: identity, calls: 3, period: day }
`, state, is.URL, up.URL)
	}
	alice, bob := is.TokenFor(t, "alice"), is.TokenFor(t, "bob")
	g1 := startGateway(t, cfg(fmt.Sprintf("{ driver: redis, url: %q }", rs.url())))
	for i := range 2 {
		if s, b, h := do(t, "GET", g1.URL+"/metered/x", alice, nil); s != 200 || h.Get("X-Quota-Remaining") != fmt.Sprint(2-i) {
			t.Fatalf("call %d: got %d %s remaining %q", i, s, b, h.Get("X-Quota-Remaining"))
		}
	}
	// A second node sharing Redis sees the same count.
	g2 := startGateway(t, cfg(fmt.Sprintf("{ driver: redis, url: %q }", rs.url())))
	if s, _, _ := do(t, "GET", g2.URL+"/metered/x", alice, nil); s != 200 {
		t.Fatalf("third call on node 2: got %d", s)
	}
	s, b, h := do(t, "GET", g2.URL+"/metered/x", alice, nil)
	if s != 429 || decodeError(t, b).Reason != "quota_exceeded" || h.Get("Retry-After") == "" {
		t.Fatalf("fourth call: got %d %s, want 429 quota_exceeded with Retry-After", s, b)
	}
	if s, _, _ := do(t, "GET", g1.URL+"/metered/x", bob, nil); s != 200 {
		t.Fatalf("another identity: got %d, want its own quota", s)
	}
	// Local state: per node, independent.
	g3 := startGateway(t, cfg("{ driver: local }"))
	for range 3 {
		do(t, "GET", g3.URL+"/metered/x", alice, nil)
	}
	if s, _, _ := do(t, "GET", g3.URL+"/metered/x", alice, nil); s != 429 {
		t.Fatalf("local quota: got %d, want 429 after 3 calls", s)
	}
}

// TestQuotaKeptInStore: a single node with driver local keeps its quota
// counts in the store across a restart.
func TestQuotaKeptInStore(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
store: { driver: sqlite, dsn: state.db }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
services:
  - name: s
    upstream: %q
    routes:
      - { name: metered, match: { path: "/metered/**" }, allow: { authenticated: true }, quota: { calls: 2, period: month } }
`, is.URL, up.URL)
	tok := is.TokenFor(t, "alice")
	g := startGatewayIn(t, dir, cfg)
	if s, _, _ := do(t, "GET", g.URL+"/metered/x", tok, nil); s != 200 {
		t.Fatalf("first call: %d", s)
	}
	g.Signal(syscall.SIGTERM)
	<-g.Done
	g.Done <- nil
	g = startGatewayIn(t, dir, cfg)
	if s, _, _ := do(t, "GET", g.URL+"/metered/x", tok, nil); s != 200 {
		t.Fatalf("second call after a restart: %d", s)
	}
	if s, b, _ := do(t, "GET", g.URL+"/metered/x", tok, nil); s != 429 || decodeError(t, b).Reason != "quota_exceeded" {
		t.Fatalf("third call: got %d %s, want the quota kept across the restart", s, b)
	}
}
