package assess

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"
)

// demoTraffic is what a week of trying the demo's guide leaves in the
// audit trail: readers read, a writer with MFA writes, a reader is refused
// a write, a call without a token, the disguised path to /admin, and the
// report-only route letting a reader through.
var demoTraffic = []traffic{
	{route: "orders/read-orders", decision: "allow", n: 40, ago: days(6), kind: "user", who: "demo-tenant/oid-alice", amr: []string{"pwd"}, lifetime: 8 * time.Hour, reasons: []string{"role_ok", "when_ok"}},
	{route: "orders/write-orders", decision: "allow", n: 12, ago: days(5), kind: "user", who: "demo-tenant/oid-bob", amr: []string{"pwd", "mfa"}, lifetime: 8 * time.Hour, reasons: []string{"role_ok", "mfa_ok"}},
	{route: "orders/write-orders", decision: "deny", n: 6, ago: days(5), kind: "user", who: "demo-tenant/oid-alice", amr: []string{"pwd"}, lifetime: 8 * time.Hour, reasons: []string{"role_missing"}},
	{route: "orders/read-orders", decision: "deny", n: 5, ago: days(4)},
	{route: "orders/admin", decision: "deny", n: 3, ago: days(3), kind: "user", who: "demo-tenant/oid-bob", amr: []string{"pwd", "mfa"}, lifetime: 8 * time.Hour, reasons: []string{"no_allow_rule"}},
	{route: "orders/reports", decision: "would_deny", n: 9, ago: days(2), kind: "user", who: "demo-tenant/oid-alice", amr: []string{"pwd"}, lifetime: 8 * time.Hour, reasons: []string{"role_missing"}},
	{route: "", decision: "deny", n: 2, ago: days(1)},
}

// TestDemoReport keeps docs/assessment-demo.html and .md, the report the
// README links, equal to the assessment of examples/demo/ztgate.yaml with
// the demo's traffic (go test ./internal/assess -update rewrites them).
func TestDemoReport(t *testing.T) {
	const path = "../../examples/demo/ztgate.yaml"
	cfg := loadConfig(t, path)
	st := seed(t, goldenNow, demoTraffic)
	rep, err := Run(context.Background(), cfg, Options{Now: goldenNow, Name: "examples/demo/ztgate.yaml", Audit: st, History: st})
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"html", "md"} {
		var b bytes.Buffer
		if err := rep.Write(&b, format); err != nil {
			t.Fatal(err)
		}
		compareGolden(t, filepath.Join("..", "..", "docs", "assessment-demo."+format), b.Bytes())
	}
	// The demo's own policy tests pass and are found beside it.
	for _, p := range rep.Pillars {
		for _, f := range p.Findings {
			if f.ID == "GV-02" && f.Outcome != Pass {
				t.Errorf("GV-02: got %s (%s), want the demo's policy tests to pass", f.Outcome, f.Summary)
			}
		}
	}
}
