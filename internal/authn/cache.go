package authn

import (
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"

	"github.com/ztgate/ztgate/internal/identity"
)

// DefaultCacheSize is how many verified tokens a provider remembers.
const DefaultCacheSize = 10000

// tokenCache remembers tokens already verified, so a repeated token skips
// signature verification. An entry never outlives its token's expiry, and
// entries signed by a key the provider no longer publishes are dropped when
// the key set changes. Keys are SHA-256 hashes: the cache holds no tokens.
type tokenCache struct {
	mu      sync.RWMutex
	max     int
	entries map[[32]byte]cacheEntry
}

type cacheEntry struct {
	id   *identity.Identity
	exp  time.Time // the token's exp plus the clock skew
	ring *keyring  // whose key signed the token
	key  [32]byte  // the signing key's thumbprint
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, entries: make(map[[32]byte]cacheEntry)}
}

// tokenKey hashes the token without copying it (Sum256 only reads).
func tokenKey(token string) [32]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

func (c *tokenCache) get(k [32]byte, now time.Time) (*identity.Identity, bool) {
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok {
		return nil, false
	}
	if !now.Before(e.exp) {
		c.mu.Lock()
		delete(c.entries, k)
		c.mu.Unlock()
		return nil, false
	}
	return e.id, true
}

func (c *tokenCache) put(k [32]byte, e cacheEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		// Expired entries first; else an arbitrary tenth (map order).
		for key, old := range c.entries {
			if !now.Before(old.exp) {
				delete(c.entries, key)
			}
		}
		n := len(c.entries) - c.max*9/10
		for key := range c.entries {
			if n <= 0 {
				break
			}
			delete(c.entries, key)
			n--
		}
	}
	c.entries[k] = e
}

// dropKeys removes the entries signed by keys of ring that its new key set
// no longer publishes.
func (c *tokenCache) dropKeys(ring *keyring, set *keySet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if e.ring == ring && !set.has(e.key) {
			delete(c.entries, k)
		}
	}
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
