// Package config loads, validates and describes ztgate's YAML configuration.
//
// The YAML file is the user's interface and its keys are a contract: keys may be
// added, never renamed. Decoding is strict: an unknown key, a wrong type or a bad
// value is an error naming file:line:column and the key path. References of the
// form ${env:NAME} and ${secret:PROVIDER/NAME} may stand in any string value and
// are resolved at load, except in the values of Template type (injected
// credentials), whose secret references are resolved at each use.
package config

import (
	"github.com/ztgate/ztgate/internal/detect"
	"log/slog"
	"strconv"
	"time"
)

// Config is the whole configuration file.
type Config struct {
	Listen    Listen    `yaml:"listen" doc:"The data plane listener: where clients connect."`
	Admin     Admin     `yaml:"admin" doc:"The admin listener: health, readiness, metrics and the admin API. Keep it on a private address."`
	Identity  Identity  `yaml:"identity" doc:"Who may call: identity providers whose tokens the gateway verifies."`
	Store     *Store    `yaml:"store" doc:"Durable state: audit events, alerts, quotas and API keys. Absent: decisions are only logged, not audited."`
	State     State     `yaml:"state" doc:"State shared between gateway nodes (rate limits): local memory, or Redis for many nodes."`
	Limits    Limits    `yaml:"limits" doc:"Gateway-wide rate limit, applied to every route in addition to service and route limits."`
	Audit     Audit     `yaml:"audit" doc:"The audit pipeline (with a store)."`
	Secrets   Secrets   `yaml:"secrets" doc:"Secret providers that ${secret:PROVIDER/NAME} references read from."`
	Policy    Policy    `yaml:"policy" doc:"Gateway-wide policy defaults that services and routes inherit."`
	Detection Detection `yaml:"detection" doc:"Real-time detection over the audit stream (needs a store): rules, and what each does when it fires."`
	Services  []Service `yaml:"services" doc:"The protected services, each with one upstream and its routes."`

	// Assertion signs the identity assertions of inject.identity_assertion.
	Assertion *Assertion `yaml:"assertion" doc:"How the gateway signs identity assertions for services with inject.identity_assertion; the public keys are served at GET /.well-known/jwks.json on the data plane listener."`

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
	ClientCAFile string `yaml:"client_ca_file" doc:"PEM bundle of CAs checked in the TLS handshake: a client certificate that does not chain to one of them ends the connection, with no HTTP answer and no audit event. Optional with identity.mtls, whose trust_bundle is checked per request instead (with a reason and an audit event); with both, a certificate must satisfy both."`
	ClientAuth   string `yaml:"client_auth" enum:"none,optional,require" default:"none" doc:"Whether clients are asked for a certificate. optional: asked, and verified when given; require: a connection without one is refused in the handshake. identity.mtls needs optional or require."`
}

// Admin configures the admin listener.
type Admin struct {
	Address string `yaml:"address" default:"127.0.0.1:9090" doc:"host:port of the admin API (/healthz, /readyz, /metrics, /v1/...)."`
	Token   string `yaml:"token" doc:"Bearer token the admin API's /v1/ endpoints require (Authorization: Bearer TOKEN); at least 32 characters, use a ${secret:...} reference. Without it, key management (/v1/apikeys) answers only on a loopback admin listener, to loopback callers."`
}

// Identity configures how callers prove who they are.
type Identity struct {
	Providers []Provider `yaml:"providers" doc:"Token issuers the gateway trusts."`
	MTLS      *MTLS      `yaml:"mtls" doc:"Workload identity from client certificates (mTLS); needs listen.tls with client_auth optional or require."`
	APIKeys   *APIKeys   `yaml:"api_keys" doc:"Scoped API keys (ztk_...) for callers that cannot use OAuth, made with ztgate apikey create; each opens one service."`
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
	TokenCacheSize int      `yaml:"token_cache_size" default:"10000" doc:"Verified tokens remembered (by SHA-256) so a repeated token skips signature verification; a token is remembered when it is verified the second time, so one-shot tokens take no room; an entry never outlives its token's exp or its signing key. 0 turns the cache off."`
	// GroupOverage resolves groups that a token names only by reference.
	GroupOverage *GroupOverage `yaml:"group_overage" doc:"entra: when a token carries too many groups to list (group overage: _claim_names.groups, or hasgroups: true), ask Microsoft Graph for the caller's groups, on routes whose rules test groups. Absent, or when Graph fails: the caller's groups are unknown and rules on groups deny (403 groups_unknown); other rules decide as usual."`
}

// GroupOverage configures group resolution through Microsoft Graph for an
// Entra ID provider.
type GroupOverage struct {
	ClientID            string   `yaml:"client_id" required:"true" doc:"Application (client) id the gateway signs in to Microsoft Graph as, with the client credentials grant at {authority_host}/{tid}/oauth2/v2.0/token in the caller's tenant. It needs the Microsoft Graph application permissions GroupMember.Read.All and User.Read.All (and Application.Read.All for service principal callers and assigned_to_app_only), with admin consent in every tenant it serves."`
	ClientSecret        string   `yaml:"client_secret" required:"true" doc:"That application's client secret. Write a ${secret:...} or ${env:...} reference, not the secret; it is never logged."`
	GraphURL            string   `yaml:"graph_url" default:"https://graph.microsoft.com" doc:"Microsoft Graph of the provider's cloud (to be set with a national cloud's authority_host): https://graph.microsoft.us or https://dod-graph.microsoft.us (US Government), https://microsoftgraph.chinacloudapi.cn (China); http only on loopback, for tests. The token is asked for {graph_url}/.default. The endpoint a token names in _claim_sources is never called."`
	Method              string   `yaml:"method" enum:"get_member_objects,transitive_member_of" default:"get_member_objects" doc:"get_member_objects: one POST /v1.0/users/{oid}/getMemberObjects (/servicePrincipals/ for applications): groups, directory roles and administrative units, transitively, up to 11,000 (beyond, transitive_member_of is used). transitive_member_of: GET .../transitiveMemberOf/microsoft.graph.group?$select=id,securityEnabled, paged through @odata.nextLink: groups only."`
	SecurityEnabledOnly bool     `yaml:"security_enabled_only" default:"true" doc:"Only security groups (securityEnabledOnly), as the groups claim with groupMembershipClaims SecurityGroup. false adds Microsoft 365 groups and distribution lists, as All."`
	AssignedToAppOnly   bool     `yaml:"assigned_to_app_only" doc:"Keep only the groups assigned to this API's enterprise application in the caller's tenant (its service principal's appRoleAssignedTo entries of type Group; the provider's client_id names it), as the ApplicationGroup option of the groups claim does."`
	TTL                 Duration `yaml:"ttl" default:"10m" doc:"How long a caller's resolved groups are reused (per tenant and object id) before Graph is asked again; membership changes take up to this long to apply."`
	FailureTTL          Duration `yaml:"failure_ttl" default:"10s" doc:"How long a failed lookup is remembered, so a failing Graph is not asked again on every request (the caller's groups stay unknown meanwhile); 0: not remembered. A 429's longer Retry-After holds the tenant's lookups back for that long."`
	CacheSize           int      `yaml:"cache_size" default:"10000" doc:"Callers whose groups are remembered."`
	Timeout             Duration `yaml:"timeout" default:"5s" doc:"Longest a request waits for a lookup (token, every page and retries after Retry-After); then its groups are unknown. Concurrent requests of one caller share one lookup."`
}

// MTLS configures client-certificate workload identity. The trust bundle
// and the CRL are read when the configuration is loaded, and again when
// either file changes; a bad file keeps the previous configuration serving.
type MTLS struct {
	TrustBundle  string   `yaml:"trust_bundle" required:"true" doc:"PEM bundle of the CAs whose certificates identify workloads (relative to this configuration file). A client certificate must chain to one of them, be in its validity period and carry the clientAuth extended key usage; intermediates may come from the client. Checked for every request, independently of listen.tls.client_ca_file."`
	CRLFile      string   `yaml:"crl_file" doc:"Certificate revocation lists, PEM (one or more X509 CRL blocks) or DER (relative to this configuration file). Each must be signed by a CA in trust_bundle (for an intermediate's CRL, add the intermediate to the bundle), one per CA; a certificate its issuer's CRL lists is refused (cert_revoked); past a CRL's nextUpdate its CA's certificates are refused (crl_stale) until a fresh CRL is written. A CA without a CRL here is not checked for revocation."`
	TrustDomains []string `yaml:"trust_domains" doc:"SPIFFE trust domains whose workloads are accepted, e.g. prod.example; a SPIFFE ID from another is refused (trust_domain_not_allowed). Required when identity_from includes spiffe."`
	IdentityFrom []string `yaml:"identity_from" enum:"spiffe,dns,subject" default:"[spiffe]" doc:"Where the workload's identity is read from, in order; the first source the certificate has wins. spiffe: a URI SAN with the spiffe scheme, which must be the certificate's only URI SAN and a valid SPIFFE ID with a path (else 401 bad_spiffe_id); dns: its first DNS SAN, as dns:NAME (lower case); subject: its subject common name, as cn:NAME. A certificate none of them fits is refused (no_workload_id)."`
}

// APIKeys configures scoped API keys.
type APIKeys struct {
	Enabled      bool     `yaml:"enabled" doc:"Accept API keys, sent as Authorization: ApiKey ztk_... or in header (never in the query string). Keys are kept in the store (required)."`
	Header       string   `yaml:"header" default:"X-API-Key" doc:"Header that may carry a key instead of Authorization. Never forwarded to an upstream."`
	PollInterval Duration `yaml:"poll_interval" default:"1s" doc:"How often each gateway reads created and revoked keys from the store: a revocation takes effect on every node within about this long."`
	MaxStale     Duration `yaml:"max_stale" default:"10s" doc:"How long verified keys keep serving while the store cannot be read; after it, API key requests are refused (503 api_keys_unavailable)."`
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

// Detection configures the anomaly detector.
type Detection struct {
	Rules []DetectionRule `yaml:"rules" doc:"Detection rules, run over every audit event once it is durable."`
	Sync  Duration        `yaml:"sync_interval" default:"500ms" doc:"How often a node reads the blocks and raised risk shared in Redis (state.driver redis)."`
}

// DetectionRule is one detection rule.
type DetectionRule struct {
	Name        string   `yaml:"name" required:"true" doc:"Rule name: in alerts, blocks and risk.alerts."`
	Kind        string   `yaml:"kind" required:"true" enum:"auth_failures,denials,new_country,impossible_travel,off_hours,new_app,volume_spike,many_ips,revoked_credential,tenant_not_allowed" doc:"What the rule looks for."`
	Key         string   `yaml:"key" enum:"ip,identity,tenant,api_key,global" doc:"What is counted and acted on (default per kind: ip for auth_failures and tenant_not_allowed, api_key for revoked_credential, identity otherwise)."`
	Threshold   int      `yaml:"threshold" doc:"Events (distinct addresses for many_ips) within window that fire the rule (default 20 for auth_failures and denials, 10 for many_ips, 100 for volume_spike, else 1)."`
	Window      Duration `yaml:"window" doc:"Window the threshold is counted over; also the quiet time after a detection (default 1m; 5m for volume_spike)."`
	Factor      float64  `yaml:"factor" doc:"volume_spike (default 5), optionally auth_failures: also require the window's count to exceed factor times the key's own average."`
	Learn       int      `yaml:"learn" default:"20" doc:"Requests of a caller seen before new_country, off_hours and new_app judge it."`
	MaxSpeedKMH float64  `yaml:"max_speed_kmh" default:"1000" doc:"impossible_travel: the fastest plausible travel."`
	Severity    string   `yaml:"severity" enum:"low,medium,high" default:"medium" doc:"Alert severity."`
	Action      string   `yaml:"action" enum:"notify,block,step_up" default:"notify" doc:"notify: an alert only; block: refuse the key (ip, identity or api_key) for 'for' (reason blocked); step_up: raise the identity's risk (policy reads risk.level and risk.alerts) for 'for'."`
	For         Duration `yaml:"for" default:"15m" doc:"How long a block or raised risk lasts."`
}

// Limits holds gateway-wide limits.
type Limits struct {
	RateLimit *RateLimit `yaml:"rate_limit" doc:"A limit every request counts against."`
}

// Audit configures the audit pipeline.
type Audit struct {
	Commit          string     `yaml:"commit" enum:"journal,store" default:"journal" doc:"What an event must reach before its request is answered. journal: a local append-only journal file (one write per group of concurrent requests; survives the process being killed, and with journal_fsync the machine losing power), shipped into the store in batches within about 50 ms, and at the next start if the process died first; the admin API's audit query waits for the journal to be shipped, so it sees every answered request. store: a commit in the store itself (each request waits for it)."`
	JournalDir      string     `yaml:"journal_dir" doc:"journal: the journal's directory, one per gateway process (default: audit-journal/<node> beside the configuration file)."`
	JournalMaxBytes int64      `yaml:"journal_max_bytes" default:"1073741824" doc:"journal: the most the journal may hold while the store is behind or down; beyond it requests are refused (503 audit_unavailable)."`
	JournalFsync    bool       `yaml:"journal_fsync" doc:"journal: fsync each write, so that answered requests' events also survive a power loss (costs one fsync per group of requests)."`
	OnFailure       string     `yaml:"on_failure" enum:"deny,buffer" default:"deny" doc:"When the store cannot take events: deny refuses requests (503 audit_unavailable) until it can; buffer keeps answering them, their events waiting locally (in the journal with commit: journal, else in a spool file, fsynced) until the store is back."`
	SpoolDir        string     `yaml:"spool_dir" doc:"commit: store with buffer: directory of the spool file (default: audit-spool beside the configuration file)."`
	SpoolMaxBytes   int64      `yaml:"spool_max_bytes" default:"1073741824" doc:"commit: store with buffer: largest spool; beyond it requests are refused as with deny."`
	Node            string     `yaml:"node" doc:"This gateway's name in the audit chain (default: the host name)."`
	HMACKey         string     `yaml:"hmac_key" doc:"Key for a keyed hash chain (use a ${secret:...} reference); without it the chain is plain SHA-256."`
	WriteTimeout    Duration   `yaml:"write_timeout" default:"2s" doc:"How long a request waits for its event to be durable before it is refused with 503 audit_unavailable. commit: store: the wait for the store's commit. commit: journal: the wait behind a journal write in progress (a stalled disk); the request whose own write is under way waits for the disk. An event whose request was refused this way is still written once the store or disk answers."`
	Retention       Duration   `yaml:"retention" doc:"Remove audit events older than this (checked hourly), e.g. 365d; the chain stays verifiable from a keyed checkpoint. Absent or 0: keep every event."`
	Exporters       []Exporter `yaml:"exporters" doc:"Where audit events go once they are durable (in the journal, or in the store with commit: store): SIEMs, log pipelines, webhooks. Each exporter has its own bounded buffer and never slows requests or the store; an event it cannot take is dropped for it (counted) and stays in the store."`
}

// Exporter sends durable audit events to one destination. Keys marked with a
// type apply to that type only.
type Exporter struct {
	Type          string   `yaml:"type" required:"true" enum:"jsonl,sentinel,syslog,otlp,webhook" doc:"jsonl: JSON lines to stdout or a rotated file; sentinel: Microsoft Sentinel through the Azure Monitor Logs Ingestion API (ASIM WebSession records); syslog: CEF over RFC 5424 syslog (tcp, tls, udp); otlp: OpenTelemetry logs over OTLP/HTTP (JSON); webhook: JSON batches signed with HMAC-SHA256."`
	Name          string   `yaml:"name" doc:"Name in logs and in the exporter label of the ztgate_audit_export_* metrics (default: the type); unique."`
	Buffer        int      `yaml:"buffer" default:"10000" doc:"Events held while this exporter sends; when it is full, new events are dropped for this exporter (ztgate_audit_export_dropped_total) and stay in the store."`
	BatchSize     int      `yaml:"batch_size" default:"500" doc:"Most events sent at once (sentinel also keeps each request under 1 MB)."`
	FlushInterval Duration `yaml:"flush_interval" default:"1s" doc:"How long a batch waits to fill before it is sent."`
	Timeout       Duration `yaml:"timeout" default:"30s" doc:"Time allowed for one delivery attempt."`
	Retry         Retry    `yaml:"retry" doc:"Retries of a failed batch: exponential backoff with jitter; a Retry-After from the destination is honoured."`

	Path     string `yaml:"path" doc:"jsonl: file to append to (relative to this configuration file), or - for standard output (default)."`
	MaxBytes int64  `yaml:"max_bytes" default:"104857600" doc:"jsonl: size at which the file is rotated (to path.1, path.2, ...)."`
	MaxFiles int    `yaml:"max_files" default:"5" doc:"jsonl: rotated files kept beside the current one."`

	Endpoint      string `yaml:"endpoint" doc:"sentinel: the data collection endpoint or the DCR's logs ingestion endpoint, https://....ingest.monitor.azure.com."`
	DCRID         string `yaml:"dcr_id" doc:"sentinel: the immutable id of the data collection rule (dcr-...)."`
	Stream        string `yaml:"stream" doc:"sentinel: the stream declared in the data collection rule, e.g. Custom-ZtgateWebSession."`
	Auth          string `yaml:"auth" enum:"client_secret,managed_identity" doc:"sentinel: how the gateway gets its token: client_secret (tenant_id, client_id, client_secret) or managed_identity (client_id for a user-assigned identity)."`
	TenantID      string `yaml:"tenant_id" doc:"sentinel client_secret: the Entra tenant id."`
	ClientID      string `yaml:"client_id" doc:"sentinel: the application (client) id; with managed_identity, the client id of a user-assigned identity."`
	ClientSecret  Secret `yaml:"client_secret" doc:"sentinel client_secret: the client secret; use a ${secret:...} reference."`
	AuthorityHost string `yaml:"authority_host" doc:"sentinel client_secret: the cloud's sign-in URL (default https://login.microsoftonline.com)."`
	Audience      string `yaml:"audience" default:"https://monitor.azure.com" doc:"sentinel: the audience of the ingestion token (https://monitor.azure.us, https://monitor.azure.cn in sovereign clouds)."`

	Network  string `yaml:"network" enum:"tcp,tls,udp" doc:"syslog: transport; tcp and tls frame messages by octet counting (RFC 6587, RFC 5425)."`
	Address  string `yaml:"address" doc:"syslog: host:port of the receiver."`
	Facility string `yaml:"facility" enum:"kern,user,daemon,auth,syslog,authpriv,local0,local1,local2,local3,local4,local5,local6,local7" default:"local0" doc:"syslog: facility of the messages."`

	URL     string            `yaml:"url" doc:"otlp: the OTLP/HTTP logs URL (http://collector:4318/v1/logs); webhook: the URL batches are POSTed to."`
	Headers map[string]Secret `yaml:"headers" doc:"otlp, webhook: headers added to every request (for example an API key; use ${secret:...} references)."`
	HMACKey Secret            `yaml:"hmac_key" doc:"webhook: key of the HMAC-SHA256 signature over timestamp and body (X-Ztgate-Signature); use a ${secret:...} reference."`

	CAFile     string `yaml:"ca_file" doc:"sentinel, syslog tls, otlp, webhook: PEM bundle of CAs trusted for the destination (default: system roots)."`
	CertFile   string `yaml:"cert_file" doc:"syslog tls, otlp, webhook: PEM client certificate (mTLS)."`
	KeyFile    string `yaml:"key_file" doc:"syslog tls, otlp, webhook: PEM key of the client certificate."`
	ServerName string `yaml:"server_name" doc:"syslog tls: name verified in the receiver's certificate (default: the host of address)."`
}

// Retry bounds the retries of one batch.
type Retry struct {
	InitialInterval Duration `yaml:"initial_interval" default:"1s" doc:"Wait before the first retry; doubled after each failure, with jitter."`
	MaxInterval     Duration `yaml:"max_interval" default:"1m" doc:"Longest wait between two attempts (a longer Retry-After is still honoured)."`
	MaxElapsed      Duration `yaml:"max_elapsed" default:"10m" doc:"Give up on a batch after this long; its events are counted in ztgate_audit_export_failed_total and stay in the store."`
}

// Secret is a string value that never prints: fmt, slog and JSON show it as
// REDACTED. Reveal returns the value.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue keeps slog from printing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON keeps encoding/json from writing the value.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// Secrets configures secret providers and how long their values are kept.
type Secrets struct {
	Providers []SecretProvider `yaml:"providers" doc:"Named secret providers."`
	TTL       Duration         `yaml:"ttl" default:"5m" doc:"How long a secret that injected credentials use is kept before it is read again in the background; a reference without a version picks up a rotation within this time, without a restart."`
	MaxStale  Duration         `yaml:"max_stale" default:"1h" doc:"While reads fail, the last value read serves until it is this old; then the routes that inject it fail closed (503 secret_unavailable) and nothing reaches their upstream. At least twice ttl."`
}

// SecretProvider is one named source of secrets.
type SecretProvider struct {
	Name     string `yaml:"name" required:"true" doc:"Name used in ${secret:NAME/secret} references."`
	Type     string `yaml:"type" required:"true" enum:"env,file,azure_keyvault" doc:"env: environment variables; file: one file per secret in a directory; azure_keyvault: Azure Key Vault."`
	Prefix   string `yaml:"prefix" doc:"env: prefix added to the secret name to form the variable name."`
	Dir      string `yaml:"dir" doc:"file: directory holding one file per secret (trailing newline trimmed)."`
	VaultURL string `yaml:"vault_url" doc:"azure_keyvault: the vault URL, https://NAME.vault.azure.net/ (or a sovereign cloud's vault domain)."`
	// Credential and the keys below it are for azure_keyvault.
	Credential          string   `yaml:"credential" enum:"managed_identity,workload_identity,client_secret,client_certificate" doc:"azure_keyvault: how the gateway signs in to Microsoft Entra ID (default managed_identity). workload_identity: a federated token file (AKS); client_secret and client_certificate: an app registration."`
	Tenant              string   `yaml:"tenant" doc:"azure_keyvault: tenant id of the app registration (client_secret, client_certificate; workload_identity defaults to AZURE_TENANT_ID)."`
	ClientID            string   `yaml:"client_id" doc:"azure_keyvault: application (client) id: of a user-assigned managed identity (absent: system-assigned), of the workload identity (default AZURE_CLIENT_ID), or of the app registration."`
	ClientSecret        Template `yaml:"client_secret" doc:"azure_keyvault client_secret: the app's secret, as a ${secret:...} reference to an env or file provider or an ${env:...} reference; read at load."`
	CertificateFile     string   `yaml:"certificate_file" doc:"azure_keyvault client_certificate: PEM or PKCS#12 file holding the certificate and its private key; read at load."`
	CertificatePassword Template `yaml:"certificate_password" doc:"azure_keyvault client_certificate: password of a PKCS#12 file, as a reference like client_secret."`
	TokenFile           string   `yaml:"token_file" doc:"azure_keyvault workload_identity: the federated token file (default AZURE_FEDERATED_TOKEN_FILE)."`
	AuthorityHost       string   `yaml:"authority_host" doc:"azure_keyvault: the Entra sign-in URL (default https://login.microsoftonline.com), e.g. https://login.microsoftonline.us."`
	TTL                 Duration `yaml:"ttl" doc:"This provider's secrets.ttl."`
	MaxStale            Duration `yaml:"max_stale" doc:"This provider's secrets.max_stale."`
}

// EffectiveTTL is the provider's ttl, or the gateway-wide one.
func (s *Secrets) EffectiveTTL(p *SecretProvider) Duration {
	if p.TTL > 0 {
		return p.TTL
	}
	return s.TTL
}

// EffectiveMaxStale is the provider's max_stale, or the gateway-wide one.
func (s *Secrets) EffectiveMaxStale(p *SecretProvider) Duration {
	if p.MaxStale > 0 {
		return p.MaxStale
	}
	return s.MaxStale
}

// Provider returns the secret provider named name, or nil.
func (s *Secrets) Provider(name string) *SecretProvider {
	for i := range s.Providers {
		if s.Providers[i].Name == name {
			return &s.Providers[i]
		}
	}
	return nil
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
	RequireClientCert    bool         `yaml:"require_client_cert" doc:"Every route of the service needs a verified client certificate (identity.mtls), even when a bearer token is the caller; without one: 401 cert_missing."`
	Inject               *Inject      `yaml:"inject" doc:"Credentials injected into every upstream request of the service."`
	Routes               []Route      `yaml:"routes" required:"true" doc:"Routes; a request matching none is denied (404 no_route)."`
}

// UpstreamTLS configures TLS towards an upstream.
type UpstreamTLS struct {
	CAFile             string `yaml:"ca_file" doc:"PEM bundle of CAs trusted for the upstream's certificate (default: system roots)."`
	CertFile           string `yaml:"cert_file" doc:"PEM client certificate presented to the upstream (mTLS)."`
	KeyFile            string `yaml:"key_file" doc:"PEM key of the client certificate."`
	ServerName         string `yaml:"server_name" doc:"Name verified in the upstream's certificate (default: the upstream host)."`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" unsupported:"true" doc:"Never supported: upstream certificates are always verified."`
	// ClientCertificate is a Template so that its reference is read from
	// the secret cache, not at load.
	ClientCertificate Template `yaml:"client_certificate" doc:"The gateway's client certificate and key from a secret instead of cert_file and key_file, e.g. \"${secret:kv/gw-client}\": PEM, or PKCS#12 without a password as Key Vault keeps a certificate's secret. A renewed certificate is used for new connections after secrets.ttl; while it cannot be served, requests get 503 secret_unavailable."`
}

// Timeouts bound each phase of an upstream exchange.
type Timeouts struct {
	Dial           Duration `yaml:"dial" default:"5s" doc:"Connecting to the upstream, TLS handshake included."`
	ResponseHeader Duration `yaml:"response_header" default:"30s" doc:"Waiting for the upstream's response headers."`
	Idle           Duration `yaml:"idle" default:"90s" doc:"How long an idle upstream connection is kept."`
	Overall        Duration `yaml:"overall" default:"60s" doc:"The whole exchange, body included (WebSocket upgrades excepted)."`
}

// Inject configures upstream credentials. Values may hold ${secret:...}
// references, resolved per request from the secret cache; a client's own
// copies of injected headers and query parameters are removed, never merged.
type Inject struct {
	Headers           map[string]Template `yaml:"headers" doc:"Headers set on upstream requests, e.g. x-functions-key: \"${secret:kv/orders-function-key}\"; a client's headers of these names are removed."`
	IdentityAssertion bool                `yaml:"identity_assertion" doc:"Add a signed identity assertion (a short-lived ES256 JWT about the caller, see assertion) to every upstream request."`
	// AssertionAudience is the aud of the service's assertions.
	AssertionAudience string `yaml:"assertion_audience" doc:"aud of the service's identity assertions (default: the service name). The upstream accepts only its own audience, so an assertion cannot be replayed to another service."`
	// ClientCredentials mints the upstream's bearer token with the OAuth 2.0
	// client credentials grant.
	ClientCredentials *ClientCredentials `yaml:"client_credentials" doc:"Send the upstream an access token the gateway gets for itself with the OAuth 2.0 client credentials grant, as Authorization: Bearer."`
	// ManagedIdentity mints the upstream's bearer token from the Azure
	// managed identity of the host the gateway runs on.
	ManagedIdentity *ManagedIdentity `yaml:"managed_identity" doc:"Send the upstream an access token of the gateway's Azure managed identity, as Authorization: Bearer."`
	// TokenExchange exchanges the caller's token for one narrowed to the
	// upstream (RFC 8693, or Entra ID's on-behalf-of flow).
	TokenExchange *TokenExchange      `yaml:"token_exchange" doc:"Send the upstream a token for the caller, narrowed to it, that the gateway exchanges the caller's own token for (RFC 8693 token exchange, or Microsoft Entra ID's on-behalf-of flow), as Authorization: Bearer."`
	Query         map[string]Template `yaml:"query" doc:"Query parameters set on upstream requests, e.g. code: \"${secret:kv/orders-function-key}\"; a client's parameters of these names (in any case) are removed."`
	BasicAuth     *BasicAuth          `yaml:"basic_auth" doc:"HTTP Basic credentials sent as the upstream Authorization header."`
}

// Assertion configures the identity assertions the gateway signs.
type Assertion struct {
	Issuer          string         `yaml:"issuer" required:"true" doc:"iss of every assertion, the name upstreams check, e.g. https://gateway.example.com."`
	Header          string         `yaml:"header" default:"X-Ztgate-Identity" doc:"Request header that carries the assertion to upstreams. A client's copies of it are removed on every service."`
	TTL             Duration       `yaml:"ttl" default:"60s" doc:"Lifetime of an assertion (never past the expiry of the caller's own token)."`
	Keys            []AssertionKey `yaml:"keys" doc:"ES256 (P-256) private keys, newest first: the first signs, the others are only published (a next key announced ahead, or a previous one kept verifiable). Empty: a key is generated once and kept in ztgate-assertion-key.pem beside this file (mode 0600)."`
	RotationOverlap Duration       `yaml:"rotation_overlap" default:"15m" doc:"When a reload removes a key (a new key signs), how long the removed key stays published; at least ttl."`
}

// AssertionKey is one assertion key: a PEM file or PEM text.
type AssertionKey struct {
	File string `yaml:"file" doc:"PEM file of the private key (SEC 1 or PKCS #8), relative to this configuration file."`
	PEM  string `yaml:"pem" secret:"true" doc:"The private key's PEM text, from a ${secret:...} or ${env:...} reference."`
}

// ClientCredentials configures a token from the OAuth 2.0 client credentials
// grant (RFC 6749 §4.4).
type ClientCredentials struct {
	TokenURL     string   `yaml:"token_url" required:"true" doc:"The token endpoint, e.g. https://login.microsoftonline.com/TENANT/oauth2/v2.0/token (https; http only on loopback)."`
	ClientID     string   `yaml:"client_id" required:"true" doc:"The gateway's client id at the token endpoint."`
	ClientSecret string   `yaml:"client_secret" required:"true" secret:"true" doc:"The client secret, from a ${secret:...} or ${env:...} reference."`
	Scopes       []string `yaml:"scopes" doc:"Scopes requested, e.g. [api://orders/.default]."`
	Audience     string   `yaml:"audience" doc:"Sent as the audience parameter (Auth0, Okta and others)."`
	Resource     string   `yaml:"resource" doc:"Sent as the resource parameter (RFC 8707 resource indicators)."`
	AuthMethod   string   `yaml:"auth_method" enum:"basic,post" default:"basic" doc:"How the gateway authenticates to the token endpoint: basic (HTTP Basic, client_secret_basic) or post (in the form, client_secret_post)."`
}

// TokenExchange configures a token exchanged for the caller's (RFC 8693
// §2.1, or Entra ID's on-behalf-of flow).
type TokenExchange struct {
	Grant        string   `yaml:"grant" enum:"token_exchange,on_behalf_of" default:"token_exchange" doc:"token_exchange: RFC 8693 (subject_token, the caller's access token); on_behalf_of: Microsoft Entra ID (the jwt-bearer grant with requested_token_use=on_behalf_of)."`
	TokenURL     string   `yaml:"token_url" required:"true" doc:"The token endpoint (https; http only on loopback)."`
	ClientID     string   `yaml:"client_id" required:"true" doc:"The gateway's client id at the token endpoint."`
	ClientSecret string   `yaml:"client_secret" required:"true" secret:"true" doc:"The client secret, from a ${secret:...} or ${env:...} reference."`
	Scopes       []string `yaml:"scopes" doc:"Scopes requested for the upstream, e.g. [api://orders/.default] (required for on_behalf_of)."`
	Audience     string   `yaml:"audience" doc:"Sent as the audience parameter: the upstream's name at the token endpoint."`
	Resource     string   `yaml:"resource" doc:"Sent as the resource parameter: the upstream's URI."`
	AuthMethod   string   `yaml:"auth_method" enum:"basic,post" default:"basic" doc:"How the gateway authenticates to the token endpoint: basic (client_secret_basic) or post (client_secret_post)."`
	CacheSize    int      `yaml:"cache_size" default:"10000" doc:"Exchanged tokens kept, one per caller token, each until shortly before it or the caller's token expires."`
}

// ManagedIdentity configures a token of the host's Azure managed identity.
type ManagedIdentity struct {
	ClientID string `yaml:"client_id" doc:"Client id of a user-assigned managed identity. Absent: the system-assigned identity."`
	Scope    string `yaml:"scope" required:"true" doc:"The scope requested, e.g. api://orders/.default or https://storage.azure.com/.default."`
}

// BasicAuth is a user name and password for HTTP Basic authentication.
type BasicAuth struct {
	Username Template `yaml:"username" required:"true" doc:"User name (no ':'); text or a reference."`
	Password Template `yaml:"password" required:"true" doc:"Password, as a ${secret:...} reference."`
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
	Inject    *Inject    `yaml:"inject" doc:"Credentials injected into the route's upstream requests, over the service's: a header or query parameter of the same name, or basic_auth, replaces the service's."`
	DLP       *DLP       `yaml:"dlp" doc:"Data loss prevention on responses: sensitive values masked, or the response refused. Applies to JSON, text/*, XML and form bodies (other media types pass unscanned); the upstream is asked for an uncompressed, whole (no Range) response."`

	RequireClientCert bool `yaml:"require_client_cert" doc:"The request needs a verified client certificate (identity.mtls), even when a bearer token is the caller; without one: 401 cert_missing."`
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
	Workloads     []string `yaml:"workloads" doc:"Workloads named by the request's verified client certificate (identity.mtls), whether the workload is the caller or carries a bearer token: spiffe://trust-domain/path patterns (* one segment, ** as the last segment any rest), dns:NAME (*.domain for one label) or cn:NAME. Add identity_types: [workload] to require the workload itself to be the caller."`
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

// Rule returns the detector's rule, defaults filled.
func (r DetectionRule) Rule() detect.Rule {
	dr := detect.Rule{Name: r.Name, Kind: r.Kind, Key: r.Key, Threshold: r.Threshold, Window: r.Window.D(), Factor: r.Factor,
		Learn: r.Learn, MaxSpeedKMH: r.MaxSpeedKMH, Severity: r.Severity, Action: r.Action, For: r.For.D()}
	dr.Defaults()
	return dr
}
