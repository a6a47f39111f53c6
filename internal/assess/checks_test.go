package assess

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/config"
)

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	oidcProvider = "identity:\n  providers: [ { name: corp, type: oidc, issuer: \"https://idp.example\", audiences: [api] } ]\n"
	readRoute    = `{ name: read, match: { methods: [GET], path: "/r/**" }, allow: { roles: [R] } }`
	writeMFA     = `{ name: write, match: { methods: [POST], path: "/w/**" }, allow: { roles: [W], mfa: true } }`
	writePlain   = `{ name: write, match: { methods: [POST], path: "/w/**" }, allow: { roles: [W] } }`
	closedRoute  = `{ name: admin, match: { path: "/admin/**" } }`
)

// svc is a services section of one service with the given routes.
func svc(upstream string, routes ...string) string {
	return "services:\n  - name: s\n    upstream: " + upstream + "\n    routes:\n      - " + strings.Join(routes, "\n      - ") + "\n"
}

// routes is svc with an https upstream on another host.
func routes(rs ...string) string { return svc("https://s.internal", rs...) }

// mk builds the checks' inputs from a configuration, without files,
// traffic or policy tests unless mods add them.
func mk(t *testing.T, y string, mods ...func(*Inputs)) *Inputs {
	t.Helper()
	if !strings.Contains(y, "identity:") {
		y = oidcProvider + y
	}
	if !strings.Contains(y, "services:") {
		y += routes(readRoute)
	}
	if !strings.Contains(y, "listen:") {
		y = "listen: { address: \"10.0.0.1:8443\" }\n" + y
	}
	cfg, err := config.Parse("gw.yaml", []byte(y), config.Options{
		Secrets:   func([]config.SecretProvider) (config.SecretResolver, error) { return fakeSecrets{}, nil },
		LookupEnv: func(name string) (string, bool) { return "env-" + name, true },
	})
	if err != nil {
		t.Fatalf("test configuration: %v\n%s", err, y)
	}
	dir := t.TempDir()
	cfg.File = filepath.Join(dir, "gw.yaml")
	in := &Inputs{Cfg: cfg, File: "gw.yaml", Dir: dir, Now: testNow, Since: DefaultSince, Routes: routesOf(cfg),
		Capability: probe, TrafficNote: "no store is configured"}
	in.Secrets, err = secretValues(cfg, []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range certFiles(cfg) {
		in.Certs = append(in.Certs, readCert(dir, f[0], f[1]))
	}
	for _, m := range mods {
		m(in)
	}
	return in
}

// ev is an audit event on a route, an hour old.
func ev(route, decision, kind string) audit.Event {
	svc, rt, _ := strings.Cut(route, "/")
	e := audit.Event{Time: testNow.Add(-time.Hour), Service: svc, Route: rt, Decision: decision, IdentityType: kind, Reasons: []string{"role_ok"}, Node: "gw-1", PolicyVersion: "v1"}
	if kind != "" {
		e.Identity = "t/" + kind
	}
	return e
}

func with(e audit.Event, f func(*audit.Event)) audit.Event { f(&e); return e }

func mfa(e *audit.Event)      { e.AuthMethods = []string{"pwd", "mfa"} }
func fido(e *audit.Event)     { e.AuthMethods = []string{"fido", "mfa"} }
func deviceOK(e *audit.Event) { e.Reasons = append(e.Reasons, "device_ok") }

// events gives the inputs a window holding these events.
func events(es ...audit.Event) func(*Inputs) {
	return func(in *Inputs) {
		in.Traffic = newTraffic(in.Now.Add(-in.Since), in.Now, 1000)
		in.TrafficNote = ""
		for i := range es {
			in.Traffic.add(&es[i])
		}
	}
}

// capabilities makes the listed keys supported, as when their features land.
func capabilities(paths ...string) func(*Inputs) {
	return func(in *Inputs) {
		in.Capability = func(p string) Capability {
			if slices.Contains(paths, p) {
				return Supported
			}
			return probe(p)
		}
	}
}

// without makes the listed keys unsupported, as in a version before their
// features landed.
func without(paths ...string) func(*Inputs) {
	return func(in *Inputs) {
		in.Capability = func(p string) Capability {
			if slices.Contains(paths, p) {
				return Unsupported
			}
			return probe(p)
		}
	}
}

func noRoutes(in *Inputs) { in.Routes = nil }
func noServices(in *Inputs) {
	in.Cfg.Services = nil
	in.Routes = nil
}

type checkCase struct {
	id, name string
	cfg      string
	mods     []func(*Inputs)
	want     Outcome
	contains string // in the summary
	needs    string // a configuration key this version may not have yet
}

func mods(m ...func(*Inputs)) []func(*Inputs) { return m }

// canProduce lists each check's outcomes; TestCheckCases holds a case
// for each.
var canProduce = map[string][]Outcome{
	"ID-01": {Pass, Fail, NotApplicable},
	"ID-02": {Pass, Partial, Fail},
	"ID-03": {Pass, Partial, Fail, NotApplicable},
	"ID-04": {Pass, Partial, Fail, Unknown},
	"ID-05": {Pass, Partial, NotAvailable},
	"ID-06": {Pass, Fail, Unknown},
	"ID-07": {Pass, Partial, Fail, NotApplicable},
	"ID-08": {Pass, Partial, Fail},
	"DV-01": {Pass, Fail, NotApplicable},
	"DV-02": {Pass, Partial, Fail, NotApplicable},
	"DV-03": {Pass, Partial, Fail},
	"DV-04": {Pass, Partial, Fail, Unknown},
	"NW-01": {Pass, Partial, Fail},
	"NW-02": {Pass, Partial, Fail, NotApplicable},
	"NW-03": {Pass, Partial, Fail, NotApplicable},
	"NW-04": {Pass, Fail, Unknown, NotApplicable},
	"NW-05": {Pass, Partial, NotApplicable},
	"NW-06": {Pass, Partial, Fail, NotApplicable},
	"AW-01": {Pass, Partial, Fail},
	"AW-02": {Pass, Fail, NotApplicable},
	"AW-03": {Pass, Partial, Fail, NotApplicable},
	"AW-04": {Pass, Partial, Fail, NotApplicable},
	"AW-05": {Pass, Partial, Fail},
	"AW-06": {Pass, Partial, Fail, NotApplicable},
	"AW-07": {Pass, Partial, Fail, NotApplicable},
	"AW-08": {Pass, Partial, Fail, NotApplicable, NotAvailable},
	"DA-01": {Pass, Fail, Unknown, NotApplicable},
	"DA-02": {Pass, Partial, Fail, NotApplicable},
	"DA-03": {Pass, Partial, Fail, Unknown, NotApplicable, NotAvailable},
	"DA-04": {Pass, Partial, Fail, NotApplicable},
	"DA-05": {Pass, Partial, Fail, NotApplicable, NotAvailable},
	"VA-01": {Pass, Fail},
	"VA-02": {Pass, Partial, Fail},
	"VA-03": {Pass, Partial, Fail, NotAvailable},
	"VA-04": {Pass, Fail, NotAvailable},
	"VA-05": {Unknown, NotAvailable},
	"AO-01": {Pass},
	"AO-02": {Pass, Fail},
	"AO-03": {Pass, Fail, NotApplicable},
	"AO-04": {Pass, Fail, NotAvailable},
	"GV-01": {Pass, Partial, NotApplicable},
	"GV-02": {Pass, Fail},
	"GV-03": {Pass, Partial, Fail, NotApplicable},
	"GV-04": {Pass, Fail, NotApplicable},
	"GV-05": {Pass, Partial, Unknown, NotApplicable},
	"GV-06": {Pass, Fail, NotAvailable},
}

const (
	withStore = "store: { driver: sqlite, dsn: a.db }\n"
	tlsOn     = "listen:\n  address: \"10.0.0.1:8443\"\n  tls: { cert_file: gw.pem, key_file: gw.key }\n"
	keyed     = withStore + "audit: { hmac_key: \"${secret:f/k}\" }\nsecrets:\n  providers: [ { name: f, type: file, dir: /s } ]\n"
	entra     = "identity:\n  providers: [ { name: corp, type: entra, tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47, client_id: 6f1d4c9e-0000-0000-0000-000000000000 } ]\n"
	device    = `device: { claims: { xms_compliant: ["true"] } }`
)

var checkCases = []checkCase{
	// Identity
	{id: "ID-01", name: "every route needs a caller", want: Pass},
	{id: "ID-01", name: "closed routes are counted", cfg: routes(readRoute, closedRoute), want: Pass, contains: "1 route has no allow rule"},
	{id: "ID-01", name: "regression: a request reached an upstream without identity", mods: mods(events(ev("s/read", "allow", ""))), want: Fail},
	{id: "ID-01", name: "no routes", mods: mods(noRoutes), want: NotApplicable},
	{id: "ID-02", name: "one provider", want: Pass},
	{id: "ID-02", name: "any tenant", cfg: "identity:\n  providers: [ { name: p, type: entra, tenant: organizations, allowed_tenants: [\"*\"], client_id: 6f1d4c9e-0000-0000-0000-000000000000 } ]\n", want: Partial},
	{id: "ID-02", name: "no provider", cfg: "identity: { providers: [] }\n", want: Fail},
	{id: "ID-03", name: "all sensitive routes step up", cfg: routes(readRoute, writeMFA), want: Pass},
	{id: "ID-03", name: "auth context counts", cfg: routes(`{ name: w, match: { methods: [DELETE], path: "/w" }, allow: { roles: [W], auth_context: [c1] } }`), want: Pass},
	{id: "ID-03", name: "mfa in every any_of branch counts", cfg: routes(`{ name: w, match: { path: "/w" }, allow: { any_of: [ { roles: [A], mfa: true }, { roles: [B], auth_context: [c1] } ] } }`), want: Pass},
	{id: "ID-03", name: "mfa in one any_of branch does not", cfg: routes(`{ name: w, match: { path: "/w" }, allow: { any_of: [ { roles: [A], mfa: true }, { roles: [B] } ] } }`), want: Fail},
	{id: "ID-03", name: "a when over amr counts", cfg: routes(`{ name: w, match: { path: "/w" }, allow: { roles: [A] }, when: '"mfa" in identity.amr' }`), want: Pass},
	{id: "ID-03", name: "some", cfg: routes(writeMFA, `{ name: w2, match: { methods: [PUT], path: "/w2" }, allow: { roles: [W] } }`), want: Partial},
	{id: "ID-03", name: "none", cfg: routes(writePlain), want: Fail},
	{id: "ID-03", name: "no sensitive routes", cfg: routes(readRoute), want: NotApplicable},
	{id: "ID-03", name: "a closed sensitive route needs no MFA", cfg: routes(readRoute, closedRoute), want: NotApplicable},
	{id: "ID-04", name: "no store", cfg: routes(writeMFA), want: Unknown},
	{id: "ID-04", name: "no user traffic on sensitive routes", cfg: routes(readRoute, writeMFA), mods: mods(events(ev("s/read", "allow", "user"), ev("s/write", "allow", "app"))), want: Unknown},
	{id: "ID-04", name: "all with MFA", cfg: routes(writeMFA), mods: mods(events(with(ev("s/write", "allow", "user"), mfa))), want: Pass},
	{id: "ID-04", name: "an acrs counts", cfg: routes(writeMFA), mods: mods(events(with(ev("s/write", "allow", "user"), func(e *audit.Event) { e.AuthContext = []string{"c1"} }))), want: Pass},
	{id: "ID-04", name: "some", cfg: routes(writePlain), mods: mods(events(with(ev("s/write", "allow", "user"), mfa), ev("s/write", "would_deny", "user"))), want: Partial, contains: "50%"},
	{id: "ID-04", name: "none", cfg: routes(writePlain), mods: mods(events(ev("s/write", "allow", "user"))), want: Fail},
	{id: "ID-04", name: "denied requests do not count", cfg: routes(writePlain), mods: mods(events(with(ev("s/write", "allow", "user"), mfa), ev("s/write", "deny", "user"))), want: Pass},
	{id: "ID-05", name: "API keys not in this version", mods: mods(without("identity.api_keys")), want: NotAvailable},
	{id: "ID-05", name: "supported but off", mods: mods(capabilities("identity.api_keys")), want: Pass, contains: "not accepted"},
	{id: "ID-05", name: "on, no store", mods: mods(capabilities("identity.api_keys"), func(in *Inputs) { in.Cfg.Identity.APIKeys = &config.APIKeys{Enabled: true} }), want: Pass, contains: "not known"},
	{id: "ID-05", name: "on, unused", mods: mods(capabilities("identity.api_keys"), func(in *Inputs) { in.Cfg.Identity.APIKeys = &config.APIKeys{Enabled: true} }, events(ev("s/read", "allow", "user"))), want: Pass, contains: "none was used"},
	{id: "ID-05", name: "on, in use", mods: mods(capabilities("identity.api_keys"), func(in *Inputs) { in.Cfg.Identity.APIKeys = &config.APIKeys{Enabled: true} }, events(ev("s/read", "allow", "user"), ev("s/read", "allow", "api_key"))), want: Partial},
	{id: "ID-06", name: "no store", want: Unknown},
	{id: "ID-06", name: "lifetimes not recorded", mods: mods(events(ev("s/read", "allow", "app"))), want: Unknown},
	{id: "ID-06", name: "short tokens", mods: mods(events(with(ev("s/read", "allow", "user"), func(e *audit.Event) { e.TokenLifetime = 3600 }))), want: Pass},
	{id: "ID-06", name: "exactly 24h is not long-lived", mods: mods(events(with(ev("s/read", "allow", "user"), func(e *audit.Event) { e.TokenLifetime = 86400 }))), want: Pass},
	{id: "ID-06", name: "long-lived", mods: mods(events(with(ev("s/read", "allow", "app"), func(e *audit.Event) { e.TokenLifetime = 86401 }))), want: Fail, contains: "1 caller"},
	{id: "ID-07", name: "auth context everywhere", cfg: routes(`{ name: w, match: { methods: [POST], path: "/w" }, allow: { roles: [W], auth_context: [c1] } }`), want: Pass},
	{id: "ID-07", name: "some routes", cfg: routes(`{ name: w, match: { methods: [POST], path: "/w" }, allow: { roles: [W], auth_context: [c1] } }`, writeMFA), want: Partial},
	{id: "ID-07", name: "seen in traffic, not required", cfg: routes(writeMFA), mods: mods(events(with(ev("s/write", "allow", "user"), fido))), want: Partial},
	{id: "ID-07", name: "MFA is not phishing-resistant", cfg: routes(writeMFA), mods: mods(events(with(ev("s/write", "allow", "user"), mfa))), want: Fail},
	{id: "ID-07", name: "no sensitive routes", cfg: routes(readRoute), want: NotApplicable},
	{id: "ID-08", name: "Entra ID and a step-up rule", cfg: entra + routes(writeMFA), want: Pass},
	{id: "ID-08", name: "step-up in an any_of branch counts", cfg: entra + routes(`{ name: w, match: { path: "/w" }, allow: { any_of: [ { roles: [A], mfa: true }, { roles: [B] } ] } }`), want: Pass},
	{id: "ID-08", name: "no Entra ID provider", cfg: routes(writeMFA), want: Partial},
	{id: "ID-08", name: "no step-up rule", cfg: entra + routes(writePlain), want: Fail},

	// Devices
	{id: "DV-01", name: "a route checks devices", cfg: routes(readRoute, `{ name: d, match: { path: "/d" }, allow: { roles: [R], `+device+` } }`), want: Pass},
	{id: "DV-01", name: "in a nested rule", cfg: routes(`{ name: d, match: { path: "/d" }, allow: { any_of: [ { roles: [R], ` + device + ` }, { roles: [S] } ] } }`), want: Pass},
	{id: "DV-01", name: "none", want: Fail},
	{id: "DV-01", name: "no open routes", cfg: routes(closedRoute), want: NotApplicable},
	{id: "DV-02", name: "every sensitive route", cfg: routes(readRoute, `{ name: w, match: { methods: [POST], path: "/w" }, allow: { roles: [W], `+device+` } }`), want: Pass},
	{id: "DV-02", name: "some", cfg: routes(writePlain, `{ name: w2, match: { methods: [POST], path: "/w2" }, allow: { roles: [W], `+device+` } }`), want: Partial},
	{id: "DV-02", name: "none", cfg: routes(writePlain), want: Fail},
	{id: "DV-02", name: "no sensitive routes", want: NotApplicable},
	{id: "DV-03", name: "client certificates required", cfg: "listen:\n  address: \"10.0.0.1:8443\"\n  tls: { cert_file: gw.pem, key_file: gw.key, client_ca_file: ca.pem, client_auth: require }\n", want: Pass},
	{id: "DV-03", name: "workload identity when it lands", mods: mods(capabilities("identity.mtls"), func(in *Inputs) { in.Cfg.Identity.MTLS = &config.MTLS{TrustBundle: "ca.pem"} }), want: Pass, contains: "identity.mtls"},
	{id: "DV-03", name: "optional", cfg: "listen:\n  address: \"10.0.0.1:8443\"\n  tls: { cert_file: gw.pem, key_file: gw.key, client_ca_file: ca.pem, client_auth: optional }\n", want: Partial},
	{id: "DV-03", name: "none", cfg: tlsOn, want: Fail},
	{id: "DV-04", name: "no store", want: Unknown},
	{id: "DV-04", name: "no user traffic", mods: mods(events(ev("s/read", "allow", "app"))), want: Unknown},
	{id: "DV-04", name: "all checked", mods: mods(events(with(ev("s/read", "allow", "user"), deviceOK))), want: Pass},
	{id: "DV-04", name: "some", mods: mods(events(with(ev("s/read", "allow", "user"), deviceOK), ev("s/read", "allow", "user"))), want: Partial},
	{id: "DV-04", name: "none", mods: mods(events(ev("s/read", "allow", "user"))), want: Fail},

	// Networks
	{id: "NW-01", name: "TLS", cfg: tlsOn, want: Pass},
	{id: "NW-01", name: "plain HTTP on loopback", cfg: "listen: { address: \"127.0.0.1:8080\" }\n", want: Partial},
	{id: "NW-01", name: "plain HTTP on the network", cfg: "listen: { address: \":8080\" }\n", want: Fail},
	{id: "NW-02", name: "gateway-wide limit", cfg: "limits: { rate_limit: { limit: 10, per: 1s } }\n", want: Pass},
	{id: "NW-02", name: "service limit", cfg: "services:\n  - name: s\n    upstream: https://s.internal\n    rate_limit: { limit: 10, per: 1s }\n    routes: [ " + readRoute + " ]\n", want: Pass},
	{id: "NW-02", name: "closed routes need none", cfg: routes(`{ name: r, match: { path: "/r" }, allow: { roles: [R] }, rate_limit: { limit: 10, per: 1s } }`, closedRoute), want: Pass},
	{id: "NW-02", name: "some", cfg: routes(readRoute, `{ name: r2, match: { path: "/r2" }, allow: { roles: [R] }, rate_limit: { limit: 10, per: 1s } }`), want: Partial},
	{id: "NW-02", name: "none", want: Fail},
	{id: "NW-02", name: "no open routes", cfg: routes(closedRoute), want: NotApplicable},
	{id: "NW-03", name: "https", want: Pass},
	{id: "NW-03", name: "http on loopback is not counted", cfg: svc("http://127.0.0.1:8081", readRoute), want: NotApplicable},
	{id: "NW-03", name: "no services", mods: mods(noServices), want: NotApplicable},
	{id: "NW-03", name: "some", cfg: "services:\n  - name: a\n    upstream: https://a.internal\n    routes: [ " + readRoute + " ]\n  - name: b\n    upstream: http://b.internal\n    hosts: [b.example]\n    routes: [ " + readRoute + " ]\n", want: Partial},
	{id: "NW-03", name: "none", cfg: svc("http://s.internal", readRoute), want: Fail},
	{id: "NW-04", name: "no certificate files", want: NotApplicable},
	{id: "NW-04", name: "valid", cfg: tlsOn, mods: mods(certAt("gw.pem", 90)), want: Pass},
	{id: "NW-04", name: "expires within 30 days", cfg: tlsOn, mods: mods(certAt("gw.pem", 29)), want: Fail, contains: "expires within 30 days"},
	{id: "NW-04", name: "expired", cfg: tlsOn, mods: mods(certAt("gw.pem", -1)), want: Fail},
	{id: "NW-04", name: "unreadable", cfg: tlsOn, want: Unknown},
	{id: "NW-05", name: "own upstreams", want: Pass},
	{id: "NW-05", name: "no services", mods: mods(noServices), want: NotApplicable},
	{id: "NW-05", name: "shared upstream", cfg: "services:\n  - name: a\n    upstream: https://x.internal\n    routes: [ " + readRoute + " ]\n  - name: b\n    upstream: https://x.internal/b\n    hosts: [b.example]\n    routes: [ " + readRoute + " ]\n", want: Partial},
	{id: "NW-05", name: "catch-all route", cfg: routes(`{ name: all, match: { path: "/**" }, allow: { roles: [R] } }`), want: Partial},
	{id: "NW-05", name: "a catch-all that denies is fine", cfg: routes(readRoute, `{ name: rest, match: { path: "/**" } }`), want: Pass},
	{id: "NW-06", name: "client certificate", cfg: "services:\n  - name: s\n    upstream: https://s.internal\n    upstream_tls: { cert_file: c.pem, key_file: c.key }\n    routes: [ " + readRoute + " ]\n", want: Pass},
	{id: "NW-06", name: "some", cfg: "services:\n  - name: a\n    upstream: https://a.internal\n    upstream_tls: { cert_file: c.pem, key_file: c.key }\n    routes: [ " + readRoute + " ]\n  - name: b\n    upstream: https://b.internal\n    hosts: [b.example]\n    routes: [ " + readRoute + " ]\n", want: Partial},
	{id: "NW-06", name: "none", want: Fail},
	{id: "NW-06", name: "all on loopback", cfg: svc("http://localhost:8081", readRoute), want: NotApplicable},

	// Applications & Workloads
	{id: "AW-01", name: "no default rule", cfg: routes(readRoute, closedRoute), want: Pass},
	{id: "AW-01", name: "a default naming callers", cfg: "policy: { allow: { roles: [R] } }\n", want: Partial},
	{id: "AW-01", name: "a default for any caller", cfg: "policy: { allow: { authenticated: true } }\n", want: Fail},
	{id: "AW-02", name: "per request", want: Pass},
	{id: "AW-02", name: "with reasons in traffic", mods: mods(events(ev("s/read", "allow", "user"))), want: Pass},
	{id: "AW-02", name: "regression: an allow without reasons", mods: mods(events(with(ev("s/read", "allow", "user"), func(e *audit.Event) { e.Reasons = nil }))), want: Fail},
	{id: "AW-02", name: "no routes", mods: mods(noRoutes), want: NotApplicable},
	{id: "AW-03", name: "tokens kept", want: Pass},
	{id: "AW-03", name: "some forward", cfg: "services:\n  - name: a\n    upstream: https://a.internal\n    forward_authorization: true\n    routes: [ " + readRoute + " ]\n  - name: b\n    upstream: https://b.internal\n    hosts: [b.example]\n    routes: [ " + readRoute + " ]\n", want: Partial},
	{id: "AW-03", name: "all forward", cfg: "services:\n  - name: a\n    upstream: https://a.internal\n    forward_authorization: true\n    routes: [ " + readRoute + " ]\n", want: Fail},
	{id: "AW-03", name: "no services", mods: mods(noServices), want: NotApplicable},
	{id: "AW-04", name: "every route names callers", want: Pass},
	{id: "AW-04", name: "a when naming the caller is not broad", cfg: routes(`{ name: r, match: { path: "/r" }, allow: { authenticated: true }, when: 'identity.hasRole("R")' }`), want: Pass},
	{id: "AW-04", name: "tenants alone are broad", cfg: routes(readRoute, `{ name: t, match: { path: "/t" }, allow: { tenants: [t1] } }`), want: Partial},
	{id: "AW-04", name: "an any_of branch open to anyone is broad", cfg: routes(`{ name: r, match: { path: "/r" }, allow: { any_of: [ { roles: [R] }, { authenticated: true } ] } }`), want: Fail},
	{id: "AW-04", name: "inherited from the service", cfg: "services:\n  - name: s\n    upstream: https://s.internal\n    allow: { authenticated: true }\n    routes: [ { name: r, match: { path: \"/r\" } } ]\n", want: Fail},
	{id: "AW-04", name: "no open routes", cfg: routes(closedRoute), want: NotApplicable},
	{id: "AW-05", name: "all enforce", want: Pass},
	{id: "AW-05", name: "report-only, no would-deny seen", cfg: routes(`{ name: r, match: { path: "/r" }, allow: { roles: [R] }, mode: report_only }`), want: Partial, contains: "only reports"},
	{id: "AW-05", name: "report-only for a week", cfg: routes(`{ name: r, match: { path: "/r" }, allow: { roles: [R] }, mode: report_only }`), mods: mods(events(with(ev("s/r", "would_deny", "user"), func(e *audit.Event) { e.Time = testNow.Add(-days(7)) }))), want: Partial},
	{id: "AW-05", name: "report-only for three weeks", cfg: "policy: { mode: report_only }\n" + routes(`{ name: r, match: { path: "/r" }, allow: { roles: [R] } }`), mods: mods(events(with(ev("s/r", "would_deny", "user"), func(e *audit.Event) { e.Time = testNow.Add(-days(21)) }))), want: Fail},
	{id: "AW-06", name: "bodies checked", cfg: routes(`{ name: w, match: { methods: [POST], path: "/w" }, allow: { roles: [W] }, guard: { content_types: [application/json] } }`), want: Pass},
	{id: "AW-06", name: "some", cfg: routes(writePlain, `{ name: w2, match: { methods: [PUT], path: "/w2" }, allow: { roles: [W] }, guard: { json_schema: s.json } }`), want: Partial},
	{id: "AW-06", name: "a guard without type or schema does not count", cfg: routes(`{ name: w, match: { methods: [POST], path: "/w" }, allow: { roles: [W] }, guard: { max_body_bytes: 10 } }`), want: Fail},
	{id: "AW-06", name: "no route takes a body", want: NotApplicable},
	{id: "AW-07", name: "context on sensitive routes", cfg: routes(`{ name: w, match: { methods: [POST], path: "/w" }, allow: { roles: [W], ip: [10.0.0.0/8] } }`, `{ name: w2, match: { methods: [PUT], path: "/w2" }, allow: { roles: [W] }, when: 'request.ip in cidr("10.0.0.0/8")' }`), want: Pass},
	{id: "AW-07", name: "some", cfg: routes(writePlain, `{ name: w2, match: { methods: [PUT], path: "/w2" }, allow: { roles: [W], time: [ { from: "08:00", to: "18:00" } ] } }`), want: Partial},
	{id: "AW-07", name: "identity alone", cfg: routes(writePlain), want: Fail},
	{id: "AW-07", name: "no sensitive routes", want: NotApplicable},
	{id: "AW-08", name: "not in this version", mods: mods(without("services.inject")), want: NotAvailable},
	{id: "AW-08", name: "every service injects", mods: mods(capabilities("services.inject"), setOn(0, -1, "inject")), want: Pass},
	{id: "AW-08", name: "some", cfg: "services:\n  - name: a\n    upstream: https://a.internal\n    routes: [ " + readRoute + " ]\n  - name: b\n    upstream: https://b.internal\n    hosts: [b.example]\n    routes: [ " + readRoute + " ]\n", mods: mods(capabilities("services.inject"), setOn(0, -1, "inject")), want: Partial},
	{id: "AW-08", name: "none", mods: mods(capabilities("services.inject")), want: Fail},
	{id: "AW-08", name: "no services", mods: mods(capabilities("services.inject"), noServices), want: NotApplicable},

	// Data
	{id: "DA-01", name: "references only", cfg: keyed, want: Pass},
	{id: "DA-01", name: "env counts as a reference", cfg: withStore + "audit: { hmac_key: \"${env:K}\" }\n", want: Pass},
	{id: "DA-01", name: "inline key", cfg: withStore + "audit: { hmac_key: plain }\n", want: Fail},
	{id: "DA-01", name: "a password in the store's URL", cfg: "store: { driver: postgres, dsn: \"postgres://u:hunter2@db/z\" }\n", want: Fail},
	{id: "DA-01", name: "no secrets", want: NotApplicable},
	{id: "DA-01", name: "file unreadable", mods: mods(func(in *Inputs) { in.SecretsErr = "permission denied" }), want: Unknown},
	{id: "DA-02", name: "both legs", cfg: tlsOn, want: Pass},
	{id: "DA-02", name: "client leg only", cfg: tlsOn + svc("http://s.internal", readRoute), want: Partial},
	{id: "DA-02", name: "neither", cfg: svc("http://s.internal", readRoute), want: Fail},
	{id: "DA-02", name: "no services", mods: mods(noServices), want: NotApplicable},
	{id: "DA-03", name: "vault not in this version", cfg: keyed, mods: mods(without("secrets.providers.type=azure_keyvault")), want: NotAvailable},
	{id: "DA-03", name: "file unreadable", mods: mods(func(in *Inputs) { in.SecretsErr = "permission denied" }), want: Unknown},
	{id: "DA-03", name: "no secrets", want: NotApplicable},
	{id: "DA-03", name: "from a vault", cfg: keyed, mods: mods(capabilities("secrets.providers.type=azure_keyvault"), vaultProvider), want: Pass},
	{id: "DA-03", name: "some from a vault", cfg: keyed, mods: mods(capabilities("secrets.providers.type=azure_keyvault"), vaultProvider, func(in *Inputs) {
		in.Secrets = append(in.Secrets, SecretValue{Path: "services[0].inject.headers.x-key", Line: 9, Source: "env"})
	}), want: Partial},
	{id: "DA-03", name: "none from a vault", cfg: keyed, mods: mods(capabilities("secrets.providers.type=azure_keyvault")), want: Fail},
	{id: "DA-04", name: "bytes quota on the service", cfg: "services:\n  - name: s\n    upstream: https://s.internal\n    quota: { bytes: 1000000 }\n    routes: [ " + readRoute + " ]\n", want: Pass},
	{id: "DA-04", name: "a calls quota does not bound data", cfg: routes(`{ name: r, match: { path: "/r" }, allow: { roles: [R] }, quota: { calls: 100 } }`), want: Fail},
	{id: "DA-04", name: "some", cfg: routes(readRoute, `{ name: r2, match: { path: "/r2" }, allow: { roles: [R] }, quota: { bytes: 1000 } }`), want: Partial},
	{id: "DA-04", name: "write-only routes return no data", cfg: routes(writePlain), want: NotApplicable},
	{id: "DA-05", name: "not in this version", mods: mods(without("services.routes.dlp")), want: NotAvailable},
	{id: "DA-05", name: "masked", mods: mods(capabilities("services.routes.dlp"), setOn(0, 0, "dlp")), want: Pass},
	{id: "DA-05", name: "some", cfg: routes(readRoute, `{ name: r2, match: { path: "/r2" }, allow: { roles: [R] } }`), mods: mods(capabilities("services.routes.dlp"), setOn(0, 0, "dlp")), want: Partial},
	{id: "DA-05", name: "none", mods: mods(capabilities("services.routes.dlp")), want: Fail},
	{id: "DA-05", name: "no route returns data", cfg: routes(writePlain), mods: mods(capabilities("services.routes.dlp")), want: NotApplicable},

	// Visibility & Analytics
	{id: "VA-01", name: "store", cfg: withStore, want: Pass},
	{id: "VA-01", name: "no store", want: Fail},
	{id: "VA-02", name: "keyed chain", cfg: keyed, want: Pass},
	{id: "VA-02", name: "plain chain", cfg: withStore, want: Partial},
	{id: "VA-02", name: "no store", want: Fail},
	{id: "VA-03", name: "exporters not in this version", want: NotAvailable, needs: "!audit.exporters"},
	{id: "VA-03", name: "a SIEM exporter", cfg: "audit:\n  exporters: [ { type: syslog, network: tcp, address: \"siem:514\" } ]\n" + withStore, want: Pass, needs: "audit.exporters"},
	{id: "VA-03", name: "local files only", cfg: "audit:\n  exporters: [ { type: jsonl, path: events.jsonl } ]\n" + withStore, want: Partial, needs: "audit.exporters"},
	{id: "VA-03", name: "no exporter", mods: mods(capabilities("audit.exporters")), want: Fail},
	{id: "VA-04", name: "not in this version", want: NotAvailable, needs: "!detect"},
	{id: "VA-04", name: "configured", want: Pass, needs: "detect", mods: mods(setKey("detect"))},
	{id: "VA-04", name: "not configured", mods: mods(capabilities("detect")), want: Fail},
	{id: "VA-05", name: "no store", want: Unknown},
	{id: "VA-05", name: "alerts counted", mods: mods(events(), func(in *Inputs) { in.Traffic.Alerts["audit_unavailable"] = 2 }), want: NotAvailable},

	// Automation & Orchestration
	{id: "AO-01", name: "built in", mods: mods(events(ev("s/read", "allow", "user"))), want: Pass},
	{id: "AO-02", name: "in git", mods: mods(func(in *Inputs) { in.Repo = "../.git" }), want: Pass},
	{id: "AO-02", name: "not in git", want: Fail},
	{id: "AO-03", name: "redis", cfg: "state: { driver: redis, url: \"redis://r:6379/0\" }\n", want: Pass},
	{id: "AO-03", name: "one node", mods: mods(events(ev("s/read", "allow", "user"))), want: NotApplicable},
	{id: "AO-03", name: "two nodes, local limits", mods: mods(events(ev("s/read", "allow", "user"), with(ev("s/read", "allow", "user"), func(e *audit.Event) { e.Node = "gw-2" }))), want: Fail},
	{id: "AO-04", name: "not in this version", want: NotAvailable, needs: "!detect.responses"},
	{id: "AO-04", name: "configured", want: Pass, needs: "detect.responses", mods: mods(setKey("detect.responses"))},
	{id: "AO-04", name: "not configured", mods: mods(capabilities("detect.responses")), want: Fail},

	// Governance
	{id: "GV-01", name: "retention", cfg: withStore + "audit: { retention: 90d }\n", want: Pass, contains: "90d"},
	{id: "GV-01", name: "kept forever", cfg: withStore, want: Partial},
	{id: "GV-01", name: "no store", want: NotApplicable},
	{id: "GV-02", name: "passing", mods: mods(tests(TestFile{Name: "gw_test.yaml", Cases: 3})), want: Pass},
	{id: "GV-02", name: "failing", mods: mods(tests(TestFile{Name: "gw_test.yaml", Cases: 3, Failed: 1})), want: Fail, contains: "fail"},
	{id: "GV-02", name: "unreadable file", mods: mods(tests(TestFile{Name: "gw_test.yaml", Err: "no tests"})), want: Fail},
	{id: "GV-02", name: "none", want: Fail, contains: "No policy tests"},
	{id: "GV-03", name: "all covered", mods: mods(tests(TestFile{Name: "gw_test.yaml", Cases: 1}), covered("s/read")), want: Pass},
	{id: "GV-03", name: "some", cfg: routes(readRoute, writePlain), mods: mods(tests(TestFile{Name: "gw_test.yaml", Cases: 1}), covered("s/read")), want: Partial},
	{id: "GV-03", name: "no tests", want: Fail},
	{id: "GV-03", name: "no routes", mods: mods(noRoutes), want: NotApplicable},
	{id: "GV-04", name: "hourly", want: Pass},
	{id: "GV-04", name: "every two days", cfg: "identity:\n  providers: [ { name: corp, type: oidc, issuer: \"https://idp.example\", audiences: [api], jwks_refresh: 48h } ]\n", want: Fail},
	{id: "GV-04", name: "no providers", cfg: "identity: { providers: [] }\n", want: NotApplicable},
	{id: "GV-05", name: "no store", want: Unknown},
	{id: "GV-05", name: "no traffic", mods: mods(events()), want: Unknown},
	{id: "GV-05", name: "all used", mods: mods(events(ev("s/read", "allow", "user"))), want: Pass},
	{id: "GV-05", name: "a route only denied", cfg: routes(readRoute, writePlain), mods: mods(events(ev("s/read", "allow", "user"), ev("s/write", "deny", "user"))), want: Partial},
	{id: "GV-05", name: "no open routes", cfg: routes(closedRoute), mods: mods(events(ev("s/admin", "deny", "user"))), want: NotApplicable},
	{id: "GV-06", name: "not in this version", want: NotAvailable, needs: "!access"},
	{id: "GV-06", name: "configured", want: Pass, needs: "access", mods: mods(setKey("access"))},
	{id: "GV-06", name: "not configured", mods: mods(capabilities("access")), want: Fail},
}

// certAt writes a certificate expiring in n days into the configuration's
// directory.
func certAt(name string, n int) func(*Inputs) {
	return func(in *Inputs) {
		writeCert(nopTB{}, filepath.Join(in.Dir, name), "", "gw", in.Now.Add(days(n)))
		in.Certs = nil
		for _, f := range certFiles(in.Cfg) {
			in.Certs = append(in.Certs, readCert(in.Dir, f[0], f[1]))
		}
	}
}

func vaultProvider(in *Inputs) {
	for i := range in.Secrets {
		in.Secrets[i].Source = "vault"
	}
}

func tests(files ...TestFile) func(*Inputs) {
	return func(in *Inputs) { in.Tests = &PolicyTests{Files: files, Covered: map[string]bool{}} }
}

func covered(routes ...string) func(*Inputs) {
	return func(in *Inputs) {
		for _, r := range routes {
			in.Tests.Covered[r] = true
		}
	}
}

// setOn sets a key of service i (or of its route j when j >= 0) to a new,
// empty value, through the key's name: these features' types are still
// being built.
func setOn(i, j int, key string) func(*Inputs) {
	return func(in *Inputs) {
		var v any = &in.Cfg.Services[i]
		if j >= 0 {
			v = &in.Cfg.Services[i].Routes[j]
		}
		f, ok := lookup(v, key)
		if !ok || f.Kind() != reflect.Pointer {
			panic("no pointer key " + key)
		}
		f.Set(reflect.New(f.Type().Elem()))
	}
}

// setKey sets a key a later version has, to a non-zero value; the case
// runs only when the key exists.
func setKey(path string) func(*Inputs) {
	return func(in *Inputs) {
		v, ok := lookup(in.Cfg, path)
		if !ok || !v.CanSet() {
			return
		}
		switch v.Kind() {
		case reflect.Pointer:
			v.Set(reflect.New(v.Type().Elem()))
		case reflect.Slice:
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		case reflect.Bool:
			v.SetBool(true)
		}
	}
}

func TestCheckCases(t *testing.T) {
	byID := map[string]check{}
	for _, c := range AllChecks() {
		byID[c.ID] = c
	}
	for _, tc := range checkCases {
		c, ok := byID[tc.id]
		if !ok {
			t.Fatalf("case %q: no check %s", tc.name, tc.id)
		}
		t.Run(tc.id+"/"+tc.name, func(t *testing.T) {
			if tc.needs != "" {
				needs, want := strings.TrimPrefix(tc.needs, "!"), tc.needs[0] != '!'
				if (probe(needs) == Supported) != want {
					t.Skipf("this version %s %s", map[bool]string{true: "lacks", false: "has"}[want], needs)
				}
			}
			in := mk(t, tc.cfg, tc.mods...)
			got := c.Run(in)
			if got.Outcome != tc.want {
				t.Fatalf("got %s (%s), want %s", got.Outcome, got.Summary, tc.want)
			}
			if tc.contains != "" && !strings.Contains(got.Summary, tc.contains) {
				t.Errorf("summary: got %q, want it to contain %q", got.Summary, tc.contains)
			}
			if got.Summary == "" {
				t.Error("got no summary")
			}
			if got.Outcome.Blocks() && got.Next == nil {
				t.Errorf("a %s without a next step", got.Outcome)
			}
		})
	}
}

// TestEveryOutcomeTested: every check has a case for each outcome it can
// produce, and produces only those.
func TestEveryOutcomeTested(t *testing.T) {
	seen := map[string][]Outcome{}
	for _, tc := range checkCases {
		if !slices.Contains(seen[tc.id], tc.want) {
			seen[tc.id] = append(seen[tc.id], tc.want)
		}
		if !slices.Contains(canProduce[tc.id], tc.want) {
			t.Errorf("%s: case %q wants %s, which canProduce does not list", tc.id, tc.name, tc.want)
		}
	}
	for _, c := range AllChecks() {
		want, ok := canProduce[c.ID]
		if !ok {
			t.Errorf("%s: not in canProduce", c.ID)
			continue
		}
		for _, o := range want {
			if !slices.Contains(seen[c.ID], o) {
				t.Errorf("%s: no case for outcome %s", c.ID, o)
			}
		}
	}
}

func TestChecksWellFormed(t *testing.T) {
	ids := map[string]bool{}
	perPillar := map[Pillar]int{}
	for _, c := range AllChecks() {
		if ids[c.ID] {
			t.Errorf("%s: duplicate id", c.ID)
		}
		ids[c.ID] = true
		perPillar[c.Pillar]++
		if c.Stage < Initial || c.Stage > Optimal {
			t.Errorf("%s: supports %s, want Initial, Advanced or Optimal", c.ID, c.Stage)
		}
		if c.Title == "" || c.Function == "" || c.Run == nil {
			t.Errorf("%s: incomplete", c.ID)
		}
	}
	for _, p := range Pillars {
		if perPillar[p.ID] == 0 {
			t.Errorf("%s: no checks", p.Name)
		}
	}
}

// nopTB stands for a test where there is none; a failure panics.
type nopTB struct{ testing.TB }

func (nopTB) Helper()           {}
func (nopTB) Fatal(args ...any) { panic(args) }
