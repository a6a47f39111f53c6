package authn

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// DefaultAuthorityHost is Microsoft Entra ID's global cloud.
const DefaultAuthorityHost = "https://login.microsoftonline.com"

// tenantTemplate stands for the tenant in a multi-tenant provider's issuer
// and in the issuer members of its keys.
const tenantTemplate = "{tenantid}"

// EntraConfig makes a verifier one of Microsoft Entra ID.
type EntraConfig struct {
	// Tenant is a tenant id, a verified domain, or organizations / common
	// for multi-tenant applications.
	Tenant string
	// AllowedTenants are the tenant ids a multi-tenant provider accepts;
	// "*" accepts every tenant.
	AllowedTenants []string
	// ClientID is the API's application id. Without Audiences, v2.0 tokens
	// must be for ClientID and v1.0 tokens for api://{ClientID}, as
	// Microsoft.Identity.Web expects.
	ClientID string
	// AuthorityHost is the cloud's sign-in URL; empty means
	// DefaultAuthorityHost.
	AuthorityHost string
}

// entra is Microsoft Entra ID's profile. It accepts both token versions,
// each checked against its own metadata, chosen by the token's ver claim:
//
//	v1.0: {authority}/{tenant}/.well-known/openid-configuration,
//	      issuer https://sts.windows.net/{tid}/ (another host in other clouds)
//	v2.0: {authority}/{tenant}/v2.0/.well-known/openid-configuration,
//	      issuer {authority}/{tid}/v2.0
//
// A multi-tenant provider's metadata declares the issuer as a template
// ({tenantid} for the tenant); a token's issuer must be that template with
// the token's own tid, and tid must be one of the allowed tenants.
type entra struct {
	authority string // no trailing slash
	tenant    string // as configured, lower case
	multi     bool
	anyTenant bool
	allowed   []string // lower case
	clientID  string
	auds      []string // configured; none: by token version from clientID
	v1, v2    *keyring
}

func newEntra(cfg EntraConfig, audiences []string, ring func(discovery string, checkIssuer func(string) error) *keyring) *entra {
	e := &entra{
		authority: strings.TrimRight(cmp.Or(cfg.AuthorityHost, DefaultAuthorityHost), "/"),
		tenant:    strings.ToLower(cfg.Tenant),
		clientID:  cfg.ClientID,
		auds:      audiences,
	}
	e.multi = e.tenant == "organizations" || e.tenant == "common"
	for _, t := range cfg.AllowedTenants {
		e.anyTenant = e.anyTenant || t == "*"
		e.allowed = append(e.allowed, strings.ToLower(t))
	}
	base := e.authority + "/" + url.PathEscape(e.tenant)
	e.v1 = ring(base+"/.well-known/openid-configuration", e.metadataIssuer(v1Suffix))
	e.v2 = ring(base+"/v2.0/.well-known/openid-configuration", e.metadataIssuer(v2Suffix))
	return e
}

// What follows the tenant in each version's issuer.
const (
	v1Suffix = "/"
	v2Suffix = "/v2.0"
)

// splitTenant splits an Entra ID issuer, https://host/{tenant}/ (v1.0) or
// https://host/{tenant}/v2.0, around its tenant.
func splitTenant(iss string) (pre, tenant, post string, ok bool) {
	_, rest, found := strings.Cut(iss, "://")
	h := strings.IndexByte(rest, '/')
	if !found || h <= 0 {
		return "", "", "", false
	}
	i := len(iss) - len(rest) + h + 1
	t := strings.IndexByte(iss[i:], '/')
	if t <= 0 {
		return "", "", "", false
	}
	pre, tenant, post = iss[:i], iss[i:i+t], iss[i+t:]
	if post != v1Suffix && post != v2Suffix {
		return "", "", "", false
	}
	return pre, tenant, post, true
}

// isGUID reports whether s is a GUID in its 8-4-4-4-12 form.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// metadataIssuer vets the issuer a version's metadata declares: of that
// version's form, for the configured tenant, or the {tenantid} template for
// a multi-tenant provider. Its host is the cloud's, which need not be the
// authority's (login.chinacloudapi.cn declares
// login.partner.microsoftonline.cn).
func (e *entra) metadataIssuer(suffix string) func(string) error {
	return func(iss string) error {
		pre, tenant, post, ok := splitTenant(iss)
		if !ok || post != suffix {
			return fmt.Errorf("issuer %q is not of the form https://host/{tenant}%s", iss, suffix)
		}
		if u, err := url.Parse(pre); err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
			return fmt.Errorf("issuer %q must be https", iss)
		}
		switch {
		case e.multi && tenant != tenantTemplate:
			return fmt.Errorf("issuer %q: a multi-tenant provider needs the %s template", iss, tenantTemplate)
		case !e.multi && !isGUID(tenant):
			return fmt.Errorf("issuer %q does not name a tenant id", iss)
		case !e.multi && isGUID(e.tenant) && tenant != e.tenant:
			return fmt.Errorf("issuer %q is of another tenant than %s", iss, e.tenant)
		}
		return nil
	}
}

func (e *entra) rings() []*keyring { return []*keyring{e.v1, e.v2} }

func (e *entra) pick(claims map[string]any) (*keyring, *Failure) {
	switch ver, _ := claims["ver"].(string); ver {
	case "1.0":
		return e.v1, nil
	case "2.0":
		return e.v2, nil
	}
	return nil, fail(ReasonUnsupportedVersion, "the token is not an Entra ID v1.0 or v2.0 access token", fmt.Errorf("ver %v", claims["ver"]))
}

func (e *entra) audiences(claims map[string]any) []string {
	if len(e.auds) > 0 {
		return e.auds
	}
	if claims["ver"] == "1.0" {
		return []string{"api://" + e.clientID}
	}
	return []string{e.clientID}
}

func (e *entra) checkIssuer(claims map[string]any, set *keySet, key *signingKey) *Failure {
	iss, _ := claims["iss"].(string)
	tid, _ := claims["tid"].(string)
	wpre, wtenant, wpost, _ := splitTenant(set.issuer)
	pre, tenant, post, ok := splitTenant(iss)
	switch {
	case !ok || pre != wpre || post != wpost:
		return fail(ReasonWrongIssuer, "the token's issuer is not trusted", fmt.Errorf("iss %q, want %q", iss, set.issuer))
	case !e.multi && tenant != wtenant:
		return fail(ReasonWrongIssuer, "the token was issued by another Entra ID tenant than this API's", fmt.Errorf("issuer tenant %q, want %q", tenant, wtenant))
	case !isGUID(tid):
		return fail(ReasonMalformedTID, "the token's tid is not a tenant id", fmt.Errorf("tid %q", tid))
	case tid != tenant:
		return fail(ReasonTIDMismatch, "the token's tid is not the tenant of its issuer", fmt.Errorf("tid %q, iss %q", tid, iss))
	case e.multi && !e.anyTenant && !slices.Contains(e.allowed, strings.ToLower(tid)):
		return fail(ReasonTenantNotAllowed, "the token's tenant is not allowed", fmt.Errorf("tid %q", tid))
	}
	// Entra ID names each key's issuer (with the {tenantid} template on
	// multi-tenant endpoints); a key must not sign for another issuer. A
	// v1.0 token may be signed by a key that names the tenant's v2.0 issuer.
	if key.issuer != "" {
		eff := strings.ReplaceAll(key.issuer, tenantTemplate, tid)
		if eff != iss && eff != e.v2Issuer(tid) {
			return fail(ReasonKeyIssuerMismatch, "the token was signed by a key of another issuer", fmt.Errorf("key %q of issuer %q, iss %q", key.kid, key.issuer, iss))
		}
	}
	return nil
}

// v2Issuer is tenant tid's v2.0 issuer.
func (e *entra) v2Issuer(tid string) string {
	if set := e.v2.current(); set != nil {
		return strings.ReplaceAll(set.issuer, tenantTemplate, tid)
	}
	return e.authority + "/" + tid + v2Suffix
}

// match routes Entra ID issuers of this cloud: this tenant's exactly,
// any tenant's for a multi-tenant provider, and other tenants' to be
// refused with a clear reason. The issuers' hosts (sts.windows.net for v1.0
// in the global cloud) are known once the metadata has loaded; until then
// an issuer of the right form on any host goes to the provider, which
// refuses what its metadata does not declare.
func (e *entra) match(iss string) Match {
	pre, tenant, post, ok := splitTenant(iss)
	if !ok {
		return NoMatch
	}
	ring := e.v1
	if post == v2Suffix {
		ring = e.v2
	}
	wpre, wtenant := "", e.tenant
	if set := ring.current(); set != nil {
		wpre, wtenant, _, _ = splitTenant(set.issuer)
	}
	switch {
	case wpre != "" && pre != wpre:
		return NoMatch
	case e.multi:
		return MatchTemplate
	case tenant == wtenant:
		return MatchExact
	}
	return MatchOther
}
