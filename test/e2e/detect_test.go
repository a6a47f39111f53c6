package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// detectConfig is baseConfig with an audit store and one detection rule:
// five failed authentications from an address within a minute block it
// for blockFor.
func detectConfig(is *issuer, up *upstream, extra, blockFor string) string {
	return strings.Replace(baseConfig(is, up), "identity:\n", fmt.Sprintf(`store: { driver: sqlite, dsn: audit.db }
%sdetection:
  sync_interval: 200ms
  rules:
    - { name: bad-tokens, kind: auth_failures, key: ip, threshold: 5, window: 1m, action: block, for: %s, severity: high }
identity:
`, extra, blockFor), 1)
}

// TestDetectionBlocksBadTokenBurst: a burst of bad tokens from one address
// blocks it; the next good request from it is refused with reason
// blocked, never reaching the upstream; the block shows in the admin API
// and the CLI, the detection in the alerts; lifting it (audited) lets the
// address back in.
func TestDetectionBlocksBadTokenBurst(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	g := startGateway(t, detectConfig(is, up, "", "3s"))
	good := is.TokenFor(t, "alice", "Orders.Read")
	if status, body, _ := do(t, "GET", g.URL+"/orders/1", good, nil); status != 200 {
		t.Fatalf("before: %d %s", status, body)
	}
	for range 5 {
		if status, _, _ := do(t, "GET", g.URL+"/orders/1", "not.a.token", nil); status != 401 {
			t.Fatalf("bad token: %d, want 401", status)
		}
	}
	// Wait for the block itself (not with good requests, which pass until
	// the detector has seen the burst), then try a good one.
	waitFor(t, "the block", func() bool {
		status, body, _ := do(t, "GET", g.Admin+"/v1/blocks", "", nil)
		return status == 200 && strings.Contains(string(body), "127.0.0.1")
	})
	seen := len(up.Requests())
	if status, body, _ := do(t, "GET", g.URL+"/orders/1", good, nil); status != 403 || decodeError(t, body).Reason != "blocked" {
		t.Fatalf("a good request from the blocked address: %d %s, want 403 blocked", status, body)
	}
	if n := len(up.Requests()); n != seen {
		t.Fatalf("the upstream saw %d requests while the address was blocked", n-seen)
	}
	out, err := runBinary("blocks", "list", "--admin", g.Admin)
	if err != nil || !strings.Contains(out, "127.0.0.1") || !strings.Contains(out, "bad-tokens") {
		t.Fatalf("blocks list: %v\n%s", err, out)
	}
	out, err = runBinary("alerts", "--config", g.CfgPath)
	if err != nil || !strings.Contains(out, "bad-tokens") || !strings.Contains(out, "blocked until") {
		t.Fatalf("alerts: %v\n%s", err, out)
	}

	// Lifted by an operator: access returns at once.
	if out, err := runBinary("blocks", "lift", "ip", "127.0.0.1", "--admin", g.Admin); err != nil {
		t.Fatalf("blocks lift: %v\n%s", err, out)
	}
	if status, body, _ := do(t, "GET", g.URL+"/orders/1", good, nil); status != 200 {
		t.Fatalf("after the lift: %d %s", status, body)
	}
	if out, err := runBinary("blocks", "lift", "ip", "127.0.0.1", "--admin", g.Admin); err == nil || !strings.Contains(out, "not_blocked") {
		t.Fatalf("lifting twice: %v\n%s", err, out)
	}

	// Every block and lift is on the audit record.
	status, body, _ := do(t, "GET", g.Admin+"/v1/audit/events?since=1h&limit=500", "", nil)
	if status != 200 {
		t.Fatalf("audit events: %d %s", status, body)
	}
	var page struct {
		Events []struct {
			EventType     string `json:"event_type"`
			ResultDetails string `json:"result_details"`
			URL           string `json:"url"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	var blocked, lifted, refused, alerts int
	for _, e := range page.Events {
		switch {
		case e.EventType == "Admin" && e.ResultDetails == "blocked" && e.URL == "block/ip/127.0.0.1":
			blocked++
		case e.EventType == "Admin" && e.ResultDetails == "block_lifted" && e.URL == "block/ip/127.0.0.1":
			lifted++
		case e.EventType == "ApiRequest" && e.ResultDetails == "blocked":
			refused++
		case e.EventType == "Alert" && e.ResultDetails == "bad-tokens" && e.URL == "detection/auth_failures/ip/127.0.0.1":
			alerts++
		}
	}
	if blocked != 1 || lifted != 1 || refused < 1 || alerts != 1 {
		t.Fatalf("audit: %d blocks, %d lifts, %d refusals, %d detections recorded; want 1, 1, ≥1, 1", blocked, lifted, refused, alerts)
	}
}

// TestDetectionBlockExpires: a block ends by itself after its time.
func TestDetectionBlockExpires(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	g := startGateway(t, detectConfig(is, up, "", "2s"))
	good := is.TokenFor(t, "alice", "Orders.Read")
	for range 5 {
		do(t, "GET", g.URL+"/orders/1", "not.a.token", nil)
	}
	waitFor(t, "the block", func() bool {
		status, _, _ := do(t, "GET", g.URL+"/orders/1", good, nil)
		return status == 403
	})
	start := time.Now()
	waitFor(t, "the block to expire", func() bool {
		status, _, _ := do(t, "GET", g.URL+"/orders/1", good, nil)
		return status == 200
	})
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the 2 s block lasted %v more", d)
	}
}

// TestDetectionBlockSharedInRedis: with two nodes sharing Redis, a block
// raised on one is enforced on the other within 2 seconds.
func TestDetectionBlockSharedInRedis(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	rs := startRedis(t)
	cfg := detectConfig(is, up, fmt.Sprintf("state: { driver: redis, url: %q }\n", rs.url()), "1m")
	g1, g2 := startGateway(t, cfg), startGateway(t, cfg)
	good := is.TokenFor(t, "alice", "Orders.Read")
	if status, _, _ := do(t, "GET", g2.URL+"/orders/1", good, nil); status != 200 {
		t.Fatalf("node 2 before: %d", status)
	}
	for range 5 {
		do(t, "GET", g1.URL+"/orders/1", "not.a.token", nil)
	}
	waitFor(t, "the block on node 1", func() bool {
		status, _, _ := do(t, "GET", g1.URL+"/orders/1", good, nil)
		return status == 403
	})
	start := time.Now()
	for {
		status, body, _ := do(t, "GET", g2.URL+"/orders/1", good, nil)
		if status == 403 {
			if r := decodeError(t, body).Reason; r != "blocked" {
				t.Fatalf("node 2: 403 %s, want blocked", r)
			}
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("node 2 still lets the address in %v after node 1 blocked it", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("node 2 enforced the block %v after node 1", time.Since(start).Round(time.Millisecond))
	// Lifted on node 2: node 1 lets the address back in too.
	if out, err := runBinary("blocks", "lift", "ip", "127.0.0.1", "--admin", g2.Admin); err != nil {
		t.Fatalf("lift: %v\n%s", err, out)
	}
	waitFor(t, "the lift on node 1", func() bool {
		status, _, _ := do(t, "GET", g1.URL+"/orders/1", good, nil)
		return status == 200
	})
}
