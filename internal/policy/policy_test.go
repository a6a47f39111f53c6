package policy

import (
	"encoding/base64"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
)

func TestEvaluate(t *testing.T) {
	reader := &identity.Identity{Type: identity.User, Subject: "alice", Tenant: "t1", AppID: "app1", Roles: []string{"Orders.Read"}, AMR: []string{"pwd"}}
	writer := &identity.Identity{Type: identity.User, Subject: "bob", Tenant: "t1", Roles: []string{"Orders.Write"}, Scopes: []string{"orders.read"}, AMR: []string{"pwd", "mfa"}}
	app := &identity.Identity{Type: identity.App, Subject: "svc", AppID: "svc", Roles: []string{"Orders.Read"}}
	noClaims := &identity.Identity{Type: identity.User, Subject: "x"}
	office := netip.MustParseAddr("10.1.2.3")
	home := netip.MustParseAddr("203.0.113.9")

	tests := []struct {
		name    string
		rule    *config.Rule
		mode    Mode
		id      *identity.Identity
		ip      netip.Addr
		allow   bool
		would   bool
		reasons []string
	}{
		{"no rule denies (default deny)", nil, Enforce, reader, office, false, false, []string{ReasonNoRule}},
		{"no rule denies even in report-only", nil, ReportOnly, reader, office, false, false, []string{ReasonNoRule}},
		{"no identity denies", &config.Rule{Authenticated: true}, Enforce, nil, office, false, false, []string{"unauthenticated"}},
		{"authenticated", &config.Rule{Authenticated: true}, Enforce, reader, office, true, false, []string{"authenticated_ok"}},
		{"role ok", &config.Rule{Roles: []string{"Orders.Read", "Orders.Admin"}}, Enforce, reader, office, true, false, []string{"role_ok"}},
		{"role missing", &config.Rule{Roles: []string{"Orders.Write"}}, Enforce, reader, office, false, false, []string{"role_missing"}},
		{"role claim absent denies", &config.Rule{Roles: []string{"Orders.Read"}}, Enforce, noClaims, office, false, false, []string{"role_missing"}},
		{"scope ok", &config.Rule{Scopes: []string{"orders.read"}}, Enforce, writer, office, true, false, []string{"scope_ok"}},
		{"scope missing", &config.Rule{Scopes: []string{"orders.read"}}, Enforce, reader, office, false, false, []string{"scope_missing"}},
		{"group missing", &config.Rule{Groups: []string{"g1"}}, Enforce, reader, office, false, false, []string{"group_missing"}},
		{"tenant ok", &config.Rule{Tenants: []string{"t1"}}, Enforce, reader, office, true, false, []string{"tenant_ok"}},
		{"tenant absent denies", &config.Rule{Tenants: []string{"t1"}}, Enforce, app, office, false, false, []string{"tenant_not_allowed"}},
		{"app ok", &config.Rule{Apps: []string{"app1"}}, Enforce, reader, office, true, false, []string{"app_ok"}},
		{"app not allowed", &config.Rule{Apps: []string{"app2"}}, Enforce, reader, office, false, false, []string{"app_not_allowed"}},
		{"subject not allowed", &config.Rule{Subjects: []string{"bob"}}, Enforce, reader, office, false, false, []string{"subject_not_allowed"}},
		{"identity type ok", &config.Rule{IdentityTypes: []string{"app"}}, Enforce, app, office, true, false, []string{"identity_type_ok"}},
		{"identity type not allowed", &config.Rule{IdentityTypes: []string{"app"}}, Enforce, reader, office, false, false, []string{"identity_type_not_allowed"}},
		{"mfa ok", &config.Rule{MFA: true}, Enforce, writer, office, true, false, []string{"mfa_ok"}},
		{"mfa missing", &config.Rule{MFA: true}, Enforce, reader, office, false, false, []string{"mfa_missing"}},
		{"ip ok", &config.Rule{IP: []string{"10.0.0.0/8"}}, Enforce, reader, office, true, false, []string{"ip_ok"}},
		{"ip single address", &config.Rule{IP: []string{"10.1.2.3"}}, Enforce, reader, office, true, false, []string{"ip_ok"}},
		{"ip not allowed", &config.Rule{IP: []string{"10.0.0.0/8"}}, Enforce, reader, home, false, false, []string{"ip_not_allowed"}},
		{"ip unknown denies", &config.Rule{IP: []string{"0.0.0.0/0"}}, Enforce, reader, netip.Addr{}, false, false, []string{"ip_not_allowed"}},
		{"ipv4-mapped ipv6", &config.Rule{IP: []string{"10.0.0.0/8"}}, Enforce, reader, netip.MustParseAddr("::ffff:10.1.2.3"), true, false, []string{"ip_ok"}},
		{"all criteria of a rule must hold", &config.Rule{Roles: []string{"Orders.Write"}, MFA: true}, Enforce, reader, office, false, false, []string{"role_missing", "mfa_missing"}},
		{"all criteria hold", &config.Rule{Roles: []string{"Orders.Write"}, MFA: true}, Enforce, writer, office, true, false, []string{"role_ok", "mfa_ok"}},
		{"any_of first branch", &config.Rule{AnyOf: []config.Rule{{Roles: []string{"Orders.Read"}}, {Scopes: []string{"orders.read"}}}}, Enforce, reader, office, true, false, []string{"role_ok"}},
		{"any_of second branch keeps only its reasons", &config.Rule{AnyOf: []config.Rule{{Roles: []string{"Orders.Read"}}, {Scopes: []string{"orders.read"}}}}, Enforce, writer, office, true, false, []string{"scope_ok"}},
		{"any_of none", &config.Rule{AnyOf: []config.Rule{{Roles: []string{"X"}}, {Scopes: []string{"y"}}}}, Enforce, reader, office, false, false, []string{"role_missing", "scope_missing"}},
		{"all_of", &config.Rule{AllOf: []config.Rule{{Roles: []string{"Orders.Read"}}, {IP: []string{"10.0.0.0/8"}}}}, Enforce, reader, home, false, false, []string{"role_ok", "ip_not_allowed"}},
		{"not excludes", &config.Rule{Authenticated: true, Not: &config.Rule{IdentityTypes: []string{"app"}}}, Enforce, app, office, false, false, []string{"authenticated_ok", "excluded_by_not"}},
		{"not passes", &config.Rule{Authenticated: true, Not: &config.Rule{IdentityTypes: []string{"app"}}}, Enforce, reader, office, true, false, []string{"authenticated_ok", "not_ok"}},
		{"report-only lets a would-deny through", &config.Rule{Roles: []string{"Orders.Write"}}, ReportOnly, reader, office, true, true, []string{"role_missing"}},
		{"report-only allow is a plain allow", &config.Rule{Roles: []string{"Orders.Read"}}, ReportOnly, reader, office, true, false, []string{"role_ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(Spec{Route: "svc/route", Version: "v1", Rule: tt.rule, Mode: tt.mode})
			if err != nil {
				t.Fatal(err)
			}
			d := p.Evaluate(&Input{Identity: tt.id, IP: tt.ip})
			if d.Allow != tt.allow || d.WouldDeny != tt.would {
				t.Errorf("got allow=%v would_deny=%v, want allow=%v would_deny=%v (reasons %v)", d.Allow, d.WouldDeny, tt.allow, tt.would, d.Reasons)
			}
			if diff := cmp.Diff(tt.reasons, d.Reasons); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
			if d.Route != "svc/route" || d.Version != "v1" {
				t.Errorf("got route %q version %q", d.Route, d.Version)
			}
			if !tt.allow && d.DenyReason() != tt.reasons[firstFail(tt.reasons)] {
				t.Errorf("deny reason: got %q", d.DenyReason())
			}
		})
	}
}

func firstFail(rs []string) int {
	for i, r := range rs {
		if !isOK(r) {
			return i
		}
	}
	return 0
}

func BenchmarkEvaluate(b *testing.B) {
	// Ten criteria on the shorthand path; then the same with one CEL
	// expression.
	rule := &config.Rule{
		Authenticated: true,
		AnyOf:         []config.Rule{{Roles: []string{"A", "B", "Orders.Read"}}, {Scopes: []string{"x"}}},
		Tenants:       []string{"t1", "t2"},
		Apps:          []string{"app1"},
		IdentityTypes: []string{"user"},
		MFA:           true,
		IP:            []string{"10.0.0.0/8", "192.168.0.0/16"},
		Time:          []config.Window{{From: "00:00", To: "23:59", Zone: "UTC"}},
		Device:        &config.Device{Claims: map[string][]string{"deviceid": {"*"}}},
		Not:           &config.Rule{Subjects: []string{"mallory"}},
	}
	id := &identity.Identity{Type: identity.User, Subject: "alice", Tenant: "t1", AppID: "app1", Roles: []string{"Orders.Read"}, AMR: []string{"pwd", "mfa"}, Claims: map[string]any{"deviceid": "d1"}}
	in := &Input{Identity: id, IP: netip.MustParseAddr("10.0.0.1"), Time: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC), Request: Request{Method: "GET", Path: "/orders/1"}}
	for _, bc := range []struct{ name, when string }{{"10-criteria", ""}, {"10-criteria+CEL", `request.method == "GET" && identity.hasRole("Orders.Read")`}} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := Compile(Spec{Route: "svc/r", Version: "v", Rule: rule, When: bc.when})
			if err != nil {
				b.Fatal(err)
			}
			var d Decision
			b.ReportAllocs()
			for b.Loop() {
				p.EvaluateInto(in, &d)
				if !d.Allow {
					b.Fatalf("denied: %v", d.Reasons)
				}
			}
		})
	}
}

func TestClaimsChallenge(t *testing.T) {
	tests := []struct {
		name string
		rule *config.Rule
		id   *identity.Identity
		want string // decoded claims; "" none
	}{
		{"auth context", &config.Rule{Roles: []string{"A"}, AuthContext: []string{"c2", "c3"}}, &identity.Identity{Roles: []string{"A"}}, `{"access_token":{"acrs":{"essential":true,"value":"c2"}}}`},
		{"auth context nested", &config.Rule{AllOf: []config.Rule{{AuthContext: []string{"c4"}}}}, &identity.Identity{}, `{"access_token":{"acrs":{"essential":true,"value":"c4"}}}`},
		{"mfa", &config.Rule{MFA: true}, &identity.Identity{}, `{"access_token":{"amr":{"essential":true,"values":["mfa"]}}}`},
		{"role missing first: no step-up can fix it", &config.Rule{Roles: []string{"B"}, MFA: true}, &identity.Identity{}, ""},
		{"allowed", &config.Rule{MFA: true}, &identity.Identity{AMR: []string{"mfa"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(Spec{Route: "s/r", Rule: tt.rule})
			if err != nil {
				t.Fatal(err)
			}
			d := p.Evaluate(&Input{Identity: tt.id})
			got := ""
			if !d.Allow {
				if c := p.ClaimsChallenge(&d); c != "" {
					raw, _ := base64.StdEncoding.DecodeString(c)
					got = string(raw)
				}
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
