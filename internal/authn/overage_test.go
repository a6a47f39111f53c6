package authn

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
	"github.com/ztgate/ztgate/internal/msgraph"
	"github.com/ztgate/ztgate/internal/msgraph/graphtest"
	"github.com/ztgate/ztgate/internal/policy"
)

// The real Microsoft Graph and Entra ID token endpoint cannot be reached
// from a test. These tests run against graphtest, a local Graph that follows
// the documented contract, with its token endpoint mounted on the local
// Entra ID issuer at {authority_host}/{tenant}/oauth2/v2.0/token, and tokens
// from that issuer in Entra ID's own group overage shape.

const (
	gatewayClient = "11111111-2222-4333-8444-555555555555" // the gateway's own application
	gatewaySecret = "gw~secret.value"
	groupOrders   = "a0b1c2d3-0000-4000-8000-000000000001"
	groupOther    = "a0b1c2d3-0000-4000-8000-000000000002"
)

// overage turns claims into Entra ID's group overage form: no groups
// claim, the groups named by reference to Azure AD Graph.
func overage(c map[string]any) map[string]any {
	delete(c, "groups")
	tid, oid := c["tid"].(string), c["oid"].(string)
	c["_claim_names"] = map[string]any{"groups": "src1"}
	c["_claim_sources"] = map[string]any{"src1": map[string]any{"endpoint": "https://graph.windows.net/" + tid + "/users/" + oid + "/getMemberObjects"}}
	return c
}

// graphFixture is the local issuer, the local Graph, and a provider
// configured against both through the configuration file.
type graphFixture struct {
	ei      *entraIssuer
	g       *graphtest.Server
	a       *Authenticator
	metrics *msgraph.Metrics
}

func newGraphFixture(t *testing.T, extra string) *graphFixture {
	t.Helper()
	f := &graphFixture{ei: newEntraIssuer(t), metrics: msgraph.NewMetrics(prometheus.NewRegistry())}
	f.g = graphtest.New(t, gatewayClient, gatewaySecret)
	h := f.g.TokenHandler()
	f.ei.tokenEndpoint.Store(&h)
	yaml := `listen: { address: ":8443" }
identity:
  providers:
    - name: corp
      type: entra
      tenant: organizations
      allowed_tenants: [` + tenantA + `, ` + tenantB + `]
      client_id: ` + clientID + `
      authority_host: ` + f.ei.srv.URL + `
      group_overage:
        client_id: ` + gatewayClient + `
        client_secret: "${env:GRAPH_SECRET}"
        graph_url: ` + f.g.URL + extra + `
services:
  - name: orders
    upstream: http://127.0.0.1:8080
    routes:
      - { name: r, match: { path: "/**" }, allow: { groups: [` + groupOrders + `] } }
`
	cfg, err := config.Parse("x.yaml", []byte(yaml), config.Options{LookupEnv: func(k string) (string, bool) {
		return gatewaySecret, k == "GRAPH_SECRET"
	}})
	if err != nil {
		t.Fatal(err)
	}
	f.a = NewAuthenticator(16384, FromConfigWith(cfg.Identity.Providers[0], Deps{GroupMetrics: f.metrics}))
	return f
}

// TestGraphOverageContract: overage tokens of every Entra ID shape get
// their groups from Microsoft Graph, by the object type the token names,
// with a Graph token of the caller's tenant; the endpoint the token names
// is never used.
func TestGraphOverageContract(t *testing.T) {
	f := newGraphFixture(t, "")
	ei, g := f.ei, f.g
	g.SetUser(tenantA, userOID, graphtest.Group{ID: groupOrders, SecurityEnabled: true}, graphtest.Group{ID: groupOther, SecurityEnabled: false})
	g.SetServicePrincipal(tenantA, appOID, graphtest.Group{ID: groupOther, SecurityEnabled: true})
	g.SetUser(tenantB, userOID, graphtest.Group{ID: groupOther, SecurityEnabled: true})
	implicit := func(c map[string]any) map[string]any {
		delete(c, "groups")
		c["hasgroups"] = true
		return c
	}
	tests := []struct {
		name   string
		claims map[string]any
		want   []string
		call   string // the Graph call, method and path; "": answered from the cache
		tenant string // whose Graph token it carried
	}{
		{"v2.0 user", overage(ei.v2(tenantA, false)), []string{groupOrders}, "POST /v1.0/users/" + userOID + "/getMemberObjects", tenantA},
		{"v1.0 user: the same user, from the cache", overage(ei.v1(tenantA, false)), []string{groupOrders}, "", ""},
		{"v2.0 application (idtyp app)", overage(ei.v2(tenantA, true)), []string{groupOther}, "POST /v1.0/servicePrincipals/" + appOID + "/getMemberObjects", tenantA},
		{"v1.0 application: the same one, from the cache", overage(ei.v1(tenantA, true)), []string{groupOther}, "", ""},
		{"implicit flow: hasgroups", implicit(ei.v1(tenantA, false)), []string{groupOrders}, "", ""},
		{"another allowed tenant: its own Graph token", overage(ei.v2(tenantB, false)), []string{groupOther}, "POST /v1.0/users/" + userOID + "/getMemberObjects", tenantB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(g.Calls())
			id, fl := f.a.AuthenticateToken(context.Background(), ei.token(t, tt.claims))
			if fl != nil {
				t.Fatalf("got %v, want the overage token accepted", fl)
			}
			if !id.GroupsUnknown || id.Groups != nil {
				t.Fatalf("before resolution: got groups %v unknown=%v, want unknown and none", id.Groups, id.GroupsUnknown)
			}
			got := f.a.ResolveGroups(context.Background(), id)
			if got.GroupsUnknown {
				t.Fatal("after resolution: groups still unknown")
			}
			if d := cmp.Diff(tt.want, got.Groups); d != "" {
				t.Errorf("groups (-want +got):\n%s", d)
			}
			if !id.GroupsUnknown {
				t.Error("the verified (cached) identity was changed; want a copy")
			}
			calls := g.Calls()[before:]
			if tt.call == "" {
				if len(calls) != 0 {
					t.Errorf("Graph calls: got %+v, want the cached answer", calls)
				}
				return
			}
			if len(calls) != 1 || calls[0].Method+" "+calls[0].Path != tt.call || calls[0].Tenant != tt.tenant || calls[0].Body != `{"securityEnabledOnly":true}` {
				t.Errorf("Graph calls: got %+v, want one %s with a token of %s and {\"securityEnabledOnly\":true}", calls, tt.call, tt.tenant)
			}
		})
	}
	if n := g.TokenCalls(); n != 2 {
		t.Errorf("token requests: got %d, want 2 (one per tenant, then reused)", n)
	}

	t.Run("groups listed in the token: no lookup", func(t *testing.T) {
		before := g.GraphCalls()
		id, fl := f.a.AuthenticateToken(context.Background(), ei.token(t, ei.v2(tenantA, false)))
		if fl != nil || id.GroupsUnknown {
			t.Fatalf("got %v, unknown=%v; want the listed groups", fl, id.GroupsUnknown)
		}
		if got := f.a.ResolveGroups(context.Background(), id); got != id || g.GraphCalls() != before {
			t.Error("an identity with its groups listed was looked up")
		}
	})
	t.Run("an identity of another provider is left alone", func(t *testing.T) {
		other := &identity.Identity{Provider: "partner", Tenant: tenantA, ObjectID: userOID, GroupsUnknown: true}
		if got := f.a.ResolveGroups(context.Background(), other); got != other || !got.GroupsUnknown {
			t.Errorf("got %+v, want it unchanged, groups unknown", got)
		}
	})
}

// TestGroupOverageDecisions: the path of a request through authentication,
// group resolution (only where the route's policy needs it) and policy. A
// cached answer saves the second Graph call, an expired one is fetched
// again, and with Graph down a rule on groups denies with groups_unknown
// while a rule without groups still allows.
func TestGroupOverageDecisions(t *testing.T) {
	ei := newEntraIssuer(t)
	g := graphtest.New(t, gatewayClient, gatewaySecret)
	h := g.TokenHandler()
	ei.tokenEndpoint.Store(&h)
	g.SetUser(tenantA, userOID, graphtest.Group{ID: groupOrders, SecurityEnabled: true})
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	reg := prometheus.NewRegistry()
	metrics := msgraph.NewMetrics(reg)
	groups := msgraph.New(msgraph.Config{
		Provider: "corp", AuthorityHost: ei.srv.URL, GraphURL: g.URL, ClientID: gatewayClient, ClientSecret: gatewaySecret,
		TTL: 10 * time.Minute, FailureTTL: 10 * time.Second, Timeout: 2 * time.Second, Now: clock, Metrics: metrics,
	})
	o := NewOIDC(OIDCConfig{Name: "corp", Entra: &EntraConfig{Tenant: tenantA, ClientID: clientID, AuthorityHost: ei.srv.URL},
		Algorithms: []string{"RS256"}, ClockSkew: time.Minute, Refresh: time.Hour, Groups: groups})
	a := NewAuthenticator(16384, o)
	tok := ei.token(t, overage(ei.v2(tenantA, false)))

	compile := func(rule *config.Rule) *policy.Policy {
		p, err := policy.Compile(policy.Spec{Route: "orders/r", Rule: rule})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	byGroup := compile(&config.Rule{Groups: []string{groupOrders}})
	notContractors := compile(&config.Rule{Authenticated: true, Not: &config.Rule{Groups: []string{groupOther}}})
	byScope := compile(&config.Rule{Scopes: []string{"orders.read"}})

	// decide does what the gateway does for one request.
	decide := func(p *policy.Policy) policy.Decision {
		t.Helper()
		id, fl := a.AuthenticateToken(context.Background(), tok)
		if fl != nil {
			t.Fatal(fl)
		}
		if id.GroupsUnknown && p.UsesGroups() {
			id = a.ResolveGroups(context.Background(), id)
		}
		return p.Evaluate(&policy.Input{Identity: id})
	}
	steps := []struct {
		name    string
		before  func()
		p       *policy.Policy
		allow   bool
		reason  string
		graph   int // Graph calls so far
		lookups string
	}{
		{name: "group rule: resolved through Graph", p: byGroup, allow: true, graph: 1},
		{name: "again: answered from the cache", p: byGroup, allow: true, graph: 1},
		{name: "rule without groups: no lookup", p: byScope, allow: true, graph: 1},
		{name: "TTL expired: fetched again", before: func() { now.Add(int64(10 * time.Minute)) }, p: byGroup, allow: true, graph: 2},
		{name: "Graph down, TTL expired: group rule denies", before: func() { g.Close(); now.Add(int64(10 * time.Minute)) }, p: byGroup, reason: policy.ReasonGroupsUnknown, graph: 2},
		{name: "Graph down: not-groups rule denies too", p: notContractors, reason: policy.ReasonGroupsUnknown, graph: 2},
		{name: "Graph down: rule without groups allows", p: byScope, allow: true, graph: 2},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		d := decide(s.p)
		if d.Allow != s.allow || (!s.allow && d.DenyReason() != s.reason) {
			t.Errorf("%s: got allow=%v reason %s (%v), want allow=%v reason %s", s.name, d.Allow, d.DenyReason(), d.Reasons, s.allow, s.reason)
		}
		if n := g.GraphCalls(); n != s.graph {
			t.Errorf("%s: got %d Graph calls in all, want %d", s.name, n, s.graph)
		}
	}
	lookups := func(result string) float64 {
		return counter(t, reg, "ztgate_group_overage_lookups_total", map[string]string{"provider": "corp", "result": result})
	}
	if n := lookups("ok"); n != 2 {
		t.Errorf("lookups{result=ok}: got %v, want 2", n)
	}
	if n := lookups("error"); n != 1 {
		t.Errorf("lookups{result=error}: got %v, want 1 (Graph down)", n)
	}
	if n := counter(t, reg, "ztgate_group_overage_cache_hits_total", map[string]string{"provider": "corp"}); n != 1 {
		t.Errorf("cache hits: got %v, want 1", n)
	}
}

// TestGroupsOverageClaims: which claims name the groups by reference.
func TestGroupsOverageClaims(t *testing.T) {
	tests := []struct {
		name   string
		claims map[string]any
		want   bool
	}{
		{"groups listed", map[string]any{"groups": []any{"g"}}, false},
		{"empty groups listed", map[string]any{"groups": []any{}}, false},
		{"no groups at all", map[string]any{}, false},
		{"_claim_names groups", map[string]any{"_claim_names": map[string]any{"groups": "src1"}}, true},
		{"_claim_names of another claim", map[string]any{"_claim_names": map[string]any{"roles": "src1"}}, false},
		{"_claim_names not an object", map[string]any{"_claim_names": "groups"}, false},
		{"hasgroups true", map[string]any{"hasgroups": true}, true},
		{"hasgroups false", map[string]any{"hasgroups": false}, false},
		{"hasgroups as a string", map[string]any{"hasgroups": "true"}, false},
		{"groups listed wins over a reference", map[string]any{"groups": []any{"g"}, "hasgroups": true}, false},
	}
	for _, tt := range tests {
		if got := groupsOverage(tt.claims); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
		if got := IdentityFromClaims("p", tt.claims).GroupsUnknown; got != tt.want {
			t.Errorf("%s: IdentityFromClaims: got GroupsUnknown %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestGroupOverageNoSource: an overage token at a provider without
// group_overage keeps its groups unknown; a rule on groups denies it.
func TestGroupOverageNoSource(t *testing.T) {
	ei := newEntraIssuer(t)
	a := NewAuthenticator(16384, ei.verifier(EntraConfig{Tenant: tenantA}))
	id, fl := a.AuthenticateToken(context.Background(), ei.token(t, overage(ei.v2(tenantA, false))))
	if fl != nil {
		t.Fatal(fl)
	}
	id = a.ResolveGroups(context.Background(), id)
	if !id.GroupsUnknown || len(id.Groups) != 0 {
		t.Fatalf("got groups %v unknown=%v, want unknown", id.Groups, id.GroupsUnknown)
	}
	p, _ := policy.Compile(policy.Spec{Route: "s/r", Rule: &config.Rule{Groups: []string{groupOrders}}})
	if d := p.Evaluate(&policy.Input{Identity: id}); d.Allow || d.DenyReason() != policy.ReasonGroupsUnknown {
		t.Fatalf("got allow=%v %s, want deny groups_unknown", d.Allow, d.DenyReason())
	}
}

// TestGroupOverageSecretNeverLogged: the client secret appears in no error
// a failing lookup produces.
func TestGroupOverageSecretNeverLogged(t *testing.T) {
	f := newGraphFixture(t, "")
	f.g.ClientSecret = "another"
	id, fl := f.a.AuthenticateToken(context.Background(), f.ei.token(t, overage(f.ei.v2(tenantA, false))))
	if fl != nil {
		t.Fatal(fl)
	}
	var logged strings.Builder
	src := groupSource(config.Provider{Name: "corp", Type: "entra", AuthorityHost: f.ei.srv.URL, GroupOverage: &config.GroupOverage{
		ClientID: gatewayClient, ClientSecret: gatewaySecret, GraphURL: f.g.URL, Method: "get_member_objects",
	}}, Deps{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if _, err := src.Groups(context.Background(), id.Tenant, id.ObjectID, false); err == nil || strings.Contains(err.Error(), gatewaySecret) {
		t.Fatalf("got %v, want an error without the secret", err)
	}
	if !strings.Contains(logged.String(), "invalid_client") || strings.Contains(logged.String(), gatewaySecret) {
		t.Fatalf("log %q: want the token endpoint's error, never the secret", logged.String())
	}
}

// counter reads a counter's value from reg.
func counter(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
