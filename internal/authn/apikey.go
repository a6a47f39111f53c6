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
	// MaxStale is how long known keys keep serving while the store cannot
	// be polled (10s); after it, API key requests are refused with 503.
	MaxStale time.Duration
	// Flush is how often last-used times are written to the store (5s).
	Flush time.Duration
	// MissReads bounds how many times a second (with as many at once) the
	// store is read for a key id the node does not know: a key made since
	// the last poll, or one made up. Beyond it such an id is refused as
	// api_key_invalid without a read, so made-up keys cannot load the
	// store (50).
	MissReads int
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
	if o.MissReads <= 0 {
		o.MissReads = 50
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Bounds of the memory of unknown ids.
const (
	unknownTTL = time.Minute
	unknownMax = 10000
)

// APIKeys verifies API keys against the store. Each node holds every key
// record (never a key: its hash), read in full at start and kept current
// by polling the store for changes, which carry a version that commits in
// order, so a poll never misses one. The copy is trusted only while polls
// succeed: when the store has not answered for MaxStale, API key requests
// are refused rather than served from what may be stale. An id the copy
// lacks (a key made since the last poll) is read from the store, at a
// bounded rate, and remembered when unknown. Use is counted in memory and
// written in batches: a request never waits for a store write.
type APIKeys struct {
	store  APIKeyStore
	logger *slog.Logger
	o      APIKeyOptions

	mu      sync.RWMutex
	known   map[string]*keyEntry // every key, by id
	unknown map[string]time.Time // ids the store did not have, until when to believe it
	rev     int64                // the version polled up to
	synced  time.Time            // when a poll last succeeded
	syncErr error

	missMu     sync.Mutex
	missTokens float64
	missLast   time.Time

	usedMu sync.Mutex
	used   map[string]time.Time
}

type keyEntry struct {
	key  *apikey.Key
	id   *identity.Identity
	hash [32]byte // the key's SHA-256, decoded from key.Hash
}

func newKeyEntry(k *apikey.Key) *keyEntry {
	e := &keyEntry{key: k, id: keyIdentity(k)}
	if b, err := hex.DecodeString(k.Hash); err == nil && len(b) == len(e.hash) {
		copy(e.hash[:], b)
	} // else the zero hash, which no key hashes to
	return e
}

// NewAPIKeys returns a verifier over st. Sync, then Run, must run for it
// to serve.
func NewAPIKeys(st APIKeyStore, logger *slog.Logger, o APIKeyOptions) *APIKeys {
	o.defaults()
	return &APIKeys{store: st, logger: logger, o: o, known: map[string]*keyEntry{}, unknown: map[string]time.Time{},
		missTokens: float64(o.MissReads), used: map[string]time.Time{}}
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

// fresh reports whether the copy may serve at now; v.mu is held.
func (v *APIKeys) fresh(now time.Time) bool {
	return !v.synced.IsZero() && now.Sub(v.synced) <= v.o.MaxStale
}

const changesPage = 500

// Sync reads the keys changed since the last call (every key, the first
// time). Run calls it every poll interval; call it once before serving.
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
				v.logger.Warn("API key changes cannot be read; known keys serve until they are too stale, then API key requests are refused", "error", err, "max_stale", v.o.MaxStale.String())
			}
			return
		}
		now := v.o.Now()
		v.mu.Lock()
		for i := range ch {
			k := &ch[i]
			v.putLocked(newKeyEntry(k))
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

// putLocked keeps e unless a newer version of the key is known: a read
// on a miss and a poll may race, and the older must not win. v.mu is held.
func (v *APIKeys) putLocked(e *keyEntry) *keyEntry {
	id := e.key.ID
	if old, ok := v.known[id]; ok && old.key.Rev >= e.key.Rev {
		return old
	}
	v.known[id] = e
	delete(v.unknown, id)
	return e
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

// allowMiss takes a token for a store read of an unknown id.
func (v *APIKeys) allowMiss(now time.Time) bool {
	v.missMu.Lock()
	defer v.missMu.Unlock()
	limit := float64(v.o.MissReads)
	if !v.missLast.IsZero() {
		v.missTokens = min(limit, v.missTokens+now.Sub(v.missLast).Seconds()*limit)
	}
	v.missLast = now
	if v.missTokens < 1 {
		return false
	}
	v.missTokens--
	return true
}

// lookup finds the entry for id: known, remembered as unknown, or read
// from the store. A nil entry and nil failure mean no such key.
func (v *APIKeys) lookup(ctx context.Context, id string, now time.Time) (*keyEntry, *Failure) {
	v.mu.RLock()
	e := v.known[id]
	until, isUnknown := v.unknown[id]
	v.mu.RUnlock()
	if e != nil {
		return e, nil
	}
	if isUnknown && now.Before(until) {
		return nil, nil
	}
	if !v.allowMiss(now) {
		return nil, nil
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	k, err := v.store.APIKey(rctx, id)
	cancel()
	if err != nil {
		return nil, &Failure{Status: http.StatusServiceUnavailable, Reason: ReasonAPIKeysUnavailable, Description: "API keys cannot be checked right now", Err: err}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if k != nil {
		return v.putLocked(newKeyEntry(k)), nil
	}
	if e := v.known[id]; e != nil {
		return e, nil // a poll found it meanwhile
	}
	if len(v.unknown) >= unknownMax {
		// Expired ones first; else an arbitrary tenth.
		for u, t := range v.unknown {
			if !now.Before(t) {
				delete(v.unknown, u)
			}
		}
		n := len(v.unknown) - unknownMax*9/10
		for u := range v.unknown {
			if n <= 0 {
				break
			}
			delete(v.unknown, u)
			n--
		}
	}
	v.unknown[id] = now.Add(unknownTTL)
	return nil, nil
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
	e, f := v.lookup(ctx, id, now)
	if f != nil {
		return nil, f
	}
	if e == nil {
		return nil, keyFail(http.StatusUnauthorized, ReasonAPIKeyInvalid, "the API key is not valid", nil, fmt.Errorf("no API key %s (or store reads for unknown ids are throttled)", id))
	}
	sum := tokenKey(key)
	switch k := e.key; {
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
