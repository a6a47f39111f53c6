package authn

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
)

// IdentityFromClaims maps claims to an identity exactly as a verified token's
// would be, for tools that explain or test policy without a token.
func IdentityFromClaims(provider string, claims map[string]any) *identity.Identity {
	var exp time.Time
	if n, ok := claims["exp"].(json.Number); ok {
		if v, err := n.Int64(); err == nil {
			exp = time.Unix(v, 0)
		}
	}
	return identityFromClaims(provider, normalizeClaims(claims), exp)
}

// DecodeUnverified returns a token's claims WITHOUT checking its signature,
// for offline explanations that say so. Never use it to admit a request.
func DecodeUnverified(token string) (map[string]any, error) {
	_, p, _, err := splitToken(token)
	if err != nil {
		return nil, err
	}
	raw, err := decodePart(p)
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return decodeJSONObject(raw)
}

// normalizeClaims turns values decoded from YAML or plain JSON (float64,
// []string) into the shapes a token's decoder produces (json.Number, []any).
func normalizeClaims(in map[string]any) map[string]any {
	out := make(map[string]any, len(in))
	for k, v := range in {
		out[k] = normalizeValue(v)
	}
	return out
}

func normalizeValue(v any) any {
	switch x := v.(type) {
	case []string:
		l := make([]any, len(x))
		for i, s := range x {
			l[i] = s
		}
		return l
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = normalizeValue(e)
		}
		return l
	case int:
		return json.Number(fmt.Sprint(x))
	case int64:
		return json.Number(fmt.Sprint(x))
	case float64:
		return json.Number(fmt.Sprint(x))
	case map[string]any:
		return normalizeClaims(x)
	}
	return v
}

// FromConfig builds the verifier of a configured provider. Its keys load on
// first use; Run keeps them fresh.
func FromConfig(p config.Provider, logger *slog.Logger) *OIDC {
	return FromConfigWith(p, Deps{Logger: logger})
}

// FromConfigWith is FromConfig with its dependencies.
func FromConfigWith(p config.Provider, d Deps) *OIDC {
	logger := d.Logger
	cfg := OIDCConfig{
		Name: p.Name, Issuer: p.Issuer, Audiences: p.Audiences, Algorithms: p.Algorithms,
		ClockSkew: p.ClockSkew.D(), Refresh: p.JWKSRefresh.D(), Logger: logger,
		CacheSize: p.TokenCacheSize,
	}
	if p.TokenCacheSize == 0 {
		cfg.CacheSize = -1 // token_cache_size: 0 turns the cache off
	}
	if p.Type == "entra" {
		cfg.Entra = &EntraConfig{Tenant: p.Tenant, AllowedTenants: p.AllowedTenants, ClientID: p.ClientID, AuthorityHost: p.AuthorityHost}
		cfg.Groups = groupSource(p, d)
	}
	return NewOIDC(cfg)
}
