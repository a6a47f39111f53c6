package detect

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// TestLocalState: blocks and raised risk hold until they expire or are
// lifted; a nil state blocks nothing.
func TestLocalState(t *testing.T) {
	var none *State
	if none.Active() {
		t.Fatal("a nil state is active")
	}
	if _, ok := none.Blocked("ip", "10.0.0.1"); ok {
		t.Fatal("a nil state blocks")
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	s := NewLocalState()
	s.now = func() time.Time { return now }
	ctx := context.Background()
	if s.Active() {
		t.Fatal("an empty state is active")
	}
	if err := s.Add(ctx, Block{Kind: "ip", Key: "10.0.0.1", Until: now.Add(time.Minute), Rule: "r"}); err != nil {
		t.Fatal(err)
	}
	if err := s.StepUp(ctx, "t/alice", "new-country", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if !s.Active() {
		t.Fatal("not active with a block")
	}
	if _, ok := s.BlockedIP(netip.MustParseAddr("10.0.0.1")); !ok {
		t.Fatal("the address is not blocked")
	}
	if _, ok := s.BlockedIP(netip.MustParseAddr("10.0.0.2")); ok {
		t.Fatal("another address is blocked")
	}
	if r := s.RiskOf("t/alice"); r.Level != "high" || len(r.Alerts) != 1 || r.Alerts[0] != "new-country" {
		t.Fatalf("risk: %+v", r)
	}
	if r := s.RiskOf("t/bob"); r.Level != "" {
		t.Fatalf("bob's risk: %+v", r)
	}
	if had, err := s.Lift(ctx, "ip", "10.0.0.1"); err != nil || !had {
		t.Fatalf("lift: %v %v", had, err)
	}
	if _, ok := s.Blocked("ip", "10.0.0.1"); ok {
		t.Fatal("still blocked after the lift")
	}
	now = now.Add(2 * time.Minute)
	if r := s.RiskOf("t/alice"); r.Level != "" {
		t.Fatalf("risk after it expired: %+v", r)
	}
}
