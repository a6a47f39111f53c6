package authn

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"sync/atomic"
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
//
// A token enters only when it is verified the second time (see
// doorkeeper): one used once never takes an entry, so a stream of distinct
// tokens leaves the cache to those that repeat.
type tokenCache struct {
	door    *doorkeeper
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
	return &tokenCache{door: newDoorkeeper(max), max: max, entries: make(map[[32]byte]cacheEntry)}
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

// admit reports whether the token hashed to k, just verified, is to be
// cached: whether it was verified before, recently enough to be
// remembered.
func (c *tokenCache) admit(k [32]byte) bool { return c.door.seen(k) }

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

// doorkeeper remembers the tokens verified once, in a fixed table of
// 64-bit fingerprints of their SHA-256 (8 bytes a slot, whatever the
// load). A token's hash picks its slot, which holds the last token that
// picked it: a token is remembered until another one takes its slot, so
// it is seen again when it comes back before about as many other tokens
// as there are slots (16,384 for the default cache). A token repeated less
// promptly than that under a stream of new ones is verified each time, as
// without a cache, until two uses fall close enough. Fingerprints never
// admit a token that was not verified before but by a 2^-63 chance, and
// then only to cache an identity just verified.
//
// This is the doorkeeper of TinyLFU (Einziger, Friedman, Manes, "TinyLFU:
// A Highly Efficient Cache Admission Policy", 2017), as a direct-mapped
// table rather than a Bloom filter: it ages by itself, needs no reset,
// and no lock (a race between two tokens for one slot only costs one of
// them a verification).
type doorkeeper struct {
	slots []atomic.Uint64
	mask  uint64
}

// Doorkeeper slots: about as many as the cache has entries, a power of
// two within these bounds.
const (
	minDoorSlots = 1 << 10
	maxDoorSlots = 1 << 16
)

func newDoorkeeper(entries int) *doorkeeper {
	n := minDoorSlots
	for n < entries && n < maxDoorSlots {
		n <<= 1
	}
	return &doorkeeper{slots: make([]atomic.Uint64, n), mask: uint64(n - 1)}
}

// seen reports whether the token hashed to k was remembered, and
// remembers it if not.
func (d *doorkeeper) seen(k [32]byte) bool {
	slot := &d.slots[binary.LittleEndian.Uint64(k[:8])&d.mask]
	fp := binary.LittleEndian.Uint64(k[8:16]) | 1 // never 0, an empty slot
	if slot.Load() == fp {
		return true
	}
	slot.Store(fp)
	return false
}
