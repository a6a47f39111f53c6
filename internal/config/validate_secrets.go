package config

import (
	"fmt"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Key Vault names and versions (Azure's documented formats).
var (
	vaultSecretNameRE    = boundedRE{regexp.MustCompile(`^[0-9A-Za-z-]+$`), 127}
	vaultSecretVersionRE = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)
	vaultNameRE          = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{1,22})[a-z0-9]$`)
	envSecretNameRE      = boundedRE{regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`), 128}
	fileSecretNameRE     = boundedRE{regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`), 128}
)

// VaultDomains are the DNS suffixes of Key Vault in the Azure clouds.
var VaultDomains = []string{".vault.azure.net", ".vault.azure.cn", ".vault.usgovcloudapi.net", ".vault.microsoftazure.de"}

func (v *validator) secrets() {
	sc := &v.c.Secrets
	v.secretTimes("secrets", sc.TTL, sc.MaxStale)
	seen := map[string]bool{}
	for i := range sc.Providers {
		p := &sc.Providers[i]
		path := fmt.Sprintf("secrets.providers[%d]", i)
		if !nameRE.MatchString(p.Name) {
			v.errorf(path+".name", "bad name %q", p.Name)
		}
		if seen[p.Name] {
			v.errorf(path+".name", "duplicate secret provider name %q", p.Name)
		}
		seen[p.Name] = true
		if p.TTL > 0 || p.MaxStale > 0 {
			v.secretTimes(path, sc.EffectiveTTL(p), sc.EffectiveMaxStale(p))
		}
		only := func(key, typ string, set bool) {
			if set && p.Type != typ {
				v.errorf(path+"."+key, "%s is only for type %s", key, typ)
			}
		}
		only("prefix", "env", p.Prefix != "")
		only("dir", "file", p.Dir != "")
		for _, k := range []struct {
			key string
			set bool
		}{{"vault_url", p.VaultURL != ""}, {"credential", p.Credential != ""}, {"tenant", p.Tenant != ""}, {"client_id", p.ClientID != ""}, {"client_secret", !p.ClientSecret.IsZero()}, {"certificate_file", p.CertificateFile != ""}, {"certificate_password", !p.CertificatePassword.IsZero()}, {"token_file", p.TokenFile != ""}, {"authority_host", p.AuthorityHost != ""}} {
			only(k.key, "azure_keyvault", k.set)
		}
		switch p.Type {
		case "file":
			if p.Dir == "" {
				v.errorf(path, "missing required key \"dir\" for type file")
			}
		case "azure_keyvault":
			v.keyVault(path, p)
		}
	}
}

// secretTimes checks a ttl and max_stale pair.
func (v *validator) secretTimes(path string, ttl, maxStale Duration) {
	if ttl.D() < time.Second || ttl.D() > 24*time.Hour {
		v.errorf(path+".ttl", "must be between 1s and 24h")
	}
	if maxStale < 2*ttl {
		v.errorf(path+".max_stale", "must be at least twice ttl (%s), so that a value is read again before it is too old to serve", ttl.D())
	}
	if maxStale.D() > 30*24*time.Hour {
		v.errorf(path+".max_stale", "must be at most 30d")
	}
}

func (v *validator) keyVault(path string, p *SecretProvider) {
	if p.VaultURL == "" {
		v.errorf(path, "missing required key \"vault_url\" for type azure_keyvault")
	} else if msg := checkVaultURL(p.VaultURL); msg != "" {
		v.errorf(path+".vault_url", "%s", msg)
	}
	cred := p.Credential
	if cred == "" {
		cred = "managed_identity"
	}
	need := func(key string, set bool) {
		if !set {
			v.errorf(path, "missing %q for credential %s", key, cred)
		}
	}
	not := func(key string, set bool) {
		if set {
			v.errorf(path+"."+key, "%s is not used by credential %s", key, cred)
		}
	}
	switch cred {
	case "managed_identity":
		not("tenant", p.Tenant != "")
		not("token_file", p.TokenFile != "")
		not("authority_host", p.AuthorityHost != "")
	case "workload_identity":
		// tenant, client_id and token_file default to the AZURE_* variables
		// that the AKS workload identity webhook sets.
	case "client_secret":
		need("tenant", p.Tenant != "")
		need("client_id", p.ClientID != "")
		need("client_secret", !p.ClientSecret.IsZero())
		not("token_file", p.TokenFile != "")
	case "client_certificate":
		need("tenant", p.Tenant != "")
		need("client_id", p.ClientID != "")
		need("certificate_file", p.CertificateFile != "")
		not("token_file", p.TokenFile != "")
	}
	if cred != "client_secret" {
		not("client_secret", !p.ClientSecret.IsZero())
	}
	if cred != "client_certificate" {
		not("certificate_file", p.CertificateFile != "")
		not("certificate_password", !p.CertificatePassword.IsZero())
	}
	if p.Tenant != "" && !guidRE.MatchString(p.Tenant) && !domainRE.MatchString(strings.ToLower(p.Tenant)) {
		v.errorf(path+".tenant", "bad tenant %q: want a tenant id (GUID) or a verified domain", p.Tenant)
	}
	if p.ClientID != "" && !guidRE.MatchString(p.ClientID) {
		v.errorf(path+".client_id", "bad client_id %q: want an application (client) id, a GUID", p.ClientID)
	}
	if p.AuthorityHost != "" {
		u, err := url.Parse(p.AuthorityHost)
		if err != nil || u.Scheme != "https" || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.User != nil {
			v.errorf(path+".authority_host", "bad authority_host %q: want https://host with no path", p.AuthorityHost)
		}
	}
	for _, k := range []struct {
		key string
		t   Template
	}{{"client_secret", p.ClientSecret}, {"certificate_password", p.CertificatePassword}} {
		if k.t.IsZero() {
			continue
		}
		kp := path + "." + k.key
		if len(k.t.Refs()) == 0 && !k.t.HasEnv() {
			v.errorf(kp, "write a ${secret:...} or ${env:...} reference here, never the secret itself")
		}
		for _, r := range k.t.Refs() {
			sp := v.c.Secrets.Provider(r.Provider)
			if sp != nil && sp.Type == "azure_keyvault" {
				v.errorf(kp, "${secret:%s}: a vault's credentials cannot come from a vault; use an env or file provider or ${env:...}", r)
				continue
			}
			v.secretRef(kp, r)
		}
	}
}

// checkVaultURL returns what is wrong with a Key Vault URL, or "". https
// loopback URLs are accepted for tests against a local vault.
func checkVaultURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return fmt.Sprintf("bad vault URL %q: want https://NAME.vault.azure.net/", raw)
	}
	host := strings.ToLower(u.Hostname())
	if isLoopback(host) {
		return ""
	}
	if u.Port() != "" && u.Port() != "443" {
		return fmt.Sprintf("bad vault URL %q: Key Vault has no port but 443", raw)
	}
	for _, d := range VaultDomains {
		if name, ok := strings.CutSuffix(host, d); ok {
			if !vaultNameRE.MatchString(name) || strings.Contains(name, "--") {
				return fmt.Sprintf("bad vault name %q in %q: 3 to 24 letters, digits and single dashes", name, raw)
			}
			return ""
		}
	}
	return fmt.Sprintf("bad vault URL %q: the host must be in a Key Vault domain (%s)", raw, strings.Join(VaultDomains, ", "))
}

// secretRef checks one ${secret:...} reference kept for use at request
// time: its provider is declared and the name fits the provider.
func (v *validator) secretRef(path string, r SecretRef) {
	p := v.c.Secrets.Provider(r.Provider)
	if p == nil {
		v.errorf(path, "${secret:%s}: no secret provider named %q (declare it under secrets.providers)", r, r.Provider)
		return
	}
	if r.Version != "" && p.Type != "azure_keyvault" {
		v.errorf(path, "${secret:%s}: provider %q (type %s) has no versions; write ${secret:%s/%s}", r, r.Provider, p.Type, r.Provider, r.Name)
		return
	}
	switch p.Type {
	case "env":
		if !envSecretNameRE.MatchString(p.Prefix + r.Name) {
			v.errorf(path, "${secret:%s}: bad name %q for an env provider: letters, digits and _", r, r.Name)
		}
	case "file":
		if !fileSecretNameRE.MatchString(r.Name) || strings.Contains(r.Name, "..") {
			v.errorf(path, "${secret:%s}: bad name %q for a file provider: one file name, no path", r, r.Name)
		}
	case "azure_keyvault":
		if !vaultSecretNameRE.MatchString(r.Name) {
			v.errorf(path, "${secret:%s}: bad Key Vault secret name %q: 1 to 127 letters, digits and dashes", r, r.Name)
		}
		if r.Version != "" && !vaultSecretVersionRE.MatchString(r.Version) {
			v.errorf(path, "${secret:%s}: bad Key Vault secret version %q: want 32 hex digits", r, r.Version)
		}
	}
}

// reservedInjectHeaders cannot be injected: they frame the message, belong to
// the connection, or are the gateway's own.
var reservedInjectHeaders = []string{"Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Proxy-Authenticate", "Te", "Trailer", "Upgrade", "Expect", "Forwarded", "X-Request-Id", "X-Client-Request-Id"}

// inject checks one inject block; svc is the service's own block when path
// is a route's (for conflicts between the two), else nil.
func (v *validator) inject(path string, in *Inject, svc *Inject, s *Service) {
	if in == nil {
		return
	}
	canon := map[string]string{}
	for name, t := range in.Headers {
		hp := path + ".headers." + name
		c := textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(name, "_", "-"))
		switch {
		case !httpguts.ValidHeaderFieldName(name):
			v.errorf(hp, "bad header name %q", name)
		case slices.Contains(reservedInjectHeaders, c) || strings.HasPrefix(c, "X-Forwarded-") || strings.HasPrefix(c, "X-Ztgate-"):
			v.errorf(hp, "header %s cannot be injected: it belongs to the connection or to the gateway", c)
		case canon[c] != "":
			v.errorf(hp, "header %q is also set as %q", name, canon[c])
		}
		canon[c] = name
		if c == "Authorization" && s.ForwardAuthorization {
			v.errorf(hp, "an injected Authorization header replaces the client's, which forward_authorization asks to forward; choose one")
		}
		if c == "Authorization" && in.BasicAuth == nil && svc != nil && svc.BasicAuth != nil {
			v.errorf(hp, "the service's basic_auth and this injected Authorization header both set Authorization; choose one")
		}
		v.templateValue(hp, t, true)
	}
	qnames := map[string]string{}
	for name, t := range in.Query {
		qp := path + ".query." + name
		if name == "" || strings.ContainsAny(name, "&=#") {
			v.errorf(qp, "bad query parameter name %q", name)
		}
		if other := qnames[strings.ToLower(name)]; other != "" {
			v.errorf(qp, "query parameter %q is also set as %q (names are replaced regardless of case)", name, other)
		}
		qnames[strings.ToLower(name)] = name
		v.templateValue(qp, t, false)
	}
	if b := in.BasicAuth; b != nil {
		bp := path + ".basic_auth"
		for _, p := range b.Username.Parts() {
			if p.Ref == nil && strings.Contains(p.Literal, ":") {
				v.errorf(bp+".username", "a Basic user name cannot contain ':'")
			}
		}
		if len(b.Password.Refs()) == 0 && !b.Password.HasEnv() {
			v.errorf(bp+".password", "write a ${secret:...} reference here, never the password itself")
		}
		v.templateValue(bp+".username", b.Username, true)
		v.templateValue(bp+".password", b.Password, true)
		if s.ForwardAuthorization {
			v.errorf(bp, "basic_auth replaces the client's Authorization header, which forward_authorization asks to forward; choose one")
		}
		for _, h := range []*Inject{in, svc} {
			if h == nil {
				continue
			}
			for name := range h.Headers {
				if textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(name, "_", "-")) == "Authorization" {
					v.errorf(bp, "basic_auth and an injected Authorization header both set Authorization; choose one")
				}
			}
		}
	}
}

// templateValue checks a template's literal text and references.
func (v *validator) templateValue(path string, t Template, header bool) {
	for _, p := range t.Parts() {
		if p.Ref != nil {
			v.secretRef(path, *p.Ref)
		} else if header && !httpguts.ValidHeaderFieldValue(p.Literal) {
			v.errorf(path, "the value holds characters not allowed in a header (control characters or line breaks)")
		}
	}
}
