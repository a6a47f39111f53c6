package authn

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/ztgate/ztgate/internal/identity"
)

// header is the part of a JOSE header the verifier reads. Unknown members
// are collected to refuse those that change how a token is verified.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// forbiddenHeaders let a token choose its own verification key or add
// processing rules; they are refused outright.
var forbiddenHeaders = []string{"jku", "x5u", "jwk", "x5c", "crit", "b64", "zip", "enc"}

// splitToken checks the compact serialisation: three base64url parts.
func splitToken(token string) (h, p, s string, err error) {
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s, ".") {
		return "", "", "", errors.New("want three dot-separated parts (JWE and JSON serialisation are not accepted)")
	}
	if h == "" || p == "" || s == "" {
		return "", "", "", errors.New("empty token part")
	}
	return h, p, s, nil
}

func decodePart(part string) ([]byte, error) {
	return base64.RawURLEncoding.Strict().DecodeString(part)
}

// decodeJSONObject decodes a JWT JSON object strictly: a single object, no
// trailing data, no duplicate member names.
func decodeJSONObject(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	m := map[string]any{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := kt.(string)
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("duplicate member %q", k)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		m[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("trailing data after the JSON object")
	}
	return m, nil
}

// peekIssuer reads iss from an unverified token, only to choose the verifier.
func peekIssuer(token string) (string, error) {
	_, p, _, err := splitToken(token)
	if err != nil {
		return "", err
	}
	raw, err := decodePart(p)
	if err != nil {
		return "", fmt.Errorf("payload: %w", err)
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", fmt.Errorf("payload: %w", err)
	}
	return c.Iss, nil
}

// checkKey refuses a key whose type does not fit the algorithm (algorithm
// confusion) or that is too weak.
func checkKey(alg string, key jwk.Key) (any, *Failure) {
	var raw any
	if err := jwk.Export(key, &raw); err != nil {
		return nil, fail(ReasonKeyMismatch, "the signing key cannot be used", err)
	}
	if ka, ok := key.Algorithm(); ok && ka.String() != "" && ka.String() != alg {
		return nil, fail(ReasonKeyMismatch, "the token's algorithm does not match its key", fmt.Errorf("key alg %s, token alg %s", ka, alg))
	}
	if u, ok := key.KeyUsage(); ok && u != "" && u != "sig" {
		return nil, fail(ReasonKeyMismatch, "the key is not a signing key", fmt.Errorf("use %q", u))
	}
	mismatch := fail(ReasonKeyMismatch, "the token's algorithm does not match its key", fmt.Errorf("alg %s with key %T", alg, raw))
	switch k := raw.(type) {
	case *rsa.PublicKey:
		if alg[:2] != "RS" && alg[:2] != "PS" {
			return nil, mismatch
		}
		if k.N.BitLen() < 2048 {
			return nil, fail(ReasonWeakKey, "the signing key is too weak", fmt.Errorf("RSA %d bits", k.N.BitLen()))
		}
	case *ecdsa.PublicKey:
		want := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
		if want == "" || k.Curve.Params().Name != want {
			return nil, mismatch
		}
	case ed25519.PublicKey:
		if alg != "EdDSA" {
			return nil, mismatch
		}
	default:
		return nil, mismatch
	}
	return raw, nil
}

// verifySignature checks the token's signature with key under alg.
func verifySignature(token, alg string, key any) ([]byte, error) {
	a, ok := jwa.LookupSignatureAlgorithm(alg)
	if !ok {
		return nil, fmt.Errorf("unknown algorithm %q", alg)
	}
	return jws.Verify([]byte(token), jws.WithKey(a, key), jws.WithCompact())
}

// claimsCheck are the registered-claim rules of one provider.
type claimsCheck struct {
	issuer    string
	audiences []string
	skew      time.Duration
}

func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

func (c *claimsCheck) check(claims map[string]any, now time.Time) (time.Time, *Failure) {
	if iss, _ := claims["iss"].(string); iss != c.issuer {
		return time.Time{}, fail(ReasonWrongIssuer, "the token's issuer is not trusted", fmt.Errorf("iss %q", iss))
	}
	expV, ok := claims["exp"]
	if !ok {
		return time.Time{}, fail(ReasonMissingExp, "the token has no expiry", nil)
	}
	exp, ok := numericDate(expV)
	if !ok {
		return time.Time{}, fail(ReasonMalformedToken, "exp is not a date", nil)
	}
	if !now.Before(exp.Add(c.skew)) {
		return time.Time{}, fail(ReasonTokenExpired, "the token has expired", nil)
	}
	if v, ok := claims["nbf"]; ok {
		nbf, ok := numericDate(v)
		if !ok {
			return time.Time{}, fail(ReasonMalformedToken, "nbf is not a date", nil)
		}
		if now.Add(c.skew).Before(nbf) {
			return time.Time{}, fail(ReasonNotYetValid, "the token is not valid yet", nil)
		}
	}
	if v, ok := claims["iat"]; ok {
		iat, ok := numericDate(v)
		if !ok {
			return time.Time{}, fail(ReasonMalformedToken, "iat is not a date", nil)
		}
		if now.Add(c.skew).Before(iat) {
			return time.Time{}, fail(ReasonIssuedInFuture, "the token was issued in the future", nil)
		}
	}
	var auds []string
	switch a := claims["aud"].(type) {
	case string:
		auds = []string{a}
	case []any:
		for _, x := range a {
			if s, ok := x.(string); ok {
				auds = append(auds, s)
			}
		}
	}
	if !slices.ContainsFunc(auds, func(a string) bool { return a != "" && slices.Contains(c.audiences, a) }) {
		return time.Time{}, fail(ReasonWrongAudience, "the token is not meant for this API", fmt.Errorf("aud %v", auds))
	}
	if sub, _ := claims["sub"].(string); sub == "" {
		return time.Time{}, fail(ReasonMissingSubject, "the token has no subject", nil)
	}
	return exp, nil
}

// identityFromClaims maps verified claims to an identity.
func identityFromClaims(provider string, claims map[string]any, exp time.Time) *identity.Identity {
	str := func(k string) string { s, _ := claims[k].(string); return s }
	list := func(k string) []string {
		switch v := claims[k].(type) {
		case []any:
			out := make([]string, 0, len(v))
			for _, x := range v {
				if s, ok := x.(string); ok {
					out = append(out, s)
				}
			}
			return out
		case string:
			return strings.Fields(v)
		}
		return nil
	}
	id := &identity.Identity{
		Provider:  provider,
		Issuer:    str("iss"),
		Subject:   str("sub"),
		Tenant:    str("tid"),
		ObjectID:  str("oid"),
		Name:      firstNonEmpty(str("name"), str("preferred_username"), str("email")),
		Roles:     list("roles"),
		Groups:    list("groups"),
		AMR:       list("amr"),
		Claims:    claims,
		ExpiresAt: exp,
	}
	id.AppID = firstNonEmpty(str("azp"), str("appid"), str("client_id"))
	id.Scopes = list("scp")
	if id.Scopes == nil {
		id.Scopes = list("scope")
	}
	switch {
	case str("idtyp") == "app":
		id.Type = identity.App
	case str("idtyp") == "user":
		id.Type = identity.User
	case claims["scp"] != nil:
		id.Type = identity.User
	case id.AppID != "" && id.AppID == id.Subject:
		id.Type = identity.App
	default:
		id.Type = identity.User
	}
	return id
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
