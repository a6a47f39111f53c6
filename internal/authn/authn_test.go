package authn

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// testIssuer is a local OpenID Connect issuer: discovery and JWKS over HTTP.
type testIssuer struct {
	srv     *httptest.Server
	rsaKey  *rsa.PrivateKey
	ecKey   *ecdsa.PrivateKey
	weakKey *rsa.PrivateKey
	keys    atomic.Pointer[jwk.Set]
	down    atomic.Bool
	fetches atomic.Int32
}

func newTestIssuer(t testing.TB) *testIssuer {
	t.Helper()
	ti := &testIssuer{}
	ti.rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	ti.ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ti.weakKey, _ = rsa.GenerateKey(rand.Reader, 1024)
	set := jwk.NewSet()
	add := func(raw any, kid string) {
		k, err := jwk.Import(raw)
		if err != nil {
			t.Fatal(err)
		}
		_ = k.Set(jwk.KeyIDKey, kid)
		_ = set.AddKey(k)
	}
	add(ti.rsaKey.Public(), "rsa1")
	add(ti.ecKey.Public(), "ec1")
	ti.keys.Store(&set)
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if ti.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": ti.srv.URL, "jwks_uri": ti.srv.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		ti.fetches.Add(1)
		if ti.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		// The weak key is written by hand: jwx refuses to build one.
		raw, _ := json.Marshal(*ti.keys.Load())
		weak := fmt.Sprintf(`{"kty":"RSA","kid":"weak","n":%q,"e":"AQAB"}`, base64.RawURLEncoding.EncodeToString(ti.weakKey.N.Bytes()))
		out := strings.Replace(string(raw), `"keys":[`, `"keys":[`+weak+",", 1)
		_, _ = w.Write([]byte(out))
	})
	ti.srv = httptest.NewServer(mux)
	t.Cleanup(ti.srv.Close)
	return ti
}

// publishOnly makes the issuer's key set the single public key pub, as kid.
func (ti *testIssuer) publishOnly(t testing.TB, pub any, kid string) {
	t.Helper()
	k, err := jwk.Import(pub)
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Set(jwk.KeyIDKey, kid)
	set := jwk.NewSet()
	_ = set.AddKey(k)
	ti.keys.Store(&set)
}

func (ti *testIssuer) claims() map[string]any {
	now := time.Now()
	return map[string]any{"iss": ti.srv.URL, "aud": "api", "sub": "alice", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "roles": []string{"Orders.Read"}}
}

func (ti *testIssuer) sign(t testing.TB, alg string, key any, hdr map[string]any, claims map[string]any) string {
	t.Helper()
	return signToken(t, alg, key, hdr, claims)
}

// signToken signs claims under alg with key and the given header members.
func signToken(t testing.TB, alg string, key any, hdr map[string]any, claims map[string]any) string {
	t.Helper()
	payload, _ := json.Marshal(claims)
	h := jws.NewHeaders()
	for k, v := range hdr {
		_ = h.Set(k, v)
	}
	a, _ := jwa.LookupSignatureAlgorithm(alg)
	out, err := jws.Sign(payload, jws.WithKey(a, key, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return string(out)
}

func b64(v any) string {
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	default:
		b, _ = json.Marshal(x)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ti *testIssuer) verifier(t testing.TB) *OIDC {
	o := NewOIDC(OIDCConfig{Name: "test", Issuer: ti.srv.URL, Audiences: []string{"api"}, Algorithms: []string{"RS256", "PS256", "ES256", "EdDSA"}, ClockSkew: time.Minute, Refresh: time.Hour})
	if err := o.refresh(context.Background()); err != nil {
		t.Fatalf("load keys: %v", err)
	}
	return o
}

func TestVerifyGood(t *testing.T) {
	ti := newTestIssuer(t)
	o := ti.verifier(t)
	for _, tc := range []struct {
		alg string
		key any
		kid string
	}{{"RS256", ti.rsaKey, "rsa1"}, {"PS256", ti.rsaKey, "rsa1"}, {"ES256", ti.ecKey, "ec1"}} {
		tok := ti.sign(t, tc.alg, tc.key, map[string]any{"kid": tc.kid, "typ": "JWT"}, ti.claims())
		id, f := o.Verify(context.Background(), tok)
		if f != nil {
			t.Fatalf("%s: got failure %v, want success", tc.alg, f)
		}
		if id.Subject != "alice" || len(id.Roles) != 1 || id.Roles[0] != "Orders.Read" {
			t.Errorf("%s: got identity %+v", tc.alg, id)
		}
	}
}

func TestVerifyHostile(t *testing.T) {
	ti := newTestIssuer(t)
	o := ti.verifier(t)
	good := ti.claims()
	with := func(k string, v any) map[string]any {
		c := ti.claims()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	rsaHdr := map[string]any{"kid": "rsa1"}
	valid := ti.sign(t, "RS256", ti.rsaKey, rsaHdr, good)
	parts := strings.Split(valid, ".")
	pubDER, _ := json.Marshal(ti.rsaKey.Public())
	hmacTok := func() string {
		h := b64(map[string]any{"alg": "HS256", "kid": "rsa1"})
		p := b64(good)
		m := hmac.New(sha256.New, pubDER)
		m.Write([]byte(h + "." + p))
		return h + "." + p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)

	tests := []struct {
		name, token, reason string
	}{
		{"alg none", b64(map[string]any{"alg": "none"}) + "." + b64(good) + ".", ReasonMalformedToken},
		{"alg none with signature", b64(map[string]any{"alg": "none", "kid": "rsa1"}) + "." + b64(good) + ".AAAA", ReasonAlgNotAllowed},
		{"alg NONE upper", b64(map[string]any{"alg": "NONE", "kid": "rsa1"}) + "." + b64(good) + ".AAAA", ReasonAlgNotAllowed},
		{"HMAC with the RSA public key (algorithm confusion)", hmacTok(), ReasonAlgNotAllowed},
		{"ES256 header on an RSA key", ti.sign(t, "ES256", ti.ecKey, map[string]any{"kid": "rsa1"}, good), ReasonKeyMismatch},
		{"RS256 header on an EC key", ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "ec1"}, good), ReasonKeyMismatch},
		{"EdDSA header on an RSA key", ti.sign(t, "EdDSA", edPriv, map[string]any{"kid": "rsa1"}, good), ReasonKeyMismatch},
		{"RSA key under 2048 bits", ti.sign(t, "RS256", ti.weakKey, map[string]any{"kid": "weak"}, good), ReasonWeakKey},
		{"jku header", ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1", "jku": "https://evil.example/jwks"}, good), ReasonForbiddenHeader},
		{"x5u header", ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1", "x5u": "https://evil.example/cert"}, good), ReasonForbiddenHeader},
		{"embedded jwk header", b64(map[string]any{"alg": "RS256", "kid": "rsa1", "jwk": map[string]string{"kty": "RSA"}}) + "." + parts[1] + "." + parts[2], ReasonForbiddenHeader},
		{"crit header", b64(map[string]any{"alg": "RS256", "kid": "rsa1", "crit": []string{"exp"}}) + "." + parts[1] + "." + parts[2], ReasonForbiddenHeader},
		{"signed by another key with a known kid", ti.sign(t, "RS256", otherRSA, rsaHdr, good), ReasonBadSignature},
		{"payload swapped", parts[0] + "." + b64(with("roles", []string{"Admin"})) + "." + parts[2], ReasonBadSignature},
		{"unknown kid", ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "nope"}, good), ReasonUnknownKID},
		{"expired", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("exp", time.Now().Add(-2*time.Minute).Unix())), ReasonTokenExpired},
		{"no exp", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("exp", nil)), ReasonMissingExp},
		{"exp not a number", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("exp", "tomorrow")), ReasonMalformedToken},
		{"nbf in the future", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("nbf", time.Now().Add(10*time.Minute).Unix())), ReasonNotYetValid},
		{"iat in the future", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("iat", time.Now().Add(10*time.Minute).Unix())), ReasonIssuedInFuture},
		{"wrong audience", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("aud", "other-api")), ReasonWrongAudience},
		{"empty audience", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("aud", "")), ReasonWrongAudience},
		{"empty audience list", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("aud", []string{})), ReasonWrongAudience},
		{"no audience", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("aud", nil)), ReasonWrongAudience},
		{"wrong issuer", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("iss", "https://evil.example")), ReasonWrongIssuer},
		{"no subject", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("sub", nil)), ReasonMissingSubject},
		{"wrong typ", ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1", "typ": "JWE"}, good), ReasonWrongType},
		{"malformed base64 header", "@@@." + parts[1] + "." + parts[2], ReasonMalformedToken},
		{"padded base64", parts[0] + "=." + parts[1] + "." + parts[2], ReasonMalformedToken},
		{"trailing data after JSON header", b64(`{"alg":"RS256","kid":"rsa1"}{}`) + "." + parts[1] + "." + parts[2], ReasonMalformedToken},
		{"duplicate header keys", b64(`{"alg":"RS256","alg":"none","kid":"rsa1"}`) + "." + parts[1] + "." + parts[2], ReasonMalformedToken},
		{"duplicate payload keys", func() string {
			p := strings.TrimSuffix(string(must(json.Marshal(good))), "}") + `,"sub":"admin"}`
			return ti.sign(t, "RS256", ti.rsaKey, rsaHdr, nil)[:0] + signRaw(t, ti.rsaKey, "rsa1", p)
		}(), ReasonMalformedToken},
		{"JWE five parts", parts[0] + "." + parts[1] + "." + parts[2] + ".a.b", ReasonMalformedToken},
		{"two parts", parts[0] + "." + parts[1], ReasonMalformedToken},
		{"nested JWT as payload", signRaw(t, ti.rsaKey, "rsa1", valid), ReasonMalformedToken},
		{"x5c header (a key chosen by the token)", b64(map[string]any{"alg": "RS256", "kid": "rsa1", "x5c": []string{"MIIB"}}) + "." + parts[1] + "." + parts[2], ReasonForbiddenHeader},
		{"zip header", ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1", "zip": "DEF"}, good), ReasonForbiddenHeader},
		{"PS256 signature under an RS256 header", func() string {
			ps := strings.Split(ti.sign(t, "PS256", ti.rsaKey, rsaHdr, good), ".")
			return parts[0] + "." + parts[1] + "." + ps[2]
		}(), ReasonBadSignature},
		{"signature stripped", parts[0] + "." + parts[1] + ".", ReasonMalformedToken},
		{"header is a JSON array", b64(`["RS256"]`) + "." + parts[1] + "." + parts[2], ReasonMalformedToken},
		{"payload not base64url", parts[0] + ".e30+." + parts[2], ReasonMalformedToken},
		{"nbf not a number", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("nbf", "now")), ReasonMalformedToken},
		{"exp beyond any real date", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("exp", 1e12)), ReasonMalformedToken},
		{"audience not a string", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("aud", 42)), ReasonWrongAudience},
		{"audience only in a nested list", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("aud", []any{[]string{"api"}})), ReasonWrongAudience},
		{"empty subject", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("sub", "")), ReasonMissingSubject},
		{"issuer with a trailing slash", ti.sign(t, "RS256", ti.rsaKey, rsaHdr, with("iss", ti.srv.URL+"/")), ReasonWrongIssuer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, f := o.Verify(context.Background(), tt.token)
			if f == nil {
				t.Fatalf("got identity %+v, want refusal %s", id, tt.reason)
			}
			if f.Reason != tt.reason {
				t.Fatalf("got reason %s (%v), want %s", f.Reason, f, tt.reason)
			}
			if id != nil {
				t.Fatal("got an identity together with a failure")
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// signRaw signs an arbitrary payload string with RS256.
func signRaw(t testing.TB, key *rsa.PrivateKey, kid, payload string) string {
	h := jws.NewHeaders()
	_ = h.Set("kid", kid)
	out, err := jws.Sign([]byte(payload), jws.WithKey(jwa.RS256(), key, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestKeysServeWhileProviderDown(t *testing.T) {
	ti := newTestIssuer(t)
	o := ti.verifier(t)
	ti.down.Store(true)
	if err := o.refresh(context.Background()); err == nil {
		t.Fatal("refresh succeeded against a down provider")
	}
	tok := ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, ti.claims())
	if _, f := o.Verify(context.Background(), tok); f != nil {
		t.Fatalf("got %v, want the last good keys to keep serving", f)
	}
	unknown := ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rotated"}, ti.claims())
	if _, f := o.Verify(context.Background(), unknown); f == nil || f.Reason != ReasonUnknownKID {
		t.Fatalf("got %v, want unknown_kid while the provider is down", f)
	}
}

func TestNoKeysFailsClosed(t *testing.T) {
	ti := newTestIssuer(t)
	ti.down.Store(true)
	o := NewOIDC(OIDCConfig{Name: "t", Issuer: ti.srv.URL, Audiences: []string{"api"}, Algorithms: []string{"RS256"}, Refresh: time.Hour})
	tok := ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, ti.claims())
	_, f := o.Verify(context.Background(), tok)
	if f == nil || f.Reason != ReasonKeysUnavailable || f.Status != http.StatusServiceUnavailable {
		t.Fatalf("got %v, want 503 keys_unavailable", f)
	}
}

func TestUnknownKIDRefreshIsRateLimited(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Now()
	// The clock skew covers the tokens' iat: real time runs on while the
	// fake clock is only moved by hand.
	o := NewOIDC(OIDCConfig{Name: "t", Issuer: ti.srv.URL, Audiences: []string{"api"}, Algorithms: []string{"RS256"}, ClockSkew: time.Minute, Refresh: time.Hour, Now: func() time.Time { return now }})
	if err := o.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A key rotated in at the provider after the last refresh.
	newKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	k, _ := jwk.Import(newKey.Public())
	_ = k.Set(jwk.KeyIDKey, "rsa2")
	set := *ti.keys.Load()
	set2, _ := set.Clone()
	_ = set2.AddKey(k)
	ti.keys.Store(&set2)
	tok := ti.sign(t, "RS256", newKey, map[string]any{"kid": "rsa2"}, ti.claims())
	before := ti.fetches.Load()
	// The first unknown key id refreshes at once, even right after a load:
	// a key rotated in unannounced is picked up with its first token.
	if _, f := o.Verify(context.Background(), tok); f != nil {
		t.Fatalf("got %v, want the rotated key picked up at once", f)
	}
	if got := ti.fetches.Load() - before; got != 1 {
		t.Fatalf("got %d key fetches, want exactly 1", got)
	}
	// Hostile tokens with unknown key ids: no further fetch for 5 minutes.
	before = ti.fetches.Load()
	bogus := ti.sign(t, "RS256", newKey, map[string]any{"kid": "nope"}, ti.claims())
	for range 20 {
		now = now.Add(time.Second)
		if _, f := o.Verify(context.Background(), bogus); f == nil || f.Reason != ReasonUnknownKID {
			t.Fatalf("got %v, want unknown_kid", f)
		}
	}
	if got := ti.fetches.Load() - before; got != 0 {
		t.Fatalf("got %d key fetches for 20 unknown kids within 5 minutes of the last such fetch, want 0", got)
	}
	// Five minutes on, the next unknown key id may fetch again.
	now = now.Add(unknownKIDRefresh)
	before = ti.fetches.Load()
	if _, f := o.Verify(context.Background(), bogus); f == nil || f.Reason != ReasonUnknownKID {
		t.Fatalf("got %v, want unknown_kid", f)
	}
	if got := ti.fetches.Load() - before; got != 1 {
		t.Fatalf("after 5 minutes: got %d fetches, want 1", got)
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		query   string
		reason  string
	}{
		{"none", nil, "", ReasonMissingCredentials},
		{"basic scheme", []string{"Basic dXNlcjpwYXNz"}, "", ReasonMissingCredentials},
		{"two headers", []string{"Bearer a.b.c", "Bearer d.e.f"}, "", ReasonAmbiguousCredentials},
		{"token in query", nil, "access_token=a.b.c", ReasonTokenInQuery},
		{"token in query and header", []string{"Bearer a.b.c"}, "x=1&access_token=a.b.c", ReasonTokenInQuery},
		{"empty bearer", []string{"Bearer "}, "", ReasonMalformedToken},
		{"two tokens", []string{"Bearer a.b.c, Bearer d.e.f"}, "", ReasonMalformedToken},
		{"ok lower-case scheme", []string{"bearer a.b.c"}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/x?"+tt.query, nil)
			for _, h := range tt.headers {
				r.Header.Add("Authorization", h)
			}
			_, f := BearerToken(r)
			got := ""
			if f != nil {
				got = f.Reason
			}
			if got != tt.reason {
				t.Fatalf("got %q, want %q", got, tt.reason)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	ti := newTestIssuer(f)
	o := ti.verifier(f)
	var signed []string
	for _, tok := range []string{
		ti.sign(f, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, ti.claims()),
		ti.sign(f, "ES256", ti.ecKey, map[string]any{"kid": "ec1"}, ti.claims()),
		ti.sign(f, "PS256", ti.rsaKey, map[string]any{"kid": "rsa1", "typ": "JWT", "x5t": "rsa1"}, ti.claims()),
		rsaSigned(ti.rsaKey, `{"alg":"RS256","Kid":"rsa1"}`, ti.claims()), // not plain: jwx checks it
	} {
		f.Add(tok)
		signed = append(signed, tok[:strings.LastIndexByte(tok, '.')])
	}
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add(strings.Repeat("A", 100) + "." + strings.Repeat("B", 100) + ".")
	a := NewAuthenticator(16384, o)
	f.Fuzz(func(t *testing.T, token string) {
		id, fl := o.Verify(context.Background(), token)
		if (id == nil) == (fl == nil) {
			t.Fatalf("got identity %v and failure %v; want exactly one", id, fl)
		}
		if id != nil {
			// Only the seeds' header and payload were signed by the issuer;
			// any other signed content that verifies is a forgery.
			if !slices.Contains(signed, token[:strings.LastIndexByte(token, '.')]) {
				t.Fatalf("accepted content the issuer never signed: %q", token)
			}
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		if id, fl := a.Authenticate(r, ""); (id == nil) == (fl == nil) {
			t.Fatalf("Authenticate: got identity %v and failure %v", id, fl)
		}
	})
}

// TestVerifySignatureMatchesJWX: the RSA signatures checked with crypto/rsa
// directly are accepted exactly when jwx accepts them, and the rest still
// go to jwx.
func TestVerifySignatureMatchesJWX(t *testing.T) {
	ti := newTestIssuer(t)
	pub := &ti.rsaKey.PublicKey
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	hdr := map[string]any{"kid": "rsa1"}
	signed := func(alg string) string { return ti.sign(t, alg, ti.rsaKey, hdr, ti.claims()) }
	// swapSig puts the signature of b after the header and payload of a.
	swapSig := func(a, b string) string { return a[:strings.LastIndexByte(a, '.')] + b[strings.LastIndexByte(b, '.'):] }
	rs := signed("RS256")
	sig := rs[strings.LastIndexByte(rs, '.')+1:]
	std := strings.NewReplacer("-", "+", "_", "/").Replace(sig)
	for _, tt := range []struct {
		name, token, alg string
		ok               bool
	}{
		{"RS256", rs, "RS256", true},
		{"RS384", signed("RS384"), "RS384", true},
		{"RS512", signed("RS512"), "RS512", true},
		{"PS256", signed("PS256"), "PS256", true},
		{"PS384", signed("PS384"), "PS384", true},
		{"PS512", signed("PS512"), "PS512", true},
		{"PS256 signature under RS256", swapSig(rs, signed("PS256")), "RS256", false},
		{"RS256 signature under PS256", swapSig(signed("PS256"), rs), "PS256", false},
		{"RS256 signature checked as RS384", rs, "RS384", false},
		{"another key", ti.sign(t, "RS256", other, hdr, ti.claims()), "RS256", false},
		{"payload changed", swapSig(ti.sign(t, "RS256", ti.rsaKey, hdr, map[string]any{"sub": "mallory"}), rs), "RS256", false},
		{"signature truncated", rs[:len(rs)-4], "RS256", false},
		{"signature extended", rs + "AAAA", "RS256", false},
		{"signature padded (left to jwx)", rs + "==", "RS256", true}, // 256 bytes: 342 characters, and 2 of padding
		{"signature in the standard alphabet (left to jwx)", rs[:len(rs)-len(sig)] + std, "RS256", true},
		{"header not plain (left to jwx)", b64(`{"alg":"RS256","ALG":"RS256"}`) + rs[strings.IndexByte(rs, '.'):], "RS256", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hraw, err := decodePart(tt.token[:strings.IndexByte(tt.token, '.')])
			if err != nil {
				t.Fatal(err)
			}
			h, err := parseHeader(hraw)
			if err != nil {
				t.Fatal(err)
			}
			h.Alg = tt.alg
			got := verifySignature(tt.token, &h, pub)
			a, _ := jwa.LookupSignatureAlgorithm(tt.alg)
			_, want := jws.Verify([]byte(tt.token), jws.WithKey(a, pub), jws.WithCompact())
			if (got == nil) != (want == nil) {
				t.Fatalf("got error %v, jwx %v", got, want)
			}
			if (got == nil) != tt.ok {
				t.Fatalf("got error %v, want accepted %v", got, tt.ok)
			}
		})
	}
}

// TestAlgorithmConfusion: whatever the configured algorithms, a token
// cannot choose how its signature is checked against an RSA key.
func TestAlgorithmConfusion(t *testing.T) {
	ti := newTestIssuer(t)
	o := NewOIDC(OIDCConfig{Name: "t", Issuer: ti.srv.URL, Audiences: []string{"api"}, Algorithms: []string{"RS256", "HS256", "none", "ES256"}, Refresh: time.Hour})
	good := ti.claims()
	pub := &ti.rsaKey.PublicKey
	pubJSON, _ := json.Marshal(pub)
	mac := func(alg string, secret []byte) string {
		h := b64(map[string]any{"alg": alg, "kid": "rsa1"})
		p := b64(good)
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(h + "." + p))
		return h + "." + p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	for _, tt := range []struct{ name, token, reason string }{
		{"HS256 keyed with the RSA modulus", mac("HS256", pub.N.Bytes()), ReasonKeyMismatch},
		{"HS256 keyed with the key's JSON", mac("HS256", pubJSON), ReasonKeyMismatch},
		{"RS256 header, HMAC signature", mac("RS256", pub.N.Bytes()), ReasonBadSignature},
		{"alg none, empty signature", b64(map[string]any{"alg": "none", "kid": "rsa1"}) + "." + b64(good) + ".", ReasonMalformedToken},
		{"alg none with a signature", b64(map[string]any{"alg": "none", "kid": "rsa1"}) + "." + b64(good) + ".AAAA", ReasonAlgNotAllowed},
		{"alg None", b64(map[string]any{"alg": "None", "kid": "rsa1"}) + "." + b64(good) + ".AAAA", ReasonAlgNotAllowed},
		{"alg in another case", rsaSigned(ti.rsaKey, `{"alg":"rs256","kid":"rsa1"}`, good), ReasonAlgNotAllowed},
		{"alg member in another case (matched as encoding/json matches names)", rsaSigned(ti.rsaKey, `{"ALG":"RS256","kid":"rsa1"}`, good), ""},
		{"RS512 not configured", ti.sign(t, "RS512", ti.rsaKey, map[string]any{"kid": "rsa1"}, good), ReasonAlgNotAllowed},
		{"ES256 header on the RSA key", ti.sign(t, "ES256", ti.ecKey, map[string]any{"kid": "rsa1"}, good), ReasonKeyMismatch},
		{"two alg members", b64(`{"alg":"HS256","alg":"RS256","kid":"rsa1"}`) + "." + b64(good) + ".AAAA", ReasonMalformedToken},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, f := o.Verify(context.Background(), tt.token)
			if tt.reason == "" {
				if f != nil {
					t.Fatalf("got %v, want accepted", f)
				}
				return
			}
			if f == nil || f.Reason != tt.reason {
				t.Fatalf("got %v, %v; want refusal %s", id, f, tt.reason)
			}
		})
	}
}

// rsaSigned signs claims under the header given as JSON, with RS256
// whatever the header says.
func rsaSigned(key *rsa.PrivateKey, header string, claims map[string]any) string {
	signing := b64(header) + "." + b64(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}
