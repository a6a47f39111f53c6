package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestReloadAudited: a configuration reload, and a refused one, are Admin
// events in the audit chain, naming the configuration's hash.
func TestReloadAudited(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	cfg := strings.Replace(baseConfig(is, up), "identity:\n", "store: { driver: sqlite, dsn: audit.db }\nidentity:\n", 1)
	g := startGateway(t, cfg)
	changed := strings.Replace(cfg, `match: { path: "/admin/**" }`, `match: { path: "/admin/**" }
        mode: report_only`, 1)
	if changed == cfg {
		t.Fatal("the test's edit did not apply")
	}
	if err := os.WriteFile(g.CfgPath, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	g.WaitLog("the reload", "configuration reloaded")
	if err := os.WriteFile(g.CfgPath, []byte(changed+"bogus_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g.WaitLog("the refused reload", "configuration reload failed")

	type event struct {
		EventType     string `json:"event_type"`
		ResultDetails string `json:"result_details"`
		Result        string `json:"result"`
		Object        string `json:"object"`
		Message       string `json:"message"`
	}
	var got []event
	waitFor(t, "both reload events", func() bool {
		_, body, _ := do(t, "GET", g.Admin+"/v1/audit/events?since=1h", "", nil)
		var page struct {
			Events []event `json:"events"`
		}
		if json.Unmarshal(body, &page) != nil {
			return false
		}
		got = got[:0]
		for _, e := range page.Events {
			if e.EventType == "Admin" {
				got = append(got, e)
			}
		}
		return len(got) == 2
	})
	var ok, failed bool
	for _, e := range got {
		switch {
		case e.ResultDetails == "config_reloaded" && e.Result == "Success" && strings.HasPrefix(e.Object, "config/"):
			ok = true
		case e.ResultDetails == "config_reload_failed" && e.Result == "Failure" && strings.Contains(e.Message, "bogus_key"):
			failed = true
		}
	}
	if !ok || !failed {
		t.Fatalf("reload events: %+v", got)
	}
}
