package policy

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
)

// TestGroupsUnknown: a caller whose groups the token names only by
// reference (group overage, not resolved) is never allowed by a test on
// groups, whichever way the rule combines it, and the deny says
// groups_unknown whenever knowing the groups could have allowed. Rules that
// do not depend on groups decide as usual.
func TestGroupsUnknown(t *testing.T) {
	unknown := &identity.Identity{Type: identity.User, Subject: "alice", Tenant: "t1", Roles: []string{"Orders.Read"}, AMR: []string{"pwd"}, GroupsUnknown: true}
	member := &identity.Identity{Type: identity.User, Subject: "alice", Tenant: "t1", Roles: []string{"Orders.Read"}, AMR: []string{"pwd"}, Groups: []string{"g1"}}
	g1 := []string{"g1"}
	tests := []struct {
		name    string
		rule    *config.Rule
		when    string
		mode    Mode
		id      *identity.Identity
		allow   bool
		would   bool
		reason  string // deny reason; "" when allowed
		reasons []string
	}{
		{name: "groups rule", rule: &config.Rule{Groups: g1}, id: unknown, reason: ReasonGroupsUnknown, reasons: []string{ReasonGroupsUnknown}},
		{name: "groups rule, groups resolved", rule: &config.Rule{Groups: g1}, id: member, allow: true, reasons: []string{"group_ok"}},
		{name: "rule without groups is unaffected", rule: &config.Rule{Roles: []string{"Orders.Read"}}, id: unknown, allow: true, reasons: []string{"role_ok"}},
		{name: "groups and a role that holds", rule: &config.Rule{Roles: []string{"Orders.Read"}, Groups: g1}, id: unknown, reason: ReasonGroupsUnknown, reasons: []string{"role_ok", ReasonGroupsUnknown}},
		{name: "groups and a role that fails: the role decides", rule: &config.Rule{Groups: g1, Roles: []string{"Orders.Write"}}, id: unknown, reason: "role_missing", reasons: []string{"role_missing", ReasonGroupsUnknown}},
		{name: "any_of: another branch allows", rule: &config.Rule{AnyOf: []config.Rule{{Groups: g1}, {Roles: []string{"Orders.Read"}}}}, id: unknown, allow: true, reasons: []string{"role_ok"}},
		{name: "any_of: no branch allows, one unknown", rule: &config.Rule{AnyOf: []config.Rule{{Roles: []string{"Orders.Write"}}, {Groups: g1}}}, id: unknown, reason: ReasonGroupsUnknown, reasons: []string{"role_missing", ReasonGroupsUnknown}},
		{name: "all_of: unknown groups first, then a role that fails: the role decides", rule: &config.Rule{AllOf: []config.Rule{{Groups: g1}, {Roles: []string{"Orders.Write"}}}}, id: unknown, reason: "role_missing", reasons: []string{ReasonGroupsUnknown, "role_missing"}},
		{name: "all_of with groups", rule: &config.Rule{AllOf: []config.Rule{{Roles: []string{"Orders.Read"}}, {Groups: g1}}}, id: unknown, reason: ReasonGroupsUnknown, reasons: []string{"role_ok", ReasonGroupsUnknown}},
		// Regression guard: without three values, not(unknown) would be
		// not(false) and let an excluded group's member through.
		{name: "not groups never allows when groups are unknown", rule: &config.Rule{Authenticated: true, Not: &config.Rule{Groups: []string{"contractors"}}}, id: unknown, reason: ReasonGroupsUnknown, reasons: []string{"authenticated_ok", ReasonGroupsUnknown}},
		{name: "not groups, groups resolved", rule: &config.Rule{Authenticated: true, Not: &config.Rule{Groups: []string{"contractors"}}}, id: member, allow: true, reasons: []string{"authenticated_ok", "not_ok"}},
		{name: "not of a rule that fails anyway", rule: &config.Rule{Authenticated: true, Not: &config.Rule{Groups: g1, Roles: []string{"X"}}}, id: unknown, allow: true, reasons: []string{"authenticated_ok", "not_ok"}},
		{name: "report-only: would deny as groups_unknown", rule: &config.Rule{Groups: g1}, mode: ReportOnly, id: unknown, allow: true, would: true, reason: ReasonGroupsUnknown, reasons: []string{ReasonGroupsUnknown}},

		{name: "CEL inGroup", rule: &config.Rule{Authenticated: true}, when: `identity.inGroup("g1")`, id: unknown, reason: ReasonGroupsUnknown, reasons: []string{"authenticated_ok", ReasonGroupsUnknown}},
		{name: "CEL groups list", rule: &config.Rule{Authenticated: true}, when: `"g1" in identity.groups`, id: unknown, reason: ReasonGroupsUnknown, reasons: []string{"authenticated_ok", ReasonGroupsUnknown}},
		{name: "CEL negated membership never allows", rule: &config.Rule{Authenticated: true}, when: `!identity.inGroup("contractors")`, id: unknown, reason: ReasonGroupsUnknown, reasons: []string{"authenticated_ok", ReasonGroupsUnknown}},
		{name: "CEL empty groups never allows", rule: &config.Rule{Authenticated: true}, when: `size(identity.groups) == 0`, id: unknown, reason: ReasonGroupsUnknown, reasons: []string{"authenticated_ok", ReasonGroupsUnknown}},
		{name: "CEL: another operand decides", rule: &config.Rule{Authenticated: true}, when: `identity.hasRole("Orders.Read") || identity.inGroup("g1")`, id: unknown, allow: true, reasons: []string{"authenticated_ok", ReasonWhenOK}},
		{name: "CEL resolved", rule: &config.Rule{Authenticated: true}, when: `identity.inGroup("g1")`, id: member, allow: true, reasons: []string{"authenticated_ok", ReasonWhenOK}},
		{name: "CEL false regardless of groups decides", rule: &config.Rule{Groups: g1}, when: `request.method == "POST"`, id: unknown, reason: ReasonWhenFalse, reasons: []string{ReasonGroupsUnknown, ReasonWhenFalse}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(Spec{Route: "svc/route", Version: "v1", Rule: tt.rule, When: tt.when, Mode: tt.mode})
			if err != nil {
				t.Fatal(err)
			}
			in := &Input{Identity: tt.id, Request: Request{Method: "GET"}}
			for _, explain := range []bool{false, true} {
				var d Decision
				var steps []Step
				if explain {
					d, steps = p.Explain(in)
				} else {
					d = p.Evaluate(in)
				}
				if d.Allow != tt.allow || d.WouldDeny != tt.would {
					t.Errorf("explain=%v: got allow=%v would_deny=%v, want allow=%v would_deny=%v (reasons %v)", explain, d.Allow, d.WouldDeny, tt.allow, tt.would, d.Reasons)
				}
				if diff := cmp.Diff(tt.reasons, d.Reasons); diff != "" {
					t.Errorf("explain=%v: reasons (-want +got):\n%s", explain, diff)
				}
				if got := d.DenyReason(); (!tt.allow || tt.would) && got != tt.reason {
					t.Errorf("explain=%v: deny reason: got %q, want %q", explain, got, tt.reason)
				}
				if explain && slices.Contains(tt.reasons, ReasonGroupsUnknown) && !slices.ContainsFunc(steps, func(s Step) bool { return s.Reason == ReasonGroupsUnknown && s.Have != "" }) {
					t.Errorf("explain: no groups_unknown step saying what the caller has: %+v", steps)
				}
			}
		})
	}
}

// TestDecisionReuse: a decision buffer reused for another request forgets
// that the last one's groups were unknown.
func TestDecisionReuse(t *testing.T) {
	p, err := Compile(Spec{Route: "s/r", Rule: &config.Rule{Groups: []string{"g1"}}})
	if err != nil {
		t.Fatal(err)
	}
	var d Decision
	p.EvaluateInto(&Input{Identity: &identity.Identity{GroupsUnknown: true}}, &d)
	if d.DenyReason() != ReasonGroupsUnknown {
		t.Fatalf("got %s, want groups_unknown", d.DenyReason())
	}
	p.EvaluateInto(&Input{Identity: &identity.Identity{Groups: []string{"g2"}}}, &d)
	if d.GroupsUnknown || d.DenyReason() != "group_missing" {
		t.Fatalf("reused: got %s (groups unknown %v), want group_missing", d.DenyReason(), d.GroupsUnknown)
	}
}

func TestUsesGroups(t *testing.T) {
	tests := []struct {
		name string
		rule *config.Rule
		when string
		want bool
	}{
		{"roles only", &config.Rule{Roles: []string{"A"}}, "", false},
		{"groups", &config.Rule{Groups: []string{"g"}}, "", true},
		{"groups nested in any_of", &config.Rule{AnyOf: []config.Rule{{Roles: []string{"A"}}, {AllOf: []config.Rule{{Groups: []string{"g"}}}}}}, "", true},
		{"groups under not", &config.Rule{Authenticated: true, Not: &config.Rule{Groups: []string{"g"}}}, "", true},
		{"when inGroup", &config.Rule{Authenticated: true}, `identity.inGroup("g")`, true},
		{"when groups", &config.Rule{Authenticated: true}, `"g" in identity.groups`, true},
		{"when without groups", &config.Rule{Authenticated: true}, `request.method == "GET"`, false},
		{"no rule", nil, "", false},
	}
	for _, tt := range tests {
		p, err := Compile(Spec{Route: "s/r", Rule: tt.rule, When: tt.when})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.UsesGroups(); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}
