package authn

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
)

const (
	tenantA  = "72f988bf-86f1-41af-91ab-2d7cd011db47" // the API's tenant
	tenantB  = "0b5c8d7e-1f2a-4c3b-9d8e-7f6a5b4c3d2e" // a partner tenant
	tenantC  = "c0ffee00-1111-4222-8333-944445555666" // a stranger
	clientID = "6f1d4c9e-5a3b-4c2d-8e1f-0a9b8c7d6e5f" // the API's application id
	userOID  = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
	appOID   = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	clientA  = "d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6" // a calling client application
)

// entraIssuer is a local Microsoft Entra ID: per-tenant and multi-tenant
// (organizations, common) metadata for v1.0 and v2.0, and keys, laid out as
// login.microsoftonline.com lays them out, so that authority_host can point
// at it.
type entraIssuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey // Entra's signing key, published for every tenant
	// foreign is published on the v2.0 endpoints too, but with another
	// tenant's issuer (as an application's own signing key would be).
	foreign *rsa.PrivateKey
	// issuer, when set, replaces the issuer a metadata document declares
	// (and the v2.0 keys' issuer members).
	issuer atomic.Pointer[func(ver, iss string) string]
	// tokenEndpoint, when set, serves {tenant}/oauth2/v2.0/token.
	tokenEndpoint atomic.Pointer[http.Handler]
}

func newEntraIssuer(t testing.TB) *entraIssuer {
	t.Helper()
	ei := &entraIssuer{}
	ei.key, _ = rsa.GenerateKey(rand.Reader, 2048)
	ei.foreign, _ = rsa.GenerateKey(rand.Reader, 2048)
	// tid is what a tenant segment of the URL stands for in issuers.
	tid := func(r *http.Request) string {
		switch t := r.PathValue("tenant"); t {
		case "organizations", "common":
			return tenantTemplate
		case "contoso.onmicrosoft.com": // tenantA's verified domain
			return tenantA
		default:
			return t
		}
	}
	metadata := func(w http.ResponseWriter, r *http.Request, ver, iss, jwks string) {
		if f := ei.issuer.Load(); f != nil {
			iss = (*f)(ver, iss)
		}
		// A subset of Entra's document, in its shape.
		_ = json.NewEncoder(w).Encode(map[string]any{
			"token_endpoint":                        ei.srv.URL + "/" + r.PathValue("tenant") + "/oauth2/token",
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
			"jwks_uri":                              jwks,
			"response_types_supported":              []string{"code", "id_token", "code id_token", "token id_token", "token"},
			"subject_types_supported":               []string{"pairwise"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"issuer":                                iss,
			"tenant_region_scope":                   "WW",
			"cloud_instance_name":                   "microsoftonline.com",
		})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		metadata(w, r, "1.0", "https://sts.windows.net/"+tid(r)+"/", ei.srv.URL+"/"+r.PathValue("tenant")+"/discovery/keys")
	})
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		metadata(w, r, "2.0", ei.srv.URL+"/"+tid(r)+"/v2.0", ei.srv.URL+"/"+r.PathValue("tenant")+"/discovery/v2.0/keys")
	})
	// The v1.0 endpoint publishes no issuer members; the v2.0 one names
	// each key's issuer, templated on the multi-tenant endpoints.
	mux.HandleFunc("GET /{tenant}/discovery/keys", func(w http.ResponseWriter, r *http.Request) {
		ei.writeKeys(t, w, "")
	})
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", func(w http.ResponseWriter, r *http.Request) {
		iss := ei.srv.URL + "/" + tid(r) + "/v2.0"
		if f := ei.issuer.Load(); f != nil {
			iss = (*f)("2.0", iss)
		}
		ei.writeKeys(t, w, iss)
	})
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		if h := ei.tokenEndpoint.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	})
	ei.srv = httptest.NewServer(mux)
	t.Cleanup(ei.srv.Close)
	return ei
}

func (ei *entraIssuer) writeKeys(t testing.TB, w http.ResponseWriter, issuer string) {
	key := func(pub any, kid, issuer string) map[string]any {
		k, err := jwk.Import(pub)
		if err != nil {
			t.Error(err)
		}
		var m map[string]any
		_ = json.Unmarshal(must(json.Marshal(k)), &m)
		m["kid"], m["x5t"], m["use"], m["cloud_instance_name"] = kid, kid, "sig", "microsoftonline.com"
		if issuer != "" {
			m["issuer"] = issuer
		}
		return m
	}
	keys := []map[string]any{key(ei.key.Public(), "entra1", issuer)}
	if issuer != "" {
		keys = append(keys, key(ei.foreign.Public(), "foreign", ei.srv.URL+"/"+tenantC+"/v2.0"))
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
}

// token signs claims as Entra ID does: RS256, with kid and x5t.
func (ei *entraIssuer) token(t testing.TB, claims map[string]any) string {
	return signToken(t, "RS256", ei.key, map[string]any{"typ": "JWT", "kid": "entra1", "x5t": "entra1"}, claims)
}

// v1 is a v1.0 access token of tenant tid in Entra's shape: a user's
// (delegated, scp) or, with app, an application's own (roles, sub = oid).
func (ei *entraIssuer) v1(tid string, app bool) map[string]any { return ei.claims("1.0", tid, app) }

// v2 is a v2.0 access token of tenant tid in Entra's shape.
func (ei *entraIssuer) v2(tid string, app bool) map[string]any { return ei.claims("2.0", tid, app) }

func (ei *entraIssuer) claims(ver, tid string, app bool) map[string]any {
	now := time.Now().Unix()
	c := map[string]any{"iat": now, "nbf": now, "exp": now + 3600, "aio": "E2ZgYJg", "rh": "0.AAAA", "tid": tid, "uti": "x" + ver, "ver": ver}
	v1 := ver == "1.0"
	if v1 {
		c["aud"], c["iss"], c["idp"] = "api://"+clientID, "https://sts.windows.net/"+tid+"/", "https://sts.windows.net/"+tid+"/"
		c["appid"], c["appidacr"] = clientA, "1"
	} else {
		c["aud"], c["iss"], c["azp"], c["azpacr"] = clientID, ei.srv.URL+"/"+tid+"/v2.0", clientA, "1"
	}
	if app {
		c["oid"], c["sub"], c["idtyp"], c["roles"] = appOID, appOID, "app", []string{"Orders.Read"}
		return c
	}
	c["oid"], c["name"], c["wids"] = userOID, "Alice Example", []string{"b79fbf4d-3ef9-4689-8143-76b194e85509"}
	if v1 {
		c["sub"], c["appidacr"], c["scp"] = "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "0", "orders.read orders.write"
		c["amr"], c["acr"], c["unique_name"], c["upn"] = []string{"pwd", "mfa"}, "1", "alice@contoso.com", "alice@contoso.com"
	} else {
		c["sub"], c["azpacr"], c["scp"] = "MF4f-ggWMEji12KynJUNQZphaUTvLcQug5jdF2nl01Q", "0", "orders.read"
		c["preferred_username"], c["groups"] = "alice@contoso.com", []string{"a0b1c2d3-0000-4000-8000-000000000001"}
		c["acrs"], c["xms_cc"] = []string{"c1"}, []string{"cp1"}
	}
	return c
}

// verifier is an Entra ID provider pointed at the local issuer.
func (ei *entraIssuer) verifier(cfg EntraConfig, audiences ...string) *OIDC {
	cfg.AuthorityHost = ei.srv.URL
	if cfg.ClientID == "" {
		cfg.ClientID = clientID
	}
	return NewOIDC(OIDCConfig{Name: "corp", Entra: &cfg, Audiences: audiences, Algorithms: []string{"RS256"}, ClockSkew: time.Minute, Refresh: time.Hour})
}

func TestEntraIdentities(t *testing.T) {
	ei := newEntraIssuer(t)
	a := NewAuthenticator(16384, ei.verifier(EntraConfig{Tenant: tenantA}))
	user := func(want identity.Identity) identity.Identity {
		want.Type, want.Tenant, want.ObjectID = identity.User, tenantA, userOID
		want.Name, want.AppID = "Alice Example", clientA
		want.WIDS = []string{"b79fbf4d-3ef9-4689-8143-76b194e85509"}
		return want
	}
	app := identity.Identity{Type: identity.App, Tenant: tenantA, ObjectID: appOID, Subject: appOID, AppID: clientA, Roles: []string{"Orders.Read"}}
	tests := []struct {
		name   string
		claims map[string]any
		want   identity.Identity
	}{
		{"v1.0 user", ei.v1(tenantA, false), user(identity.Identity{
			Issuer: "https://sts.windows.net/" + tenantA + "/", Subject: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
			Scopes: []string{"orders.read", "orders.write"}, AMR: []string{"pwd", "mfa"},
		})},
		{"v2.0 user", ei.v2(tenantA, false), user(identity.Identity{
			Issuer: ei.srv.URL + "/" + tenantA + "/v2.0", Subject: "MF4f-ggWMEji12KynJUNQZphaUTvLcQug5jdF2nl01Q",
			Scopes: []string{"orders.read"}, Groups: []string{"a0b1c2d3-0000-4000-8000-000000000001"},
			ACRS: []string{"c1"}, ClientCapabilities: []string{"cp1"},
		})},
		{"v1.0 app", ei.v1(tenantA, true), func() identity.Identity { w := app; w.Issuer = "https://sts.windows.net/" + tenantA + "/"; return w }()},
		{"v2.0 app", ei.v2(tenantA, true), func() identity.Identity { w := app; w.Issuer = ei.srv.URL + "/" + tenantA + "/v2.0"; return w }()},
		{"v2.0 app without idtyp: no scp and oid == sub", func() map[string]any { c := ei.v2(tenantA, true); delete(c, "idtyp"); return c }(),
			func() identity.Identity { w := app; w.Issuer = ei.srv.URL + "/" + tenantA + "/v2.0"; return w }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, f := a.AuthenticateToken(context.Background(), ei.token(t, tt.claims))
			if f != nil {
				t.Fatalf("got %v, want the token accepted", f)
			}
			if got, want := id.Key(), tt.want.Tenant+"/"+tt.want.ObjectID; got != want {
				t.Errorf("identity key: got %q, want %q (tid+oid)", got, want)
			}
			tt.want.Provider = "corp"
			if lifetime := id.ExpiresAt.Sub(id.IssuedAt); lifetime != time.Hour {
				t.Errorf("token lifetime from iat to exp: got %v, want 1h", lifetime)
			}
			got := *id
			got.Claims, got.ExpiresAt, got.IssuedAt = nil, time.Time{}, time.Time{}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("identity (-want +got):\n%s", d)
			}
			if id.Claims["ver"] != tt.claims["ver"] {
				t.Errorf("claims: got ver %v, want every claim kept for policy", id.Claims["ver"])
			}
		})
	}
}

func TestEntraRefusals(t *testing.T) {
	ei := newEntraIssuer(t)
	single := EntraConfig{Tenant: tenantA}
	partners := EntraConfig{Tenant: "organizations", AllowedTenants: []string{tenantA, tenantB}}
	anyone := EntraConfig{Tenant: "common", AllowedTenants: []string{"*"}}
	with := func(c map[string]any, kv ...any) map[string]any {
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return c
	}
	v1, v2 := ei.v1, ei.v2
	tests := []struct {
		name      string
		cfg       EntraConfig
		audiences []string
		claims    map[string]any
		key       *rsa.PrivateKey
		kid       string
		reason    string // empty: accepted
	}{
		{name: "single tenant: v1.0", cfg: single, claims: v1(tenantA, false)},
		{name: "single tenant: v2.0", cfg: single, claims: v2(tenantA, false)},
		{name: "single tenant: another tenant's v2.0 token", cfg: single, claims: v2(tenantB, false), reason: ReasonWrongIssuer},
		{name: "single tenant: another tenant's v1.0 token", cfg: single, claims: v1(tenantB, true), reason: ReasonWrongIssuer},
		{name: "single tenant: tid of another tenant", cfg: single, claims: with(v2(tenantA, false), "tid", tenantB), reason: ReasonTIDMismatch},
		{name: "single tenant: no tid", cfg: single, claims: with(v1(tenantA, false), "tid", nil), reason: ReasonMalformedTID},

		{name: "multi-tenant: allowed tenant, v2.0", cfg: partners, claims: v2(tenantB, false)},
		{name: "multi-tenant: allowed tenant, v1.0", cfg: partners, claims: v1(tenantB, true)},
		{name: "multi-tenant: the home tenant in the list", cfg: partners, claims: v2(tenantA, true)},
		{name: "multi-tenant: tenant not allowed, v2.0", cfg: partners, claims: v2(tenantC, false), reason: ReasonTenantNotAllowed},
		{name: "multi-tenant: tenant not allowed, v1.0", cfg: partners, claims: v1(tenantC, false), reason: ReasonTenantNotAllowed},
		{name: "multi-tenant: every tenant allowed", cfg: anyone, claims: v2(tenantC, false)},
		{name: "multi-tenant: tid not a GUID", cfg: anyone, claims: with(v2("contoso", false), "tid", "contoso"), reason: ReasonMalformedTID},
		{name: "multi-tenant: tid not a GUID, templated issuer taken literally", cfg: anyone, claims: with(v2(tenantTemplate, false), "tid", tenantTemplate), reason: ReasonMalformedTID},
		{name: "multi-tenant: tid differs from the tenant in iss", cfg: anyone, claims: with(v2(tenantB, false), "tid", tenantC), reason: ReasonTIDMismatch},
		{name: "multi-tenant: allowed tid, issuer of a tenant not allowed", cfg: partners, claims: with(v1(tenantC, false), "tid", tenantB), reason: ReasonTIDMismatch},
		{name: "multi-tenant: no tid", cfg: anyone, claims: with(v2(tenantB, false), "tid", nil), reason: ReasonMalformedTID},

		{name: "v2.0 token with a v1.0 issuer", cfg: single, claims: with(v2(tenantA, false), "iss", "https://sts.windows.net/"+tenantA+"/"), reason: ReasonWrongIssuer},
		{name: "v1.0 token with a v2.0 issuer", cfg: single, claims: with(v1(tenantA, false), "iss", ei.srv.URL+"/"+tenantA+"/v2.0"), reason: ReasonWrongIssuer},
		{name: "v2.0 issuer of another cloud", cfg: single, claims: with(v2(tenantA, false), "iss", "https://login.microsoftonline.us/"+tenantA+"/v2.0"), reason: ReasonWrongIssuer},
		{name: "no ver", cfg: single, claims: with(v2(tenantA, false), "ver", nil), reason: ReasonUnsupportedVersion},
		{name: "ver 3.0", cfg: single, claims: with(v2(tenantA, false), "ver", "3.0"), reason: ReasonUnsupportedVersion},

		{name: "default audience: v1.0 token for the bare client id", cfg: single, claims: with(v1(tenantA, false), "aud", clientID), reason: ReasonWrongAudience},
		{name: "default audience: v2.0 token for api://client id", cfg: single, claims: with(v2(tenantA, false), "aud", "api://"+clientID), reason: ReasonWrongAudience},
		{name: "default audience: another application", cfg: single, claims: with(v2(tenantA, false), "aud", clientA), reason: ReasonWrongAudience},
		{name: "configured audiences replace the defaults", cfg: single, audiences: []string{"api://orders"}, claims: with(v2(tenantA, false), "aud", "api://orders")},
		{name: "configured audiences: the client id no longer", cfg: single, audiences: []string{"api://orders"}, claims: v2(tenantA, false), reason: ReasonWrongAudience},

		{name: "key published for another tenant's issuer", cfg: single, claims: v2(tenantA, false), key: ei.foreign, kid: "foreign", reason: ReasonKeyIssuerMismatch},
		{name: "key published for another tenant's issuer, multi-tenant", cfg: anyone, claims: v2(tenantB, false), key: ei.foreign, kid: "foreign", reason: ReasonKeyIssuerMismatch},
		{name: "the other tenant's own token under its key", cfg: anyone, claims: v2(tenantC, false), key: ei.foreign, kid: "foreign"},
		{name: "v1.0 key set has no such key", cfg: single, claims: v1(tenantA, false), key: ei.foreign, kid: "foreign", reason: ReasonUnknownKID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAuthenticator(16384, ei.verifier(tt.cfg, tt.audiences...))
			tok := ei.token(t, tt.claims)
			if tt.key != nil {
				tok = signToken(t, "RS256", tt.key, map[string]any{"typ": "JWT", "kid": tt.kid}, tt.claims)
			}
			id, f := a.AuthenticateToken(context.Background(), tok)
			switch {
			case tt.reason == "" && f != nil:
				t.Fatalf("got %v, want the token accepted", f)
			case tt.reason != "" && f == nil:
				t.Fatalf("got identity %+v, want refusal %s", id, tt.reason)
			case tt.reason != "" && f.Reason != tt.reason:
				t.Fatalf("got reason %s (%v), want %s", f.Reason, f, tt.reason)
			case f != nil && id != nil:
				t.Fatal("got an identity together with a failure")
			}
		})
	}
}

// TestEntraOtherTenantReason: a token of another tenant on a single-tenant
// provider says so, rather than only "not trusted".
func TestEntraOtherTenantReason(t *testing.T) {
	ei := newEntraIssuer(t)
	a := NewAuthenticator(16384, ei.verifier(EntraConfig{Tenant: tenantA}))
	_, f := a.AuthenticateToken(context.Background(), ei.token(t, ei.v2(tenantB, false)))
	if f == nil || f.Reason != ReasonWrongIssuer || !strings.Contains(f.Description, "another Entra ID tenant") {
		t.Fatalf("got %v, want wrong_issuer naming another tenant", f)
	}
}

// TestEntraRouting: with several providers a token goes to its own tenant's
// provider first, then to a multi-tenant one, and an OpenID Connect issuer
// keeps its tokens.
func TestEntraRouting(t *testing.T) {
	ei := newEntraIssuer(t)
	ti := newTestIssuer(t)
	home := ei.verifier(EntraConfig{Tenant: tenantA})
	home.cfg.Name = "home"
	partners := ei.verifier(EntraConfig{Tenant: "organizations", AllowedTenants: []string{tenantB}})
	partners.cfg.Name = "partners"
	plain := ti.verifier(t)
	a := NewAuthenticator(16384, partners, plain, home)
	tests := []struct {
		name, token, provider, reason string
	}{
		{"home tenant, v2.0", ei.token(t, ei.v2(tenantA, false)), "home", ""},
		{"home tenant, v1.0", ei.token(t, ei.v1(tenantA, true)), "home", ""},
		{"partner tenant", ei.token(t, ei.v2(tenantB, false)), "partners", ""},
		{"stranger", ei.token(t, ei.v2(tenantC, false)), "", ReasonTenantNotAllowed},
		{"OpenID Connect issuer", ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, ti.claims()), "test", ""},
		{"unknown issuer", ei.token(t, map[string]any{"iss": "https://idp.example/", "ver": "2.0"}), "", ReasonWrongIssuer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, f := a.AuthenticateToken(context.Background(), tt.token)
			if tt.reason != "" {
				if f == nil || f.Reason != tt.reason {
					t.Fatalf("got %v, want %s", f, tt.reason)
				}
				return
			}
			if f != nil {
				t.Fatalf("got %v, want provider %s", f, tt.provider)
			}
			if id.Provider != tt.provider {
				t.Fatalf("got provider %s, want %s", id.Provider, tt.provider)
			}
		})
	}
}

// TestEntraMetadata: the keys of a metadata document whose issuer does not
// fit the provider are never used; the provider fails closed.
func TestEntraMetadata(t *testing.T) {
	tests := []struct {
		name   string
		cfg    EntraConfig
		issuer func(ver, iss string) string
		claims func(*entraIssuer) map[string]any
	}{
		{"v2.0 metadata of another tenant", EntraConfig{Tenant: tenantA},
			func(ver, iss string) string { return strings.Replace(iss, tenantA, tenantB, 1) },
			func(ei *entraIssuer) map[string]any { return ei.v2(tenantA, false) }},
		{"templated metadata for a single tenant", EntraConfig{Tenant: tenantA},
			func(ver, iss string) string { return strings.Replace(iss, tenantA, tenantTemplate, 1) },
			func(ei *entraIssuer) map[string]any { return ei.v1(tenantA, false) }},
		{"multi-tenant metadata without the template", EntraConfig{Tenant: "organizations", AllowedTenants: []string{"*"}},
			func(ver, iss string) string { return strings.Replace(iss, tenantTemplate, tenantB, 1) },
			func(ei *entraIssuer) map[string]any { return ei.v2(tenantB, false) }},
		{"v1.0 issuer over http", EntraConfig{Tenant: tenantA},
			func(ver, iss string) string { return strings.Replace(iss, "https://", "http://", 1) },
			func(ei *entraIssuer) map[string]any { return ei.v1(tenantA, false) }},
		{"v1.0 metadata with a v2.0 issuer", EntraConfig{Tenant: tenantA},
			func(ver, iss string) string { return "https://login.microsoftonline.com/" + tenantA + "/v2.0" },
			func(ei *entraIssuer) map[string]any { return ei.v1(tenantA, false) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ei := newEntraIssuer(t)
			ei.issuer.Store(&tt.issuer)
			o := ei.verifier(tt.cfg)
			_, f := o.Verify(context.Background(), ei.token(t, tt.claims(ei)))
			if f == nil || f.Reason != ReasonKeysUnavailable || f.Status != http.StatusServiceUnavailable {
				t.Fatalf("got %v, want 503 keys_unavailable", f)
			}
			if ok, err := o.Ready(); ok || err == nil {
				t.Fatalf("Ready: got %v, %v; want not ready with the error", ok, err)
			}
		})
	}
}

// TestEntraDomainTenant: a tenant configured by domain name learns its id
// from the metadata.
func TestEntraDomainTenant(t *testing.T) {
	ei := newEntraIssuer(t)
	o := ei.verifier(EntraConfig{Tenant: "contoso.onmicrosoft.com"})
	for _, c := range []map[string]any{ei.v1(tenantA, false), ei.v2(tenantA, true)} {
		if _, f := o.Verify(context.Background(), ei.token(t, c)); f != nil {
			t.Fatalf("ver %s: got %v, want accepted", c["ver"], f)
		}
	}
	if _, f := o.Verify(context.Background(), ei.token(t, ei.v2(tenantB, false))); f == nil || f.Reason != ReasonWrongIssuer {
		t.Fatalf("another tenant: got %v, want wrong_issuer", f)
	}
	if o.Match(ei.srv.URL+"/"+tenantA+"/v2.0") != MatchExact || o.Match("https://sts.windows.net/"+tenantA+"/") != MatchExact {
		t.Fatal("once loaded, the tenant's issuers are matched exactly")
	}
}

// TestEntraSovereignCloud: a cloud whose metadata declares issuers on
// another host than its authority (Azure China: login.chinacloudapi.cn
// declares login.partner.microsoftonline.cn) is trusted for those issuers.
func TestEntraSovereignCloud(t *testing.T) {
	ei := newEntraIssuer(t)
	const host = "https://login.partner.microsoftonline.cn/"
	f := func(ver, iss string) string {
		if ver == "2.0" {
			return strings.Replace(iss, ei.srv.URL+"/", host, 1)
		}
		return strings.Replace(iss, "https://sts.windows.net/", "https://sts.chinacloudapi.cn/", 1)
	}
	ei.issuer.Store(&f)
	a := NewAuthenticator(16384, ei.verifier(EntraConfig{Tenant: tenantA}))
	for _, c := range []map[string]any{ei.v2(tenantA, false), ei.v1(tenantA, true)} {
		c["iss"] = f(c["ver"].(string), c["iss"].(string))
		if _, fl := a.AuthenticateToken(context.Background(), ei.token(t, c)); fl != nil {
			t.Fatalf("ver %s: got %v, want accepted", c["ver"], fl)
		}
	}
	for _, iss := range []string{ei.srv.URL + "/" + tenantA + "/v2.0", "https://sts.windows.net/" + tenantA + "/"} {
		c := ei.v2(tenantA, false)
		if strings.HasSuffix(iss, "/") {
			c = ei.v1(tenantA, false)
		}
		c["iss"] = iss
		if _, fl := a.AuthenticateToken(context.Background(), ei.token(t, c)); fl == nil || fl.Reason != ReasonWrongIssuer {
			t.Fatalf("issuer %s: got %v, want wrong_issuer", iss, fl)
		}
	}
}

func TestEntraMatch(t *testing.T) {
	ei := newEntraIssuer(t)
	single := ei.verifier(EntraConfig{Tenant: tenantA})
	multi := ei.verifier(EntraConfig{Tenant: "organizations", AllowedTenants: []string{"*"}})
	tests := []struct {
		iss           string
		single, multi Match
	}{
		{ei.srv.URL + "/" + tenantA + "/v2.0", MatchExact, MatchTemplate},
		{ei.srv.URL + "/" + tenantB + "/v2.0", MatchOther, MatchTemplate},
		{"https://sts.windows.net/" + tenantA + "/", MatchExact, MatchTemplate},
		{"https://sts.windows.net/" + tenantB + "/", MatchOther, MatchTemplate},
		{"https://login.microsoftonline.us/" + tenantA + "/v2.0", NoMatch, NoMatch},
		{ei.srv.URL + "/" + tenantA + "/v2.0/", NoMatch, NoMatch},
		{ei.srv.URL + "/" + tenantA, NoMatch, NoMatch},
		{"https://idp.example", NoMatch, NoMatch},
		{"", NoMatch, NoMatch},
	}
	check := func(when string) {
		for _, tt := range tests {
			if got := single.Match(tt.iss); got != tt.single {
				t.Errorf("%s: single-tenant Match(%q): got %d, want %d", when, tt.iss, got, tt.single)
			}
			if got := multi.Match(tt.iss); got != tt.multi {
				t.Errorf("%s: multi-tenant Match(%q): got %d, want %d", when, tt.iss, got, tt.multi)
			}
		}
	}
	// Before the v1.0 metadata is read its host is not known; after, a
	// v1.0 issuer on another host no longer matches.
	if single.Match("https://sts.example/"+tenantA+"/") != MatchExact {
		t.Error("before loading: a v1.0 issuer of the tenant on any host goes to the provider, which refuses what its metadata does not declare")
	}
	for _, o := range []*OIDC{single, multi} {
		if err := o.refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	check("loaded")
	if single.Match("https://sts.example/"+tenantA+"/") != NoMatch {
		t.Error("loaded: a v1.0 issuer on another host still matches")
	}
}

func TestSplitTenant(t *testing.T) {
	tests := []struct {
		iss, pre, tenant, post string
		ok                     bool
	}{
		{"https://sts.windows.net/" + tenantA + "/", "https://sts.windows.net/", tenantA, "/", true},
		{"https://login.microsoftonline.com/{tenantid}/v2.0", "https://login.microsoftonline.com/", "{tenantid}", "/v2.0", true},
		{"https://login.microsoftonline.com/" + tenantA + "/v2.0/", "", "", "", false},
		{"https://login.microsoftonline.com//v2.0", "", "", "", false},
		{"https://login.microsoftonline.com/" + tenantA, "", "", "", false},
		{"https:///" + tenantA + "/", "", "", "", false},
		{"sts.windows.net/" + tenantA + "/", "", "", "", false},
	}
	for _, tt := range tests {
		pre, tenant, post, ok := splitTenant(tt.iss)
		if pre != tt.pre || tenant != tt.tenant || post != tt.post || ok != tt.ok {
			t.Errorf("splitTenant(%q): got %q %q %q %v, want %q %q %q %v", tt.iss, pre, tenant, post, ok, tt.pre, tt.tenant, tt.post, tt.ok)
		}
	}
	for s, want := range map[string]bool{tenantA: true, strings.ToUpper(tenantA): true, "72f988bf86f141af91ab2d7cd011db47": false, tenantA + "0": false, "72f988bf-86f1-41af-91ab-2d7cd011db4g": false, "": false} {
		if got := isGUID(s); got != want {
			t.Errorf("isGUID(%q): got %v, want %v", s, got, want)
		}
	}
}

// TestEntraCacheByRing: a token verified with the v2.0 keys is dropped when
// the v2.0 key set stops publishing its key, not by a refresh of the v1.0 set.
func TestEntraCacheByRing(t *testing.T) {
	ei := newEntraIssuer(t)
	o := ei.verifier(EntraConfig{Tenant: tenantA})
	tok := ei.token(t, ei.v2(tenantA, false))
	for range 2 { // the second verification caches it
		if _, f := o.Verify(context.Background(), tok); f != nil {
			t.Fatal(f)
		}
	}
	e := o.profile.(*entra)
	o.cache.dropKeys(e.v1, &keySet{})
	if n := o.cache.len(); n != 1 {
		t.Fatalf("after the v1.0 set changed: got %d entries, want 1", n)
	}
	o.cache.dropKeys(e.v2, &keySet{})
	if n := o.cache.len(); n != 0 {
		t.Fatalf("after the v2.0 set dropped the key: got %d entries, want 0", n)
	}
}

// FuzzVerifyEntra runs the Entra ID path (version choice, templated
// issuers, tenant and key issuer checks) on mutated tokens.
func FuzzVerifyEntra(f *testing.F) {
	ei := newEntraIssuer(f)
	a := NewAuthenticator(16384, ei.verifier(EntraConfig{Tenant: "organizations", AllowedTenants: []string{tenantA, tenantB}}))
	var signed []string
	for _, c := range []map[string]any{ei.v1(tenantA, false), ei.v2(tenantB, true)} {
		tok := ei.token(f, c)
		f.Add(tok)
		signed = append(signed, tok[:strings.LastIndexByte(tok, '.')])
	}
	f.Add(ei.token(f, ei.v2(tenantC, false)))
	f.Fuzz(func(t *testing.T, token string) {
		id, fl := a.AuthenticateToken(context.Background(), token)
		if (id == nil) == (fl == nil) {
			t.Fatalf("got identity %v and failure %v; want exactly one", id, fl)
		}
		if id != nil && !slices.Contains(signed, token[:strings.LastIndexByte(token, '.')]) {
			t.Fatalf("accepted content the issuer never signed for an allowed tenant: %q", token)
		}
	})
}

// TestFromConfigEntra: a provider of type entra in the configuration file
// becomes an Entra ID verifier, with its token cache as configured.
func TestFromConfigEntra(t *testing.T) {
	ei := newEntraIssuer(t)
	yaml := `listen: { address: ":8443" }
identity:
  providers:
    - name: corp
      type: entra
      tenant: ` + tenantA + `
      client_id: ` + clientID + `
      authority_host: ` + ei.srv.URL + `
    - name: partners
      type: entra
      tenant: organizations
      allowed_tenants: [` + tenantB + `]
      client_id: ` + clientID + `
      authority_host: ` + ei.srv.URL + `
      token_cache_size: 0
services:
  - name: orders
    upstream: http://127.0.0.1:8080
    routes:
      - { name: r, match: { path: "/**" }, allow: { roles: [Orders.Read] } }
`
	cfg, err := config.Parse("x.yaml", []byte(yaml), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	corp, partners := FromConfig(cfg.Identity.Providers[0], nil), FromConfig(cfg.Identity.Providers[1], nil)
	if corp.cache == nil || corp.cache.max != DefaultCacheSize || partners.cache != nil {
		t.Fatalf("caches: got %v and %v, want the default size and none", corp.cache, partners.cache)
	}
	a := NewAuthenticator(cfg.Identity.Providers[0].MaxTokenBytes, corp, partners)
	for tid, want := range map[string]string{tenantA: "corp", tenantB: "partners"} {
		id, f := a.AuthenticateToken(context.Background(), ei.token(t, ei.v1(tid, true)))
		if f != nil || id.Provider != want {
			t.Fatalf("tenant %s: got %v, %v; want provider %s", tid, id, f, want)
		}
	}
	if _, f := a.AuthenticateToken(context.Background(), strings.Repeat("a", 16385)); f == nil || f.Reason != ReasonTokenTooLarge {
		t.Fatalf("got %v, want token_too_large", f)
	}
}
