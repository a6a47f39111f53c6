package inject

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/ztgate/ztgate/internal/identity"
)

func mustKey(t testing.TB) *Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSigner(t testing.TB, k *Key, ttl time.Duration) *Signer {
	t.Helper()
	s, err := NewSigner(k, "https://gw.example", ttl)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// keySet parses a JWKS document as an upstream would.
func keySet(t testing.TB, doc []byte) jwk.Set {
	t.Helper()
	set, err := jwk.Parse(doc)
	if err != nil {
		t.Fatalf("parse JWKS %s: %v", doc, err)
	}
	return set
}

var alice = &identity.Identity{
	Type: identity.User, Provider: "corp", Issuer: "https://login.example/t1/v2.0", Subject: "alice-sub",
	Tenant: "t1", ObjectID: "oid-alice", AppID: "portal", Roles: []string{"Orders.Read", "Orders.Write"},
	Scopes: []string{"orders.read", "orders.write"}, AMR: []string{"pwd", "mfa"},
	Claims: map[string]any{"secret_claim": "never copied"},
}

// TestAssertionClaims: what an upstream reads from a verified assertion.
func TestAssertionClaims(t *testing.T) {
	now := time.Now()
	k := mustKey(t)
	s := mustSigner(t, k, time.Minute)
	var ring KeyRing
	ring.Install([]*Key{k}, 15*time.Minute)
	set := keySet(t, ring.JWKS())

	app := &identity.Identity{Type: identity.App, Issuer: "https://idp.example", Subject: "client-7", AppID: "client-7", Roles: []string{"Jobs.Run"}}
	shortLived := *alice
	shortLived.ExpiresAt = now.Add(20 * time.Second)
	tests := []struct {
		name string
		id   *identity.Identity
		want map[string]any
	}{
		{"user", alice, map[string]any{
			"iss": "https://gw.example", "aud": []any{"orders"}, "sub": "alice-sub", "jti": "req-1", "route": "read",
			"idp": "https://login.example/t1/v2.0", "oid": "oid-alice", "tid": "t1", "azp": "portal", "idtyp": "user",
			"roles": []any{"Orders.Read", "Orders.Write"}, "scp": "orders.read orders.write", "amr": []any{"pwd", "mfa"},
			"iat": float64(now.Unix()), "exp": float64(now.Add(time.Minute).Unix()),
		}},
		{"app without scopes", app, map[string]any{
			"iss": "https://gw.example", "aud": []any{"orders"}, "sub": "client-7", "jti": "req-1", "route": "read",
			"idp": "https://idp.example", "azp": "client-7", "idtyp": "app", "roles": []any{"Jobs.Run"},
			"iat": float64(now.Unix()), "exp": float64(now.Add(time.Minute).Unix()),
		}},
		// Regression: an assertion must not outlive the caller's own token.
		{"never past the caller's token", &shortLived, map[string]any{
			"iss": "https://gw.example", "aud": []any{"orders"}, "sub": "alice-sub", "jti": "req-1", "route": "read",
			"idp": "https://login.example/t1/v2.0", "oid": "oid-alice", "tid": "t1", "azp": "portal", "idtyp": "user",
			"roles": []any{"Orders.Read", "Orders.Write"}, "scp": "orders.read orders.write", "amr": []any{"pwd", "mfa"},
			"iat": float64(now.Unix()), "exp": float64(now.Add(20 * time.Second).Unix()),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := s.Sign(Request{Identity: tt.id, Audience: "orders", Route: "read", RequestID: "req-1", Now: now})
			if err != nil {
				t.Fatal(err)
			}
			msg, err := jws.Parse([]byte(tok))
			if err != nil {
				t.Fatal(err)
			}
			hdr := msg.Signatures()[0].ProtectedHeaders()
			if alg, _ := hdr.Algorithm(); alg.String() != "ES256" {
				t.Errorf("alg: got %s, want ES256", alg)
			}
			if kid, _ := hdr.KeyID(); kid != k.KeyID() {
				t.Errorf("kid: got %q, want %q", kid, k.KeyID())
			}
			parsed, err := jwt.Parse([]byte(tok), jwt.WithKeySet(set), jwt.WithIssuer("https://gw.example"), jwt.WithAudience("orders"))
			if err != nil {
				t.Fatalf("verify with the published JWKS: %v", err)
			}
			got := map[string]any{}
			for _, name := range parsed.Keys() {
				var v any
				if err := parsed.Get(name, &v); err != nil {
					t.Fatal(err)
				}
				switch x := v.(type) {
				case time.Time:
					v = float64(x.Unix())
				case []string:
					l := make([]any, len(x))
					for i := range x {
						l[i] = x[i]
					}
					v = l
				}
				got[name] = v
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("claims (-want +got):\n%s", d)
			}
		})
	}
}

// TestAssertionExpiry: an assertion verifies during its ttl and not after.
func TestAssertionExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := mustKey(t)
		s := mustSigner(t, k, time.Minute)
		var ring KeyRing
		ring.Install([]*Key{k}, 15*time.Minute)
		set := keySet(t, ring.JWKS())
		tok, err := s.Sign(Request{Identity: alice, Audience: "orders", Route: "read", RequestID: "r", Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		verify := func() error {
			_, err := jwt.Parse([]byte(tok), jwt.WithKeySet(set), jwt.WithAudience("orders"))
			return err
		}
		time.Sleep(59 * time.Second)
		if err := verify(); err != nil {
			t.Fatalf("after 59s: got %v, want the assertion valid", err)
		}
		time.Sleep(2 * time.Second)
		if err := verify(); err == nil {
			t.Fatal("after 61s: got a valid assertion, want it expired")
		}
	})
}

// TestAssertionAudience: an assertion for one service does not verify for
// another (replay across services).
func TestAssertionAudience(t *testing.T) {
	k := mustKey(t)
	s := mustSigner(t, k, time.Minute)
	var ring KeyRing
	ring.Install([]*Key{k}, 15*time.Minute)
	set := keySet(t, ring.JWKS())
	tok, err := s.Sign(Request{Identity: alice, Audience: "orders", Route: "read", RequestID: "r", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse([]byte(tok), jwt.WithKeySet(set), jwt.WithAudience("billing")); err == nil {
		t.Fatal("an orders assertion verified for billing, want an audience error")
	}
}

// TestRotationOverlap: after a new key is installed, the old one stays
// published for the overlap, so what it signed still verifies; then it is
// gone and its assertions no longer verify.
func TestRotationOverlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		oldKey, newKey := mustKey(t), mustKey(t)
		var ring KeyRing
		ring.Install([]*Key{oldKey}, 15*time.Minute)
		old, err := mustSigner(t, oldKey, time.Hour).Sign(Request{Identity: alice, Audience: "orders", Route: "r", RequestID: "1", Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		verifies := func(tok string) bool {
			_, err := jws.Verify([]byte(tok), jws.WithKeySet(keySet(t, ring.JWKS())))
			return err == nil
		}
		kids := func() []string {
			set := keySet(t, ring.JWKS())
			var out []string
			for i := range set.Len() {
				k, _ := set.Key(i)
				kid, _ := k.KeyID()
				out = append(out, kid)
			}
			return out
		}

		time.Sleep(time.Minute)
		ring.Install([]*Key{newKey}, 15*time.Minute) // a reload: a new key signs
		fresh, err := mustSigner(t, newKey, time.Hour).Sign(Request{Identity: alice, Audience: "orders", Route: "r", RequestID: "2", Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := kids(), []string{newKey.KeyID(), oldKey.KeyID()}; !cmp.Equal(got, want) {
			t.Fatalf("published during the overlap: got %v, want %v (new first)", got, want)
		}
		time.Sleep(15*time.Minute - time.Second)
		if !verifies(old) {
			t.Fatal("an assertion of the old key does not verify during the overlap")
		}
		time.Sleep(time.Second)
		if got, want := kids(), []string{newKey.KeyID()}; !cmp.Equal(got, want) {
			t.Fatalf("published after the overlap: got %v, want %v", got, want)
		}
		if verifies(old) {
			t.Fatal("an assertion of the retired key still verifies after the overlap")
		}
		if !verifies(fresh) {
			t.Fatal("an assertion of the new key does not verify")
		}

		// A key listed again before it left is published again, not retired.
		ring.Install([]*Key{newKey, oldKey}, 15*time.Minute)
		ring.Install([]*Key{oldKey}, 15*time.Minute)
		if got, want := kids(), []string{oldKey.KeyID(), newKey.KeyID()}; !cmp.Equal(got, want) {
			t.Fatalf("after rolling back: got %v, want %v", got, want)
		}
	})
}

func TestJWKSHandler(t *testing.T) {
	var ring KeyRing
	rec := httptest.NewRecorder()
	ring.ServeHTTP(rec, httptest.NewRequest("GET", JWKSPath, nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("no keys: got %d, want 404", rec.Code)
	}
	k := mustKey(t)
	ring.Install([]*Key{k}, time.Minute)
	rec = httptest.NewRecorder()
	ring.ServeHTTP(rec, httptest.NewRequest("GET", JWKSPath, nil))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/jwk-set+json" {
		t.Fatalf("got %d %q, want 200 application/jwk-set+json", rec.Code, rec.Header().Get("Content-Type"))
	}
	body := rec.Body.String()
	if strings.Contains(body, `"d"`) {
		t.Fatalf("the JWKS holds a private key parameter: %s", body)
	}
	set := keySet(t, []byte(body))
	pub, _ := set.Key(0)
	if alg, _ := pub.Algorithm(); alg.String() != "ES256" {
		t.Errorf("alg: got %v, want ES256", alg)
	}
	if use, _ := pub.KeyUsage(); use != "sig" {
		t.Errorf("use: got %q, want sig", use)
	}
	rec = httptest.NewRecorder()
	ring.ServeHTTP(rec, httptest.NewRequest("POST", JWKSPath, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: got %d, want 405", rec.Code)
	}
}

func TestParseKey(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	sec1, _ := x509.MarshalECPrivateKey(p256)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(p256)
	p384der, _ := x509.MarshalPKCS8PrivateKey(p384)
	rsader, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	enc := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	tests := []struct {
		name string
		pem  []byte
		err  string
	}{
		{"sec1", enc("EC PRIVATE KEY", sec1), ""},
		{"pkcs8", enc("PRIVATE KEY", pkcs8), ""},
		{"after a certificate block", append(enc("CERTIFICATE", []byte("x")), enc("PRIVATE KEY", pkcs8)...), ""},
		{"p384", enc("PRIVATE KEY", p384der), "cannot sign ES256: want P-256"},
		{"rsa", enc("PRIVATE KEY", rsader), "want an EC P-256 key"},
		{"garbage", enc("PRIVATE KEY", []byte("x")), "parse PRIVATE KEY"},
		{"not PEM", []byte("hunter2"), "no PEM private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKey(tt.pem)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, want an error containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !k.Public().Equal(&p256.PublicKey) {
				t.Fatal("got another key")
			}
		})
	}
}

func TestLoadOrGenerate(t *testing.T) {
	path := filepath.Join(t.TempDir(), GeneratedKeyFile)
	k1, created, err := LoadOrGenerate(path)
	if err != nil || !created {
		t.Fatalf("first: got created=%v, %v; want a new key", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("key file mode: got %o, want 600", mode)
	}
	k2, created, err := LoadOrGenerate(path)
	if err != nil || created {
		t.Fatalf("second: got created=%v, %v; want the kept key", created, err)
	}
	if k1.KeyID() != k2.KeyID() {
		t.Fatalf("kid changed across loads: %s, %s", k1.KeyID(), k2.KeyID())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("got %d files beside the key, want only the key", len(entries))
	}
}

func TestStripHeader(t *testing.T) {
	h := http.Header{
		"X-Caller-Assertion":     {"forged"},
		"X_caller_assertion":     {"forged"},
		"X-Caller-Assertion-Not": {"kept"},
		"Authorization":          {"kept"},
	}
	StripHeader(h, "X-Caller-Assertion")
	want := http.Header{"X-Caller-Assertion-Not": {"kept"}, "Authorization": {"kept"}}
	if d := cmp.Diff(want, h); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

// BenchmarkAssertion is the cost an assertion adds to a request: claims,
// JSON and the ES256 signature.
func BenchmarkAssertion(b *testing.B) {
	s := mustSigner(b, mustKey(b), time.Minute)
	svc := &Service{signer: s, audience: "orders", header: DefaultHeader}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		h := http.Header{}
		for pb.Next() {
			c, err := svc.Credentials(b.Context(), Call{Identity: alice, Route: "read", RequestID: "0123456789abcdef", Now: now})
			if err != nil {
				b.Fatal(err)
			}
			c.Apply(h)
		}
	})
}
