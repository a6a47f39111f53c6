package authn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	_ "crypto/sha256" // crypto.SHA256.New in verifyRSA
	_ "crypto/sha512" // crypto.SHA384 and SHA512
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/ztgate/ztgate/internal/identity"
)

// forbiddenHeaders let a token choose its own verification key or add
// processing rules; they are refused outright.
var forbiddenHeaders = [...]string{"jku", "x5u", "jwk", "x5c", "crit", "b64", "zip", "enc"}

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

// rawURL is base64url without padding, refusing non-zero trailing bits:
// every part has one encoding only. (Strict copies the encoding, so it is
// made once.)
var rawURL = base64.RawURLEncoding.Strict()

func decodePart(part string) ([]byte, error) {
	return rawURL.DecodeString(part)
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
	iss, err := readIssuer(raw)
	if err != nil {
		return "", fmt.Errorf("payload: %w", err)
	}
	return iss, nil
}

// parsed is a token split and decoded. Nothing in it is trusted until its
// signature verifies; before that the claims only choose the keys.
type parsed struct {
	header header
	claims map[string]any
}

// parse checks a token's compact form and header against the allowed
// algorithms, and decodes its claims, strictly.
func parse(token string, algorithms []string) (*parsed, *Failure) {
	hp, pp, _, err := splitToken(token)
	if err != nil {
		return nil, fail(ReasonMalformedToken, "the token is not a well-formed JWT", err)
	}
	hraw, err := decodePart(hp)
	if err != nil {
		return nil, fail(ReasonMalformedToken, "the token header is not base64url", err)
	}
	var p parsed
	if p.header, err = parseHeader(hraw); err != nil {
		return nil, fail(ReasonMalformedToken, "the token header is not a JSON object", err)
	}
	h := &p.header
	if h.forbidden != "" {
		return nil, fail(ReasonForbiddenHeader, fmt.Sprintf("the token header member %q is refused", h.forbidden), nil)
	}
	if h.Alg == "" || strings.EqualFold(h.Alg, "none") || !slices.Contains(algorithms, h.Alg) {
		return nil, fail(ReasonAlgNotAllowed, "the token's signature algorithm is not allowed", fmt.Errorf("alg %q", h.Alg))
	}
	if t := strings.ToLower(h.Typ); t != "" && t != "jwt" && t != "at+jwt" && t != "application/at+jwt" {
		return nil, fail(ReasonWrongType, "the token type is not a JWT access token", fmt.Errorf("typ %q", h.Typ))
	}
	praw, err := decodePart(pp)
	if err != nil {
		return nil, fail(ReasonMalformedToken, "the token payload is not base64url", err)
	}
	if p.claims, err = decodeJSONObject(praw); err != nil {
		return nil, fail(ReasonMalformedToken, "the token payload is not a JSON object", err)
	}
	return &p, nil
}

// checkKey refuses a key whose type does not fit the algorithm (algorithm
// confusion) or that is not meant for signatures. Weak keys never get this
// far: the key set refuses them when it loads.
func checkKey(alg string, key *signingKey) *Failure {
	if ka, ok := key.jwk.Algorithm(); ok && ka.String() != "" && ka.String() != alg {
		return fail(ReasonKeyMismatch, "the token's algorithm does not match its key", fmt.Errorf("key alg %s, token alg %s", ka, alg))
	}
	if u, ok := key.jwk.KeyUsage(); ok && u != "" && u != "sig" {
		return fail(ReasonKeyMismatch, "the key is not a signing key", fmt.Errorf("use %q", u))
	}
	ok := false
	switch k := key.pub.(type) {
	case *rsa.PublicKey:
		ok = alg[:2] == "RS" || alg[:2] == "PS"
	case *ecdsa.PublicKey:
		want := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
		ok = want != "" && k.Curve.Params().Name == want
	case ed25519.PublicKey:
		ok = alg == "EdDSA"
	}
	if !ok {
		return fail(ReasonKeyMismatch, "the token's algorithm does not match its key", fmt.Errorf("alg %s with key %T", alg, key.pub))
	}
	return nil
}

// verifySignature checks the token's signature with key under the
// header's alg. An RSA signature of a plain header is checked here with
// crypto/rsa, as jwx checks it, without jwx parsing the token again; any
// other goes to jwx.
func verifySignature(token string, h *header, key any) error {
	alg := h.Alg
	if pub, ok := key.(*rsa.PublicKey); ok && h.plain {
		if hash, pss, ok := rsaAlgorithm(alg); ok {
			dot := strings.LastIndexByte(token, '.')
			// Only the one canonical encoding is decoded here; jwx,
			// which also takes others, checks the rest as before.
			if sig, err := rawURL.DecodeString(token[dot+1:]); err == nil {
				return verifyRSA(pub, hash, pss, token[:dot], sig)
			}
		}
	}
	a, ok := jwa.LookupSignatureAlgorithm(alg)
	if !ok {
		return fmt.Errorf("unknown algorithm %q", alg)
	}
	_, err := jws.Verify([]byte(token), jws.WithKey(a, key), jws.WithCompact())
	return err
}

// rsaAlgorithm returns the hash of an RSA signature algorithm, and whether
// it is RSASSA-PSS (else PKCS #1 v1.5).
func rsaAlgorithm(alg string) (hash crypto.Hash, pss, ok bool) {
	switch alg {
	case "RS256":
		return crypto.SHA256, false, true
	case "RS384":
		return crypto.SHA384, false, true
	case "RS512":
		return crypto.SHA512, false, true
	case "PS256":
		return crypto.SHA256, true, true
	case "PS384":
		return crypto.SHA384, true, true
	case "PS512":
		return crypto.SHA512, true, true
	}
	return 0, false, false
}

// verifyRSA checks sig over signed as jwx does (lestrrat-go/dsig's
// VerifyRSA): PKCS #1 v1.5, or PSS with a salt as long as the hash
// (RFC 7518, section 3.5).
func verifyRSA(pub *rsa.PublicKey, hash crypto.Hash, pss bool, signed string, sig []byte) error {
	h := hash.New()
	io.WriteString(h, signed)
	digest := h.Sum(nil)
	if pss {
		return rsa.VerifyPSS(pub, hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: hash})
	}
	return rsa.VerifyPKCS1v15(pub, hash, digest, sig)
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

// checkTimes checks exp (required), nbf and iat against now, with skew
// either way; it returns exp.
func checkTimes(claims map[string]any, now time.Time, skew time.Duration) (time.Time, *Failure) {
	expV, ok := claims["exp"]
	if !ok {
		return time.Time{}, fail(ReasonMissingExp, "the token has no expiry", nil)
	}
	exp, ok := numericDate(expV)
	if !ok {
		return time.Time{}, fail(ReasonMalformedToken, "exp is not a date", nil)
	}
	if !now.Before(exp.Add(skew)) {
		return time.Time{}, fail(ReasonTokenExpired, "the token has expired", nil)
	}
	if v, ok := claims["nbf"]; ok {
		nbf, ok := numericDate(v)
		if !ok {
			return time.Time{}, fail(ReasonMalformedToken, "nbf is not a date", nil)
		}
		if now.Add(skew).Before(nbf) {
			return time.Time{}, fail(ReasonNotYetValid, "the token is not valid yet", nil)
		}
	}
	if v, ok := claims["iat"]; ok {
		iat, ok := numericDate(v)
		if !ok {
			return time.Time{}, fail(ReasonMalformedToken, "iat is not a date", nil)
		}
		if now.Add(skew).Before(iat) {
			return time.Time{}, fail(ReasonIssuedInFuture, "the token was issued in the future", nil)
		}
	}
	return exp, nil
}

// checkAudience requires one of the token's aud values to be accepted.
func checkAudience(claims map[string]any, accepted []string) *Failure {
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
	if !slices.ContainsFunc(auds, func(a string) bool { return a != "" && slices.Contains(accepted, a) }) {
		return fail(ReasonWrongAudience, "the token is not meant for this API", fmt.Errorf("aud %v", auds))
	}
	return nil
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
		Provider:           provider,
		Issuer:             str("iss"),
		Subject:            str("sub"),
		Tenant:             str("tid"),
		ObjectID:           str("oid"),
		AppID:              firstNonEmpty(str("azp"), str("appid"), str("client_id")),
		Name:               firstNonEmpty(str("name"), str("preferred_username"), str("upn"), str("unique_name"), str("email")),
		Roles:              list("roles"),
		Scopes:             list("scp"),
		Groups:             list("groups"),
		AMR:                list("amr"),
		ACRS:               list("acrs"),
		WIDS:               list("wids"),
		ClientCapabilities: list("xms_cc"),
		Claims:             claims,
		ExpiresAt:          exp,
	}
	if iat, ok := numericDate(claims["iat"]); ok {
		id.IssuedAt = iat
	}
	if _, ok := claims["scp"]; !ok {
		id.Scopes = list("scope")
	}
	id.GroupsUnknown = groupsOverage(claims)
	// An application's own token (client credentials) says so in idtyp
	// when the API asks for it; without it, Entra ID's app tokens have no
	// scp and carry the service principal's object id as sub, and other
	// providers put the client id in sub.
	idtyp := str("idtyp")
	_, delegated := claims["scp"]
	switch {
	case idtyp == "app":
		id.Type = identity.App
	case idtyp != "" || delegated:
		id.Type = identity.User
	case id.ObjectID != "" && id.ObjectID == id.Subject, id.AppID != "" && id.AppID == id.Subject:
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
