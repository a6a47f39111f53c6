package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ztgate/ztgate/internal/dlp"
	"github.com/ztgate/ztgate/internal/route"
)

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	methodRE = regexp.MustCompile(`^[A-Z]{1,20}$`)
	hostRE   = regexp.MustCompile(`^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

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
		if t.ClientAuth != "none" && t.ClientCAFile == "" {
			v.errorf("listen.tls.client_auth", "client_auth %q needs client_ca_file", t.ClientAuth)
		}
		if t.ClientAuth == "none" && t.ClientCAFile != "" {
			v.errorf("listen.tls.client_ca_file", "client_ca_file is set but client_auth is none; set client_auth: optional or require")
		}
	}
	v.providers()
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
	if c.Audit.WriteTimeout.D() <= 0 || c.Audit.WriteTimeout.D() > 30*time.Second {
		v.errorf("audit.write_timeout", "must be between 1ms and 30s")
	}
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

func (v *validator) secrets() {
	seen := map[string]bool{}
	for i, p := range v.c.Secrets.Providers {
		path := fmt.Sprintf("secrets.providers[%d]", i)
		if !nameRE.MatchString(p.Name) {
			v.errorf(path+".name", "bad name %q", p.Name)
		}
		if seen[p.Name] {
			v.errorf(path+".name", "duplicate secret provider name %q", p.Name)
		}
		seen[p.Name] = true
		switch p.Type {
		case "file":
			if p.Dir == "" {
				v.errorf(path, "missing required key \"dir\" for type file")
			}
		case "azure_keyvault":
			v.errorf(path+".type", "type azure_keyvault is not supported by this version of ztgate yet")
		}
	}
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
		v.rateLimit(path+".rate_limit", s.RateLimit)
		v.quota(path+".quota", s.Quota)
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
			v.rateLimit(rp+".rate_limit", r.RateLimit)
			v.quota(rp+".quota", r.Quota)
			v.dlp(rp+".dlp", r.DLP)
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
	}
}

func (v *validator) rule(path string, r *Rule) {
	empty := true
	lists := []struct {
		key  string
		vals []string
	}{{"roles", r.Roles}, {"scopes", r.Scopes}, {"groups", r.Groups}, {"tenants", r.Tenants}, {"apps", r.Apps}, {"subjects", r.Subjects}, {"identity_types", r.IdentityTypes}, {"ip", r.IP}}
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
			v.errorf(path, "api_key is not supported by this version of ztgate yet (API keys are not)")
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

func (v *validator) dlp(path string, d *DLP) {
	if d == nil {
		return
	}
	if len(d.Mask) == 0 && len(d.Block) == 0 && len(d.JSONPaths) == 0 {
		v.errorf(path, "nothing to do: list detectors under mask or block, or values under json_paths")
	}
	custom := map[string]bool{}
	for i, c := range d.Custom {
		cp := fmt.Sprintf("%s.custom[%d]", path, i)
		switch err := dlp.CheckName(c.Name); {
		case err != nil:
			v.errorf(cp+".name", "%v", err)
		case slices.Contains(dlp.Builtins(), c.Name):
			v.errorf(cp+".name", "%q is a built-in detector; give the custom one another name", c.Name)
		case custom[c.Name]:
			v.errorf(cp+".name", "duplicate custom detector %q", c.Name)
		}
		custom[c.Name] = true
		if err := dlp.CheckRegex(c.Regex); err != nil {
			v.errorf(cp+".regex", "%v", err)
		}
	}
	used := map[string]string{}
	for _, l := range []struct {
		key   string
		names []string
	}{{"mask", d.Mask}, {"block", d.Block}} {
		for i, n := range l.names {
			np := fmt.Sprintf("%s.%s[%d]", path, l.key, i)
			if !slices.Contains(dlp.Builtins(), n) && !custom[n] {
				known := dlp.Builtins()
				for _, c := range d.Custom {
					known = append(known, c.Name)
				}
				v.errorf(np, "unknown detector %q (known: %s)", n, strings.Join(known, ", "))
				continue
			}
			if other, dup := used[n]; dup {
				v.errorf(np, "detector %q is already listed under %s", n, other)
				continue
			}
			used[n] = l.key
		}
	}
	for i, c := range d.Custom {
		if _, ok := used[c.Name]; !ok && custom[c.Name] {
			v.errorf(fmt.Sprintf("%s.custom[%d].name", path, i), "custom detector %q is in neither mask nor block", c.Name)
		}
	}
	for i, p := range d.JSONPaths {
		if _, err := dlp.ParsePath(p); err != nil {
			v.errorf(fmt.Sprintf("%s.json_paths[%d]", path, i), "%v", err)
		}
	}
	if d.CardLast4 && used[dlp.CreditCard] != "mask" {
		v.errorf(path+".card_last4", "card_last4 needs credit_card under mask")
	}
	if d.MaxBytes < 1024 || d.MaxBytes > 64<<20 {
		v.errorf(path+".max_bytes", "must be between 1024 and 67108864 (64 MiB), got %d", d.MaxBytes)
	}
}
