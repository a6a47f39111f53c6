package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
)

func spiffeWorkload(td, path string) *identity.Identity {
	cc := &identity.ClientCert{ID: "spiffe://" + td + path, Source: "spiffe", TrustDomain: td, Path: path, Serial: "2a", Issuer: "CN=workload root"}
	return &identity.Identity{Type: identity.Workload, Provider: "mtls", Subject: cc.ID, ClientCert: cc}
}

func TestWorkloads(t *testing.T) {
	orders := spiffeWorkload("prod.example", "/ns/orders/sa/api")
	deep := spiffeWorkload("prod.example", "/ns/orders/sa/api/extra")
	billing := spiffeWorkload("prod.example", "/ns/billing/sa/api")
	staging := spiffeWorkload("staging.example", "/ns/orders/sa/api")
	dnsID := &identity.Identity{Type: identity.Workload, Subject: "dns:a.orders.internal", ClientCert: &identity.ClientCert{ID: "dns:a.orders.internal", Source: "dns"}}
	cnID := &identity.Identity{Type: identity.Workload, Subject: "cn:Orders API", ClientCert: &identity.ClientCert{ID: "cn:Orders API", Source: "subject"}}
	// Regression: a common name that looks like a SPIFFE ID is a common
	// name, never a SPIFFE ID.
	spoofCN := &identity.Identity{Type: identity.Workload, Subject: "cn:spiffe://prod.example/ns/orders/sa/api", ClientCert: &identity.ClientCert{ID: "cn:spiffe://prod.example/ns/orders/sa/api", Source: "subject"}}
	user := &identity.Identity{Type: identity.User, Subject: "alice", Roles: []string{"Orders.Read"}}
	userViaOrders := &identity.Identity{Type: identity.User, Subject: "alice", Roles: []string{"Orders.Read"}, ClientCert: orders.ClientCert}

	ordersNS := []string{"spiffe://prod.example/ns/orders/*/*"}
	tests := []struct {
		name    string
		rule    *config.Rule
		id      *identity.Identity
		allow   bool
		reasons []string
	}{
		{"exact workload", &config.Rule{Workloads: []string{"spiffe://prod.example/ns/orders/sa/api"}}, orders, true, []string{"workload_ok"}},
		{"pattern", &config.Rule{Workloads: ordersNS}, orders, true, []string{"workload_ok"}},
		{"pattern: other namespace", &config.Rule{Workloads: ordersNS}, billing, false, []string{"workload_not_allowed"}},
		{"pattern: * is one segment", &config.Rule{Workloads: ordersNS}, deep, false, []string{"workload_not_allowed"}},
		{"** covers the rest", &config.Rule{Workloads: []string{"spiffe://prod.example/ns/orders/**"}}, deep, true, []string{"workload_ok"}},
		{"other trust domain, same path", &config.Rule{Workloads: ordersNS}, staging, false, []string{"workload_not_allowed"}},
		{"no client certificate", &config.Rule{Workloads: ordersNS}, user, false, []string{"workload_missing"}},
		{"a token through an allowed workload", &config.Rule{Workloads: ordersNS}, userViaOrders, true, []string{"workload_ok"}},
		{"workload itself required", &config.Rule{Workloads: ordersNS, IdentityTypes: []string{"workload"}}, userViaOrders, false, []string{"identity_type_not_allowed", "workload_ok"}},
		{"workload itself", &config.Rule{Workloads: ordersNS, IdentityTypes: []string{"workload"}}, orders, true, []string{"identity_type_ok", "workload_ok"}},
		{"role and workload", &config.Rule{Roles: []string{"Orders.Read"}, Workloads: ordersNS}, userViaOrders, true, []string{"role_ok", "workload_ok"}},
		{"dns exact", &config.Rule{Workloads: []string{"dns:a.orders.internal"}}, dnsID, true, []string{"workload_ok"}},
		{"dns wildcard", &config.Rule{Workloads: []string{"dns:*.orders.internal"}}, dnsID, true, []string{"workload_ok"}},
		{"dns wildcard is one label", &config.Rule{Workloads: []string{"dns:*.internal"}}, dnsID, false, []string{"workload_not_allowed"}},
		{"dns pattern never matches a SPIFFE ID", &config.Rule{Workloads: []string{"dns:*.orders.internal"}}, orders, false, []string{"workload_not_allowed"}},
		{"cn", &config.Rule{Workloads: []string{"cn:Orders API"}}, cnID, true, []string{"workload_ok"}},
		{"SPIFFE pattern never matches a common name", &config.Rule{Workloads: []string{"spiffe://prod.example/**"}}, spoofCN, false, []string{"workload_not_allowed"}},
		{"subjects match the workload ID", &config.Rule{Subjects: []string{"spiffe://prod.example/ns/orders/sa/api"}}, orders, true, []string{"subject_ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(Spec{Route: "s/r", Rule: tt.rule})
			if err != nil {
				t.Fatal(err)
			}
			d := p.Evaluate(&Input{Identity: tt.id})
			if d.Allow != tt.allow {
				t.Errorf("got allow=%v, want %v (reasons %v)", d.Allow, tt.allow, d.Reasons)
			}
			if diff := cmp.Diff(tt.reasons, d.Reasons); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := Compile(Spec{Route: "s/r", Rule: &config.Rule{Workloads: []string{"spiffe://*.example/x"}}}); err == nil {
		t.Error("a bad workload pattern compiled")
	}

	p, _ := Compile(Spec{Route: "s/r", Rule: &config.Rule{Workloads: ordersNS}})
	_, steps := p.Explain(&Input{Identity: billing})
	if len(steps) != 1 || steps[0].Have != `"spiffe://prod.example/ns/billing/sa/api"` || !strings.Contains(steps[0].Want, "spiffe://prod.example/ns/orders/*/*") {
		t.Errorf("explain: got %+v", steps)
	}
}

func TestWhenWorkload(t *testing.T) {
	orders := spiffeWorkload("prod.example", "/ns/orders/sa/api")
	user := &identity.Identity{Type: identity.User, Subject: "alice"}
	tests := []struct {
		when   string
		id     *identity.Identity
		reason string
	}{
		{`identity.type == "workload" && identity.subject == "spiffe://prod.example/ns/orders/sa/api"`, orders, ReasonWhenOK},
		{`identity.workload.trust_domain == "prod.example"`, orders, ReasonWhenOK},
		{`identity.workload.path.startsWith("/ns/orders/")`, orders, ReasonWhenOK},
		{`identity.workload.source == "spiffe" && identity.workload.serial == "2a"`, orders, ReasonWhenOK},
		{`identity.workload.id == identity.subject`, orders, ReasonWhenOK},
		{`identity.workload.issuer == "CN=workload root"`, orders, ReasonWhenOK},
		{`request.params.ns == identity.workload.path.split("/")[2]`, orders, ReasonWhenOK},
		{`identity.workload.id == ""`, user, ReasonWhenOK}, // no certificate: empty, not an error
		{`identity.workload.trust_domain == "prod.example"`, user, ReasonWhenFalse},
		{`identity.workload.nope == "x"`, orders, ReasonWhenError},
	}
	for _, tt := range tests {
		t.Run(tt.when, func(t *testing.T) {
			p, err := Compile(Spec{Route: "s/r", Rule: &config.Rule{Authenticated: true}, When: tt.when})
			if err != nil {
				t.Fatal(err)
			}
			d := p.Evaluate(&Input{Identity: tt.id, Request: Request{Params: map[string]string{"ns": "orders"}}})
			if diff := cmp.Diff([]string{"authenticated_ok", tt.reason}, d.Reasons); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
		})
	}
}
