package policy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
)

func TestWhen(t *testing.T) {
	id := &identity.Identity{Type: identity.User, Subject: "alice", Tenant: "t1", Roles: []string{"Orders.Read"}, Scopes: []string{"orders.read"}, Groups: []string{"g1"}, AMR: []string{"pwd"}, Claims: map[string]any{"department": "sales", "level": 3}}
	in := &Input{
		Identity: id, IP: netip.MustParseAddr("10.1.2.3"), Country: "DE",
		Time:    time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC),
		Request: Request{Method: "GET", Host: "api.example.com", Path: "/orders/42", Params: map[string]string{"id": "42"}, RawQuery: "limit=10&x=1", Headers: map[string][]string{"X-Tenant": {"t1"}, "Content-Type": {"application/json"}}},
		Risk:    Risk{Level: "high", Alerts: []string{"failed_auth_spike"}},
	}
	tests := []struct {
		when   string
		reason string
	}{
		{`request.ip in cidr("10.0.0.0/8")`, ReasonWhenOK},
		{`request.ip in cidr("192.168.0.0/16")`, ReasonWhenFalse},
		{`!(request.ip in cidr("192.168.0.0/16"))`, ReasonWhenOK},
		{`request.method == "GET" && request.path.startsWith("/orders/")`, ReasonWhenOK},
		{`request.params.id == "42"`, ReasonWhenOK},
		{`int(request.query.limit) <= 100`, ReasonWhenOK},
		{`request.headers["x-tenant"] == identity.tenant`, ReasonWhenOK},
		{`request.headers["content-type"] == "application/json"`, ReasonWhenOK},
		{`"x-missing" in request.headers`, ReasonWhenFalse},
		{`request.headers["x-missing"] == "a"`, ReasonWhenError}, // missing key: error, deny
		{`identity.hasRole("Orders.Read")`, ReasonWhenOK},
		{`identity.hasRole("Orders.Write")`, ReasonWhenFalse},
		{`identity.hasScope("orders.read") && identity.inGroup("g1")`, ReasonWhenOK},
		{`"Orders.Read" in identity.roles`, ReasonWhenOK},
		{`identity.claims.department == "sales"`, ReasonWhenOK},
		{`identity.claims.cost_center == "x"`, ReasonWhenError}, // missing claim denies
		{`identity.type == "user" && identity.tenant == "t1"`, ReasonWhenOK},
		{`geo.country in ["DE", "FR"]`, ReasonWhenOK},
		{`time.getHours() >= 8 && time.getHours() < 18`, ReasonWhenOK},
		{`time.getDayOfWeek() == 1`, ReasonWhenOK}, // Monday
		{`risk.level != "high"`, ReasonWhenFalse},
		{`"failed_auth_spike" in risk.alerts`, ReasonWhenOK},
		{`[1,2,3].all(x, x > 0)`, ReasonWhenOK},
		{`request.method.lowerAscii() == "get"`, ReasonWhenOK},
	}
	for _, tt := range tests {
		t.Run(tt.when, func(t *testing.T) {
			p, err := Compile(Spec{Route: "s/r", Rule: &config.Rule{Authenticated: true}, When: tt.when})
			if err != nil {
				t.Fatal(err)
			}
			d := p.Evaluate(in)
			want := []string{"authenticated_ok", tt.reason}
			if diff := cmp.Diff(want, d.Reasons); diff != "" {
				t.Fatalf("reasons (-want +got):\n%s", diff)
			}
			if d.Allow != (tt.reason == ReasonWhenOK) {
				t.Fatalf("got allow=%v with reason %s", d.Allow, tt.reason)
			}
		})
	}
}

func TestWhenCompileErrors(t *testing.T) {
	tests := []struct{ when, want string }{
		{`request.ip in`, "CEL line 1 column"},
		{`nosuch.var == 1`, "undeclared reference to 'nosuch'"},
		{`request.method`, ""}, // dyn: allowed, checked at run time
		{`1 + 2`, "want bool"}, // wrong type
		{`"a" + 1 == "b"`, "no matching overload"},
		{strings.Repeat("true && ", 600) + "true", "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.when[:min(len(tt.when), 30)], func(t *testing.T) {
			err := CheckExpr(tt.when)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestWhenCostLimit(t *testing.T) {
	// A comprehension whose cost exceeds the limit is stopped and denies.
	p, err := Compile(Spec{Route: "s/r", Rule: &config.Rule{Authenticated: true}, When: `identity.roles.all(a, identity.roles.all(b, identity.roles.all(c, a + b + c != "")))`})
	if err != nil {
		t.Fatal(err)
	}
	roles := make([]string, 200)
	for i := range roles {
		roles[i] = strings.Repeat("r", i%7+1)
	}
	d := p.Evaluate(&Input{Identity: &identity.Identity{Roles: roles}})
	if d.Allow || d.DenyReason() != ReasonWhenError {
		t.Fatalf("got allow=%v reasons=%v, want when_error (cost limit)", d.Allow, d.Reasons)
	}
}

func TestValidateConfigPositions(t *testing.T) {
	cfg, err := config.Parse("x.yaml", []byte(`listen: { address: "127.0.0.1:1" }
identity:
  providers: [ { name: p, type: oidc, issuer: "https://idp.example", audiences: [api] } ]
services:
  - name: s
    upstream: http://127.0.0.1:2
    routes:
      - name: r
        match: { path: "/**" }
        allow: { authenticated: true }
        when: 'request.ip in cidr("10.0.0.0/8") && nosuch'
`), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = ValidateConfig(cfg)
	if err == nil || !strings.Contains(err.Error(), "x.yaml:11:15: services[0].routes[0].when: CEL line 1 column 37: undeclared reference to 'nosuch'") {
		t.Fatalf("got %v", err)
	}
}

func TestCriteriaMore(t *testing.T) {
	berlin := &config.Rule{Time: []config.Window{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "08:00", To: "18:00", Zone: "Europe/Berlin"}}}
	night := &config.Rule{Time: []config.Window{{From: "22:00", To: "06:00", Zone: "UTC", Days: []string{"fri"}}}}
	id := &identity.Identity{Subject: "a", ACRS: []string{"c1"}, Claims: map[string]any{"deviceid": "d1", "xms_compliant": true}}
	tests := []struct {
		name    string
		rule    *config.Rule
		at      time.Time
		id      *identity.Identity
		reason  string
		country string
	}{
		{"country ok", &config.Rule{Countries: []string{"DE", "FR"}}, time.Time{}, id, "country_ok", "DE"},
		{"country not allowed", &config.Rule{Countries: []string{"DE", "FR"}}, time.Time{}, id, "country_not_allowed", "US"},
		{"country unknown denies", &config.Rule{Countries: []string{"DE"}}, time.Time{}, id, "country_unknown", ""},
		{"auth context ok", &config.Rule{AuthContext: []string{"c1", "c2"}}, time.Time{}, id, "auth_context_ok", ""},
		{"auth context missing", &config.Rule{AuthContext: []string{"c3"}}, time.Time{}, id, "auth_context_missing", ""},
		{"auth context absent", &config.Rule{AuthContext: []string{"c1"}}, time.Time{}, &identity.Identity{}, "auth_context_missing", ""},
		{"office hours in Berlin (09:30 CET = 08:30 UTC, Monday)", berlin, time.Date(2026, 11, 23, 8, 30, 0, 0, time.UTC), id, "time_ok", ""},
		{"before office hours in Berlin (07:30 CET)", berlin, time.Date(2026, 11, 23, 6, 30, 0, 0, time.UTC), id, "outside_time_window", ""},
		{"end is exclusive (18:00 CET)", berlin, time.Date(2026, 11, 23, 17, 0, 0, 0, time.UTC), id, "outside_time_window", ""},
		{"Saturday", berlin, time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC), id, "outside_time_window", ""},
		{"summer time shifts UTC (09:00 CEST = 07:00 UTC)", berlin, time.Date(2026, 7, 6, 7, 0, 0, 0, time.UTC), id, "time_ok", ""},
		{"overnight window, Friday 23:00", night, time.Date(2026, 11, 27, 23, 0, 0, 0, time.UTC), id, "time_ok", ""},
		{"overnight window, Saturday 05:00 belongs to Friday", night, time.Date(2026, 11, 28, 5, 0, 0, 0, time.UTC), id, "time_ok", ""},
		{"overnight window, Saturday 23:00", night, time.Date(2026, 11, 28, 23, 0, 0, 0, time.UTC), id, "outside_time_window", ""},
		{"device claim any value", &config.Rule{Device: &config.Device{Claims: map[string][]string{"deviceid": {"*"}}}}, time.Time{}, id, "device_ok", ""},
		{"device claim bool", &config.Rule{Device: &config.Device{Claims: map[string][]string{"xms_compliant": {"true"}}}}, time.Time{}, id, "device_ok", ""},
		{"device claim missing", &config.Rule{Device: &config.Device{Claims: map[string][]string{"deviceid": {"*"}, "managed": {"true"}}}}, time.Time{}, id, "device_claim_missing", ""},
		{"device claim wrong value", &config.Rule{Device: &config.Device{Claims: map[string][]string{"deviceid": {"d2"}}}}, time.Time{}, id, "device_claim_missing", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(Spec{Route: "s/r", Rule: tt.rule})
			if err != nil {
				t.Fatal(err)
			}
			d := p.Evaluate(&Input{Identity: tt.id, Time: tt.at, Country: tt.country})
			if got := d.Reasons; len(got) != 1 || got[0] != tt.reason {
				t.Fatalf("got %v, want [%s]", got, tt.reason)
			}
		})
	}
}

func FuzzCompileWhen(f *testing.F) {
	for _, s := range []string{`request.ip in cidr("10.0.0.0/8")`, `identity.hasRole("a") || identity.claims.x == 1`, `time.getHours() < 5`, `[1,2].map(x, x*2).size() == 2`, `"a".matches("^a+$")`, `request.headers["x"] == "y"`} {
		f.Add(s)
	}
	in := &Input{Identity: &identity.Identity{Roles: []string{"a"}, Claims: map[string]any{"x": 1}}, Request: Request{Method: "GET", Headers: map[string][]string{"X": {"y"}}}}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := Compile(Spec{Route: "s/r", Rule: &config.Rule{Authenticated: true}, When: src})
		if err != nil || src == "" {
			return
		}
		d := p.Evaluate(in)
		last := d.Reasons[len(d.Reasons)-1]
		if d.Allow != (last == ReasonWhenOK) {
			t.Fatalf("allow=%v with when reason %s", d.Allow, last)
		}
	})
}
