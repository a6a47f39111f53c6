package config

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fakeSecrets resolves from a map; hand-written fake for the loader tests.
type fakeSecrets map[string]string

func (f fakeSecrets) Resolve(provider, name string) (string, error) {
	v, ok := f[provider+"/"+name]
	if !ok {
		return "", errors.New("not found")
	}
	return v, nil
}

func testOptions() Options {
	return Options{
		Secrets: func([]SecretProvider) (SecretResolver, error) {
			return fakeSecrets{"files/role": "Orders.Special", "env/OTHER": "carol"}, nil
		},
		LookupEnv: func(k string) (string, bool) {
			v, ok := map[string]string{"ZT_TEST_SUBJECT": "bob", "EMPTY": ""}[k]
			return v, ok
		},
	}
}

func TestLoadValid(t *testing.T) {
	c, err := Load("testdata/valid.yaml", testOptions())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	s := c.Services[0]
	if got, want := s.Timeouts.Dial.D(), 2*time.Second; got != want {
		t.Errorf("dial timeout: got %v, want %v", got, want)
	}
	if got, want := s.Timeouts.Overall.D(), 60*time.Second; got != want {
		t.Errorf("overall timeout default: got %v, want %v", got, want)
	}
	if got, want := c.Identity.Providers[0].Algorithms, []string{"RS256", "PS256", "ES256", "EdDSA"}; !cmp.Equal(got, want) {
		t.Errorf("default algorithms: got %v, want %v", got, want)
	}
	if got, want := s.Routes[2].Allow.Roles, []string{"Orders.Special"}; !cmp.Equal(got, want) {
		t.Errorf("secret reference: got %v, want %v", got, want)
	}
	if got, want := s.Routes[2].Allow.Subjects, []string{"bob", "carol"}; !cmp.Equal(got, want) {
		t.Errorf("env and secret references: got %v, want %v", got, want)
	}
	if got, want := s.Routes[1].Mode, "report_only"; got != want {
		t.Errorf("mode: got %q, want %q", got, want)
	}
	if got, want := c.PosOf("services[0].routes[1].match.path"), (Pos{Line: 25, Column: 54}); got != want {
		t.Errorf("position: got %v, want %v", got, want)
	}
	if len(c.Hash) != 12 {
		t.Errorf("hash: got %q, want 12 hex digits", c.Hash)
	}
}

// base is a minimal valid configuration that the error rows modify.
const base = `listen: { address: ":8443" }
identity:
  providers:
    - { name: p, type: oidc, issuer: "https://idp.example", audiences: [api] }
services:
  - name: orders
    upstream: http://127.0.0.1:8080
    routes:
      - name: r1
        match: { methods: [GET], path: "/orders/**" }
        allow: { roles: [Orders.Read] }
`

// withEntra is base with an entra provider instead of the oidc one, in
// which from is replaced by to.
func withEntra(from, to string) string {
	p := strings.Replace("{ name: p, type: entra, tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47, client_id: 6f1d4c9e-0000-0000-0000-000000000000 }", from, to, 1)
	return strings.Replace(base, `{ name: p, type: oidc, issuer: "https://idp.example", audiences: [api] }`, p, 1)
}

// withMTLS is base with TLS on the listener and identity.mtls, in which
// from is replaced by to.
func withMTLS(from, to string) string {
	c := strings.Replace(base, `listen: { address: ":8443" }`, `listen: { address: ":8443", tls: { cert_file: gw.pem, key_file: gw.key, client_auth: optional } }`, 1)
	c = strings.Replace(c, "services:", "  mtls: { trust_bundle: clients.pem, trust_domains: [prod.example] }\nservices:", 1)
	return strings.Replace(c, from, to, 1)
}

// withInject is base with the service's inject set to the flow mapping
// body in (line 8).
func withInject(in string) string {
	return strings.Replace(base, "    routes:", "    inject: { "+in+" }\n    routes:", 1)
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error, in order
	}{
		{"unknown top-level key", base + "listn: {}\n", []string{"x.yaml:12:1: listn: unknown key \"listn\""}},
		{"unknown nested key", strings.Replace(base, "path:", "paht:", 1), []string{"x.yaml:10:34: services[0].routes[0].match.paht: unknown key", "x.yaml:10:16: services[0].routes[0].match: missing required key \"path\""}},
		{"wrong type string", strings.Replace(base, `upstream: http://127.0.0.1:8080`, "upstream: 8080", 1), []string{"x.yaml:7:15: services[0].upstream: expected a string, got integer 8080"}},
		{"wrong type list", strings.Replace(base, "methods: [GET]", "methods: GET", 1), []string{"services[0].routes[0].match.methods: expected a list"}},
		{"bad duration", base + "  # x\n", nil},
		{"bad duration value", strings.Replace(base, "listen: { address: \":8443\" }", "listen: { address: \":8443\", read_header_timeout: 10 }", 1), []string{"x.yaml:1:50: listen.read_header_timeout: expected a duration"}},
		{"bad duration unit", strings.Replace(base, "listen: { address: \":8443\" }", "listen: { address: \":8443\", idle_timeout: 5x }", 1), []string{"listen.idle_timeout: bad duration \"5x\""}},
		{"negative duration", strings.Replace(base, "listen: { address: \":8443\" }", "listen: { address: \":8443\", idle_timeout: -5s }", 1), []string{"must not be negative"}},
		{"duplicate route name", base + "      - name: r1\n        match: { methods: [POST], path: \"/orders/**\" }\n", []string{"x.yaml:12:15: services[0].routes[1].name: duplicate route name \"r1\""}},
		{"overlapping routes", base + "      - name: r2\n        match: { methods: [GET, POST], path: \"/orders/**\" }\n", []string{"x.yaml:13:16: services[0].routes[1].match: route \"orders/r2\" can never match GET /orders/**: route \"orders/r1\" at line 9"}},
		{"same shape other param names", strings.Replace(base, "/orders/**", "/orders/{id}", 1) + "      - name: r2\n        match: { methods: [GET], path: \"/orders/{name}\" }\n", []string{"can never match GET"}},
		{"duplicate key", base + "listen: {}\n", []string{"x.yaml:12:1: listen: duplicate key"}},
		{"enum", strings.Replace(base, "allow: { roles: [Orders.Read] }", "mode: enforced", 1), []string{"services[0].routes[0].mode: \"enforced\" is not one of: enforce, report_only"}},
		{"alg none", strings.Replace(base, "audiences: [api]", "audiences: [api], algorithms: [none]", 1), []string{"identity.providers[0].algorithms[0]: algorithm \"none\" not allowed"}},
		{"alg HS256", strings.Replace(base, "audiences: [api]", "audiences: [api], algorithms: [HS256]", 1), []string{"algorithm \"HS256\" not allowed"}},
		{"no audiences", strings.Replace(base, ", audiences: [api]", "", 1), []string{"identity.providers[0]: missing \"audiences\""}},
		{"http issuer", strings.Replace(base, "https://idp.example", "http://idp.example", 1), []string{"must use https"}},
		{"bad upstream", strings.Replace(base, "http://127.0.0.1:8080", "ftp://x", 1), []string{"services[0].upstream: bad upstream"}},
		{"upstream with credentials", strings.Replace(base, "http://127.0.0.1:8080", "http://u:p@x", 1), []string{"must not carry credentials"}},
		{"empty rule", strings.Replace(base, "allow: { roles: [Orders.Read] }", "allow: {}", 1), []string{"services[0].routes[0].allow: empty rule"}},
		{"empty role list", strings.Replace(base, "roles: [Orders.Read]", "roles: []", 1), []string{"allow.roles: empty list"}},
		{"bad cidr", strings.Replace(base, "roles: [Orders.Read]", "ip: [10.0.0.0/33]", 1), []string{"allow.ip[0]: bad CIDR"}},
		{"bad method", strings.Replace(base, "[GET]", "[get]", 1), []string{"bad method \"get\""}},
		{"connect", strings.Replace(base, "[GET]", "[CONNECT]", 1), []string{"CONNECT is never proxied"}},
		{"bad path pattern", strings.Replace(base, "/orders/**", "/orders/**/x", 1), []string{"services[0].routes[0].match.path:"}},
		{"unsupported key", strings.Replace(base, "    routes:", "    upstream_tls: { insecure_skip_verify: true }\n    routes:", 1), []string{"services[0].upstream_tls.insecure_skip_verify: \"insecure_skip_verify\" is part of the configuration contract but not supported"}},
		{"dlp valid", base + "        dlp:\n          mask: [credit_card, email, emp]\n          block: [private_key]\n          custom: [{ name: emp, regex: '\\bEMP-[0-9]{6}\\b' }]\n          json_paths: [\"$.customer.ssn\", \"$.items[*].card\"]\n          card_last4: true\n          over_limit: pass\n", nil},
		{"dlp unknown detector", base + "        dlp: { mask: [email, credit_cards] }\n", []string{"x.yaml:12:30: services[0].routes[0].dlp.mask[1]: unknown detector \"credit_cards\" (known: private_key, jwt,"}},
		{"dlp detector twice", base + "        dlp: { mask: [email], block: [email] }\n", []string{"dlp.block[0]: detector \"email\" is already listed under mask"}},
		{"dlp bad regex", base + "        dlp:\n          mask: [emp]\n          custom: [{ name: emp, regex: 'EMP-[0-9' }]\n", []string{"x.yaml:14:40: services[0].routes[0].dlp.custom[0].regex: bad regex: missing closing ]"}},
		{"dlp unbounded regex", base + "        dlp:\n          mask: [emp]\n          custom: [{ name: emp, regex: 'EMP-[0-9]+' }]\n", []string{"dlp.custom[0].regex: regex \"EMP-[0-9]+\" has unbounded repetition"}},
		{"dlp custom unused", base + "        dlp:\n          mask: [email]\n          custom: [{ name: emp, regex: 'EMP-[0-9]{6}' }]\n", []string{"dlp.custom[0].name: custom detector \"emp\" is in neither mask nor block"}},
		{"dlp custom named like a built-in", base + "        dlp:\n          mask: [email]\n          custom: [{ name: email, regex: 'x@y' }]\n", []string{"dlp.custom[0].name: \"email\" is a built-in detector"}},
		{"dlp bad json path", base + "        dlp: { json_paths: [customer.ssn] }\n", []string{"x.yaml:12:29: services[0].routes[0].dlp.json_paths[0]: bad JSON path \"customer.ssn\": it must start with $"}},
		{"dlp nothing to do", base + "        dlp: { max_bytes: 2048 }\n", []string{"dlp: nothing to do"}},
		{"dlp max_bytes", base + "        dlp: { mask: [email], max_bytes: 10 }\n", []string{"dlp.max_bytes: must be between 1024 and 67108864"}},
		{"dlp over_limit", base + "        dlp: { mask: [email], over_limit: drop }\n", []string{"dlp.over_limit: \"drop\" is not one of: pass, block"}},
		{"dlp card_last4 without cards", base + "        dlp: { mask: [email], card_last4: true }\n", []string{"dlp.card_last4: card_last4 needs credit_card under mask"}},
		{"rate limit bad key", base + "        rate_limit: { key: tenant+user, limit: 1, per: 1m }\n", []string{"services[0].routes[0].rate_limit.key: bad key part \"user\""}},
		{"rate limit zero", base + "        rate_limit: { limit: 0, per: 1m }\n", []string{"rate_limit.limit: must be at least 1"}},
		{"journal bound too small", base + "store: { dsn: x.db }\naudit: { journal_max_bytes: 4096 }\n", []string{"audit.journal_max_bytes: must be at least 1 MiB"}},
		{"unknown audit commit", base + "store: { dsn: x.db }\naudit: { commit: later }\n", []string{"audit.commit"}},
		{"rate limit missing per", base + "        rate_limit: { limit: 5 }\n", []string{"rate_limit: missing required key \"per\""}},
		{"redis without url", base + "state: { driver: redis }\n", []string{"state.url: bad Redis URL"}},
		{"postgres dsn not a URL", base + "store: { driver: postgres, dsn: \"host=db password=hunter2\" }\n", []string{"store.dsn: postgres wants a postgres:// URL", "(a connection string holding a password)"}},
		{"postgres dsn password redacted", base + "store: { driver: postgres, dsn: \"pg://u:hunter2@db/x\" }\n", []string{"store.dsn: postgres wants a postgres:// URL", "u:REDACTED@db"}},
		{"unset env", strings.Replace(base, "Orders.Read", `"${env:NOPE}"`, 1), []string{"x.yaml:11:26: services[0].routes[0].allow.roles[0]: environment variable NOPE referenced by ${env:NOPE} is not set"}},
		{"unknown secret", strings.Replace(base, "Orders.Read", `"${secret:vault/x}"`, 1), []string{"${secret:vault/x}: no secret provider named \"vault\""}},
		{"bad reference", strings.Replace(base, "Orders.Read", `"${oops}"`, 1), []string{"bad reference ${oops}"}},
		{"unterminated reference", strings.Replace(base, "Orders.Read", `"${env:X"`, 1), []string{"unterminated reference"}},
		{"syntax error", base + "  - : [\n", []string{"x.yaml:"}},
		{"two documents", base + "---\nlisten: {}\n", []string{"more than one YAML document"}},
		{"empty", "", []string{"configuration is empty"}},
		{"same admin address", base + "admin: { address: \":8443\" }\n", []string{"admin.address: the admin listener must not share"}},
		{"no services", strings.Split(base, "services:")[0], []string{"services: no services"}},
		{"client_auth without CA", strings.Replace(base, "listen: { address: \":8443\" }", "listen: { address: \":8443\", tls: { cert_file: a, key_file: b, client_auth: require } }", 1), []string{"needs client_ca_file"}},
		{"tls missing key", strings.Replace(base, "listen: { address: \":8443\" }", "listen: { address: \":8443\", tls: { cert_file: a } }", 1), []string{"listen.tls: missing required key \"key_file\""}},
		{"countries without a GeoIP database", strings.Replace(base, "roles: [Orders.Read]", "countries: [DE, fr]", 1), []string{"allow.countries: countries need a GeoIP database", "allow.countries[1]: bad country \"fr\""}},
		{"entra with an issuer", strings.Replace(base, "type: oidc", "type: entra", 1), []string{"providers[0].issuer: issuer is only for type oidc", "missing required key \"tenant\" for type entra"}},
		{"entra valid", withEntra("", ""), nil},
		{"entra without client_id or audiences", withEntra(", client_id: 6f1d4c9e-0000-0000-0000-000000000000", ""), []string{"missing \"client_id\" or \"audiences\""}},
		{"entra multi-tenant without allowed_tenants", withEntra("72f988bf-86f1-41af-91ab-2d7cd011db47", "organizations"), []string{"missing \"allowed_tenants\" for tenant organizations"}},
		{"entra allowed_tenants on a single tenant", withEntra(" }", ", allowed_tenants: [72f988bf-86f1-41af-91ab-2d7cd011db47] }"), []string{"allowed_tenants is only for multi-tenant providers"}},
		{"entra http authority", withEntra(" }", ", authority_host: http://login.example }"), []string{"authority_host: \"http://login.example\" must use https"}},
		{"api keys enabled", strings.Replace(base, "identity:\n", "identity:\n  api_keys: { enabled: true, header: X-Partner-Key, poll_interval: 500ms, max_stale: 5s }\n", 1) + "store: { dsn: x.db }\n", nil},
		{"api keys without a store", strings.Replace(base, "identity:\n", "identity:\n  api_keys: { enabled: true }\n", 1), []string{"x.yaml:3:24: identity.api_keys.enabled: API keys are kept in the store: configure store"}},
		{"api keys disabled without a store", strings.Replace(base, "identity:\n", "identity:\n  api_keys: { enabled: false }\n", 1), nil},
		{"api key header Authorization", strings.Replace(base, "identity:\n", "identity:\n  api_keys: { enabled: true, header: authorization }\n", 1) + "store: { dsn: x.db }\n", []string{"x.yaml:3:38: identity.api_keys.header: \"authorization\" cannot carry API keys"}},
		{"api key header Cookie", strings.Replace(base, "identity:\n", "identity:\n  api_keys: { enabled: true, header: Cookie }\n", 1) + "store: { dsn: x.db }\n", []string{"identity.api_keys.header: \"Cookie\" cannot carry API keys"}},
		{"api key header forwarded", strings.Replace(base, "identity:\n", "identity:\n  api_keys: { enabled: true, header: X-Forwarded-Key }\n", 1) + "store: { dsn: x.db }\n", []string{"cannot carry API keys"}},
		{"api key header with underscore", strings.Replace(base, "identity:\n", "identity:\n  api_keys: { enabled: true, header: X_API_Key }\n", 1) + "store: { dsn: x.db }\n", []string{"cannot carry API keys"}},
		{"api key header not a token", strings.Replace(base, "identity:\n", "identity:\n  api_keys: { enabled: true, header: \"X API Key\" }\n", 1) + "store: { dsn: x.db }\n", []string{"identity.api_keys.header: bad header name \"X API Key\""}},
		{"api key poll too fast", strings.Replace(base, "identity:\n", "identity:\n  api_keys: { enabled: true, poll_interval: 10ms }\n", 1) + "store: { dsn: x.db }\n", []string{"identity.api_keys.poll_interval: must be between 100ms and 1m"}},
		{"api key max_stale under two polls", strings.Replace(base, "identity:\n", "identity:\n  api_keys: { enabled: true, poll_interval: 5s, max_stale: 6s }\n", 1) + "store: { dsn: x.db }\n", []string{"identity.api_keys.max_stale: must be at least twice poll_interval"}},
		{"api key unknown key", strings.Replace(base, "identity:\n", "identity:\n  api_keys: { enabled: true, query_param: key }\n", 1) + "store: { dsn: x.db }\n", []string{"identity.api_keys.query_param: unknown key"}},
		{"rate limit api_key part", base + "        rate_limit: { key: api_key, limit: 1, per: 1m }\n", []string{"bad key part \"api_key\": use identity"}},
		{"admin token too short", base + "admin: { token: short }\n", []string{"x.yaml:12:17: admin.token: the admin token must be at least 32"}},
		{"admin token ok", base + "admin: { token: 0123456789abcdef0123456789abcdef }\n", nil},
		{"tenant on oidc", strings.Replace(base, "audiences: [api]", "audiences: [api], tenant: common", 1), []string{"providers[0].tenant: tenant is only for type entra"}},
		{"mtls valid", withMTLS("", ""), nil},
		{"mtls valid with require and a client CA", withMTLS("client_auth: optional", "client_auth: require, client_ca_file: ca.pem"), nil},
		{"mtls valid from dns and subject only", withMTLS(", trust_domains: [prod.example]", ", identity_from: [dns, subject]"), nil},
		{"mtls without TLS", strings.Replace(withMTLS("", ""), `listen: { address: ":8443", tls: { cert_file: gw.pem, key_file: gw.key, client_auth: optional } }`, `listen: { address: ":8443" }`, 1), []string{"x.yaml:5:9: identity.mtls: client certificates need TLS on the listener"}},
		{"mtls with client_auth none", withMTLS("client_auth: optional", "client_auth: none"), []string{"x.yaml:1:86: listen.tls.client_auth: identity.mtls needs the listener to ask for client certificates"}},
		{"mtls with client_auth absent", withMTLS(", client_auth: optional", ""), []string{"x.yaml:1:34: listen.tls: identity.mtls needs the listener to ask"}},
		{"mtls without trust_bundle", withMTLS("trust_bundle: clients.pem, ", ""), []string{"x.yaml:5:9: identity.mtls: missing required key \"trust_bundle\""}},
		{"mtls without trust_domains", withMTLS(", trust_domains: [prod.example]", ""), []string{"x.yaml:5:9: identity.mtls: missing \"trust_domains\""}},
		{"mtls bad trust domain", withMTLS("[prod.example]", "[prod.example, spiffe://Staging.example, prod.example]"), []string{"identity.mtls.trust_domains[1]: bad trust domain", "identity.mtls.trust_domains[2]: duplicate trust domain"}},
		{"mtls trust domain with a port", withMTLS("[prod.example]", "[\"prod.example:443\"]"), []string{"trust_domains[0]: bad trust domain \"prod.example:443\": the trust domain must not carry a port"}},
		{"mtls trust_domains without spiffe", withMTLS("[prod.example] }", "[prod.example], identity_from: [dns] }"), []string{"identity.mtls.trust_domains: trust_domains apply to SPIFFE IDs"}},
		{"mtls unknown source", withMTLS("[prod.example] }", ", identity_from: [spiffe, email] }"), []string{"identity.mtls.identity_from[1]: \"email\" is not one of: spiffe, dns, subject"}},
		{"mtls duplicate source", withMTLS("[prod.example] }", ", identity_from: [spiffe, dns, spiffe] }"), []string{"identity_from[2]: duplicate source \"spiffe\""}},
		{"mtls no source", withMTLS("[prod.example] }", ", identity_from: [] }"), []string{"identity.mtls.identity_from: at least one source"}},
		{"mtls unknown key", withMTLS("[prod.example] }", ", crl: x.pem }"), []string{"identity.mtls.crl: unknown key \"crl\""}},
		{"workloads", withMTLS("roles: [Orders.Read]", "workloads: [\"spiffe://prod.example/ns/orders/*\", \"dns:*.orders.internal\", \"cn:Orders API\"]"), nil},
		{"workloads bad pattern", withMTLS("roles: [Orders.Read]", "workloads: [\"spiffe://prod.example/ns/**/x\", \"spiffe://*.example/a\", \"orders\", \"dns:Orders\", \"cn:\", spiffe://prod.example]"), []string{
			"allow.workloads[0]: bad workload pattern \"spiffe://prod.example/ns/**/x\": ** only as the last segment",
			"allow.workloads[1]: bad workload pattern", "the trust domain is never a wildcard",
			"allow.workloads[2]: bad workload \"orders\": want spiffe://trust-domain/path, dns:NAME or cn:NAME",
			"allow.workloads[3]: bad workload \"dns:Orders\"",
			"allow.workloads[4]: bad workload \"cn:\"",
			"allow.workloads[5]: bad workload pattern \"spiffe://prod.example\": a workload's ID has a path"}},
		{"workloads without mtls", strings.Replace(base, "roles: [Orders.Read]", "workloads: [\"spiffe://prod.example/**\"]", 1), []string{"x.yaml:11:29: services[0].routes[0].allow.workloads: workloads need identity.mtls"}},
		{"empty workloads", withMTLS("roles: [Orders.Read]", "workloads: []"), []string{"allow.workloads: empty list"}},
		{"require_client_cert without mtls", base + "        require_client_cert: true\n", []string{"x.yaml:12:30: services[0].routes[0].require_client_cert: require_client_cert needs identity.mtls"}},
		{"service require_client_cert without mtls", strings.Replace(base, "    routes:", "    require_client_cert: true\n    routes:", 1), []string{"services[0].require_client_cert: require_client_cert needs identity.mtls"}},
		{"route require_client_cert", withMTLS("", "") + "        require_client_cert: true\n", nil},
		{"client_auth with mtls needs no client CA", withMTLS("client_auth: optional", "client_auth: require"), nil},

		// Upstream credentials (inject) and the assertion signer.
		{"assertion valid", withInject("identity_assertion: true, assertion_audience: api://orders") + "assertion: { issuer: https://gw.example, keys: [ { file: a.pem }, { pem: \"${env:ZT_TEST_SUBJECT}\" } ] }\n", nil},
		{"assertion generated key", withInject("identity_assertion: true") + "assertion: { issuer: \"urn:ztgate:prod\" }\n", nil},
		{"assertion without the section", withInject("identity_assertion: true"), []string{"x.yaml:8:35: services[0].inject.identity_assertion: identity assertions need the top-level assertion section"}},
		{"assertion without issuer", withInject("identity_assertion: true") + "assertion: { ttl: 30s }\n", []string{"x.yaml:13:12: assertion: missing required key \"issuer\""}},
		{"assertion bad issuer", withInject("identity_assertion: true") + "assertion: { issuer: gateway }\n", []string{"assertion.issuer: bad issuer \"gateway\""}},
		{"assertion reserved header", withInject("identity_assertion: true") + "assertion: { issuer: https://gw.example, header: authorization }\n", []string{"assertion.header: header \"authorization\" is reserved"}},
		{"assertion forwarded header", withInject("identity_assertion: true") + "assertion: { issuer: https://gw.example, header: X-Forwarded-User }\n", []string{"assertion.header: header \"X-Forwarded-User\" is reserved"}},
		{"assertion bad header", withInject("identity_assertion: true") + "assertion: { issuer: https://gw.example, header: \"X Id\" }\n", []string{"assertion.header: bad header name"}},
		{"assertion long ttl", withInject("identity_assertion: true") + "assertion: { issuer: https://gw.example, ttl: 1h }\n", []string{"assertion.ttl: must be between 5s and 10m"}},
		{"assertion overlap shorter than ttl", withInject("identity_assertion: true") + "assertion: { issuer: https://gw.example, ttl: 5m, rotation_overlap: 1m }\n", []string{"assertion.rotation_overlap: must be between ttl (5m0s) and 30d"}},
		{"assertion key file and pem", withInject("identity_assertion: true") + "assertion: { issuer: https://gw.example, keys: [ { file: a.pem, pem: \"${env:ZT_TEST_SUBJECT}\" } ] }\n", []string{"assertion.keys[0]: set exactly one of file and pem"}},
		{"assertion inline pem", withInject("identity_assertion: true") + "assertion: { issuer: https://gw.example, keys: [ { pem: \"-----BEGIN PRIVATE KEY-----\" } ] }\n", []string{"assertion.keys[0].pem: write a ${secret:PROVIDER/NAME} or ${env:NAME} reference here, not the secret itself"}},
		{"audience without assertion", withInject("assertion_audience: x"), []string{"services[0].inject.assertion_audience: assertion_audience without identity_assertion"}},
		{"client credentials valid", withInject("client_credentials: { token_url: \"https://login.example/token\", client_id: gw, client_secret: \"${env:ZT_TEST_SUBJECT}\", scopes: [api://orders/.default], resource: \"urn:orders\" }"), nil},
		{"client credentials inline secret", withInject("client_credentials: { token_url: \"https://login.example/token\", client_id: gw, client_secret: hunter2 }"), []string{"x.yaml:8:109: services[0].inject.client_credentials.client_secret: write a ${secret:PROVIDER/NAME} or ${env:NAME} reference here"}},
		{"client credentials empty secret", withInject("client_credentials: { token_url: \"https://login.example/token\", client_id: gw, client_secret: \"${env:EMPTY}\" }"), []string{"client_credentials.client_secret: the reference resolved to an empty secret"}},
		{"client credentials http token url", withInject("client_credentials: { token_url: \"http://login.example/token\", client_id: gw, client_secret: \"${env:EMPTY}x\" }"), []string{"client_credentials.token_url: \"http://login.example/token\" must use https"}},
		{"client credentials missing client_id", withInject("client_credentials: { token_url: \"https://login.example/token\", client_secret: \"${env:EMPTY}x\" }"), []string{"services[0].inject.client_credentials: missing required key \"client_id\""}},
		{"client credentials bad scope", withInject("client_credentials: { token_url: \"https://login.example/token\", client_id: gw, client_secret: \"${env:EMPTY}x\", scopes: [\"a b\"] }"), []string{"client_credentials.scopes[0]: bad scope \"a b\""}},
		{"client credentials bad auth method", withInject("client_credentials: { token_url: \"https://login.example/token\", client_id: gw, client_secret: \"${env:EMPTY}x\", auth_method: jwt }"), []string{"client_credentials.auth_method: \"jwt\" is not one of: basic, post"}},
		{"managed identity valid", withInject("managed_identity: { client_id: 6f1d4c9e-0000-0000-0000-000000000000, scope: api://orders/.default }"), nil},
		{"managed identity bad client_id", withInject("managed_identity: { client_id: me, scope: api://orders/.default }"), []string{"managed_identity.client_id: bad client_id \"me\""}},
		{"managed identity without scope", withInject("managed_identity: { }"), []string{"services[0].inject.managed_identity: missing required key \"scope\""}},
		{"two upstream tokens", withInject("managed_identity: { scope: a }, client_credentials: { token_url: \"https://login.example/token\", client_id: gw, client_secret: \"${env:EMPTY}x\" }"), []string{"services[0].inject.managed_identity: client_credentials and managed_identity each set"}},
		{"token exchange valid", withInject("token_exchange: { token_url: \"https://sts.example/token\", client_id: gw, client_secret: \"${env:ZT_TEST_SUBJECT}\", audience: orders-backend }"), nil},
		{"token exchange unnarrowed", withInject("token_exchange: { token_url: \"https://sts.example/token\", client_id: gw, client_secret: \"${env:ZT_TEST_SUBJECT}\" }"), []string{"services[0].inject.token_exchange: say what the token is for"}},
		{"on behalf of without scopes", withInject("token_exchange: { grant: on_behalf_of, token_url: \"https://login.example/token\", client_id: gw, client_secret: \"${env:ZT_TEST_SUBJECT}\", resource: x }"), []string{"services[0].inject.token_exchange.scopes: on_behalf_of needs the scopes"}},
		{"token exchange and client credentials", withInject("token_exchange: { token_url: \"https://sts.example/token\", client_id: gw, client_secret: \"${env:ZT_TEST_SUBJECT}\", audience: a }, client_credentials: { token_url: \"https://login.example/token\", client_id: gw, client_secret: \"${env:EMPTY}x\" }"), []string{"services[0].inject.token_exchange: client_credentials and token_exchange each set"}},
		{"token exchange cache size", withInject("token_exchange: { token_url: \"https://sts.example/token\", client_id: gw, client_secret: \"${env:ZT_TEST_SUBJECT}\", audience: a, cache_size: 0 }"), []string{"token_exchange.cache_size: must be between 1 and 1000000"}},
		{"upstream token and forward_authorization", strings.Replace(withInject("managed_identity: { scope: a }"), "    routes:", "    forward_authorization: true\n    routes:", 1), []string{"services[0].inject: an injected upstream token replaces the caller's Authorization header"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tt.yaml), testOptions())
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			msg := err.Error()
			for _, w := range tt.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Fatalf("got error:\n%s\nwant it to contain %q", msg, w)
				}
				msg = msg[i+len(w):]
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("got %T, want errors.As to find a *config.Error", err)
			}
		})
	}
}

// withExporter is base with a store and one audit exporter.
func withExporter(e string) string {
	return base + "store: { dsn: a.db }\naudit:\n  exporters:\n    - " + e + "\n"
}

func TestExporterErrors(t *testing.T) {
	const dcr = "dcr-0123456789abcdef0123456789abcdef"
	const tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	sentinel := "{ type: sentinel, endpoint: \"https://dce.eastus-1.ingest.monitor.azure.com\", dcr_id: " + dcr + ", stream: Custom-Ztgate, auth: client_secret, tenant_id: " + tenant + ", client_id: " + tenant + ", client_secret: \"${env:ZT_TEST_SUBJECT}\" }"
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error, in order; nil: valid
	}{
		{"jsonl stdout", withExporter("{ type: jsonl }"), nil},
		{"jsonl file", withExporter("{ type: jsonl, path: audit.jsonl, max_bytes: 1048576, max_files: 3 }"), nil},
		{"sentinel valid", withExporter(sentinel), nil},
		{"sentinel managed identity", withExporter("{ type: sentinel, endpoint: \"https://dce.example\", dcr_id: " + dcr + ", stream: Custom-Ztgate, auth: managed_identity }"), nil},
		{"syslog tls", withExporter("{ type: syslog, network: tls, address: \"siem.example:6514\", ca_file: ca.pem }"), nil},
		{"otlp", withExporter("{ type: otlp, url: \"http://127.0.0.1:4318/v1/logs\", headers: { X-Api-Key: \"${env:ZT_TEST_SUBJECT}\" } }"), nil},
		{"webhook", withExporter("{ type: webhook, url: \"https://hooks.example/ztgate\", hmac_key: \"${env:ZT_TEST_SUBJECT}${env:ZT_TEST_SUBJECT}${env:ZT_TEST_SUBJECT}${env:ZT_TEST_SUBJECT}${env:ZT_TEST_SUBJECT}${env:ZT_TEST_SUBJECT}\" }"), nil},
		{"unknown type", withExporter("{ type: kafka }"), []string{"x.yaml:15:15: audit.exporters[0].type: \"kafka\" is not one of: jsonl, sentinel, syslog, otlp, webhook"}},
		{"missing type", withExporter("{ name: x }"), []string{"x.yaml:15:7: audit.exporters[0]: missing required key \"type\""}},
		{"unknown key", withExporter("{ type: jsonl, paht: x }"), []string{"x.yaml:15:22: audit.exporters[0].paht: unknown key \"paht\""}},
		{"key of another type", withExporter("{ type: jsonl, url: \"http://x\", hmac_key: abc }"), []string{"audit.exporters[0].hmac_key: hmac_key is only for type webhook", "audit.exporters[0].url: url is only for type otlp and webhook"}},
		{"duplicate names", base + "store: { dsn: a.db }\naudit:\n  exporters:\n    - { type: jsonl }\n    - { type: jsonl }\n", []string{"x.yaml:16:7: audit.exporters[1]: duplicate exporter name \"jsonl\""}},
		{"no store", base + "audit: { exporters: [ { type: jsonl } ] }\n", []string{"audit.exporters[0]: exporters send what the store made durable: configure a store"}},
		{"zero buffer", withExporter("{ type: jsonl, buffer: 0 }"), []string{"audit.exporters[0].buffer: must be between 1"}},
		{"retry max below initial", withExporter("{ type: jsonl, retry: { initial_interval: 5s, max_interval: 1s } }"), []string{"audit.exporters[0].retry.max_interval: must not be shorter"}},
		{"sentinel missing keys", withExporter("{ type: sentinel }"), []string{"missing required key \"endpoint\" for type sentinel", "\"dcr_id\"", "\"stream\"", "\"auth\""}},
		{"sentinel http endpoint", withExporter(strings.Replace(sentinel, "https://dce", "http://dce", 1)), []string{"audit.exporters[0].endpoint: bad endpoint \"http://dce.eastus-1.ingest.monitor.azure.com\": want https"}},
		{"sentinel bad dcr", withExporter(strings.Replace(sentinel, dcr, "my-rule", 1)), []string{"audit.exporters[0].dcr_id: bad dcr_id \"my-rule\""}},
		{"sentinel client_secret without secret", withExporter(strings.Replace(sentinel, ", client_secret: \"${env:ZT_TEST_SUBJECT}\"", "", 1)), []string{"auth client_secret needs client_secret"}},
		{"sentinel managed identity with a secret", withExporter(strings.Replace(sentinel, "auth: client_secret", "auth: managed_identity", 1)), []string{"audit.exporters[0].tenant_id: tenant_id is only for auth client_secret", "audit.exporters[0].client_secret: client_secret is only for auth client_secret"}},
		{"syslog without network", withExporter("{ type: syslog, address: \"x:514\" }"), []string{"missing required key \"network\" for type syslog"}},
		{"syslog bad network", withExporter("{ type: syslog, network: sctp, address: \"x:514\" }"), []string{"network: \"sctp\" is not one of: tcp, tls, udp"}},
		{"syslog bad address", withExporter("{ type: syslog, network: udp, address: x }"), []string{"audit.exporters[0].address: bad address \"x\""}},
		{"syslog ca_file without tls", withExporter("{ type: syslog, network: tcp, address: \"x:514\", ca_file: ca.pem }"), []string{"audit.exporters[0].ca_file: ca_file is only for network tls"}},
		{"otlp without url", withExporter("{ type: otlp }"), []string{"missing required key \"url\" for type otlp"}},
		{"webhook url with credentials", withExporter("{ type: webhook, url: \"https://u:p@hooks.example\", hmac_key: 0123456789abcdef }"), []string{"must not carry credentials"}},
		{"webhook short key", withExporter("{ type: webhook, url: \"https://hooks.example\", hmac_key: short }"), []string{"audit.exporters[0].hmac_key: webhook needs an hmac_key of at least 16 bytes"}},
		{"cert without key", withExporter("{ type: webhook, url: \"https://hooks.example\", hmac_key: 0123456789abcdef, cert_file: c.pem }"), []string{"cert_file and key_file go together"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("x.yaml", []byte(tt.yaml), testOptions())
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if got := len(c.Audit.Exporters); got != 1 {
					t.Fatalf("got %d exporters, want 1", got)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			msg := err.Error()
			for _, w := range tt.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Fatalf("got error:\n%s\nwant it to contain %q", err, w)
				}
				msg = msg[i+len(w):]
			}
		})
	}
}

func TestExporterDefaults(t *testing.T) {
	c, err := Parse("x.yaml", []byte(withExporter("{ type: syslog, network: udp, address: \"127.0.0.1:514\" }")), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	e := c.Audit.Exporters[0]
	if e.Buffer != 10000 || e.BatchSize != 500 || e.FlushInterval.D() != time.Second || e.Retry.InitialInterval.D() != time.Second || e.Retry.MaxInterval.D() != time.Minute || e.Facility != "local0" {
		t.Errorf("got defaults %+v, want buffer 10000, batch_size 500, flush_interval 1s, retry 1s..1m, facility local0", e)
	}
}

// TestExporterSecretsNeverPrint guards the promise that a client secret,
// an HMAC key or a header value never shows in output: %v, %+v, %#v, JSON,
// slog, or an error about the same exporter.
func TestExporterSecretsNeverPrint(t *testing.T) {
	const secret = "s3cr3t-value-never-shown"
	opts := testOptions()
	opts.LookupEnv = func(k string) (string, bool) { return secret, k == "ZT_SECRET" }
	y := withExporter("{ type: webhook, url: \"https://hooks.example\", hmac_key: \"${env:ZT_SECRET}\", headers: { Authorization: \"Bearer ${env:ZT_SECRET}\" } }")
	c, err := Parse("x.yaml", []byte(y), opts)
	if err != nil {
		t.Fatal(err)
	}
	e := c.Audit.Exporters[0]
	if e.HMACKey.Reveal() != secret || e.Headers["Authorization"].Reveal() != "Bearer "+secret {
		t.Fatalf("secrets not resolved: got %q", e.HMACKey.Reveal())
	}
	js, _ := json.Marshal(e)
	var logs strings.Builder
	slog.New(slog.NewTextHandler(&logs, nil)).Info("exporter", "key", e.HMACKey, "config", e)
	for _, out := range []string{fmt.Sprint(e), fmt.Sprintf("%+v", c.Audit), fmt.Sprintf("%#v", e), string(js), logs.String()} {
		if strings.Contains(out, secret) {
			t.Errorf("secret printed in %s", out)
		}
	}
	_, err = Parse("x.yaml", []byte(strings.Replace(y, "https://hooks.example", "ftp://x", 1)), opts)
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("got error %v, want one that does not print the secret", err)
	}
}

func TestLoadUnreadable(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), Options{})
	if err == nil || !strings.Contains(err.Error(), "missing.yaml: cannot read configuration") {
		t.Fatalf("got %v, want a cannot-read error naming the file", err)
	}
}

func TestInterpolate(t *testing.T) {
	env := func(k string) (string, bool) { v, ok := map[string]string{"A": "x", "E": ""}[k]; return v, ok }
	sec := func(p, n string) (string, error) { return p + ":" + n, nil }
	tests := []struct{ in, want, err string }{
		{"plain", "plain", ""},
		{"${env:A}", "x", ""},
		{"pre-${env:A}-post", "pre-x-post", ""},
		{"${env:E}", "", ""},
		{"$${env:A}", "${env:A}", ""},
		{"${secret:kv/name/v2}", "kv:name/v2", ""},
		{"${env:A}${env:A}", "xx", ""},
		{"${env:B}", "", "not set"},
		{"${secret:kv}", "", "bad reference"},
		{"${file:x}", "", "unknown reference kind"},
		{"${", "", "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := interpolate(tt.in, env, sec)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %q, %v; want error containing %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{{"30s", 30 * time.Second, true}, {"1h30m", 90 * time.Minute, true}, {"2d", 48 * time.Hour, true}, {"d", 0, false}, {"1.5d", 0, false}, {"-1s", 0, false}, {"", 0, false}, {"10", 0, false}}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got.D() != tt.want) {
			t.Errorf("ParseDuration(%q): got %v, %v; want %v, ok=%v", tt.in, got.D(), err, tt.want, tt.ok)
		}
	}
}

func TestSchemaGolden(t *testing.T) {
	got := Schema()
	golden := filepath.Join("testdata", "schema.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("schema differs from %s (-want +got); run go test -update if intended:\n%s", golden, d)
	}
}

func TestSchemaCoversEverySupportedKey(t *testing.T) {
	// Every key the decoder accepts appears in the reference, and no
	// reserved (unsupported) key does.
	ref := Reference()
	for _, k := range []string{"`listen.address`", "`services[].routes[].allow.any_of`", "`services[].timeouts.overall`", "`identity.providers[].audiences`", "`identity.mtls.trust_bundle`", "`services[].routes[].allow.workloads`", "`services[].inject.headers`", "`services[].routes[].inject.basic_auth.password`", "`secrets.max_stale`", "`secrets.providers[].credential`", "`identity.api_keys.header`", "`admin.token`", "`services[].routes[].dlp.mask`", "`services[].routes[].dlp.custom[].regex`"} {
		if !strings.Contains(ref, k) {
			t.Errorf("reference lacks %s", k)
		}
	}
	for _, k := range []string{"insecure_skip_verify"} {
		if strings.Contains(ref, k) {
			t.Errorf("reference documents unsupported key %s", k)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte("listen: {address: x}\nservices: [{name: a, upstream: 'http://x', routes: [{name: r, match: {path: '/{a}/**'}}]}]"))
	f.Add([]byte("a: &x [*x]"))
	f.Add([]byte("services:\n  - routes: [ {allow: {any_of: [{not: {roles: [a]}}]}} ]"))
	data, _ := os.ReadFile("testdata/valid.yaml")
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data, testOptions())
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty error message")
		}
	})
}

// TestReadmeReference keeps the README's configuration reference equal to
// the one generated from the types (go test -update rewrites it).
func TestReadmeReference(t *testing.T) {
	const path = "../../README.md"
	const start, end = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i, j := strings.Index(s, start), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README lacks the %q and %q markers", start, end)
	}
	want := Reference()
	got := s[i+len(start) : j]
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(s[:i+len(start)]+want+s[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README configuration reference is stale (-want +got); run go test ./internal/config -update:\n%s", cmp.Diff(want, got))
}

// TestSecurityDefaults keeps SECURITY.md's table of hardening defaults equal
// to the defaults in the code.
func TestSecurityDefaults(t *testing.T) {
	data, err := os.ReadFile("../../SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	ref := Reference()
	rows := 0
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		key, def := strings.TrimSpace(cells[1]), strings.TrimSpace(cells[2])
		rows++
		want := "| " + key + " | "
		i := strings.Index(ref, want)
		if i < 0 {
			t.Errorf("SECURITY.md names %s, which the configuration does not have", key)
			continue
		}
		refLine := strings.ReplaceAll(ref[i:strings.Index(ref[i:], "\n")+i], `\|`, "/")
		refCells := strings.Split(refLine, "|")
		if got := strings.TrimSpace(refCells[3]); got != def {
			t.Errorf("SECURITY.md says %s defaults to %s; the code says %s", key, def, got)
		}
	}
	if rows < 10 {
		t.Fatalf("found %d default rows in SECURITY.md, want the table", rows)
	}
}

// withInject is base with secret providers and the given inject block on the
// service (indented under it).
func withSecretInject(providers, inject string) string {
	s := strings.Replace(base, "    routes:\n", inject+"    routes:\n", 1)
	return s + "secrets:\n  providers:\n" + providers
}

const testProviders = `    - { name: files, type: file, dir: /run/secrets }
    - { name: env, type: env, prefix: ZT_ }
    - { name: kv, type: azure_keyvault, vault_url: "https://orders-kv.vault.azure.net/" }
`

func TestLoadSecretsAndInject(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error, in order; nil: valid
	}{
		{"inject valid", withSecretInject(testProviders, `    inject:
      headers: { x-functions-key: "${secret:kv/orders-function-key}", x-static: "v1-${env:ZT_TEST_SUBJECT}" }
      query: { code: "${secret:kv/orders-function-key/0123456789abcdef0123456789abcdef}" }
      basic_auth: { username: gw, password: "${secret:files/orders-password}" }
`), nil},
		{"design example: managed identity by default", base + "secrets:\n  providers:\n    - { name: kv, type: azure_keyvault, vault_url: \"https://myvault.vault.azure.net/\" }\n", nil},
		{"unknown provider in a reference", withSecretInject(testProviders, "    inject:\n      headers: { x-functions-key: \"${secret:vault/key}\" }\n"), []string{"x.yaml:9:35: services[0].inject.headers.x-functions-key: ${secret:vault/key}: no secret provider named \"vault\""}},
		{"version on a file provider", withSecretInject(testProviders, "    inject:\n      headers: { x-key: \"${secret:files/key/v1}\" }\n"), []string{"provider \"files\" (type file) has no versions"}},
		{"bad vault version", withSecretInject(testProviders, "    inject:\n      headers: { x-key: \"${secret:kv/key/v1}\" }\n"), []string{"bad Key Vault secret version \"v1\""}},
		{"bad vault secret name", withSecretInject(testProviders, "    inject:\n      headers: { x-key: \"${secret:kv/key_1}\" }\n"), []string{"bad Key Vault secret name \"key_1\""}},
		{"file name with a path", withSecretInject(testProviders, "    inject:\n      headers: { x-key: \"${secret:files/..}\" }\n"), []string{"bad name \"..\" for a file provider"}},
		{"bad reference in a template", withSecretInject(testProviders, "    inject:\n      headers: { x-key: \"${secret:kv}\" }\n"), []string{"services[0].inject.headers.x-key: bad reference ${secret:kv}"}},
		{"unset env in a template", withSecretInject(testProviders, "    inject:\n      headers: { x-key: \"${env:NOPE}\" }\n"), []string{"environment variable NOPE referenced by ${env:NOPE} is not set"}},
		{"reserved header", withSecretInject(testProviders, "    inject:\n      headers: { host: \"${secret:kv/h}\" }\n"), []string{"header Host cannot be injected"}},
		{"forwarded header", withSecretInject(testProviders, "    inject:\n      headers: { x_forwarded_for: \"${secret:kv/h}\" }\n"), []string{"header X-Forwarded-For cannot be injected"}},
		{"bad header name", withSecretInject(testProviders, "    inject:\n      headers: { \"x key\": \"${secret:kv/h}\" }\n"), []string{"bad header name \"x key\""}},
		{"same header twice", withSecretInject(testProviders, "    inject:\n      headers: { x-key: \"${secret:kv/a}\", X_Key: \"${secret:kv/b}\" }\n"), []string{"is also set as"}},
		{"same query parameter in two cases", withSecretInject(testProviders, "    inject:\n      query: { code: \"${secret:kv/a}\", CODE: \"${secret:kv/b}\" }\n"), []string{"names are replaced regardless of case"}},
		{"inline basic password", withSecretInject(testProviders, "    inject:\n      basic_auth: { username: gw, password: hunter2 }\n"), []string{"basic_auth.password: write a ${secret:...} reference here"}},
		{"colon in basic user", withSecretInject(testProviders, "    inject:\n      basic_auth: { username: \"a:b\", password: \"${secret:kv/p}\" }\n"), []string{"cannot contain ':'"}},
		{"basic auth and an Authorization header", withSecretInject(testProviders, "    inject:\n      headers: { authorization: \"Bearer ${secret:kv/t}\" }\n      basic_auth: { username: gw, password: \"${secret:kv/p}\" }\n"), []string{"basic_auth and an injected Authorization header both set Authorization"}},
		{"basic auth with forward_authorization", withSecretInject(testProviders, "    forward_authorization: true\n    inject:\n      basic_auth: { username: gw, password: \"${secret:kv/p}\" }\n"), []string{"forward_authorization asks to forward"}},
		{"route inject", withSecretInject(testProviders, "") + "", nil},
		{"route inject unknown provider", strings.Replace(withSecretInject(testProviders, ""), "        allow: { roles: [Orders.Read] }\n", "        allow: { roles: [Orders.Read] }\n        inject: { headers: { x-key: \"${secret:nope/k}\" } }\n", 1), []string{"services[0].routes[0].inject.headers.x-key: ${secret:nope/k}: no secret provider"}},
		{"ttl too short", withSecretInject(testProviders, "") + "  ttl: 100ms\n", []string{"secrets.ttl: must be between 1s and 24h"}},
		{"max_stale under twice ttl", withSecretInject(testProviders, "") + "  ttl: 10m\n  max_stale: 15m\n", []string{"secrets.max_stale: must be at least twice ttl"}},
		{"provider ttl", withSecretInject("    - { name: files, type: file, dir: /x, ttl: 1h }\n", ""), []string{"secrets.providers[0].max_stale: must be at least twice ttl (1h0m0s)"}},
		{"http vault", withSecretInject("    - { name: kv, type: azure_keyvault, vault_url: \"http://orders.vault.azure.net/\" }\n", ""), []string{"secrets.providers[0].vault_url: bad vault URL"}},
		{"vault outside Key Vault domains", withSecretInject("    - { name: kv, type: azure_keyvault, vault_url: \"https://vault.example.com/\" }\n", ""), []string{"the host must be in a Key Vault domain"}},
		{"vault with a path", withSecretInject("    - { name: kv, type: azure_keyvault, vault_url: \"https://orders.vault.azure.net/secrets\" }\n", ""), []string{"bad vault URL"}},
		{"bad vault name", withSecretInject("    - { name: kv, type: azure_keyvault, vault_url: \"https://o.vault.azure.net\" }\n", ""), []string{"bad vault name \"o\""}},
		{"loopback vault for tests", withSecretInject("    - { name: kv, type: azure_keyvault, vault_url: \"https://127.0.0.1:8443/\" }\n", ""), nil},
		{"vault without url", withSecretInject("    - { name: kv, type: azure_keyvault }\n", ""), []string{"missing required key \"vault_url\""}},
		{"dir on a vault", withSecretInject("    - { name: kv, type: azure_keyvault, vault_url: \"https://orders.vault.azure.net\", dir: /x }\n", ""), []string{"secrets.providers[0].dir: dir is only for type file"}},
		{"vault_url on a file provider", withSecretInject("    - { name: f, type: file, dir: /x, vault_url: \"https://orders.vault.azure.net\" }\n", ""), []string{"vault_url is only for type azure_keyvault"}},
		{"client secret valid", withSecretInject(testProviders+"    - { name: kv2, type: azure_keyvault, vault_url: \"https://orders2.vault.azure.net\", credential: client_secret, tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47, client_id: 6f1d4c9e-0000-0000-0000-000000000000, client_secret: \"${secret:files/sp-secret}\" }\n", ""), nil},
		{"client secret from env", withSecretInject("    - { name: kv, type: azure_keyvault, vault_url: \"https://orders2.vault.azure.net\", credential: client_secret, tenant: contoso.onmicrosoft.com, client_id: 6f1d4c9e-0000-0000-0000-000000000000, client_secret: \"${env:ZT_TEST_SUBJECT}\" }\n", ""), nil},
		{"client secret inline", withSecretInject("    - { name: kv, type: azure_keyvault, vault_url: \"https://orders2.vault.azure.net\", credential: client_secret, tenant: contoso.onmicrosoft.com, client_id: 6f1d4c9e-0000-0000-0000-000000000000, client_secret: hunter2 }\n", ""), []string{"client_secret: write a ${secret:...} or ${env:...} reference here"}},
		{"client secret from a vault", withSecretInject(testProviders+"    - { name: kv2, type: azure_keyvault, vault_url: \"https://orders2.vault.azure.net\", credential: client_secret, tenant: contoso.onmicrosoft.com, client_id: 6f1d4c9e-0000-0000-0000-000000000000, client_secret: \"${secret:kv/sp}\" }\n", ""), []string{"a vault's credentials cannot come from a vault"}},
		{"client secret missing tenant", withSecretInject("    - { name: kv, type: azure_keyvault, vault_url: \"https://orders2.vault.azure.net\", credential: client_secret, client_id: 6f1d4c9e-0000-0000-0000-000000000000, client_secret: \"${env:ZT_TEST_SUBJECT}\" }\n", ""), []string{"missing \"tenant\" for credential client_secret"}},
		{"certificate without file", withSecretInject("    - { name: kv, type: azure_keyvault, vault_url: \"https://orders2.vault.azure.net\", credential: client_certificate, tenant: contoso.onmicrosoft.com, client_id: 6f1d4c9e-0000-0000-0000-000000000000 }\n", ""), []string{"missing \"certificate_file\""}},
		{"managed identity with a tenant", withSecretInject("    - { name: kv, type: azure_keyvault, vault_url: \"https://orders2.vault.azure.net\", tenant: contoso.onmicrosoft.com }\n", ""), []string{"tenant is not used by credential managed_identity"}},
		{"bad credential", withSecretInject("    - { name: kv, type: azure_keyvault, vault_url: \"https://orders2.vault.azure.net\", credential: cli }\n", ""), []string{"\"cli\" is not one of"}},
		{"bad client id", withSecretInject("    - { name: kv, type: azure_keyvault, vault_url: \"https://orders2.vault.azure.net\", client_id: me }\n", ""), []string{"bad client_id \"me\""}},
		{"http authority", withSecretInject("    - { name: kv, type: azure_keyvault, vault_url: \"https://orders2.vault.azure.net\", credential: workload_identity, authority_host: \"http://127.0.0.1:1\" }\n", ""), []string{"bad authority_host"}},
		{"client certificate from a secret", strings.Replace(withSecretInject(testProviders, "    upstream_tls: { client_certificate: \"${secret:kv/gw-client}\" }\n"), "http://127.0.0.1:8080", "https://127.0.0.1:8443", 1), nil},
		{"client certificate and cert_file", strings.Replace(withSecretInject(testProviders, "    upstream_tls: { client_certificate: \"${secret:kv/gw-client}\", cert_file: a, key_file: b }\n"), "http://127.0.0.1:8080", "https://127.0.0.1:8443", 1), []string{"client_certificate replaces cert_file and key_file"}},
		{"client certificate written inline", strings.Replace(withSecretInject(testProviders, "    upstream_tls: { client_certificate: \"-----BEGIN ${secret:kv/gw-client}\" }\n"), "http://127.0.0.1:8080", "https://127.0.0.1:8443", 1), []string{"want one ${secret:...} reference and nothing else"}},
		{"client certificate unknown provider", strings.Replace(withSecretInject(testProviders, "    upstream_tls: { client_certificate: \"${secret:vault/c}\" }\n"), "http://127.0.0.1:8080", "https://127.0.0.1:8443", 1), []string{"services[0].upstream_tls.client_certificate: ${secret:vault/c}: no secret provider"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tt.yaml), testOptions())
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			msg := err.Error()
			for _, w := range tt.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Fatalf("got error:\n%s\nwant it to contain %q", msg, w)
				}
				msg = msg[i+len(w):]
			}
		})
	}
}

// TestInjectReferencesStayReferences: references in injected values are kept
// for resolution per request, not read at load; ${env:...} is read at load
// and never printed.
func TestInjectReferencesStayReferences(t *testing.T) {
	y := withSecretInject(testProviders, `    inject:
      headers: { x-functions-key: "${secret:kv/orders-function-key}", x-mixed: "k=${env:ZT_TEST_SUBJECT};v=${secret:kv/a/0123456789abcdef0123456789abcdef};$${literal}" }
`)
	opts := testOptions()
	opts.Secrets = func([]SecretProvider) (SecretResolver, error) {
		return resolverFunc(func(p, n string) (string, error) {
			t.Errorf("resolver called for %s/%s at load; want the reference kept", p, n)
			return "", errors.New("no")
		}), nil
	}
	c, err := Parse("x.yaml", []byte(y), opts)
	if err != nil {
		t.Fatal(err)
	}
	h := c.Services[0].Inject.Headers
	got := h["x-mixed"].Parts()
	want := []TemplatePart{{Literal: "k=bob;v="}, {Ref: &SecretRef{Provider: "kv", Name: "a", Version: "0123456789abcdef0123456789abcdef"}}, {Literal: ";${literal}"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("parts (-want +got):\n%s", d)
	}
	if got, want := h["x-functions-key"].Refs(), []SecretRef{{Provider: "kv", Name: "orders-function-key"}}; !cmp.Equal(got, want) {
		t.Errorf("refs: got %v, want %v", got, want)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(format, *c.Services[0].Inject); strings.Contains(s, "bob") {
			t.Errorf("Sprintf(%q) of an inject block shows the value of an ${env:...} reference: %s", format, s)
		}
	}
	if b, _ := json.Marshal(c.Services[0].Inject); strings.Contains(string(b), "bob") || !strings.Contains(string(b), "${env:ZT_TEST_SUBJECT}") {
		t.Errorf("JSON of an inject block: got %s, want the references as written", b)
	}
}

type resolverFunc func(provider, name string) (string, error)

func (f resolverFunc) Resolve(provider, name string) (string, error) { return f(provider, name) }
