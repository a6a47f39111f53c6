package authn

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
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
	id1, f := o.Verify(context.Background(), tok)
	if f != nil {
		t.Fatal(f)
	}
	id2, f := o.Verify(context.Background(), tok)
	if f != nil || id2 != id1 {
		t.Fatalf("second verify: got %p %v, want the cached identity %p", id2, f, id1)
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

func TestTokenCacheBounded(t *testing.T) {
	ti := newTestIssuer(t)
	o := NewOIDC(OIDCConfig{Name: "t", Issuer: ti.srv.URL, Audiences: []string{"api"}, Algorithms: []string{"RS256"}, Refresh: time.Hour, CacheSize: 10})
	for i := range 50 {
		c := ti.claims()
		c["sub"] = fmt.Sprint("user", i)
		if _, f := o.Verify(context.Background(), ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, c)); f != nil {
			t.Fatal(f)
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
	first, f := o.Verify(context.Background(), tok)
	if f != nil {
		t.Fatal(f)
	}
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
			if _, f := o.Verify(context.Background(), tok); f != nil {
				t.Fatal(f)
			}
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

// benchmarkVerify measures verify on tok, after a first call (that fills
// the cache, or loads the keys).
func benchmarkVerify(b *testing.B, verify func(context.Context, string) (*identity.Identity, *Failure), tok string) {
	ctx := context.Background()
	if _, f := verify(ctx, tok); f != nil {
		b.Fatal(f)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, f := verify(ctx, tok); f != nil {
			b.Fatal(f)
		}
	}
	b.ReportMetric(float64(len(tok)), "token-bytes")
}
