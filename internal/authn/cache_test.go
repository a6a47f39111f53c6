package authn

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
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

	// Key removed from the provider's set: cached tokens it signed go.
	now = time.Now()
	claims["exp"] = now.Add(time.Hour).Unix()
	tok = ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, claims)
	if _, f := o.Verify(context.Background(), tok); f != nil {
		t.Fatal(f)
	}
	newKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	k, _ := jwk.Import(newKey.Public())
	_ = k.Set(jwk.KeyIDKey, "rsa2")
	set := jwk.NewSet()
	_ = set.AddKey(k)
	ti.keys.Store(&set)
	if err := o.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, f := o.Verify(context.Background(), tok); f == nil || f.Reason != ReasonUnknownKID {
		t.Fatalf("after the key was removed: got %v, want unknown_kid", f)
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

func BenchmarkVerifyCacheHit(b *testing.B) {
	ti := newTestIssuer(b)
	o := ti.verifier(b)
	tok := ti.sign(b, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, ti.claims())
	ctx := context.Background()
	if _, f := o.Verify(ctx, tok); f != nil {
		b.Fatal(f)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, f := o.Verify(ctx, tok); f != nil {
			b.Fatal(f)
		}
	}
}

func BenchmarkVerifyRS256(b *testing.B) {
	ti := newTestIssuer(b)
	o := NewOIDC(OIDCConfig{Name: "t", Issuer: ti.srv.URL, Audiences: []string{"api"}, Algorithms: []string{"RS256"}, ClockSkew: time.Minute, Refresh: time.Hour, CacheSize: -1})
	if err := o.refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	tok := ti.sign(b, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, ti.claims())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, f := o.Verify(ctx, tok); f != nil {
			b.Fatal(f)
		}
	}
}
