package authn

import (
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Bounds on what an identity provider may send.
const (
	maxMetadataBytes = 1 << 20
	// unknownKIDRefresh is the least time between refreshes triggered by a
	// token with an unknown key id (Microsoft's rollover guidance: at most
	// once per five minutes), so hostile tokens cannot hammer the provider.
	unknownKIDRefresh = 5 * time.Minute
)

// keyring is the signing keys of one metadata document: discovery read
// from a URL, and the key set its jwks_uri names. It loads on first use,
// refreshes on demand (at most once per 5 minutes for unknown key ids),
// keeps the last good keys when a refresh fails, and has nothing to offer
// (fail closed) until a load succeeds. A plain OpenID Connect provider has
// one keyring; Entra ID has one per token version.
type keyring struct {
	provider  string
	discovery string // the metadata URL
	// checkIssuer vets the issuer the metadata declares before its keys
	// are used.
	checkIssuer func(issuer string) error
	client      *http.Client
	logger      *slog.Logger
	now         func() time.Time
	// changed is called, under the ring's lock, with each newly loaded set.
	changed func(*keyring, *keySet)

	mu   sync.RWMutex
	keys *keySet
	err  error // of the last refresh
	// lastKIDRefresh is the last refresh an unknown key id caused. Only
	// these count against the 5-minute allowance, so a key rotated in right
	// after a scheduled refresh is picked up at once, while hostile tokens
	// still cause at most one fetch per 5 minutes.
	lastKIDRefresh time.Time
	refreshing     chan struct{}
}

// keySet is a provider's usable keys, and the ids of the keys it published
// that were refused (too weak, malformed), so a token naming one gets a
// precise reason instead of unknown_kid.
type keySet struct {
	issuer   string // as the metadata declares it (Entra: maybe templated)
	byKID    map[string]*signingKey
	all      []*signingKey
	rejected map[string]error
}

// signingKey is one published key, ready to verify with.
type signingKey struct {
	kid string
	jwk jwk.Key
	pub any // the public key, exported once
	// issuer is the key's own issuer member, which Entra ID publishes
	// (possibly with a {tenantid} template); empty when absent.
	issuer string
	// thumb is the key's RFC 7638 thumbprint: what cached tokens remember,
	// so a key re-published under the same kid does not keep them alive.
	thumb [32]byte
}

// find returns the key for kid. A token without kid is only unambiguous
// when the set holds a single key.
func (s *keySet) find(kid string) (*signingKey, bool) {
	if kid == "" {
		if len(s.all) == 1 {
			return s.all[0], true
		}
		return nil, false
	}
	k, ok := s.byKID[kid]
	return k, ok
}

// has reports whether the set still publishes the key with thumbprint t.
func (s *keySet) has(t [32]byte) bool {
	for _, k := range s.all {
		if k.thumb == t {
			return true
		}
	}
	return false
}

// current returns the loaded keys, nil before the first good load.
func (r *keyring) current() *keySet {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.keys
}

// ready reports whether keys are loaded, and the last refresh error.
func (r *keyring) ready() (bool, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.keys != nil, r.err
}

// holding runs f if the ring still publishes the key with thumbprint t,
// under the ring's read lock: a refresh that drops the key waits until f
// has returned, so whatever f records is seen by changed.
func (r *keyring) holding(t [32]byte, f func()) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.keys != nil && r.keys.has(t) {
		f()
	}
}

// refresh fetches the metadata and keys; only one refresh runs at a time and
// concurrent callers wait for it.
func (r *keyring) refresh(ctx context.Context) error {
	r.mu.Lock()
	if ch := r.refreshing; ch != nil {
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		r.mu.RLock()
		defer r.mu.RUnlock()
		return r.err
	}
	ch := make(chan struct{})
	r.refreshing = ch
	r.mu.Unlock()

	set, err := r.fetch(ctx)

	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshing = nil
	close(ch)
	r.err = err
	if err == nil {
		r.keys = set
		if r.changed != nil {
			r.changed(r, set)
		}
	}
	return err
}

func (r *keyring) fetch(ctx context.Context) (*keySet, error) {
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := r.getJSON(ctx, r.discovery, &meta); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if err := r.checkIssuer(meta.Issuer); err != nil {
		return nil, fmt.Errorf("discovery %s: %w", r.discovery, err)
	}
	u, err := url.Parse(meta.JWKSURI)
	if err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
		return nil, fmt.Errorf("discovery: jwks_uri %q must be https", meta.JWKSURI)
	}
	var raw []byte
	if err := r.getJSON(ctx, meta.JWKSURI, &raw); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	set, err := parseKeySet(raw, r.logger, r.provider)
	if err != nil {
		return nil, err
	}
	set.issuer = meta.Issuer
	return set, nil
}

func (r *keyring) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
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

// parseKeySet parses each key on its own: one bad key in a provider's set
// must not make the good ones unusable.
func parseKeySet(raw []byte, logger *slog.Logger, provider string) (*keySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	ks := &keySet{byKID: map[string]*signingKey{}, rejected: map[string]error{}}
	for i, kr := range doc.Keys {
		var meta struct {
			Kid    string `json:"kid"`
			Issuer string `json:"issuer"`
		}
		_ = json.Unmarshal(kr, &meta)
		k, err := newSigningKey(kr, meta.Kid, meta.Issuer)
		if err != nil {
			ks.rejected[meta.Kid] = err
			logger.Warn("identity provider published an unusable key; ignoring it", "provider", provider, "index", i, "kid", meta.Kid, "error", err)
			continue
		}
		if _, dup := ks.byKID[k.kid]; dup {
			logger.Warn("identity provider published a key id twice; using the first", "provider", provider, "index", i, "kid", k.kid)
			continue
		}
		if k.kid != "" {
			ks.byKID[k.kid] = k
		}
		ks.all = append(ks.all, k)
	}
	if len(ks.all) == 0 {
		return nil, errors.New("keys: no usable key in the key set")
	}
	return ks, nil
}

func newSigningKey(raw []byte, kid, issuer string) (*signingKey, error) {
	k, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, err
	}
	sk := &signingKey{kid: kid, jwk: k, issuer: issuer}
	if err := jwk.Export(k, &sk.pub); err != nil {
		return nil, err
	}
	if rk, ok := sk.pub.(*rsa.PublicKey); ok && rk.N.BitLen() < 2048 {
		return nil, fmt.Errorf("RSA key of %d bits: at least 2048 are needed", rk.N.BitLen())
	}
	t, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	copy(sk.thumb[:], t)
	return sk, nil
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || h == "127.0.0.1" || h == "::1"
}

// lookup finds the key for kid, refreshing once (rate limited) when the kid
// is unknown: that is how a provider's key rotation is picked up early.
func (r *keyring) lookup(ctx context.Context, kid string) (*keySet, *signingKey, *Failure) {
	set := r.current()
	if set == nil {
		// Never loaded: try now (bounded by the request's context).
		if err := r.refresh(ctx); err != nil {
			return nil, nil, &Failure{Status: http.StatusServiceUnavailable, Reason: ReasonKeysUnavailable, Description: "the identity provider's keys are unavailable", Err: err}
		}
		set = r.current()
	}
	if k, ok := set.find(kid); ok {
		return set, k, nil
	}
	if err, ok := set.rejected[kid]; ok && kid != "" {
		return nil, nil, fail(ReasonWeakKey, "the token was signed by a key the gateway refuses", err)
	}
	now := r.now()
	r.mu.Lock()
	may := r.lastKIDRefresh.IsZero() || now.Sub(r.lastKIDRefresh) >= unknownKIDRefresh
	if may {
		r.lastKIDRefresh = now
	}
	r.mu.Unlock()
	if may && r.refresh(ctx) == nil {
		set = r.current()
		if k, ok := set.find(kid); ok {
			return set, k, nil
		}
	}
	return nil, nil, fail(ReasonUnknownKID, "the token was signed by an unknown key", fmt.Errorf("kid %q", kid))
}
