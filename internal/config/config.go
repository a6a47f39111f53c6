// Package config loads, validates and describes ztgate's YAML configuration.
//
// The YAML file is the user's interface and its keys are a contract: keys may be
// added, never renamed. Decoding is strict: an unknown key, a wrong type or a bad
// value is an error naming file:line:column and the key path. References of the
// form ${env:NAME} and ${secret:PROVIDER/NAME} may stand in any string value and
// are resolved at load.
package config

import "time"

// Config is the whole configuration file.
type Config struct {
	Listen   Listen    `yaml:"listen" doc:"The data plane listener: where clients connect."`
	Admin    Admin     `yaml:"admin" doc:"The admin listener: health, readiness and metrics. Keep it on a private address."`
	Identity Identity  `yaml:"identity" doc:"Who may call: identity providers whose tokens the gateway verifies."`
	Store    *Store    `yaml:"store" doc:"Durable state: audit events. Absent: decisions are only logged, not audited."`
	State    State     `yaml:"state" doc:"State shared between gateway nodes (rate limits): local memory, or Redis for many nodes."`
	Limits   Limits    `yaml:"limits" doc:"Gateway-wide rate limit, applied to every route in addition to service and route limits."`
	Audit    Audit     `yaml:"audit" doc:"The audit pipeline (with a store)."`
	Secrets  Secrets   `yaml:"secrets" doc:"Secret providers that ${secret:PROVIDER/NAME} references read from."`
	Policy   Policy    `yaml:"policy" doc:"Gateway-wide policy defaults that services and routes inherit."`
	Services []Service `yaml:"services" doc:"The protected services, each with one upstream and its routes."`

	// File is the path the configuration was loaded from.
	File string `yaml:"-"`
	// Hash identifies this configuration's content (the policy version).
	Hash string `yaml:"-"`

	pos map[string]Pos
}

// Pos is a position in the configuration file.
type Pos struct {
	Line, Column int
}

// Listen configures the data plane listener.
type Listen struct {
	Address           string     `yaml:"address" default:":8443" doc:"host:port the gateway listens on."`
	TLS               *ListenTLS `yaml:"tls" doc:"TLS for clients. Without it the listener speaks plain HTTP (only for loopback or behind a TLS-terminating load balancer)."`
	MaxHeaderBytes    int        `yaml:"max_header_bytes" default:"65536" doc:"Largest request header block accepted, in bytes."`
	ReadHeaderTimeout Duration   `yaml:"read_header_timeout" default:"10s" doc:"Time allowed to read request headers (slowloris guard)."`
	ReadTimeout       Duration   `yaml:"read_timeout" default:"60s" doc:"Time allowed to read a whole request, body included."`
	IdleTimeout       Duration   `yaml:"idle_timeout" default:"120s" doc:"How long an idle keep-alive connection stays open."`
	ShutdownTimeout   Duration   `yaml:"shutdown_timeout" default:"30s" doc:"How long a graceful shutdown waits for in-flight requests."`
}

// ListenTLS configures TLS on the data plane listener.
type ListenTLS struct {
	CertFile     string `yaml:"cert_file" required:"true" doc:"PEM certificate chain; reloaded when the file changes."`
	KeyFile      string `yaml:"key_file" required:"true" doc:"PEM private key; reloaded when the file changes."`
	ClientCAFile string `yaml:"client_ca_file" doc:"PEM bundle of CAs trusted for client certificates."`
	ClientAuth   string `yaml:"client_auth" enum:"none,optional,require" default:"none" doc:"Whether clients are asked for a certificate. optional: verified when given; require: verified and mandatory."`
}

// Admin configures the admin listener.
type Admin struct {
	Address string `yaml:"address" default:"127.0.0.1:9090" doc:"host:port of the admin API (/healthz, /readyz, /metrics)."`
}

// Identity configures how callers prove who they are.
type Identity struct {
	Providers []Provider `yaml:"providers" doc:"Token issuers the gateway trusts."`
	MTLS      *MTLS      `yaml:"mtls" unsupported:"true" doc:"mTLS workload identity."`
	APIKeys   *APIKeys   `yaml:"api_keys" unsupported:"true" doc:"Scoped API keys."`
}

// Provider is one trusted token issuer.
type Provider struct {
	Name           string   `yaml:"name" required:"true" doc:"Name used in logs and audit events."`
	Type           string   `yaml:"type" required:"true" enum:"oidc,entra" doc:"oidc: any OpenID Connect issuer (discovery + JWKS). entra: Microsoft Entra ID, v1.0 and v2.0 tokens."`
	Issuer         string   `yaml:"issuer" doc:"oidc: the issuer URL; discovery is read from {issuer}/.well-known/openid-configuration."`
	Tenant         string   `yaml:"tenant" doc:"entra: tenant id (or verified domain), or organizations / common for multi-tenant apps."`
	AllowedTenants []string `yaml:"allowed_tenants" doc:"entra multi-tenant (required there): the tenant ids whose tokens are accepted; [\"*\"] accepts every tenant."`
	ClientID       string   `yaml:"client_id" doc:"entra: the API's application (client) id. Without audiences, v2.0 tokens must be for it and v1.0 tokens for api://{client_id}."`
	Audiences      []string `yaml:"audiences" doc:"Accepted aud values. A token must carry at least one. Required for oidc; for entra, replaces the defaults from client_id."`
	AuthorityHost  string   `yaml:"authority_host" doc:"entra: the cloud's sign-in URL (default https://login.microsoftonline.com), e.g. https://login.microsoftonline.us; http only on loopback, for tests."`
	Algorithms     []string `yaml:"algorithms" default:"[RS256, PS256, ES256, EdDSA]" doc:"Accepted signature algorithms."`
	ClockSkew      Duration `yaml:"clock_skew" default:"60s" doc:"Tolerance for exp, nbf and iat."`
	MaxTokenBytes  int      `yaml:"max_token_bytes" default:"16384" doc:"Largest accepted token."`
	JWKSRefresh    Duration `yaml:"jwks_refresh" default:"1h" doc:"How often keys are refreshed in the background."`
	TokenCacheSize int      `yaml:"token_cache_size" default:"10000" doc:"Verified tokens remembered (by SHA-256) so a repeated token skips signature verification; an entry never outlives its token's exp or its signing key. 0 turns the cache off."`
}

// MTLS configures client-certificate workload identity.
type MTLS struct {
	TrustBundle string `yaml:"trust_bundle" doc:"PEM bundle of trusted client CAs."`
}

// APIKeys configures scoped API keys.
type APIKeys struct {
	Enabled bool `yaml:"enabled" doc:"Accept ztk_ API keys."`
}

// Store configures durable state.
type Store struct {
	Driver string `yaml:"driver" enum:"sqlite,postgres" default:"sqlite" doc:"sqlite (embedded) or postgres."`
	DSN    string `yaml:"dsn" required:"true" doc:"sqlite: a file path (relative to this configuration file) or file: URI; postgres: a postgres:// URL."`
}

// State configures shared state between nodes.
type State struct {
	Driver  string `yaml:"driver" enum:"local,redis" default:"local" doc:"local: per node, in memory; redis: shared by every node using the same Redis."`
	URL     string `yaml:"url" doc:"Redis URL for driver redis, e.g. redis://127.0.0.1:6379/0 (rediss:// for TLS)."`
	MaxKeys int    `yaml:"max_keys" default:"100000" doc:"Most rate limit keys held in memory per node (least useful forgotten first)."`
}

// Limits holds gateway-wide limits.
type Limits struct {
	RateLimit *RateLimit `yaml:"rate_limit" doc:"A limit every request counts against."`
}

// Audit configures the audit pipeline.
type Audit struct {
	OnFailure     string   `yaml:"on_failure" enum:"deny,buffer" default:"deny" doc:"When the store cannot take an event: deny refuses the request (503 audit_unavailable); buffer appends it to a local spool file (fsynced) and replays the spool into the store when it is back."`
	SpoolDir      string   `yaml:"spool_dir" doc:"buffer: directory of the spool file (default: audit-spool beside the configuration file)."`
	SpoolMaxBytes int64    `yaml:"spool_max_bytes" default:"1073741824" doc:"buffer: largest spool; beyond it requests are refused as with deny."`
	Node          string   `yaml:"node" doc:"This gateway's name in the audit chain (default: the host name)."`
	HMACKey       string   `yaml:"hmac_key" doc:"Key for a keyed hash chain (use a ${secret:...} reference); without it the chain is plain SHA-256."`
	WriteTimeout  Duration `yaml:"write_timeout" default:"2s" doc:"How long a request waits for its event to be durable before it is refused."`
	Retention     Duration `yaml:"retention" doc:"Remove audit events older than this (checked hourly), e.g. 365d; the chain stays verifiable from a keyed checkpoint. Absent or 0: keep every event."`
}

// Secrets configures secret providers.
type Secrets struct {
	Providers []SecretProvider `yaml:"providers" doc:"Named secret providers."`
}

// SecretProvider is one named source of secrets.
type SecretProvider struct {
	Name     string `yaml:"name" required:"true" doc:"Name used in ${secret:NAME/secret} references."`
	Type     string `yaml:"type" required:"true" enum:"env,file,azure_keyvault" doc:"env: environment variables; file: one file per secret in a directory; azure_keyvault: Azure Key Vault."`
	Prefix   string `yaml:"prefix" doc:"env: prefix added to the secret name to form the variable name."`
	Dir      string `yaml:"dir" doc:"file: directory holding one file per secret (trailing newline trimmed)."`
	VaultURL string `yaml:"vault_url" doc:"azure_keyvault: the vault URL."`
}

// Policy holds gateway-wide policy defaults.
type Policy struct {
	Allow *Rule  `yaml:"allow" doc:"Default allow rule for routes whose service and route set none. Absent: such routes deny everyone."`
	Mode  string `yaml:"mode" enum:"enforce,report_only" doc:"Default mode for every route."`
	// GeoIPDatabase is read at load; rules with countries need it.
	GeoIPDatabase string `yaml:"geoip_database" doc:"MaxMind-format country database file (GeoLite2/GeoIP2 Country or City) for countries rules and geo.country."`
}

// Service is one protected upstream and its routes.
type Service struct {
	Name                 string       `yaml:"name" required:"true" doc:"Service name, used in metrics and audit events."`
	Upstream             string       `yaml:"upstream" required:"true" doc:"Base URL of the upstream (http or https). A path here is prefixed to every request path."`
	Hosts                []string     `yaml:"hosts" doc:"Request hosts this service answers (exact or *.example.com). Empty: any host."`
	UpstreamTLS          *UpstreamTLS `yaml:"upstream_tls" doc:"TLS to the upstream: trusted CAs and the gateway's client certificate for mTLS."`
	Timeouts             Timeouts     `yaml:"timeouts" doc:"Upstream timeouts."`
	MaxBodyBytes         int64        `yaml:"max_body_bytes" default:"10485760" doc:"Largest request body forwarded, in bytes (413 beyond)."`
	MaxIdleConns         int          `yaml:"max_idle_conns" default:"256" doc:"Idle upstream connections kept for reuse."`
	ForwardAuthorization bool         `yaml:"forward_authorization" doc:"Forward the client's Authorization header to the upstream. Off by default: the upstream never sees the caller's token."`
	Mode                 string       `yaml:"mode" enum:"enforce,report_only" doc:"Default mode for the service's routes (overrides policy.mode)."`
	Allow                *Rule        `yaml:"allow" doc:"Default allow rule for the service's routes that have none (overrides policy.allow)."`
	RateLimit            *RateLimit   `yaml:"rate_limit" doc:"A limit every request to the service counts against."`
	CORS                 *CORS        `yaml:"cors" doc:"Cross-origin resource sharing for browsers; preflights are answered at the gateway."`
	Quota                *Quota       `yaml:"quota" doc:"A volume quota every request to the service counts against."`
	Inject               *Inject      `yaml:"inject" unsupported:"true" doc:"Credentials injected into upstream requests."`
	Routes               []Route      `yaml:"routes" required:"true" doc:"Routes; a request matching none is denied (404 no_route)."`
}

// UpstreamTLS configures TLS towards an upstream.
type UpstreamTLS struct {
	CAFile             string `yaml:"ca_file" doc:"PEM bundle of CAs trusted for the upstream's certificate (default: system roots)."`
	CertFile           string `yaml:"cert_file" doc:"PEM client certificate presented to the upstream (mTLS)."`
	KeyFile            string `yaml:"key_file" doc:"PEM key of the client certificate."`
	ServerName         string `yaml:"server_name" doc:"Name verified in the upstream's certificate (default: the upstream host)."`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" unsupported:"true" doc:"Never supported: upstream certificates are always verified."`
}

// Timeouts bound each phase of an upstream exchange.
type Timeouts struct {
	Dial           Duration `yaml:"dial" default:"5s" doc:"Connecting to the upstream, TLS handshake included."`
	ResponseHeader Duration `yaml:"response_header" default:"30s" doc:"Waiting for the upstream's response headers."`
	Idle           Duration `yaml:"idle" default:"90s" doc:"How long an idle upstream connection is kept."`
	Overall        Duration `yaml:"overall" default:"60s" doc:"The whole exchange, body included (WebSocket upgrades excepted)."`
}

// Inject configures upstream credentials.
type Inject struct {
	Headers           map[string]string `yaml:"headers" doc:"Headers set on upstream requests."`
	IdentityAssertion bool              `yaml:"identity_assertion" doc:"Add a signed identity assertion."`
}

// Route is one rule for a set of requests to a service.
type Route struct {
	Name      string     `yaml:"name" required:"true" doc:"Route name, unique within its service."`
	Match     Match      `yaml:"match" required:"true" doc:"Which requests this route covers."`
	Allow     *Rule      `yaml:"allow" doc:"Who may call. Absent: nobody (default deny)."`
	When      string     `yaml:"when" doc:"A CEL condition that must also hold, over identity, request, geo, time and risk. A false result or an evaluation error denies."`
	Mode      string     `yaml:"mode" enum:"enforce,report_only" doc:"enforce (default) or report_only: a would-deny is let through and recorded."`
	RateLimit *RateLimit `yaml:"rate_limit" doc:"A limit every request on the route counts against (in addition to service and gateway limits)."`
	Guard     *Guard     `yaml:"guard" doc:"Checks on the request before it reaches the upstream; a failure is 400, 413 or 415 with the failed check as reason."`
	Quota     *Quota     `yaml:"quota" doc:"A volume quota every request on the route counts against."`
	DLP       *DLP       `yaml:"dlp" doc:"Data loss prevention on responses: sensitive values masked, or the response refused. Applies to JSON, text/*, XML and form bodies (other media types pass unscanned); the upstream is asked for an uncompressed, whole (no Range) response."`
}

// Match selects requests.
type Match struct {
	Methods []string `yaml:"methods" doc:"HTTP methods (upper case). Empty: any method."`
	Path    string   `yaml:"path" required:"true" doc:"Path pattern: literal segments, {name} for one segment, * for one unnamed segment, ** (last) for any rest."`
	Host    string   `yaml:"host" doc:"Request host (exact or *.example.com); overrides the service's hosts."`
}

// Rule is an allow rule. All criteria set in one rule must hold; any_of, all_of
// and not combine rules. A list criterion holds when the caller has at least one
// of the listed values.
type Rule struct {
	Authenticated bool     `yaml:"authenticated" doc:"Any authenticated caller. Broad: prefer roles or scopes."`
	Roles         []string `yaml:"roles" doc:"App roles (roles claim); at least one must be present."`
	Scopes        []string `yaml:"scopes" doc:"Delegated scopes (scp or scope claim); at least one must be present."`
	Groups        []string `yaml:"groups" doc:"Group ids (groups claim); at least one must be present."`
	Tenants       []string `yaml:"tenants" doc:"Tenant ids (tid claim)."`
	Apps          []string `yaml:"apps" doc:"Client application ids (azp, appid or client_id claim)."`
	Subjects      []string `yaml:"subjects" doc:"Subjects (sub claim)."`
	IdentityTypes []string `yaml:"identity_types" enum:"user,app,workload,api_key" doc:"Kinds of caller."`
	MFA           bool     `yaml:"mfa" doc:"The token must show multi-factor authentication (amr contains mfa)."`
	IP            []string `yaml:"ip" doc:"Client IP must be in one of these CIDRs."`
	AuthContext   []string `yaml:"auth_context" doc:"Authentication context class references (acrs claim, e.g. c1); at least one must be present."`
	Time          []Window `yaml:"time" doc:"The request must fall in one of these time windows."`
	Device        *Device  `yaml:"device" doc:"Device claims the token must carry."`
	AnyOf         []Rule   `yaml:"any_of" doc:"At least one of these rules must hold."`
	AllOf         []Rule   `yaml:"all_of" doc:"Every one of these rules must hold."`
	Not           *Rule    `yaml:"not" doc:"This rule must not hold."`

	Countries []string `yaml:"countries" doc:"ISO 3166-1 alpha-2 codes of the countries the client IP may be in (needs policy.geoip_database); an unknown country denies."`
}

// Window is a weekly time window in a time zone.
type Window struct {
	Days []string `yaml:"days" enum:"mon,tue,wed,thu,fri,sat,sun" doc:"Days of the week; empty: every day."`
	From string   `yaml:"from" required:"true" doc:"Start, HH:MM (inclusive)."`
	To   string   `yaml:"to" required:"true" doc:"End, HH:MM (exclusive); earlier than from spans midnight."`
	Zone string   `yaml:"zone" default:"UTC" doc:"IANA time zone, e.g. Europe/Berlin."`
}

// Device requires device claims in the caller's token.
type Device struct {
	Claims map[string][]string `yaml:"claims" required:"true" doc:"Claim name to accepted values; [\"*\"] accepts any value but requires the claim."`
}

// RateLimit is a GCRA rate limit: limit requests per period per key.
type RateLimit struct {
	Key            string   `yaml:"key" default:"identity" doc:"What is counted: identity, app, tenant, ip, header:NAME or claim:NAME, combined with + (e.g. tenant+app)."`
	Limit          int      `yaml:"limit" required:"true" doc:"Requests allowed per period."`
	Per            Duration `yaml:"per" required:"true" doc:"The period, e.g. 1s, 1m, 1h."`
	Burst          int      `yaml:"burst" doc:"Requests that may come at once (default: limit)."`
	OnStoreFailure string   `yaml:"on_store_failure" enum:"local,allow,deny" default:"local" doc:"With state driver redis, when Redis cannot answer: local (per-node limits), allow, or deny (503)."`
}

// Quota is a volume of calls and response bytes per key and period (like
// API Management's quota-by-key), renewed on the UTC calendar.
type Quota struct {
	Key    string `yaml:"key" default:"identity" doc:"What is counted, as for rate_limit.key."`
	Calls  int64  `yaml:"calls" doc:"Calls allowed per period (0: not limited)."`
	Bytes  int64  `yaml:"bytes" doc:"Response bytes allowed per period (0: not limited); the call that crosses it completes, later ones are refused."`
	Period string `yaml:"period" enum:"day,month" default:"day" doc:"Renewal period."`
}

// Guard validates requests on a route.
type Guard struct {
	MaxBodyBytes     int64    `yaml:"max_body_bytes" doc:"Largest body accepted on this route (overrides the service's)."`
	ContentTypes     []string `yaml:"content_types" doc:"Accepted media types of a request body (e.g. application/json); a body of another type is 415."`
	JSONSchema       string   `yaml:"json_schema" doc:"JSON Schema file (relative to this configuration file) the JSON body must satisfy."`
	MaxJSONDepth     int      `yaml:"max_json_depth" default:"32" doc:"Deepest nesting of arrays and objects accepted in a JSON body."`
	RequiredHeaders  []string `yaml:"required_headers" doc:"Headers that must be present."`
	ForbiddenHeaders []string `yaml:"forbidden_headers" doc:"Headers that must be absent."`
	AllowedQuery     []string `yaml:"allowed_query" doc:"The only query parameters accepted; absent: any."`
}

// CORS configures cross-origin access for browsers.
type CORS struct {
	AllowedOrigins   []string `yaml:"allowed_origins" required:"true" doc:"Exact origins (https://app.example.com); * for any, only without allow_credentials."`
	AllowedMethods   []string `yaml:"allowed_methods" doc:"Methods a cross-origin request may use (default: GET, HEAD, POST)."`
	AllowedHeaders   []string `yaml:"allowed_headers" doc:"Request headers a cross-origin request may send (default: Authorization, Content-Type)."`
	ExposedHeaders   []string `yaml:"exposed_headers" doc:"Response headers the browser may show to the page."`
	AllowCredentials bool     `yaml:"allow_credentials" doc:"Let the browser send cookies and credentials."`
	MaxAge           Duration `yaml:"max_age" default:"10m" doc:"How long a browser may cache a preflight answer."`
}

// DLP configures data loss prevention on a route's responses.
type DLP struct {
	Mask      []string    `yaml:"mask" doc:"Detectors whose matches are replaced by [REDACTED:name]: credit_card (13-19 digits, Luhn and issuer checked), iban (mod-97 checked), email, us_ssn, azure_storage_key, azure_sas, jwt, private_key (PEM), or a custom detector's name. Responses stream; the audit event (or, for a response streamed without a known length, a DlpResult event after it) counts the matches."`
	Block     []string    `yaml:"block" doc:"Detectors whose match refuses the whole response with 502 dlp_blocked. With any, a response is held, up to max_bytes, until it has been read and scanned whole."`
	Custom    []DLPCustom `yaml:"custom" doc:"Detectors defined by a regular expression, each named in mask or block."`
	JSONPaths []string    `yaml:"json_paths" doc:"Values masked in JSON responses whatever they hold: $.customer.ssn, $.items[*].card, $['a key'][0], $..password (at any depth)."`
	CardLast4 bool        `yaml:"card_last4" doc:"Masked card numbers keep their last four digits: [REDACTED:credit_card:****1111]."`
	MaxBytes  int64       `yaml:"max_bytes" default:"1048576" doc:"The most bytes of a response that are scanned (and, with block detectors, held in memory)."`
	OverLimit string      `yaml:"over_limit" enum:"pass,block" default:"block" doc:"A response longer than max_bytes: block refuses it (502 dlp_too_large), or aborts it mid-stream when it has already started; pass sends the rest unscanned (counted in ztgate_dlp_unscanned_bytes_total and the audit event)."`
}

// DLPCustom is a detector defined by a regular expression.
type DLPCustom struct {
	Name  string `yaml:"name" required:"true" doc:"The detector's name in mask or block, audit events and metrics: lower-case letters, digits and _."`
	Regex string `yaml:"regex" required:"true" doc:"An RE2 regular expression whose matches have a bounded length (no *, + or {n,}; at most 4096 bytes), e.g. '\\bEMP-[0-9]{6}\\b'."`
}

// Duration is a time.Duration written as "30s", "5m", "1h30m" or "2d".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// PosOf returns the position of the value at the key path (for example
// "services[0].routes[1].match.path"), or the zero Pos when unknown.
func (c *Config) PosOf(path string) Pos { return c.pos[path] }

// RouteRef is one entry of the route table: a route under one of its hosts.
type RouteRef struct {
	Service, Route int    // indexes into Services and their Routes
	Host           string // "" for any host
}

// RouteTable lists the route table's entries in order: every route once per
// host it answers (its match.host, else its service's hosts, else any host).
// Entry i is the route.Spec with index i.
func (c *Config) RouteTable() []RouteRef {
	var out []RouteRef
	for i, s := range c.Services {
		for j, r := range s.Routes {
			for _, h := range routeHosts(s, r) {
				out = append(out, RouteRef{Service: i, Route: j, Host: h})
			}
		}
	}
	return out
}
