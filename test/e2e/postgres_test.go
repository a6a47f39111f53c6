package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ztgate/ztgate/internal/store/pgtest"
)

// postgresConfig is baseConfig with its audit trail in a real PostgreSQL
// database.
func postgresConfig(is *issuer, up *upstream, dsn, node, extra string) string {
	return strings.Replace(baseConfig(is, up), "admin:\n  address: \"127.0.0.1:0\"\n",
		fmt.Sprintf("admin:\n  address: \"127.0.0.1:0\"\nstore: { driver: postgres, dsn: %q }\naudit: { node: %s%s }\n", dsn, node, extra), 1)
}

// load sends requests from 4 clients until stop is closed or the gateway
// is gone, and reports each answered request's id and status.
type answer struct {
	id     string
	status int
}

func runLoad(url, token string, stop <-chan struct{}) (chan answer, *sync.WaitGroup) {
	out := make(chan answer, 100000)
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
				s, _, h, err := tryDo("GET", url, token)
				if err != nil {
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
					continue
				}
				out <- answer{h.Get("X-Request-Id"), s}
			}
		}()
	}
	return out, &wg
}

// auditedIDs lists the request ids in the trail (of the last hour, up to
// 200,000).
func auditedIDs(t *testing.T, cfgPath string) string {
	t.Helper()
	var all strings.Builder
	after := ""
	for range 200 {
		args := []string{"audit", "query", "--config", cfgPath, "--json", "--since", "1h", "--limit", "1000"}
		if after != "" {
			args = append(args, "--after", after)
		}
		out, err := runBinary(args...)
		if err != nil {
			t.Fatalf("audit query: %v\n%s", err, out)
		}
		all.WriteString(out)
		i := strings.LastIndex(out, "more: --after ")
		if i < 0 {
			break
		}
		after = strings.TrimSpace(out[i+len("more: --after "):])
		after, _, _ = strings.Cut(after, "\n")
	}
	return all.String()
}

// TestAuditDurabilityPostgres: with the audit trail in a real PostgreSQL
// server, kill -9 the gateway under load; every request that received a
// response has its event, and the chain verifies after a restart.
func TestAuditDurabilityPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	is, up := newIssuer(t), newUpstream(t)
	cfg := postgresConfig(is, up, dsn, "gw-pg", ", hmac_key: test-key")
	g := startGatewayIn(t, t.TempDir(), cfg)
	reader := is.TokenFor(t, "alice", "Orders.Read")

	stop := make(chan struct{})
	answers, wg := runLoad(g.URL+"/orders/1", reader, stop)
	waitFor(t, "some load", func() bool { return len(answers) > 300 })
	_ = g.Cmd.Process.Kill()
	close(stop)
	wg.Wait()
	close(answers)

	trail := auditedIDs(t, g.CfgPath)
	n := 0
	for a := range answers {
		if a.status != 200 {
			t.Fatalf("request %s got %d before the kill", a.id, a.status)
		}
		n++
		if !strings.Contains(trail, `"request_id":"`+a.id+`"`) {
			t.Fatalf("request %s was answered but is not in the PostgreSQL audit trail", a.id)
		}
	}
	out, err := runBinary("audit", "verify", "--config", g.CfgPath)
	if err != nil || !strings.Contains(out, "node gw-pg:") || !strings.Contains(out, "chain intact") {
		t.Fatalf("verify after kill -9: %v\n%s", err, out)
	}
	t.Logf("%d answered requests, all audited in PostgreSQL", n)

	// A restarted gateway continues the chain.
	g2 := startGatewayIn(t, t.TempDir(), cfg)
	if s, b, _ := do(t, "GET", g2.URL+"/orders/2", reader, nil); s != 200 {
		t.Fatalf("after restart: %d %s", s, b)
	}
	if out, err := runBinary("audit", "verify", "--config", g2.CfgPath); err != nil || !strings.Contains(out, "chain intact") {
		t.Fatalf("verify after restart: %v\n%s", err, out)
	}
}

// TestFaultPostgresDown: with on_failure deny, the PostgreSQL server going
// away refuses requests with 503 audit_unavailable (nothing is let through
// unaudited), and when it comes back the gateway recovers without a restart
// and no answered request is missing from the trail.
func TestFaultPostgresDown(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase()
	is, up := newIssuer(t), newUpstream(t)
	g := startGatewayIn(t, t.TempDir(), postgresConfig(is, up, dsn, "gw-pgdown", ""))
	reader := is.TokenFor(t, "alice", "Orders.Read")

	stop := make(chan struct{})
	answers, wg := runLoad(g.URL+"/orders/1", reader, stop)
	waitFor(t, "some load", func() bool { return len(answers) > 100 })
	srv.Stop()
	time.Sleep(1500 * time.Millisecond)
	upBefore := len(up.Requests())
	time.Sleep(1500 * time.Millisecond)
	if len(up.Requests()) != upBefore {
		t.Errorf("the upstream got %d requests while the audit store was down", len(up.Requests())-upBefore)
	}
	srv.Start()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(answers)

	ok, refused := []string{}, 0
	for a := range answers {
		switch a.status {
		case 200:
			ok = append(ok, a.id)
		case 503:
			refused++
		default:
			t.Fatalf("request %s: status %d", a.id, a.status)
		}
	}
	if refused == 0 {
		t.Fatal("no request was refused while PostgreSQL was down: the test proves nothing")
	}
	if s, b, _ := do(t, "GET", g.URL+"/orders/after", reader, nil); s != 200 {
		t.Fatalf("after PostgreSQL came back: %d %s", s, b)
	}
	trail := auditedIDs(t, g.CfgPath)
	for _, id := range ok {
		if !strings.Contains(trail, `"request_id":"`+id+`"`) {
			t.Fatalf("answered request %s is missing from the trail", id)
		}
	}
	if out, err := runBinary("audit", "verify", "--config", g.CfgPath); err != nil || !strings.Contains(out, "chain intact") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	g.WaitLog("an alert for the refused requests", "ALERT")
	t.Logf("%d answered and audited, %d refused while PostgreSQL was down", len(ok), refused)
}

// metricValue reads one unlabelled metric from the admin endpoint.
func metricValue(t *testing.T, admin, name string) float64 {
	t.Helper()
	s, b, _ := do(t, "GET", admin+"/metrics", "", nil)
	if s != 200 {
		t.Fatalf("metrics: %d", s)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestFaultPostgresDownBuffer: with on_failure buffer, PostgreSQL going
// away does not refuse requests: their events wait in the local journal
// (written before the answer) and arrive in the store, in chain order, when
// it is back. Events lost: 0.
func TestFaultPostgresDownBuffer(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase()
	is, up := newIssuer(t), newUpstream(t)
	dir := t.TempDir()
	g := startGatewayIn(t, dir, postgresConfig(is, up, dsn, "gw-spool", ", on_failure: buffer, hmac_key: k"))
	reader := is.TokenFor(t, "alice", "Orders.Read")

	stop := make(chan struct{})
	answers, wg := runLoad(g.URL+"/orders/1", reader, stop)
	waitFor(t, "some load", func() bool { return len(answers) > 100 })
	srv.Stop()
	waitFor(t, "events spooled", func() bool { return metricValue(t, g.Admin, "ztgate_audit_spool_events") > 200 })
	spooled := metricValue(t, g.Admin, "ztgate_audit_spool_events")
	srv.Start()
	waitFor(t, "the spool replayed", func() bool { return metricValue(t, g.Admin, "ztgate_audit_replayed_total") >= spooled })
	close(stop)
	wg.Wait()
	close(answers)
	waitFor(t, "the spool empty", func() bool { return metricValue(t, g.Admin, "ztgate_audit_spool_events") == 0 })

	trail := auditedIDs(t, g.CfgPath)
	n := 0
	for a := range answers {
		if a.status != 200 {
			t.Fatalf("request %s got %d: with buffer, a store outage must not refuse requests", a.id, a.status)
		}
		n++
		if !strings.Contains(trail, `"request_id":"`+a.id+`"`) {
			t.Fatalf("answered request %s is missing from the trail after the replay", a.id)
		}
	}
	if out, err := runBinary("audit", "verify", "--config", g.CfgPath); err != nil || !strings.Contains(out, "chain intact") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	g.WaitLog("an alert while spooling", "audit_spooling")
	t.Logf("%d answered, all in the trail; %.0f went through the spool", n, spooled)
}

// TestAdminAuditEvents: the admin API pages through the audit trail with
// the same filters as ztgate audit query, and refuses bad parameters.
func TestAdminAuditEvents(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	cfg := strings.Replace(baseConfig(is, up), "admin:\n  address: \"127.0.0.1:0\"\n", "admin:\n  address: \"127.0.0.1:0\"\nstore: { driver: sqlite, dsn: audit.db }\n", 1)
	g := startGatewayIn(t, t.TempDir(), cfg)
	reader := is.TokenFor(t, "alice", "Orders.Read")
	want := map[string]bool{}
	for i := range 12 {
		_, _, h := do(t, "GET", g.URL+fmt.Sprint("/orders/", i), reader, nil)
		want[h.Get("X-Request-Id")] = true
		do(t, "GET", g.URL+"/admin/x", reader, nil) // denied: filtered out below
	}
	got := map[string]bool{}
	after, pages := "", 0
	for {
		url := g.Admin + "/v1/audit/events?decision=allow&route=orders/read-orders&limit=5"
		if after != "" {
			url += "&after=" + after
		}
		s, b, _ := do(t, "GET", url, "", nil)
		if s != 200 {
			t.Fatalf("page %d: %d %s", pages, s, b)
		}
		var page struct {
			Events []struct {
				RequestID string `json:"request_id"`
				Decision  string `json:"decision"`
			} `json:"events"`
			Next string `json:"next"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range page.Events {
			if e.Decision != "allow" || got[e.RequestID] {
				t.Fatalf("bad or repeated event %+v", e)
			}
			got[e.RequestID] = true
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if len(got) != len(want) || pages != 3 {
		t.Fatalf("got %d events over %d pages, want %d over 3", len(got), pages, len(want))
	}
	for id := range want {
		if !got[id] {
			t.Fatalf("request %s missing", id)
		}
	}
	for _, q := range []string{"since=yesterday", "decision=maybe", "limit=0", "after=nonsense", "colour=red"} {
		s, b, _ := do(t, "GET", g.Admin+"/v1/audit/events?"+q, "", nil)
		if s != 400 || decodeError(t, b).Reason != "bad_request" {
			t.Errorf("%s: got %d %s, want 400 bad_request", q, s, b)
		}
	}
}

// TestAuditRetention: a gateway with audit.retention removes old events at
// start; audit verify still finds the chain intact from the checkpoint, and
// finds a moved checkpoint.
func TestAuditRetention(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	dir := t.TempDir()
	cfg := strings.Replace(baseConfig(is, up), "admin:\n  address: \"127.0.0.1:0\"\n", "admin:\n  address: \"127.0.0.1:0\"\nstore: { driver: sqlite, dsn: audit.db }\naudit: { node: gw-r, hmac_key: k%s }\n", 1)
	g := startGatewayIn(t, dir, fmt.Sprintf(cfg, ""))
	reader := is.TokenFor(t, "alice", "Orders.Read")
	for i := range 5 {
		do(t, "GET", g.URL+fmt.Sprint("/orders/", i), reader, nil)
	}
	g.Signal(syscall.SIGTERM)
	err := <-g.Done
	g.Done <- err
	time.Sleep(20 * time.Millisecond)
	g = startGatewayIn(t, dir, fmt.Sprintf(cfg, ", retention: 10ms"))
	g.WaitLog("pruning", "old events removed")
	out, err := runBinary("audit", "verify", "--config", g.CfgPath)
	if err != nil || !strings.Contains(out, "node gw-r: 1 events, chain intact (events up to sequence 4 removed by retention") {
		t.Fatalf("verify after retention: %v\n%s", err, out)
	}
	if out, err := exec.Command("sqlite3", filepath.Join(dir, "audit.db"), `UPDATE audit_checkpoints SET seq = 3`).CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v %s", err, out)
	}
	out, err = runBinary("audit", "verify", "--config", g.CfgPath)
	if err == nil || !strings.Contains(out, "retention checkpoint (sequence 3) was altered") {
		t.Fatalf("verify after moving the checkpoint: %v\n%s", err, out)
	}
}
