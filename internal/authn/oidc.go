package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ztgate/ztgate/internal/identity"
)

// OIDCConfig configures a verifier of one OpenID Connect provider.
type OIDCConfig struct {
	Name string
	// Issuer is the exact iss a plain OpenID Connect provider's tokens
	// carry; discovery is read from {Issuer}/.well-known/openid-configuration.
	Issuer string
	// Entra, when set, makes the verifier one of Microsoft Entra ID, whose
	// issuers follow from the tenant; Issuer is then unused.
	Entra      *EntraConfig
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
	// Groups resolves the groups a token names only by reference (group
	// overage); nil leaves them unknown.
	Groups GroupSource
}

// OIDC verifies the tokens of one OpenID Connect provider: a plain issuer,
// or Microsoft Entra ID with its two token versions and multi-tenant rules.
// Its keys are read through discovery and kept fresh in the background;
// when a refresh fails the last good keys keep serving, and with no keys at
// all every token is refused (fail closed).
type OIDC struct {
	cfg     OIDCConfig
	profile profile
	cache   *tokenCache // nil: disabled
}

// profile is what sets one kind of provider apart: which keys sign a token,
// and which issuer and audiences it must carry.
type profile interface {
	rings() []*keyring
	// pick chooses the keys for a token from its claims, not yet verified.
	pick(claims map[string]any) (*keyring, *Failure)
	// checkIssuer checks a verified token's issuer, against the metadata
	// of set and the key that signed it.
	checkIssuer(claims map[string]any, set *keySet, key *signingKey) *Failure
	// audiences are the aud values a verified token may carry.
	audiences(claims map[string]any) []string
	match(iss string) Match
}

var (
	_ Verifier        = (*OIDC)(nil)
	_ cachingVerifier = (*OIDC)(nil)
	_ profile         = (*issuerProfile)(nil)
	_ profile         = (*entra)(nil)
)

// NewOIDC returns a verifier; its keys load on first use, and Run keeps
// them fresh.
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
	o := &OIDC{cfg: cfg}
	switch {
	case cfg.CacheSize == 0:
		o.cache = newTokenCache(DefaultCacheSize)
	case cfg.CacheSize > 0:
		o.cache = newTokenCache(cfg.CacheSize)
	}
	ring := func(discovery string, checkIssuer func(string) error) *keyring {
		return &keyring{
			provider: cfg.Name, discovery: discovery, checkIssuer: checkIssuer,
			client: cfg.Client, logger: cfg.Logger, now: cfg.Now, changed: o.keysChanged,
		}
	}
	if cfg.Entra != nil {
		o.profile = newEntra(*cfg.Entra, cfg.Audiences, ring)
	} else {
		o.profile = &issuerProfile{
			issuer: cfg.Issuer,
			auds:   cfg.Audiences,
			ring:   ring(strings.TrimSuffix(cfg.Issuer, "/")+"/.well-known/openid-configuration", exactIssuer(cfg.Issuer)),
		}
	}
	return o
}

// keysChanged drops the cached tokens whose signing key ring no longer
// publishes.
func (o *OIDC) keysChanged(ring *keyring, set *keySet) {
	if o.cache != nil {
		o.cache.dropKeys(ring, set)
	}
}

// Match reports how well the verifier fits tokens of issuer iss.
func (o *OIDC) Match(iss string) Match { return o.profile.match(iss) }

// Ready reports whether every key set is loaded, and the last refresh
// errors.
func (o *OIDC) Ready() (bool, error) {
	all := true
	var errs []error
	for _, r := range o.profile.rings() {
		ok, err := r.ready()
		all = all && ok
		if err != nil {
			errs = append(errs, err)
		}
	}
	return all, errors.Join(errs...)
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

// refresh reloads every key set.
func (o *OIDC) refresh(ctx context.Context) error {
	var errs []error
	for _, r := range o.profile.rings() {
		if err := r.refresh(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Verify checks the token's header, signature and claims. A token verified
// before, still unexpired and signed by a key still published, is answered
// from the cache; a token enters the cache when it is verified a second
// time, so it is answered from there from its third use on.
func (o *OIDC) Verify(ctx context.Context, token string) (*identity.Identity, *Failure) {
	if o.cache == nil {
		id, _, _, f := o.verify(ctx, token)
		return id, f
	}
	return o.verifyHashed(ctx, token, tokenKey(token))
}

func (o *OIDC) caches() bool { return o.cache != nil }

// cached returns the identity of a token verified before, by the token's
// SHA-256.
func (o *OIDC) cached(k [32]byte) (*identity.Identity, bool) {
	if o.cache == nil {
		return nil, false
	}
	return o.cache.get(k, o.cfg.Now())
}

// verifyHashed is Verify for a token whose SHA-256 is k.
func (o *OIDC) verifyHashed(ctx context.Context, token string, k [32]byte) (*identity.Identity, *Failure) {
	if id, ok := o.cached(k); ok {
		return id, nil
	}
	id, ring, key, f := o.verify(ctx, token)
	if f == nil && o.cache != nil && o.cache.admit(k) {
		e := cacheEntry{id: id, exp: id.ExpiresAt.Add(o.cfg.ClockSkew), ring: ring, key: key.thumb}
		// Only while the key is published: a refresh that removed it in
		// the meantime must not be outlived by the entry.
		ring.holding(key.thumb, func() { o.cache.put(k, e, o.cfg.Now()) })
	}
	return id, f
}

// verify checks a token fully and returns its identity, and the ring and
// key that signed it.
func (o *OIDC) verify(ctx context.Context, token string) (*identity.Identity, *keyring, *signingKey, *Failure) {
	p, f := parse(token, o.cfg.Algorithms)
	if f != nil {
		return nil, nil, nil, f
	}
	ring, f := o.profile.pick(p.claims)
	if f != nil {
		return nil, nil, nil, f
	}
	set, key, f := ring.lookup(ctx, p.header.Kid)
	if f != nil {
		return nil, nil, nil, f
	}
	if f := checkKey(p.header.Alg, key); f != nil {
		return nil, nil, nil, f
	}
	if err := verifySignature(token, &p.header, key.pub); err != nil {
		return nil, nil, nil, fail(ReasonBadSignature, "the token's signature does not verify", err)
	}
	// The claims decoded before are the signed ones from here on.
	if f := o.profile.checkIssuer(p.claims, set, key); f != nil {
		return nil, nil, nil, f
	}
	exp, f := checkTimes(p.claims, o.cfg.Now(), o.cfg.ClockSkew)
	if f != nil {
		return nil, nil, nil, f
	}
	if f := checkAudience(p.claims, o.profile.audiences(p.claims)); f != nil {
		return nil, nil, nil, f
	}
	if sub, _ := p.claims["sub"].(string); sub == "" {
		return nil, nil, nil, fail(ReasonMissingSubject, "the token has no subject", nil)
	}
	return identityFromClaims(o.cfg.Name, p.claims, exp), ring, key, nil
}

// issuerProfile is a plain OpenID Connect provider: one issuer, one key
// set, configured audiences.
type issuerProfile struct {
	issuer string
	auds   []string
	ring   *keyring
}

func (p *issuerProfile) rings() []*keyring                        { return []*keyring{p.ring} }
func (p *issuerProfile) pick(map[string]any) (*keyring, *Failure) { return p.ring, nil }
func (p *issuerProfile) audiences(map[string]any) []string        { return p.auds }

func (p *issuerProfile) checkIssuer(claims map[string]any, _ *keySet, _ *signingKey) *Failure {
	if iss, _ := claims["iss"].(string); iss != p.issuer {
		return fail(ReasonWrongIssuer, "the token's issuer is not trusted", fmt.Errorf("iss %q", iss))
	}
	return nil
}

func (p *issuerProfile) match(iss string) Match {
	if iss == p.issuer {
		return MatchExact
	}
	return NoMatch
}

// exactIssuer requires discovery to declare the configured issuer.
func exactIssuer(want string) func(string) error {
	return func(got string) error {
		if got != want {
			return fmt.Errorf("issuer %q does not match the configured issuer %q", got, want)
		}
		return nil
	}
}
