package authn

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ztgate/ztgate/internal/identity"
)

func TestTokenCache(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Now()
	o := NewOIDC(OIDCConfig{Name: "t", Issuer: ti.srv.URL, Audiences: []string{"api"}, Algorithms: []string{"RS256"}, ClockSkew: time.Minute, Refresh: time.Hour, Now: func() time.Time { return now }})
	if err := o.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	claims := ti.claims()
	claims["exp"] = now.Add(10 * time.Minute).Unix()
	tok := ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, claims)
	id1 := verifyUntilCached(t, o, tok)
	id2, f := o.Verify(context.Background(), tok)
	if f != nil || id2 != id1 {
		t.Fatalf("third verify: got %p %v, want the cached identity %p", id2, f, id1)
	}
	// A tampered copy is not a cache hit.
	if _, f := o.Verify(context.Background(), tok[:len(tok)-2]+"AA"); f == nil {
		t.Fatal("a tampered token was accepted")
	}
	// The entry does not outlive exp (plus the skew).
	now = now.Add(11*time.Minute + time.Second)
	if _, f := o.Verify(context.Background(), tok); f == nil || f.Reason != ReasonTokenExpired {
		t.Fatalf("after expiry: got %v, want token_expired", f)
	}

}

// verifyUntilCached verifies tok until it is cached (the second time), and
// returns the cached identity.
func verifyUntilCached(t testing.TB, o *OIDC, tok string) *identity.Identity {
	t.Helper()
	for range 2 {
		id, f := o.Verify(context.Background(), tok)
		if f != nil {
			t.Fatal(f)
		}
		if cached, ok := o.cached(tokenKey(tok)); ok {
			if cached != id {
				t.Fatalf("got identity %p, want the one cached %p", id, cached)
			}
			return id
		}
	}
	t.Fatal("not cached after its second verification")
	return nil
}

// TestTokenCacheAdmission: a token enters the cache when verified the
// second time and is a hit from its third use; tokens used once take no
// entry.
func TestTokenCacheAdmission(t *testing.T) {
	ti := newTestIssuer(t)
	// Distinct tokens, each in a doorkeeper slot of its own, so that the
	// rows do not depend on how their hashes fall.
	const n = 8
	var toks []string
	taken := map[uint64]bool{}
	door := newDoorkeeper(DefaultCacheSize)
	for i := 0; len(toks) < n; i++ {
		c := ti.claims()
		c["sub"] = fmt.Sprint("user", i)
		tok := ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, c)
		k := tokenKey(tok)
		if slot := binary.LittleEndian.Uint64(k[:8]) & door.mask; !taken[slot] {
			taken[slot] = true
			toks = append(toks, tok)
		}
	}
	for _, tt := range []struct {
		name    string
		uses    []int  // the tokens verified, in order
		hits    []bool // whether each use was answered from the cache
		entries int
	}{
		{"used once: no entry", []int{0}, []bool{false}, 0},
		{"used twice: cached by the second verification", []int{0, 0}, []bool{false, false}, 1},
		{"a hit from the third use on", []int{0, 0, 0, 0}, []bool{false, false, true, true}, 1},
		{"distinct tokens take no entry", []int{0, 1, 2, 3, 4, 5, 6, 7}, make([]bool, 8), 0},
		{"interleaved repeats are cached", []int{0, 1, 0, 1, 0, 1}, []bool{false, false, false, false, true, true}, 2},
		{"a repeat among one-shot tokens", []int{0, 1, 2, 0, 3, 4, 0, 5}, []bool{false, false, false, false, false, false, true, false}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := ti.verifier(t)
			last := map[int]*identity.Identity{}
			for i, tok := range tt.uses {
				id, f := o.Verify(context.Background(), toks[tok])
				if f != nil {
					t.Fatal(f)
				}
				// A hit returns the very identity cached before.
				if hit := id == last[tok]; hit != tt.hits[i] {
					t.Errorf("use %d (token %d): got hit %v, want %v", i, tok, hit, tt.hits[i])
				}
				last[tok] = id
			}
			if got := o.cache.len(); got != tt.entries {
				t.Errorf("got %d entries, want %d", got, tt.entries)
			}
		})
	}
}

// TestDoorkeeper: a token is seen when it comes back before another token
// took its slot.
func TestDoorkeeper(t *testing.T) {
	// key is a token hash that falls in slot with fingerprint fp.
	key := func(slot, fp uint64) [32]byte {
		var k [32]byte
		binary.LittleEndian.PutUint64(k[:8], slot)
		binary.LittleEndian.PutUint64(k[8:16], fp)
		return k
	}
	for _, tt := range []struct {
		name string
		keys [][32]byte
		seen []bool
	}{
		{"first sighting", [][32]byte{key(1, 10)}, []bool{false}},
		{"second sighting", [][32]byte{key(1, 10), key(1, 10)}, []bool{false, true}},
		{"other slots leave it", [][32]byte{key(1, 10), key(2, 20), key(3, 30), key(1, 10)}, []bool{false, false, false, true}},
		{"same slot, other token: forgotten", [][32]byte{key(1, 10), key(1, 20), key(1, 10)}, []bool{false, false, false}},
		{"slot index wraps at the table size", [][32]byte{key(5, 10), key(5+minDoorSlots, 20), key(5, 10)}, []bool{false, false, false}},
		{"fingerprint 0 is not an empty slot", [][32]byte{key(7, 0)}, []bool{false}},
		{"fingerprints differing in the low bit only", [][32]byte{key(9, 2), key(9, 3)}, []bool{false, true}}, // the 2^-63 chance, shown
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newDoorkeeper(0)
			for i, k := range tt.keys {
				if got := d.seen(k); got != tt.seen[i] {
					t.Fatalf("sighting %d: got seen %v, want %v", i, got, tt.seen[i])
				}
			}
		})
	}
	for _, tt := range []struct{ entries, slots int }{
		{-1, minDoorSlots}, {0, minDoorSlots}, {10, minDoorSlots}, {1024, 1024}, {1025, 2048},
		{DefaultCacheSize, 16384}, {1_000_000, maxDoorSlots},
	} {
		if got := len(newDoorkeeper(tt.entries).slots); got != tt.slots {
			t.Errorf("newDoorkeeper(%d): got %d slots, want %d", tt.entries, got, tt.slots)
		}
	}
}

func TestTokenCacheBounded(t *testing.T) {
	ti := newTestIssuer(t)
	o := NewOIDC(OIDCConfig{Name: "t", Issuer: ti.srv.URL, Audiences: []string{"api"}, Algorithms: []string{"RS256"}, Refresh: time.Hour, CacheSize: 10})
	for i := range 50 {
		c := ti.claims()
		c["sub"] = fmt.Sprint("user", i)
		tok := ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, c)
		for range 2 {
			if _, f := o.Verify(context.Background(), tok); f != nil {
				t.Fatal(f)
			}
		}
	}
	if n := o.cache.len(); n > 10 {
		t.Fatalf("got %d cached tokens, want at most 10", n)
	}
}

// TestTokenCacheExpiry: an entry serves until its token's exp plus the
// clock skew, exactly as long as a full verification would accept it.
func TestTokenCacheExpiry(t *testing.T) {
	ti := newTestIssuer(t)
	start := time.Now()
	now := start
	o := NewOIDC(OIDCConfig{Name: "t", Issuer: ti.srv.URL, Audiences: []string{"api"}, Algorithms: []string{"RS256"}, ClockSkew: time.Minute, Refresh: time.Hour, Now: func() time.Time { return now }})
	claims := ti.claims()
	exp := start.Add(5 * time.Minute).Truncate(time.Second)
	claims["exp"] = exp.Unix()
	tok := ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, claims)
	first := verifyUntilCached(t, o, tok)
	now = exp.Add(time.Minute - time.Nanosecond)
	if id, f := o.Verify(context.Background(), tok); f != nil || id != first {
		t.Fatalf("just before exp+skew: got %p %v, want the cached identity %p", id, f, first)
	}
	now = exp.Add(time.Minute)
	if _, f := o.Verify(context.Background(), tok); f == nil || f.Reason != ReasonTokenExpired {
		t.Fatalf("at exp+skew: got %v, want token_expired", f)
	}
	if n := o.cache.len(); n != 0 {
		t.Fatalf("got %d entries after expiry, want 0", n)
	}
}

// TestTokenCacheDroppedWithKey: when a refresh no longer finds the key
// that signed a cached token, the entry goes, also when another key takes
// over the same kid.
func TestTokenCacheDroppedWithKey(t *testing.T) {
	for _, tt := range []struct{ name, kid, reason string }{
		{"key removed", "rsa2", ReasonUnknownKID},
		{"key replaced under the same kid", "rsa1", ReasonBadSignature},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ti := newTestIssuer(t)
			o := ti.verifier(t)
			tok := ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, ti.claims())
			verifyUntilCached(t, o, tok)
			other, _ := rsa.GenerateKey(rand.Reader, 2048)
			ti.publishOnly(t, other.Public(), tt.kid)
			if err := o.refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			if _, f := o.Verify(context.Background(), tok); f == nil || f.Reason != tt.reason {
				t.Fatalf("got %v, want %s: the cached entry must go with its key", f, tt.reason)
			}
		})
	}
}

// TestTokenCacheKeyRemovedMidVerify: an entry is only recorded while its
// key is still published, so a verification that ends after a refresh
// removed the key leaves nothing behind.
func TestTokenCacheKeyRemovedMidVerify(t *testing.T) {
	ti := newTestIssuer(t)
	o := ti.verifier(t)
	ring := o.profile.rings()[0]
	sk, ok := ring.current().find("rsa1")
	if !ok {
		t.Fatal("no rsa1")
	}
	called := false
	ring.holding(sk.thumb, func() { called = true })
	if !called {
		t.Fatal("holding: the published key was not held")
	}
	ti.publishOnly(t, ti.ecKey.Public(), "ec1")
	if err := o.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	called = false
	ring.holding(sk.thumb, func() { called = true })
	if called {
		t.Fatal("holding: ran for a key the ring no longer publishes")
	}
}

func TestTokenCacheRefusalsNotCached(t *testing.T) {
	ti := newTestIssuer(t)
	o := ti.verifier(t)
	c := ti.claims()
	c["aud"] = "other"
	tok := ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, c)
	for range 2 {
		if _, f := o.Verify(context.Background(), tok); f == nil || f.Reason != ReasonWrongAudience {
			t.Fatalf("got %v, want wrong_audience", f)
		}
	}
	if n := o.cache.len(); n != 0 {
		t.Fatalf("got %d cached entries for a refused token, want 0", n)
	}
}

// TestTokenCacheEvictsExpiredFirst: a full cache makes room by dropping
// expired entries before live ones.
func TestTokenCacheEvictsExpiredFirst(t *testing.T) {
	c := newTokenCache(4)
	now := time.Now()
	live := cacheEntry{id: &identity.Identity{Subject: "live"}, exp: now.Add(time.Hour)}
	c.put([32]byte{1}, live, now)
	for i := range 3 {
		c.put([32]byte{2, byte(i)}, cacheEntry{id: &identity.Identity{}, exp: now.Add(time.Second)}, now)
	}
	later := now.Add(time.Minute)
	c.put([32]byte{3}, live, later)
	if n := c.len(); n != 2 {
		t.Fatalf("got %d entries, want the 2 live ones", n)
	}
	for _, k := range [][32]byte{{1}, {3}} {
		if _, ok := c.get(k, later); !ok {
			t.Errorf("live entry %x evicted", k[0])
		}
	}
}

// TestTokenCacheConcurrent runs verifications, cache hits, expiries and key
// refreshes at once (for -race).
func TestTokenCacheConcurrent(t *testing.T) {
	ti := newTestIssuer(t)
	o := NewOIDC(OIDCConfig{Name: "t", Issuer: ti.srv.URL, Audiences: []string{"api"}, Algorithms: []string{"RS256", "ES256"}, ClockSkew: time.Minute, Refresh: time.Hour, CacheSize: 8})
	a := NewAuthenticator(16384, o)
	var toks []string
	for i := range 16 {
		c := ti.claims()
		c["sub"] = fmt.Sprint("user", i)
		toks = append(toks, ti.sign(t, "ES256", ti.ecKey, map[string]any{"kid": "ec1"}, c))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			_ = o.refresh(ctx)
		}
	}()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				tok := toks[(g*7+i)%len(toks)]
				if id, f := a.AuthenticateToken(context.Background(), tok); f != nil || id == nil {
					t.Errorf("got %v, want accepted", f)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := o.cache.len(); n > 8 {
		t.Fatalf("got %d entries, want at most 8", n)
	}
}

func BenchmarkVerifyCacheHit(b *testing.B) {
	ti := newTestIssuer(b)
	benchmarkVerify(b, ti.verifier(b).Verify, ti.sign(b, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, ti.claims()))
}

func BenchmarkVerifyRS256(b *testing.B) {
	ti := newTestIssuer(b)
	o := NewOIDC(OIDCConfig{Name: "t", Issuer: ti.srv.URL, Audiences: []string{"api"}, Algorithms: []string{"RS256"}, ClockSkew: time.Minute, Refresh: time.Hour, CacheSize: -1})
	benchmarkVerify(b, o.Verify, ti.sign(b, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, ti.claims()))
}

// BenchmarkAuthenticateCacheHit is the request path for a repeated token of
// Entra ID's size (a v2.0 user token with groups and roles, about 1.5 KB).
// Hashing the token with SHA-256 is most of the cost.
func BenchmarkAuthenticateCacheHit(b *testing.B) {
	ei := newEntraIssuer(b)
	a := NewAuthenticator(16384, ei.verifier(EntraConfig{Tenant: tenantA}))
	c := ei.v2(tenantA, false)
	c["groups"] = []string{"a0b1c2d3-0000-4000-8000-000000000001", "a0b1c2d3-0000-4000-8000-000000000002", "a0b1c2d3-0000-4000-8000-000000000003", "a0b1c2d3-0000-4000-8000-000000000004", "a0b1c2d3-0000-4000-8000-000000000005"}
	c["roles"] = []string{"Orders.Read", "Orders.Write", "Reports.Read"}
	benchmarkVerify(b, a.AuthenticateToken, ei.token(b, c))
}

// benchmarkVerify measures verify on tok, after two calls (that fill the
// cache, or load the keys).
func benchmarkVerify(b *testing.B, verify func(context.Context, string) (*identity.Identity, *Failure), tok string) {
	ctx := context.Background()
	for range 2 {
		if _, f := verify(ctx, tok); f != nil {
			b.Fatal(f)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, f := verify(ctx, tok); f != nil {
			b.Fatal(f)
		}
	}
	b.ReportMetric(float64(len(tok)), "token-bytes")
}
