package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ztgate/ztgate/internal/route"
)

var (
	nameRE   = boundedRE{regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`), 63}
	methodRE = boundedRE{regexp.MustCompile(`^[A-Z]+$`), 20}
	hostRE   = regexp.MustCompile(`^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// boundedRE is a pattern over ASCII characters whose length bound is a
// check of its own: written in the pattern (x{0,127}), the bound compiles
// into a state per repetition, tens of kilobytes of heap held for the life
// of the process and doubled by the garbage collector's headroom.
type boundedRE struct {
	re  *regexp.Regexp
	max int // bytes, which for ASCII are characters
}

func (b boundedRE) MatchString(s string) bool { return len(s) <= b.max && b.re.MatchString(s) }

// knownAlgorithms are the JWS algorithms a provider may allow. HMAC and none
// are absent on purpose: a shared-secret or unsigned token never proves who
// the caller is.
var knownAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// validator collects errors positioned by key path.
type validator struct {
	c    *Config
	errs Errors
}

func (v *validator) errorf(path, format string, args ...any) {
	p := v.c.pos[path]
	v.errs = append(v.errs, &Error{File: v.c.File, Line: p.Line, Column: p.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Validate checks the configuration's values and the consistency between
// them. It changes nothing.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.address("listen.address", c.Listen.Address)
	v.address("admin.address", c.Admin.Address)
	if c.Listen.Address == c.Admin.Address && !strings.HasSuffix(c.Listen.Address, ":0") {
		v.errorf("admin.address", "the admin listener must not share the data plane address %q", c.Listen.Address)
	}
	if n := c.Listen.MaxHeaderBytes; n < 1024 || n > 1<<20 {
		v.errorf("listen.max_header_bytes", "must be between 1024 and 1048576, got %d", n)
	}
	for _, k := range []struct {
		path string
		d    Duration
	}{{"listen.read_header_timeout", c.Listen.ReadHeaderTimeout}, {"listen.read_timeout", c.Listen.ReadTimeout}, {"listen.idle_timeout", c.Listen.IdleTimeout}, {"listen.shutdown_timeout", c.Listen.ShutdownTimeout}} {
		if k.d <= 0 {
			v.errorf(k.path, "must be positive")
		}
	}
	if t := c.Listen.TLS; t != nil {
		if t.ClientAuth != "none" && t.ClientCAFile == "" && c.Identity.MTLS == nil {
			v.errorf("listen.tls.client_auth", "client_auth %q needs client_ca_file or identity.mtls", t.ClientAuth)
		}
		if t.ClientAuth == "none" && t.ClientCAFile != "" {
			v.errorf("listen.tls.client_ca_file", "client_ca_file is set but client_auth is none; set client_auth: optional or require")
		}
	}
	v.providers()
	v.mtls()
	v.apiKeys()
	v.adminToken()
	v.secrets()
	if c.Policy.Allow != nil {
		v.rule("policy.allow", c.Policy.Allow)
	}
	v.rateLimit("limits.rate_limit", c.Limits.RateLimit)
	if c.Store != nil && c.Store.Driver == "postgres" && !strings.HasPrefix(c.Store.DSN, "postgres://") && !strings.HasPrefix(c.Store.DSN, "postgresql://") {
		v.errorf("store.dsn", "postgres wants a postgres:// URL (put the password in a ${secret:...} reference), got %q", redactDSN(c.Store.DSN))
	}
	if c.Audit.SpoolMaxBytes < 1<<20 {
		v.errorf("audit.spool_max_bytes", "must be at least 1 MiB")
	}
	if c.Audit.JournalMaxBytes < 1<<20 {
		v.errorf("audit.journal_max_bytes", "must be at least 1 MiB")
	}
	if c.Audit.WriteTimeout.D() <= 0 || c.Audit.WriteTimeout.D() > 30*time.Second {
		v.errorf("audit.write_timeout", "must be between 1ms and 30s")
	}
	v.exporters()
	v.detection()
	switch c.State.Driver {
	case "redis":
		if u, err := url.Parse(c.State.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			v.errorf("state.url", "bad Redis URL %q: want redis://host:port[/db] or rediss://", c.State.URL)
		}
	case "local":
		if c.State.URL != "" {
			v.errorf("state.url", "url is only for driver redis")
		}
	}
	if c.State.MaxKeys < 1024 {
		v.errorf("state.max_keys", "must be at least 1024")
	}
	v.assertion()
	v.services()
	if len(v.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(v.errs, func(a, b *Error) int { return a.Line - b.Line })
	return v.errs
}

func (v *validator) address(path, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.errorf(path, "bad address %q: want host:port", addr)
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		v.errorf(path, "bad port %q", port)
	}
	_ = host
}

func (v *validator) providers() {
	seen := map[string]bool{}
	issuers := map[string]string{} // what a provider verifies -> its name
	for i, p := range v.c.Identity.Providers {
		path := fmt.Sprintf("identity.providers[%d]", i)
		if !nameRE.MatchString(p.Name) {
			v.errorf(path+".name", "bad name %q: letters, digits, '.', '_' and '-' only", p.Name)
		}
		if seen[p.Name] {
			v.errorf(path+".name", "duplicate provider name %q", p.Name)
		}
		seen[p.Name] = true
		var verifies string
		switch p.Type {
		case "entra":
			verifies = v.entraProvider(path, p)
		case "oidc":
			if p.Issuer == "" {
				v.errorf(path, "missing required key \"issuer\" for type oidc")
			} else {
				v.secureURL(path+".issuer", p.Issuer)
				verifies = "issuer " + p.Issuer
			}
			for _, k := range []struct {
				key string
				set bool
			}{{"tenant", p.Tenant != ""}, {"allowed_tenants", len(p.AllowedTenants) > 0}, {"client_id", p.ClientID != ""}, {"authority_host", p.AuthorityHost != ""}} {
				if k.set {
					v.errorf(path+"."+k.key, "%s is only for type entra", k.key)
				}
			}
			if len(p.Audiences) == 0 {
				v.errorf(path, "missing \"audiences\": without an audience check any token from this issuer, for any application, would be accepted")
			}
		}
		if other, dup := issuers[verifies]; dup && verifies != "" {
			v.errorf(path, "provider %q already verifies the tokens of %s; a token is checked by one provider only", other, verifies)
		} else if verifies != "" {
			issuers[verifies] = p.Name
		}
		for j, a := range p.Audiences {
			if a == "" {
				v.errorf(fmt.Sprintf("%s.audiences[%d]", path, j), "empty audience")
			}
		}
		if len(p.Algorithms) == 0 {
			v.errorf(path+".algorithms", "at least one algorithm is needed")
		}
		for j, a := range p.Algorithms {
			if !slices.Contains(knownAlgorithms, a) {
				v.errorf(fmt.Sprintf("%s.algorithms[%d]", path, j), "algorithm %q not allowed (allowed: %s; HMAC and none never are)", a, strings.Join(knownAlgorithms, ", "))
			}
		}
		if p.MaxTokenBytes < 1024 || p.MaxTokenBytes > 1<<20 {
			v.errorf(path+".max_token_bytes", "must be between 1024 and 1048576")
		}
		if p.JWKSRefresh.D() < 60e9 {
			v.errorf(path+".jwks_refresh", "must be at least 1m")
		}
		if p.ClockSkew.D() > 600e9 {
			v.errorf(path+".clock_skew", "must be at most 10m")
		}
		if p.TokenCacheSize < 0 || p.TokenCacheSize > 1_000_000 {
			v.errorf(path+".token_cache_size", "must be between 0 (no cache) and 1000000")
		}
		if p.GroupOverage != nil {
			v.groupOverage(path+".group_overage", p)
		}
	}
}

// sovereignGraph is the Microsoft Graph of each national cloud's sign-in
// host.
var sovereignGraph = map[string]string{
	"login.microsoftonline.us":         "https://graph.microsoft.us, or https://dod-graph.microsoft.us for DoD",
	"login.chinacloudapi.cn":           "https://microsoftgraph.chinacloudapi.cn",
	"login.partner.microsoftonline.cn": "https://microsoftgraph.chinacloudapi.cn",
}

// groupOverage checks a provider's group_overage. Its messages never
// quote the client secret.
func (v *validator) groupOverage(path string, p Provider) {
	g := p.GroupOverage
	if p.Type != "entra" {
		v.errorf(path, "group_overage is only for type entra")
		return
	}
	if !guidRE.MatchString(g.ClientID) {
		v.errorf(path+".client_id", "bad client_id %q: want the gateway's application (client) id, a GUID", g.ClientID)
	}
	if strings.TrimSpace(g.ClientSecret) == "" {
		v.errorf(path+".client_secret", "the client secret is empty")
	}
	v.secureURL(path+".graph_url", g.GraphURL)
	if u, err := url.Parse(g.GraphURL); err == nil && strings.Trim(u.Path, "/") != "" {
		v.errorf(path+".graph_url", "graph_url %q must have no path: the gateway adds /v1.0/...", g.GraphURL)
	}
	// A sovereign cloud's tokens are for its own Graph: the global default
	// would fail every lookup.
	if _, set := v.c.pos[path+".graph_url"]; !set {
		if u, err := url.Parse(p.AuthorityHost); err == nil {
			if graph, ok := sovereignGraph[strings.ToLower(u.Hostname())]; ok {
				v.errorf(path, "authority_host %s is a national cloud: set graph_url to its Microsoft Graph (%s)", p.AuthorityHost, graph)
			}
		}
	}
	if g.AssignedToAppOnly && p.ClientID == "" {
		v.errorf(path+".assigned_to_app_only", "assigned_to_app_only needs the provider's client_id: it names the application whose assigned groups are kept")
	}
	if d := g.TTL.D(); d < time.Second || d > 24*time.Hour {
		v.errorf(path+".ttl", "must be between 1s and 24h")
	}
	if g.FailureTTL.D() > 10*time.Minute {
		v.errorf(path+".failure_ttl", "must be at most 10m")
	}
	if d := g.Timeout.D(); d < 100*time.Millisecond || d > time.Minute {
		v.errorf(path+".timeout", "must be between 100ms and 1m")
	}
	if g.CacheSize < 1 || g.CacheSize > 1_000_000 {
		v.errorf(path+".cache_size", "must be between 1 and 1000000")
	}
}

// apiKeyHeaderRE is an HTTP field name (RFC 9110 token).
var apiKeyHeaderRE = boundedRE{regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"), 64}

// apiKeyReservedHeaders cannot carry API keys: they mean something else to
// clients, proxies or the gateway.
var apiKeyReservedHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Host", "Connection", "Content-Length",
	"Content-Type", "Transfer-Encoding", "Te", "Trailer", "Upgrade", "Keep-Alive", "Proxy-Connection", "Forwarded",
	"X-Request-Id", "X-Client-Request-Id"}

func (v *validator) apiKeys() {
	k := v.c.Identity.APIKeys
	if k == nil {
		return
	}
	const path = "identity.api_keys"
	if k.Enabled && v.c.Store == nil {
		v.errorf(path+".enabled", "API keys are kept in the store: configure store")
	}
	canon := textproto.CanonicalMIMEHeaderKey(k.Header)
	switch {
	case !apiKeyHeaderRE.MatchString(k.Header):
		v.errorf(path+".header", "bad header name %q", k.Header)
	case slices.Contains(apiKeyReservedHeaders, canon) || strings.HasPrefix(canon, "X-Forwarded-") || strings.HasPrefix(canon, "X-Ztgate-") || strings.Contains(k.Header, "_"):
		v.errorf(path+".header", "%q cannot carry API keys: choose a header of its own, such as X-API-Key", k.Header)
	}
	if d := k.PollInterval.D(); d < 100*time.Millisecond || d > time.Minute {
		v.errorf(path+".poll_interval", "must be between 100ms and 1m")
	}
	if d := k.MaxStale.D(); d < 2*k.PollInterval.D() || d > 10*time.Minute {
		v.errorf(path+".max_stale", "must be at least twice poll_interval and at most 10m")
	}
}

func (v *validator) adminToken() {
	t := v.c.Admin.Token
	if t == "" {
		return
	}
	if len(t) < 32 || strings.ContainsFunc(t, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		v.errorf("admin.token", "the admin token must be at least 32 printable characters without spaces (use a ${secret:...} reference)")
	}
}

var (
	guidRE   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	domainRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
)

// entraProvider checks a provider of type entra and returns what it
// verifies: the tenant on its authority host.
func (v *validator) entraProvider(path string, p Provider) string {
	if p.Issuer != "" {
		v.errorf(path+".issuer", "issuer is only for type oidc: an entra provider's issuers follow from tenant and authority_host")
	}
	tenant := strings.ToLower(p.Tenant)
	multi := tenant == "organizations" || tenant == "common"
	switch {
	case p.Tenant == "":
		v.errorf(path, "missing required key \"tenant\" for type entra")
	case multi:
		if len(p.AllowedTenants) == 0 {
			v.errorf(path, "missing \"allowed_tenants\" for tenant %s: list the tenant ids whose tokens are accepted, or [\"*\"] for every tenant", p.Tenant)
		}
	case guidRE.MatchString(p.Tenant) || domainRE.MatchString(tenant) || tenant == "consumers":
		if len(p.AllowedTenants) > 0 {
			v.errorf(path+".allowed_tenants", "allowed_tenants is only for multi-tenant providers (tenant organizations or common)")
		}
	default:
		v.errorf(path+".tenant", "bad tenant %q: want a tenant id (GUID), a verified domain, organizations or common", p.Tenant)
	}
	for j, t := range p.AllowedTenants {
		switch {
		case t == "*" && len(p.AllowedTenants) > 1:
			v.errorf(fmt.Sprintf("%s.allowed_tenants[%d]", path, j), "\"*\" accepts every tenant and stands alone")
		case t != "*" && !guidRE.MatchString(t):
			v.errorf(fmt.Sprintf("%s.allowed_tenants[%d]", path, j), "bad tenant id %q: want a GUID", t)
		}
	}
	if p.ClientID != "" && !guidRE.MatchString(p.ClientID) {
		v.errorf(path+".client_id", "bad client_id %q: want the application (client) id, a GUID", p.ClientID)
	}
	if len(p.Audiences) == 0 && p.ClientID == "" {
		v.errorf(path, "missing \"client_id\" or \"audiences\": without an audience check any token from this tenant, for any application, would be accepted")
	}
	authority := "https://login.microsoftonline.com"
	if p.AuthorityHost != "" {
		v.secureURL(path+".authority_host", p.AuthorityHost)
		if u, err := url.Parse(p.AuthorityHost); err == nil && strings.Trim(u.Path, "/") != "" {
			v.errorf(path+".authority_host", "authority_host %q must have no path: the tenant is set by tenant", p.AuthorityHost)
		}
		authority = strings.TrimRight(strings.ToLower(p.AuthorityHost), "/")
	}
	if multi {
		return "every tenant at " + authority
	}
	return "tenant " + tenant + " at " + authority
}

// secureURL checks an identity URL: https, or http only on a loopback host
// (local development and tests).
func (v *validator) secureURL(path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		v.errorf(path, "bad URL %q: want https://host[/path]", raw)
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			v.errorf(path, "%q must use https (http is accepted only for loopback hosts)", raw)
		}
	default:
		v.errorf(path, "bad URL %q: want https://host[/path]", raw)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (v *validator) services() {
	if len(v.c.Services) == 0 {
		v.errorf("services", "no services: every request would be denied; declare at least one")
	}
	var specs []route.Spec
	var owners []string // key path of the route behind each spec
	seen := map[string]bool{}
	for i, s := range v.c.Services {
		path := fmt.Sprintf("services[%d]", i)
		if !nameRE.MatchString(s.Name) {
			v.errorf(path+".name", "bad name %q: letters, digits, '.', '_' and '-' only", s.Name)
		}
		if seen[s.Name] {
			v.errorf(path+".name", "duplicate service name %q", s.Name)
		}
		seen[s.Name] = true
		v.upstream(path, s)
		for j, h := range s.Hosts {
			if !hostRE.MatchString(h) {
				v.errorf(fmt.Sprintf("%s.hosts[%d]", path, j), "bad host %q: want a lower-case DNS name or *.domain", h)
			}
		}
		if s.MaxBodyBytes <= 0 {
			v.errorf(path+".max_body_bytes", "must be positive")
		}
		if s.MaxIdleConns <= 0 {
			v.errorf(path+".max_idle_conns", "must be positive")
		}
		for _, t := range []struct {
			key string
			d   Duration
		}{{"dial", s.Timeouts.Dial}, {"response_header", s.Timeouts.ResponseHeader}, {"idle", s.Timeouts.Idle}, {"overall", s.Timeouts.Overall}} {
			if t.d <= 0 {
				v.errorf(path+".timeouts."+t.key, "must be positive")
			}
		}
		if s.Allow != nil {
			v.rule(path+".allow", s.Allow)
		}
		if s.RequireClientCert && v.c.Identity.MTLS == nil {
			v.errorf(path+".require_client_cert", "require_client_cert needs identity.mtls")
		}
		v.rateLimit(path+".rate_limit", s.RateLimit)
		v.quota(path+".quota", s.Quota)
		v.inject(path+".inject", s.Inject, nil, &s)
		if s.Inject != nil {
			v.injectTokens(path+".inject", s)
		}
		if c := s.CORS; c != nil {
			for j, o := range c.AllowedOrigins {
				op := fmt.Sprintf("%s.cors.allowed_origins[%d]", path, j)
				if o == "*" {
					if c.AllowCredentials {
						v.errorf(op, "* cannot be used with allow_credentials: list the origins")
					}
					continue
				}
				u, err := url.Parse(o)
				if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || strings.Contains(o, "*") {
					v.errorf(op, "bad origin %q: want scheme://host[:port], e.g. https://app.example.com", o)
				}
			}
			if len(c.AllowedOrigins) == 0 {
				v.errorf(path+".cors.allowed_origins", "no origins: remove cors instead")
			}
		}
		if len(s.Routes) == 0 {
			v.errorf(path+".routes", "no routes: the service could never be reached")
		}
		routeNames := map[string]bool{}
		for j, r := range s.Routes {
			rp := fmt.Sprintf("%s.routes[%d]", path, j)
			if !nameRE.MatchString(r.Name) {
				v.errorf(rp+".name", "bad name %q: letters, digits, '.', '_' and '-' only", r.Name)
			}
			if routeNames[r.Name] {
				v.errorf(rp+".name", "duplicate route name %q in service %q", r.Name, s.Name)
			}
			routeNames[r.Name] = true
			for k, m := range r.Match.Methods {
				mp := fmt.Sprintf("%s.match.methods[%d]", rp, k)
				switch {
				case !methodRE.MatchString(m):
					v.errorf(mp, "bad method %q: want an upper-case HTTP method such as GET", m)
				case m == "CONNECT":
					v.errorf(mp, "CONNECT is never proxied: the gateway does not tunnel")
				case slices.Contains(r.Match.Methods[:k], m):
					v.errorf(mp, "duplicate method %q", m)
				}
			}
			if r.Match.Host != "" && !hostRE.MatchString(r.Match.Host) {
				v.errorf(rp+".match.host", "bad host %q: want a lower-case DNS name or *.domain", r.Match.Host)
			}
			if r.Allow != nil {
				v.rule(rp+".allow", r.Allow)
			}
			if r.RequireClientCert && v.c.Identity.MTLS == nil {
				v.errorf(rp+".require_client_cert", "require_client_cert needs identity.mtls")
			}
			v.rateLimit(rp+".rate_limit", r.RateLimit)
			v.quota(rp+".quota", r.Quota)
			v.dlp(rp+".dlp", r.DLP)
			v.inject(rp+".inject", r.Inject, s.Inject, &s)
			if in := r.Inject; in != nil {
				// Routes refine the service's secrets; tokens and
				// assertions are the service's.
				for key, set := range map[string]bool{"identity_assertion": in.IdentityAssertion, "assertion_audience": in.AssertionAudience != "",
					"client_credentials": in.ClientCredentials != nil, "managed_identity": in.ManagedIdentity != nil, "token_exchange": in.TokenExchange != nil} {
					if set {
						v.errorf(rp+".inject."+key, "%s is set per service, not per route", key)
					}
				}
			}
			if g := r.Guard; g != nil {
				if g.MaxBodyBytes < 0 {
					v.errorf(rp+".guard.max_body_bytes", "must not be negative")
				}
				if g.MaxJSONDepth < 1 || g.MaxJSONDepth > 1000 {
					v.errorf(rp+".guard.max_json_depth", "must be between 1 and 1000")
				}
				for k, ct := range g.ContentTypes {
					if !strings.Contains(ct, "/") || strings.ContainsAny(ct, " ;") {
						v.errorf(fmt.Sprintf("%s.guard.content_types[%d]", rp, k), "bad media type %q: want type/subtype", ct)
					}
				}
			}
			for _, h := range routeHosts(s, r) {
				spec := route.Spec{Host: h, Methods: r.Match.Methods, Path: r.Match.Path}
				if _, err := route.Compile([]route.Spec{spec}); err != nil {
					v.errorf(rp+".match.path", "%v", err)
					break
				}
			}
		}
	}
	if len(v.errs) > 0 {
		return
	}
	for _, ref := range v.c.RouteTable() {
		m := v.c.Services[ref.Service].Routes[ref.Route].Match
		specs = append(specs, route.Spec{Host: ref.Host, Methods: m.Methods, Path: m.Path})
		owners = append(owners, fmt.Sprintf("services[%d].routes[%d]", ref.Service, ref.Route))
	}
	if len(v.errs) > 0 {
		return
	}
	if _, err := route.Compile(specs); err != nil {
		var oe *route.OverlapError
		if errors.As(err, &oe) {
			a, b := owners[oe.A], owners[oe.B]
			pa := v.c.pos[a]
			v.errorf(b+".match", "route %q can never match %s %s: route %q at line %d matches the same requests (give them different methods or paths)",
				v.routeName(b), oe.Method, specs[oe.B].Path, v.routeName(a), pa.Line)
			return
		}
		v.errorf("services", "%v", err)
	}
}

var headerNameRE = boundedRE{regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]*$`), 64}

// reservedHeaders may not carry an assertion: the transport, the caller's
// credentials or the gateway's own headers use them.
var reservedHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Host", "Content-Length", "Content-Type",
	"Content-Encoding", "Transfer-Encoding", "Connection", "Keep-Alive", "Te", "Trailer", "Upgrade", "Forwarded",
	"X-Request-Id", "X-Client-Request-Id", "X-Real-Ip"}

func (v *validator) assertion() {
	a := v.c.Assertion
	if a == nil {
		return
	}
	if u, err := url.Parse(a.Issuer); err != nil || u.Scheme == "" || (u.Host == "" && u.Opaque == "") {
		v.errorf("assertion.issuer", "bad issuer %q: want a URL such as https://gateway.example.com, or a URN", a.Issuer)
	}
	canon := strings.ToLower(a.Header)
	switch {
	case !headerNameRE.MatchString(a.Header):
		v.errorf("assertion.header", "bad header name %q: letters, digits and '-' only", a.Header)
	case slices.ContainsFunc(reservedHeaders, func(h string) bool { return strings.ToLower(h) == canon }), strings.HasPrefix(canon, "x-forwarded-"):
		v.errorf("assertion.header", "header %q is reserved; name one of the gateway's own, e.g. X-Ztgate-Identity", a.Header)
	}
	if a.TTL.D() < 5*time.Second || a.TTL.D() > 10*time.Minute {
		v.errorf("assertion.ttl", "must be between 5s and 10m: an assertion is for one request")
	}
	if a.RotationOverlap < a.TTL || a.RotationOverlap.D() > 30*24*time.Hour {
		v.errorf("assertion.rotation_overlap", "must be between ttl (%s) and 30d: an assertion signed by a removed key must stay verifiable until it expires", a.TTL.D())
	}
	files := map[string]bool{}
	for i, k := range a.Keys {
		kp := fmt.Sprintf("assertion.keys[%d]", i)
		switch {
		case (k.File == "") == (k.PEM == ""):
			v.errorf(kp, "set exactly one of file and pem")
		case k.File != "" && files[k.File]:
			v.errorf(kp+".file", "key file %q listed twice", k.File)
		}
		files[k.File] = true
	}
}

// injectTokens checks a service's identity assertion and minted upstream
// token settings.
func (v *validator) injectTokens(path string, s Service) {
	in := s.Inject
	if in.IdentityAssertion && v.c.Assertion == nil {
		v.errorf(path+".identity_assertion", "identity assertions need the top-level assertion section (at least assertion.issuer, the iss upstreams check)")
	}
	if in.AssertionAudience != "" && !in.IdentityAssertion {
		v.errorf(path+".assertion_audience", "assertion_audience without identity_assertion: true has no effect")
	}
	cc, mi, te := in.ClientCredentials, in.ManagedIdentity, in.TokenExchange
	var tokens []string
	for _, t := range []struct {
		key string
		set bool
	}{{"client_credentials", cc != nil}, {"managed_identity", mi != nil}, {"token_exchange", te != nil}} {
		if t.set {
			tokens = append(tokens, t.key)
		}
	}
	if len(tokens) > 1 {
		v.errorf(path+"."+tokens[1], "%s each set the upstream's Authorization header; choose one", strings.Join(tokens, " and "))
	}
	if len(tokens) > 0 && in.BasicAuth != nil {
		v.errorf(path+".basic_auth", "basic_auth and %s each set the upstream's Authorization header; choose one", tokens[0])
	}
	for name := range in.Headers {
		if len(tokens) > 0 && strings.EqualFold(strings.ReplaceAll(name, "_", "-"), "Authorization") {
			v.errorf(path+".headers."+name, "an injected Authorization header and %s both set Authorization; choose one", tokens[0])
		}
	}
	if len(tokens) > 0 && s.ForwardAuthorization {
		v.errorf(path, "an injected upstream token replaces the caller's Authorization header; remove forward_authorization")
	}
	if te != nil {
		tp := path + ".token_exchange"
		v.secureURL(tp+".token_url", te.TokenURL)
		if te.ClientID == "" {
			v.errorf(tp+".client_id", "empty client_id")
		}
		if te.ClientSecret == "" {
			v.errorf(tp+".client_secret", "the reference resolved to an empty secret")
		}
		for i, sc := range te.Scopes {
			if sc == "" || strings.ContainsAny(sc, " \t\n") {
				v.errorf(fmt.Sprintf("%s.scopes[%d]", tp, i), "bad scope %q: one scope per entry, no spaces", sc)
			}
		}
		if te.Grant == "on_behalf_of" && len(te.Scopes) == 0 {
			v.errorf(tp+".scopes", "on_behalf_of needs the scopes of the upstream, e.g. [api://orders/.default]")
		}
		if te.Grant == "token_exchange" && len(te.Scopes) == 0 && te.Audience == "" && te.Resource == "" {
			v.errorf(tp, "say what the token is for: audience, resource or scopes; without them the caller's token would come back unnarrowed")
		}
		if te.CacheSize < 1 || te.CacheSize > 1_000_000 {
			v.errorf(tp+".cache_size", "must be between 1 and 1000000")
		}
	}
	if cc != nil {
		v.secureURL(path+".client_credentials.token_url", cc.TokenURL)
		if cc.ClientID == "" {
			v.errorf(path+".client_credentials.client_id", "empty client_id")
		}
		if cc.ClientSecret == "" {
			v.errorf(path+".client_credentials.client_secret", "the reference resolved to an empty secret")
		}
		for i, sc := range cc.Scopes {
			if sc == "" || strings.ContainsAny(sc, " \t\n") {
				v.errorf(fmt.Sprintf("%s.client_credentials.scopes[%d]", path, i), "bad scope %q: one scope per entry, no spaces", sc)
			}
		}
	}
	if mi != nil {
		if mi.ClientID != "" && !guidRE.MatchString(mi.ClientID) {
			v.errorf(path+".managed_identity.client_id", "bad client_id %q: want the managed identity's client id, a GUID", mi.ClientID)
		}
		if mi.Scope == "" || strings.ContainsAny(mi.Scope, " \t\n") {
			v.errorf(path+".managed_identity.scope", "bad scope %q: want one scope, e.g. api://orders/.default", mi.Scope)
		}
	}
}

func (v *validator) routeName(path string) string {
	var i, j int
	fmt.Sscanf(path, "services[%d].routes[%d]", &i, &j)
	return v.c.Services[i].Name + "/" + v.c.Services[i].Routes[j].Name
}

func (v *validator) upstream(path string, s Service) {
	u, err := url.Parse(s.Upstream)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		v.errorf(path+".upstream", "bad upstream %q: want http(s)://host[:port][/path]", s.Upstream)
		return
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		v.errorf(path+".upstream", "upstream %q must not carry credentials, a query or a fragment (inject credentials instead)", s.Upstream)
	}
	if t := s.UpstreamTLS; t != nil {
		if u.Scheme != "https" {
			v.errorf(path+".upstream_tls", "upstream_tls is set but the upstream %q is not https", s.Upstream)
		}
		if (t.CertFile == "") != (t.KeyFile == "") {
			v.errorf(path+".upstream_tls", "cert_file and key_file go together")
		}
		if cc := t.ClientCertificate; !cc.IsZero() {
			cp := path + ".upstream_tls.client_certificate"
			parts := cc.Parts()
			switch {
			case t.CertFile != "" || t.KeyFile != "":
				v.errorf(cp, "client_certificate replaces cert_file and key_file; choose one")
			case len(parts) != 1 || parts[0].Ref == nil:
				v.errorf(cp, "want one ${secret:...} reference and nothing else")
			default:
				v.secretRef(cp, *parts[0].Ref)
			}
		}
	}
}

func (v *validator) rule(path string, r *Rule) {
	empty := true
	lists := []struct {
		key  string
		vals []string
	}{{"roles", r.Roles}, {"scopes", r.Scopes}, {"groups", r.Groups}, {"tenants", r.Tenants}, {"apps", r.Apps}, {"subjects", r.Subjects}, {"identity_types", r.IdentityTypes}, {"ip", r.IP}, {"workloads", r.Workloads}}
	for _, l := range lists {
		if l.vals == nil {
			continue
		}
		empty = false
		if len(l.vals) == 0 {
			v.errorf(path+"."+l.key, "empty list: it could never match; remove the key or list values")
		}
		for i, s := range l.vals {
			if s == "" {
				v.errorf(fmt.Sprintf("%s.%s[%d]", path, l.key, i), "empty value")
			}
		}
	}
	if r.Workloads != nil && v.c.Identity.MTLS == nil {
		v.errorf(path+".workloads", "workloads need identity.mtls (client certificates)")
	}
	for i, w := range r.Workloads {
		if err := CheckWorkloadPattern(w); err != nil {
			v.errorf(fmt.Sprintf("%s.workloads[%d]", path, i), "%v", err)
		}
	}
	for i, c := range r.IP {
		if _, err := netip.ParsePrefix(c); err != nil {
			if _, err2 := netip.ParseAddr(c); err2 != nil {
				v.errorf(fmt.Sprintf("%s.ip[%d]", path, i), "bad CIDR %q", c)
			}
		}
	}
	if r.Authenticated || r.MFA {
		empty = false
	}
	if r.Countries != nil {
		empty = false
		if len(r.Countries) == 0 {
			v.errorf(path+".countries", "empty list: it could never match")
		}
		if v.c.Policy.GeoIPDatabase == "" {
			v.errorf(path+".countries", "countries need a GeoIP database: set policy.geoip_database")
		}
		for i, c := range r.Countries {
			if len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' {
				v.errorf(fmt.Sprintf("%s.countries[%d]", path, i), "bad country %q: want an upper-case ISO 3166-1 alpha-2 code such as DE", c)
			}
		}
	}
	if r.AuthContext != nil {
		empty = false
		if len(r.AuthContext) == 0 {
			v.errorf(path+".auth_context", "empty list: it could never match")
		}
	}
	if r.Time != nil {
		empty = false
		if len(r.Time) == 0 {
			v.errorf(path+".time", "empty list: it could never match")
		}
		for i, w := range r.Time {
			wp := fmt.Sprintf("%s.time[%d]", path, i)
			if _, err := ParseClock(w.From); err != nil {
				v.errorf(wp+".from", "%v", err)
			}
			if _, err := ParseClock(w.To); err != nil {
				v.errorf(wp+".to", "%v", err)
			}
			if w.From == w.To {
				v.errorf(wp, "from and to are equal: the window is empty")
			}
			if _, err := time.LoadLocation(w.Zone); err != nil {
				v.errorf(wp+".zone", "unknown time zone %q", w.Zone)
			}
		}
	}
	if r.Device != nil {
		empty = false
		if len(r.Device.Claims) == 0 {
			v.errorf(path+".device.claims", "no device claims listed")
		}
		for k, vals := range r.Device.Claims {
			if len(vals) == 0 {
				v.errorf(path+".device.claims."+k, "no accepted values; use [\"*\"] to require the claim with any value")
			}
		}
	}
	if r.AnyOf != nil {
		empty = false
		if len(r.AnyOf) == 0 {
			v.errorf(path+".any_of", "empty any_of could never match")
		}
	}
	if r.AllOf != nil {
		empty = false
		if len(r.AllOf) == 0 {
			v.errorf(path+".all_of", "empty all_of: list at least one rule")
		}
	}
	for i := range r.AnyOf {
		v.rule(fmt.Sprintf("%s.any_of[%d]", path, i), &r.AnyOf[i])
	}
	for i := range r.AllOf {
		v.rule(fmt.Sprintf("%s.all_of[%d]", path, i), &r.AllOf[i])
	}
	if r.Not != nil {
		empty = false
		v.rule(path+".not", r.Not)
	}
	if empty {
		v.errorf(path, "empty rule: say who may call (roles, scopes, ... or authenticated: true); a route without allow denies everyone")
	}
}

// ParseClock parses "HH:MM" into minutes after midnight.
func ParseClock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, fmt.Errorf("bad time of day %q: want HH:MM (24-hour)", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

func routeHosts(s Service, r Route) []string {
	if r.Match.Host != "" {
		return []string{r.Match.Host}
	}
	if len(s.Hosts) == 0 {
		return []string{""}
	}
	return s.Hosts
}

// RateLimitKeyParts are the parts a rate limit key may combine.
var RateLimitKeyParts = []string{"identity", "app", "tenant", "ip"}

func (v *validator) quota(path string, q *Quota) {
	if q == nil {
		return
	}
	if q.Calls <= 0 && q.Bytes <= 0 {
		v.errorf(path, "set calls, bytes or both")
	}
	v.keyParts(path+".key", q.Key)
}

func (v *validator) rateLimit(path string, rl *RateLimit) {
	if rl == nil {
		return
	}
	if rl.Limit < 1 {
		v.errorf(path+".limit", "must be at least 1")
	}
	if rl.Per.D() < time.Millisecond || rl.Per.D() > 366*24*time.Hour {
		v.errorf(path+".per", "must be between 1ms and 366d")
	} else if rl.Limit > 0 && rl.Per.D()/time.Duration(rl.Limit) < time.Microsecond {
		v.errorf(path+".limit", "more than one request per microsecond cannot be limited")
	}
	if rl.Burst < 0 {
		v.errorf(path+".burst", "must not be negative")
	}
	v.keyParts(path+".key", rl.Key)
}

func (v *validator) keyParts(path, key string) {
	for _, part := range strings.Split(key, "+") {
		switch {
		case slices.Contains(RateLimitKeyParts, part):
		case strings.HasPrefix(part, "header:") && len(part) > len("header:"):
		case strings.HasPrefix(part, "claim:") && len(part) > len("claim:"):
		case part == "api_key":
			v.errorf(path, "bad key part \"api_key\": use identity, which counts each API key on its own (api_key/<id>)")
		default:
			v.errorf(path, "bad key part %q: want identity, app, tenant, ip, header:NAME or claim:NAME, joined with +", part)
		}
	}
}

// redactDSN hides a password in a connection string shown in an error.
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
			return u.String()
		}
	}
	if strings.Contains(dsn, "password") {
		return "(a connection string holding a password)"
	}
	return dsn
}

// exporterKeys lists the keys that only some exporter types take.
var exporterKeys = map[string][]string{
	"path":           {"jsonl"},
	"max_bytes":      {"jsonl"},
	"max_files":      {"jsonl"},
	"endpoint":       {"sentinel"},
	"dcr_id":         {"sentinel"},
	"stream":         {"sentinel"},
	"auth":           {"sentinel"},
	"tenant_id":      {"sentinel"},
	"client_id":      {"sentinel"},
	"client_secret":  {"sentinel"},
	"authority_host": {"sentinel"},
	"audience":       {"sentinel"},
	"network":        {"syslog"},
	"address":        {"syslog"},
	"facility":       {"syslog"},
	"url":            {"otlp", "webhook"},
	"headers":        {"otlp", "webhook"},
	"hmac_key":       {"webhook"},
	"ca_file":        {"sentinel", "syslog", "otlp", "webhook"},
	"cert_file":      {"syslog", "otlp", "webhook"},
	"key_file":       {"syslog", "otlp", "webhook"},
	"server_name":    {"syslog"},
}

// has reports whether the file sets the key at path.
func (v *validator) has(path string) bool {
	_, ok := v.c.pos[path]
	return ok
}

func (v *validator) detection() {
	names := map[string]bool{}
	for i, r := range v.c.Detection.Rules {
		path := fmt.Sprintf("detection.rules[%d]", i)
		if !nameRE.MatchString(r.Name) {
			v.errorf(path+".name", "bad name %q: letters, digits, '.', '_' and '-' only", r.Name)
		}
		if names[r.Name] {
			v.errorf(path+".name", "duplicate rule name %q", r.Name)
		}
		names[r.Name] = true
		if v.c.Store == nil {
			v.errorf(path, "detection reads the audit stream: configure a store")
		}
		dr := r.Rule()
		if err := dr.Validate(); err != nil {
			v.errorf(path, "%v", err)
		}
	}
	if len(v.c.Detection.Rules) > 0 && v.c.Detection.Sync <= 0 {
		v.errorf("detection.sync_interval", "must be positive")
	}
}

func (v *validator) exporters() {
	names := map[string]bool{}
	for i, e := range v.c.Audit.Exporters {
		path := fmt.Sprintf("audit.exporters[%d]", i)
		name := e.Name
		if name == "" {
			name = e.Type
		}
		if e.Name != "" && !nameRE.MatchString(e.Name) {
			v.errorf(path+".name", "bad name %q: letters, digits, '.', '_' and '-' only", e.Name)
		}
		if names[name] {
			v.errorf(path, "duplicate exporter name %q (give each exporter of a type its own name)", name)
		}
		names[name] = true
		if v.c.Store == nil {
			v.errorf(path, "exporters send what the store made durable: configure a store")
		}
		for _, key := range slices.Sorted(maps.Keys(exporterKeys)) {
			types := exporterKeys[key]
			if v.has(path+"."+key) && !slices.Contains(types, e.Type) {
				v.errorf(path+"."+key, "%s is only for type %s", key, strings.Join(types, " and "))
			}
		}
		if e.Buffer < 1 || e.Buffer > 10_000_000 {
			v.errorf(path+".buffer", "must be between 1 and 10000000")
		}
		if e.BatchSize < 1 || e.BatchSize > 100_000 {
			v.errorf(path+".batch_size", "must be between 1 and 100000")
		}
		if d := e.FlushInterval.D(); d < time.Millisecond || d > time.Hour {
			v.errorf(path+".flush_interval", "must be between 1ms and 1h")
		}
		if d := e.Timeout.D(); d < time.Millisecond || d > 10*time.Minute {
			v.errorf(path+".timeout", "must be between 1ms and 10m")
		}
		r := e.Retry
		if r.InitialInterval.D() < time.Millisecond {
			v.errorf(path+".retry.initial_interval", "must be at least 1ms")
		}
		if r.MaxInterval < r.InitialInterval {
			v.errorf(path+".retry.max_interval", "must not be shorter than initial_interval")
		}
		if (e.CertFile == "") != (e.KeyFile == "") {
			v.errorf(path, "cert_file and key_file go together")
		}
		switch e.Type {
		case "jsonl":
			if e.MaxBytes < 1<<10 {
				v.errorf(path+".max_bytes", "must be at least 1024")
			}
			if e.MaxFiles < 1 || e.MaxFiles > 1000 {
				v.errorf(path+".max_files", "must be between 1 and 1000")
			}
		case "sentinel":
			v.sentinel(path, e)
		case "syslog":
			if e.Network == "" {
				v.errorf(path, "missing required key \"network\" for type syslog (tcp, tls or udp)")
			}
			if e.Address == "" {
				v.errorf(path, "missing required key \"address\" for type syslog")
			} else if _, _, err := net.SplitHostPort(e.Address); err != nil {
				v.errorf(path+".address", "bad address %q: want host:port", e.Address)
			}
			if e.Network != "tls" {
				for _, k := range []string{"ca_file", "cert_file", "key_file", "server_name"} {
					if v.has(path + "." + k) {
						v.errorf(path+"."+k, "%s is only for network tls", k)
					}
				}
			}
		case "otlp", "webhook":
			if e.URL == "" {
				v.errorf(path, "missing required key \"url\" for type %s", e.Type)
			} else {
				v.exportURL(path+".url", e.URL)
			}
			for k := range e.Headers {
				if !headerRE.MatchString(k) {
					v.errorf(path+".headers."+k, "bad header name %q", k)
				}
			}
			if e.Type == "webhook" && len(e.HMACKey) < 16 {
				v.errorf(path+".hmac_key", "webhook needs an hmac_key of at least 16 bytes (use a ${secret:...} reference) so receivers can verify the batches")
			}
		}
	}
}

var (
	headerRE = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
	dcrRE    = regexp.MustCompile(`^dcr-[0-9a-f]{32}$`)
	streamRE = regexp.MustCompile(`^(Custom|Microsoft)-[A-Za-z0-9_]+$`)
)

func (v *validator) sentinel(path string, e Exporter) {
	for _, k := range []struct{ key, val string }{{"endpoint", e.Endpoint}, {"dcr_id", e.DCRID}, {"stream", e.Stream}, {"auth", e.Auth}} {
		if k.val == "" {
			v.errorf(path, "missing required key %q for type sentinel", k.key)
		}
	}
	if e.Endpoint != "" {
		if u, err := url.Parse(e.Endpoint); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.User != nil {
			v.errorf(path+".endpoint", "bad endpoint %q: want https://host (the token is only ever sent over TLS)", e.Endpoint)
		}
	}
	if e.DCRID != "" && !dcrRE.MatchString(e.DCRID) {
		v.errorf(path+".dcr_id", "bad dcr_id %q: want the rule's immutable id, dcr- and 32 hex digits", e.DCRID)
	}
	if e.Stream != "" && !streamRE.MatchString(e.Stream) {
		v.errorf(path+".stream", "bad stream %q: want a stream declared in the rule, e.g. Custom-ZtgateWebSession", e.Stream)
	}
	if e.ClientID != "" && !guidRE.MatchString(e.ClientID) {
		v.errorf(path+".client_id", "bad client_id %q: want a GUID", e.ClientID)
	}
	switch e.Auth {
	case "client_secret":
		if !guidRE.MatchString(e.TenantID) {
			v.errorf(path, "auth client_secret needs tenant_id, the tenant's GUID")
		}
		if e.ClientID == "" {
			v.errorf(path, "auth client_secret needs client_id")
		}
		if e.ClientSecret == "" {
			v.errorf(path, "auth client_secret needs client_secret (use a ${secret:...} reference)")
		}
	case "managed_identity":
		for _, k := range []string{"tenant_id", "client_secret", "authority_host"} {
			if v.has(path + "." + k) {
				v.errorf(path+"."+k, "%s is only for auth client_secret", k)
			}
		}
	}
	if e.AuthorityHost != "" {
		v.secureURL(path+".authority_host", e.AuthorityHost)
	}
	if u, err := url.Parse(e.Audience); err != nil || u.Scheme != "https" || u.Host == "" {
		v.errorf(path+".audience", "bad audience %q: want https://monitor.azure.com or a sovereign cloud's", e.Audience)
	}
}

// exportURL checks a destination URL: http(s), no credentials in it.
func (v *validator) exportURL(path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
		v.errorf(path, "bad URL %q: want http(s)://host[:port]/path", raw)
		return
	}
	if u.User != nil {
		v.errorf(path, "the URL must not carry credentials: put them in headers with a ${secret:...} reference")
	}
}
