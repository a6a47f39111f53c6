package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/ztgate/ztgate/internal/identity"
)

// Bounds on what an identity provider may send.
const (
	maxMetadataBytes = 1 << 20
	// unknownKIDRefresh is the least time between refreshes triggered by a
	// token with an unknown key id (Microsoft's rollover guidance: at most
	// once per five minutes), so hostile tokens cannot hammer the provider.
	unknownKIDRefresh = 5 * time.Minute
)

// OIDCConfig configures an OpenID Connect verifier.
type OIDCConfig struct {
	Name       string
	Issuer     string
	Audiences  []string
	Algorithms []string
	ClockSkew  time.Duration
	Refresh    time.Duration // background key refresh interval
	Client     *http.Client  // nil: a client with a 10 s timeout
	Logger     *slog.Logger
	Now        func() time.Time
	// CacheSize bounds the verified-token cache; 0 means DefaultCacheSize,
	// negative disables it.
	CacheSize int
}

// OIDC verifies tokens of one OpenID Connect issuer, with its keys read
// through discovery and kept fresh in the background. When a refresh fails
// the last good keys keep serving; with no keys at all every token is
// refused (fail closed).
type OIDC struct {
	cfg    OIDCConfig
	checks claimsCheck

	mu          sync.RWMutex
	keys        *keySet
	loadedAt    time.Time
	lastErr     error
	lastRefresh time.Time // last refresh attempt (any cause)
	// lastKIDRefresh is the last refresh an unknown key id caused. Only
	// these count against the 5-minute allowance, so a key rotated in right
	// after a scheduled refresh is picked up at once, while hostile tokens
	// still cause at most one fetch per 5 minutes.
	lastKIDRefresh time.Time
	refreshing     chan struct{}

	cache *tokenCache // nil: disabled
}

var _ Verifier = (*OIDC)(nil)

// NewOIDC returns a verifier; Start loads its keys.
func NewOIDC(cfg OIDCConfig) *OIDC {
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	o := &OIDC{cfg: cfg, checks: claimsCheck{issuer: cfg.Issuer, audiences: cfg.Audiences, skew: cfg.ClockSkew}}
	switch {
	case cfg.CacheSize == 0:
		o.cache = newTokenCache(DefaultCacheSize)
	case cfg.CacheSize > 0:
		o.cache = newTokenCache(cfg.CacheSize)
	}
	return o
}

// Issuer returns the issuer this verifier accepts.
func (o *OIDC) Issuer() string { return o.cfg.Issuer }

// Ready reports whether keys are loaded, and the last refresh error.
func (o *OIDC) Ready() (bool, error) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.keys != nil, o.lastErr
}

// Run loads the keys and refreshes them until ctx ends. A failed load is
// retried with backoff.
func (o *OIDC) Run(ctx context.Context) {
	backoff := time.Second
	for {
		err := o.refresh(ctx)
		wait := o.cfg.Refresh
		if err != nil {
			o.cfg.Logger.Warn("identity provider keys not refreshed; serving last good keys", "provider", o.cfg.Name, "error", err)
			wait = min(backoff, o.cfg.Refresh)
			backoff = min(backoff*2, time.Minute)
		} else {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// refresh fetches discovery and keys; only one refresh runs at a time and
// concurrent callers wait for it.
func (o *OIDC) refresh(ctx context.Context) error {
	o.mu.Lock()
	if ch := o.refreshing; ch != nil {
		o.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		o.mu.RLock()
		defer o.mu.RUnlock()
		return o.lastErr
	}
	ch := make(chan struct{})
	o.refreshing = ch
	o.lastRefresh = o.cfg.Now()
	o.mu.Unlock()

	set, err := o.fetchKeys(ctx)

	o.mu.Lock()
	defer o.mu.Unlock()
	o.refreshing = nil
	close(ch)
	o.lastErr = err
	if err == nil {
		o.keys = set
		o.loadedAt = o.cfg.Now()
		if o.cache != nil {
			o.cache.dropKeys(func(kid string) bool { _, ok := findKey(set.set, kid); return ok })
		}
	}
	return err
}

func (o *OIDC) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := o.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxMetadataBytes {
		return fmt.Errorf("GET %s: response larger than %d bytes", u, maxMetadataBytes)
	}
	if raw, ok := v.(*[]byte); ok {
		*raw = body
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

func (o *OIDC) fetchKeys(ctx context.Context) (*keySet, error) {
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	discovery := strings.TrimSuffix(o.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	if err := o.getJSON(ctx, discovery, &meta); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if meta.Issuer != o.cfg.Issuer {
		return nil, fmt.Errorf("discovery: issuer %q does not match the configured issuer %q", meta.Issuer, o.cfg.Issuer)
	}
	u, err := url.Parse(meta.JWKSURI)
	if err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
		return nil, fmt.Errorf("discovery: jwks_uri %q must be https", meta.JWKSURI)
	}
	var raw []byte
	if err := o.getJSON(ctx, meta.JWKSURI, &raw); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return parseKeySet(raw, o.cfg.Logger, o.cfg.Name)
}

// keySet is a provider's usable keys, and the ids of the keys it published
// that were refused (too weak, malformed), so a token naming one gets a
// precise reason instead of unknown_kid.
type keySet struct {
	set      jwk.Set
	rejected map[string]error
}

// parseKeySet parses each key on its own: one bad key in a provider's set
// must not make the good ones unusable.
func parseKeySet(raw []byte, logger *slog.Logger, provider string) (*keySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	ks := &keySet{set: jwk.NewSet(), rejected: map[string]error{}}
	for i, kr := range doc.Keys {
		k, err := jwk.ParseKey(kr)
		if err != nil {
			var id struct {
				Kid string `json:"kid"`
			}
			_ = json.Unmarshal(kr, &id)
			ks.rejected[id.Kid] = err
			logger.Warn("identity provider published an unusable key; ignoring it", "provider", provider, "index", i, "kid", id.Kid, "error", err)
			continue
		}
		if err := ks.set.AddKey(k); err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
	}
	if ks.set.Len() == 0 {
		return nil, errors.New("keys: no usable key in the key set")
	}
	return ks, nil
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || h == "127.0.0.1" || h == "::1"
}

// lookup finds the key for kid, refreshing once (rate limited) when the kid
// is unknown: that is how a provider's key rotation is picked up early.
func (o *OIDC) lookup(ctx context.Context, kid string) (jwk.Key, *Failure) {
	o.mu.RLock()
	set := o.keys
	o.mu.RUnlock()
	if set == nil {
		// Never loaded: try now (bounded by the request's context).
		if err := o.refresh(ctx); err != nil {
			return nil, &Failure{Status: http.StatusServiceUnavailable, Reason: ReasonKeysUnavailable, Description: "the identity provider's keys are unavailable", Err: err}
		}
		o.mu.RLock()
		set = o.keys
		o.mu.RUnlock()
	}
	if k, ok := findKey(set.set, kid); ok {
		return k, nil
	}
	if err, ok := set.rejected[kid]; ok && kid != "" {
		return nil, fail(ReasonWeakKey, "the token was signed by a key the gateway refuses", err)
	}
	now := o.cfg.Now()
	o.mu.Lock()
	may := o.lastKIDRefresh.IsZero() || now.Sub(o.lastKIDRefresh) >= unknownKIDRefresh
	if may {
		o.lastKIDRefresh = now
	}
	o.mu.Unlock()
	if may {
		if err := o.refresh(ctx); err == nil {
			o.mu.RLock()
			set = o.keys
			o.mu.RUnlock()
			if k, ok := findKey(set.set, kid); ok {
				return k, nil
			}
		}
	}
	return nil, fail(ReasonUnknownKID, "the token was signed by an unknown key", fmt.Errorf("kid %q", kid))
}

func findKey(set jwk.Set, kid string) (jwk.Key, bool) {
	if kid != "" {
		return set.LookupKeyID(kid)
	}
	// No kid: only unambiguous when the set holds a single key.
	if set.Len() == 1 {
		return set.Key(0)
	}
	return nil, false
}

// Verify checks the token's header, signature and claims. A token verified
// before, still unexpired and signed by a key still published, is answered
// from the cache.
func (o *OIDC) Verify(ctx context.Context, token string) (*identity.Identity, *Failure) {
	if o.cache == nil {
		id, _, f := o.verify(ctx, token)
		return id, f
	}
	now := o.cfg.Now()
	k := tokenKey(token)
	if id, ok := o.cache.get(k, now); ok {
		return id, nil
	}
	id, kid, f := o.verify(ctx, token)
	if f == nil {
		o.cache.put(k, cacheEntry{id: id, exp: id.ExpiresAt.Add(o.cfg.ClockSkew), kid: kid}, now)
	}
	return id, f
}

// verify checks a token fully and returns the identity and signing key id.
func (o *OIDC) verify(ctx context.Context, token string) (*identity.Identity, string, *Failure) {
	hp, _, _, err := splitToken(token)
	if err != nil {
		return nil, "", fail(ReasonMalformedToken, "the token is not a well-formed JWT", err)
	}
	hraw, err := decodePart(hp)
	if err != nil {
		return nil, "", fail(ReasonMalformedToken, "the token header is not base64url", err)
	}
	hm, err := decodeJSONObject(hraw)
	if err != nil {
		return nil, "", fail(ReasonMalformedToken, "the token header is not a JSON object", err)
	}
	for _, k := range forbiddenHeaders {
		if _, ok := hm[k]; ok {
			return nil, "", fail(ReasonForbiddenHeader, fmt.Sprintf("the token header member %q is refused", k), nil)
		}
	}
	var h header
	_ = json.Unmarshal(hraw, &h)
	if h.Alg == "" || strings.EqualFold(h.Alg, "none") || !slices.Contains(o.cfg.Algorithms, h.Alg) {
		return nil, "", fail(ReasonAlgNotAllowed, "the token's signature algorithm is not allowed", fmt.Errorf("alg %q", h.Alg))
	}
	if t := strings.ToLower(h.Typ); t != "" && t != "jwt" && t != "at+jwt" && t != "application/at+jwt" {
		return nil, "", fail(ReasonWrongType, "the token type is not a JWT access token", fmt.Errorf("typ %q", h.Typ))
	}
	key, f := o.lookup(ctx, h.Kid)
	if f != nil {
		return nil, "", f
	}
	raw, f := checkKey(h.Alg, key)
	if f != nil {
		return nil, "", f
	}
	payload, err := verifySignature(token, h.Alg, raw)
	if err != nil {
		return nil, "", fail(ReasonBadSignature, "the token's signature does not verify", err)
	}
	claims, err := decodeJSONObject(payload)
	if err != nil {
		return nil, "", fail(ReasonMalformedToken, "the token payload is not a JSON object", err)
	}
	exp, f := o.checks.check(claims, o.cfg.Now())
	if f != nil {
		return nil, "", f
	}
	return identityFromClaims(o.cfg.Name, claims, exp), h.Kid, nil
}
