package authn

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/ztgate/ztgate/internal/identity"
)

// freshIssuer is the issuer of the fresh-token benchmarks; its discovery
// and keys are answered by freshTransport, without a server.
const freshIssuer = "https://issuer.example"

// freshTokens is a pool of distinct RS256 tokens shaped like the load
// benchmark's (bench/cmd/tokens), signed once per test binary: signing is
// about a millisecond a token.
var freshTokens = sync.OnceValues(func() (*rsa.PrivateKey, []string) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	const n = 4096
	toks := make([]string, n)
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"bench","typ":"JWT"}`))
	now := time.Now()
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				payload, _ := json.Marshal(map[string]any{
					"iss": freshIssuer, "aud": "orders-api",
					"sub": fmt.Sprintf("user-%d", i%1000), "oid": fmt.Sprintf("oid-user-%d", i%1000),
					"jti": fmt.Sprintf("user-%d-%d", now.UnixNano(), i),
					"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(),
					"tid": "bench-tenant", "azp": "bench-client", "idtyp": "user",
					"name": "Benchmark User", "roles": []string{"Orders.Read"}, "amr": []string{"pwd", "mfa"},
				})
				signing := header + "." + base64.RawURLEncoding.EncodeToString(payload)
				sum := sha256.Sum256([]byte(signing))
				sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
				if err != nil {
					panic(err)
				}
				toks[i] = signing + "." + base64.RawURLEncoding.EncodeToString(sig)
			}
		})
	}
	wg.Wait()
	return key, toks
})

// freshTransport answers the fresh issuer's discovery and key requests.
type freshTransport struct{ jwks []byte }

func (t freshTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var body string
	switch r.URL.String() {
	case freshIssuer + "/.well-known/openid-configuration":
		body = `{"issuer":"` + freshIssuer + `","jwks_uri":"` + freshIssuer + `/jwks"}`
	case freshIssuer + "/jwks":
		body = string(t.jwks)
	default:
		return &http.Response{StatusCode: http.StatusNotFound, Body: http.NoBody, Request: r}, nil
	}
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

// freshVerifier is a verifier of the fresh issuer with its keys loaded and
// an empty cache, configured as bench/run configures ztgate.
func freshVerifier(tb testing.TB, key *rsa.PrivateKey, cacheSize int) *OIDC {
	tb.Helper()
	k, err := jwk.Import(key.Public())
	if err != nil {
		tb.Fatal(err)
	}
	_ = k.Set(jwk.KeyIDKey, "bench")
	set := jwk.NewSet()
	_ = set.AddKey(k)
	jwks, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	o := NewOIDC(OIDCConfig{
		Name: "bench-idp", Issuer: freshIssuer, Audiences: []string{"orders-api"}, Algorithms: []string{"RS256"},
		Refresh: time.Hour, CacheSize: cacheSize, Client: &http.Client{Transport: freshTransport{jwks}},
	})
	if err := o.refresh(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return o
}

// benchmarkFresh verifies a token never seen before on every iteration, as
// the load benchmark's fresh scenario does: when the pool runs out, a new
// verifier (with an empty cache) takes over, outside the timer.
func benchmarkFresh(b *testing.B, verify func(*OIDC) func(context.Context, string) (*identity.Identity, *Failure)) {
	key, toks := freshTokens()
	ctx := context.Background()
	o := freshVerifier(b, key, 0)
	v := verify(o)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i == len(toks) {
			b.StopTimer()
			o = freshVerifier(b, key, 0)
			v, i = verify(o), 0
			b.StartTimer()
		}
		if _, f := v(ctx, toks[i]); f != nil {
			b.Fatal(f)
		}
		i++
	}
	b.ReportMetric(float64(o.cache.len()), "cached")
}

// BenchmarkVerifyFresh is a provider's full verification of a token it
// has not seen, with its default cache.
func BenchmarkVerifyFresh(b *testing.B) {
	benchmarkFresh(b, func(o *OIDC) func(context.Context, string) (*identity.Identity, *Failure) { return o.Verify })
}

// BenchmarkAuthenticateFresh is the request path for a token never seen
// before: hashing, the cache lookup, choosing the provider, verification.
func BenchmarkAuthenticateFresh(b *testing.B) {
	benchmarkFresh(b, func(o *OIDC) func(context.Context, string) (*identity.Identity, *Failure) {
		return NewAuthenticator(16384, o).AuthenticateToken
	})
}
