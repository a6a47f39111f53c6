package authn

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ztgate/ztgate/internal/apikey"
	"github.com/ztgate/ztgate/internal/identity"
)

// API key reason codes.
const (
	ReasonAPIKeyInvalid      = "api_key_invalid" // malformed, unknown, or the secret does not match
	ReasonAPIKeyExpired      = "api_key_expired"
	ReasonAPIKeyRevoked      = "api_key_revoked"
	ReasonAPIKeyWrongService = "api_key_wrong_service"
	ReasonAPIKeyInQuery      = "api_key_in_query"
	ReasonAPIKeysUnavailable = "api_keys_unavailable"
)

// SchemeAPIKey is the Authorization scheme of API keys.
const SchemeAPIKey = "ApiKey"

// DefaultAPIKeyHeader is the header that carries an API key unless the
// configuration names another.
const DefaultAPIKeyHeader = "X-API-Key"

// APIKeyStore is where the API key verifier reads keys and writes their use.
type APIKeyStore interface {
	// APIKey returns the key with the id, or nil when there is none.
	APIKey(ctx context.Context, id string) (*apikey.Key, error)
	// APIKeyChanges returns up to limit keys changed after version after,
	// in version order.
	APIKeyChanges(ctx context.Context, after int64, limit int) ([]apikey.Key, error)
	// TouchAPIKeys records when keys were last used.
	TouchAPIKeys(ctx context.Context, used map[string]time.Time) error
}

// APIKeyOptions tune the verifier; zero values take the defaults.
type APIKeyOptions struct {
	// Poll is how often the store is asked for changed keys (1s): a
	// revocation takes effect on every node within about this long.
	Poll time.Duration
	// MaxStale is how long cached keys keep serving while the store cannot
	// be polled (10s); after it, API key requests are refused with 503.
	MaxStale time.Duration
	// Flush is how often last-used times are written to the store (5s).
	Flush time.Duration
	// CacheTTL bounds how long a key is served from the cache without
	// being read again (1m); polling keeps it current meanwhile.
	CacheTTL time.Duration
	// CacheSize is how many keys (known or not) are remembered (10000).
	CacheSize int
	// Now is the clock (tests).
	Now func() time.Time
}

func (o *APIKeyOptions) defaults() {
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.MaxStale <= 0 {
		o.MaxStale = 10 * time.Second
	}
	if o.Flush <= 0 {
		o.Flush = 5 * time.Second
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = time.Minute
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 10000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// APIKeys verifies API keys against the store. Keys are cached by id; the
// cache is kept current by polling the store for changes (creations and
// revocations carry an ordered version), and is trusted only while polling
// succeeds: when the store has not answered for MaxStale, API key requests
// are refused rather than served from what may be stale. Use is counted in
// memory and written in batches: a request never waits for a store write.
type APIKeys struct {
	store  APIKeyStore
	logger *slog.Logger
	o      APIKeyOptions

	mu      sync.RWMutex
	entries map[string]*keyEntry
	rev     int64     // the version polled up to
	synced  time.Time // when a poll last succeeded
	syncErr error

	usedMu sync.Mutex
	used   map[string]time.Time
}

type keyEntry struct {
	key     *apikey.Key // nil: the store has no such key
	id      *identity.Identity
	hash    [32]byte // the key's SHA-256, decoded from key.Hash
	fetched time.Time
}

func newKeyEntry(k *apikey.Key, now time.Time) *keyEntry {
	e := &keyEntry{key: k, fetched: now}
	if k != nil {
		e.id = keyIdentity(k)
		if b, err := hex.DecodeString(k.Hash); err == nil && len(b) == len(e.hash) {
			copy(e.hash[:], b)
		} // else the zero hash, which no key hashes to
	}
	return e
}

// NewAPIKeys returns a verifier over st. Run must run for it to serve.
func NewAPIKeys(st APIKeyStore, logger *slog.Logger, o APIKeyOptions) *APIKeys {
	o.defaults()
	return &APIKeys{store: st, logger: logger, o: o, entries: map[string]*keyEntry{}, used: map[string]time.Time{}}
}

// Run polls for changed keys and writes last-used times until ctx ends,
// then writes what use is left.
func (v *APIKeys) Run(ctx context.Context) {
	v.Sync(ctx)
	poll := time.NewTicker(v.o.Poll)
	defer poll.Stop()
	flush := time.NewTicker(v.o.Flush)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			v.flush(fctx)
			cancel()
			return
		case <-poll.C:
			v.Sync(ctx)
		case <-flush.C:
			v.flush(ctx)
		}
	}
}

// Ready reports whether the verifier has heard from the store recently
// enough to serve.
func (v *APIKeys) Ready() (bool, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.fresh(v.o.Now()) {
		return true, nil
	}
	if v.syncErr != nil {
		return false, v.syncErr
	}
	return false, errors.New("API keys not read from the store yet")
}

// fresh reports whether the cache may serve at now; v.mu is held.
func (v *APIKeys) fresh(now time.Time) bool {
	return !v.synced.IsZero() && now.Sub(v.synced) <= v.o.MaxStale
}

const changesPage = 500

// Sync reads the keys changed since the last call into the cache. Run
// calls it every poll interval; call it once before serving to start warm.
func (v *APIKeys) Sync(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, max(v.o.Poll, 2*time.Second))
	defer cancel()
	v.mu.RLock()
	rev := v.rev
	v.mu.RUnlock()
	for {
		ch, err := v.store.APIKeyChanges(pctx, rev, changesPage)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			v.mu.Lock()
			first := v.syncErr == nil
			v.syncErr = fmt.Errorf("API keys: the store cannot be polled: %w", err)
			v.mu.Unlock()
			if first {
				v.logger.Warn("API key changes cannot be read; cached keys serve until they are too stale, then API key requests are refused", "error", err, "max_stale", v.o.MaxStale.String())
			}
			return
		}
		now := v.o.Now()
		v.mu.Lock()
		for i := range ch {
			k := &ch[i]
			v.putLocked(k.ID, newKeyEntry(k, now), now)
			rev = k.Rev
		}
		v.rev = rev
		recovered := false
		if len(ch) < changesPage {
			recovered = v.syncErr != nil
			v.synced, v.syncErr = now, nil
		}
		v.mu.Unlock()
		if recovered {
			v.logger.Info("API key changes read again")
		}
		if len(ch) < changesPage {
			return
		}
	}
}

// flush writes the use counted since the last flush. On failure the times
// are kept for the next one.
func (v *APIKeys) flush(ctx context.Context) {
	v.usedMu.Lock()
	used := v.used
	if len(used) == 0 {
		v.usedMu.Unlock()
		return
	}
	v.used = map[string]time.Time{}
	v.usedMu.Unlock()
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := v.store.TouchAPIKeys(fctx, used); err != nil {
		v.logger.Warn("API key last-used times not written; retried", "keys", len(used), "error", err)
		v.usedMu.Lock()
		for id, t := range used {
			if t.After(v.used[id]) {
				v.used[id] = t
			}
		}
		v.usedMu.Unlock()
	}
}

func (v *APIKeys) touch(id string, now time.Time) {
	v.usedMu.Lock()
	v.used[id] = now
	v.usedMu.Unlock()
}

// get returns the cached entry for id, if it is young enough.
func (v *APIKeys) get(id string, now time.Time) (*keyEntry, bool) {
	v.mu.RLock()
	e, ok := v.entries[id]
	v.mu.RUnlock()
	if !ok || now.Sub(e.fetched) >= v.o.CacheTTL {
		return nil, false
	}
	return e, true
}

// putRead caches what a request read from the store, unless a poll has put
// a young entry meanwhile: the poll's may be newer (a revocation committed
// after the read), and must not be overwritten by an older read.
func (v *APIKeys) putRead(id string, e *keyEntry, now time.Time) *keyEntry {
	v.mu.Lock()
	defer v.mu.Unlock()
	if old, ok := v.entries[id]; ok && now.Sub(old.fetched) < v.o.CacheTTL && !old.fetched.Before(e.fetched) {
		return old
	}
	v.putLocked(id, e, now)
	return e
}

func (v *APIKeys) putLocked(id string, e *keyEntry, now time.Time) {
	if _, ok := v.entries[id]; !ok && len(v.entries) >= v.o.CacheSize {
		// Entries too old to serve first; else an arbitrary tenth.
		for k, old := range v.entries {
			if now.Sub(old.fetched) >= v.o.CacheTTL {
				delete(v.entries, k)
			}
		}
		n := len(v.entries) - v.o.CacheSize*9/10
		for k := range v.entries {
			if n <= 0 {
				break
			}
			delete(v.entries, k)
			n--
		}
	}
	v.entries[id] = e
}

func keyIdentity(k *apikey.Key) *identity.Identity {
	return &identity.Identity{
		Type: identity.APIKey, Provider: "api_keys", Issuer: "ztgate", Subject: k.ID, Name: k.Name,
		Roles: k.Roles, Scopes: k.Scopes, ExpiresAt: k.ExpiresAt, Service: k.Service,
	}
}

func keyFail(status int, reason, desc string, id *identity.Identity, err error) *Failure {
	return &Failure{Status: status, Reason: reason, Description: desc, Err: err, Scheme: SchemeAPIKey, Identity: id}
}

// Verify checks an API key presented for service. Only a key whose secret
// matches learns that it is revoked, expired or bound to another service;
// anything else is api_key_invalid.
func (v *APIKeys) Verify(ctx context.Context, key, service string) (*identity.Identity, *Failure) {
	id, err := apikey.Parse(key)
	if err != nil {
		return nil, keyFail(http.StatusUnauthorized, ReasonAPIKeyInvalid, "the API key is not valid", nil, err)
	}
	now := v.o.Now()
	v.mu.RLock()
	fresh := v.fresh(now)
	v.mu.RUnlock()
	if !fresh {
		return nil, &Failure{Status: http.StatusServiceUnavailable, Reason: ReasonAPIKeysUnavailable, Description: "API keys cannot be checked right now", Err: errors.New("the key store has not been polled successfully recently")}
	}
	e, ok := v.get(id, now)
	if !ok {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		k, err := v.store.APIKey(rctx, id)
		cancel()
		if err != nil {
			return nil, &Failure{Status: http.StatusServiceUnavailable, Reason: ReasonAPIKeysUnavailable, Description: "API keys cannot be checked right now", Err: err}
		}
		e = v.putRead(id, newKeyEntry(k, now), now)
	}
	sum := tokenKey(key)
	switch k := e.key; {
	case k == nil:
		return nil, keyFail(http.StatusUnauthorized, ReasonAPIKeyInvalid, "the API key is not valid", nil, fmt.Errorf("no API key %s", id))
	case subtle.ConstantTimeCompare(sum[:], e.hash[:]) != 1:
		return nil, keyFail(http.StatusUnauthorized, ReasonAPIKeyInvalid, "the API key is not valid", nil, fmt.Errorf("API key %s: the secret does not match", id))
	case k.Revoked():
		return nil, keyFail(http.StatusUnauthorized, ReasonAPIKeyRevoked, "the API key was revoked", e.id, nil)
	case k.Expired(now):
		return nil, keyFail(http.StatusUnauthorized, ReasonAPIKeyExpired, "the API key has expired", e.id, nil)
	case service != "" && k.Service != service:
		return nil, keyFail(http.StatusForbidden, ReasonAPIKeyWrongService, "the API key is not valid for this service", e.id, fmt.Errorf("API key %s is bound to service %s, not %s", id, k.Service, service))
	}
	v.touch(id, now)
	return e.id, nil
}

// apiKeyFrom finds an API key in the request: in the Authorization header
// with the ApiKey scheme, or alone in header. found is false when the
// request carries no API key (it may carry a bearer token).
func apiKeyFrom(r *http.Request, header string) (key string, found bool, f *Failure) {
	if keyInQuery(r.URL.RawQuery) {
		return "", false, keyFail(http.StatusUnauthorized, ReasonAPIKeyInQuery, "API keys in the query string are refused (they end up in logs); send an Authorization: ApiKey header", nil, nil)
	}
	hv := r.Header.Values(header)
	authz := r.Header.Values("Authorization")
	switch {
	case len(hv) > 1:
		return "", false, keyFail(http.StatusUnauthorized, ReasonAmbiguousCredentials, "more than one "+header+" header", nil, nil)
	case len(hv) == 1 && len(authz) > 0:
		return "", false, keyFail(http.StatusUnauthorized, ReasonAmbiguousCredentials, "both an Authorization and an "+header+" header", nil, nil)
	case len(hv) == 1:
		return strings.TrimSpace(hv[0]), true, nil
	case len(authz) == 1:
		scheme, rest, _ := strings.Cut(authz[0], " ")
		if strings.EqualFold(scheme, SchemeAPIKey) {
			return strings.TrimSpace(rest), true, nil
		}
	}
	return "", false, nil
}

// keyInQuery reports whether a query string holds something that looks
// like an API key, in a name or a value, however it is percent-encoded.
func keyInQuery(raw string) bool {
	if strings.Contains(raw, apikey.Prefix) {
		return true
	}
	if !strings.Contains(raw, "%") {
		return false
	}
	// Decode what decodes; a malformed escape is kept as it is (the
	// request is not this check's to refuse).
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		if raw[i] == '%' && i+2 < len(raw) && ishex(raw[i+1]) && ishex(raw[i+2]) {
			b = append(b, unhex(raw[i+1])<<4|unhex(raw[i+2]))
			i += 2
			continue
		}
		b = append(b, raw[i])
	}
	return strings.Contains(string(b), apikey.Prefix)
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// IsAPIKeyAuthorization reports whether an Authorization header value
// carries an API key (the gateway never forwards one).
func IsAPIKeyAuthorization(v string) bool {
	scheme, _, _ := strings.Cut(v, " ")
	return strings.EqualFold(scheme, SchemeAPIKey)
}
