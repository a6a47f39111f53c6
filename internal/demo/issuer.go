package demo

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Issuer is a development token issuer FOR THE DEMO ONLY: it signs any
// token anyone asks for. It publishes OpenID Connect discovery and a JWKS
// so the gateway verifies its tokens exactly as it would a real provider's.
type Issuer struct {
	URL      string // issuer URL, set once listening
	Audience string
	key      *rsa.PrivateKey
	kid      string
}

// NewIssuer generates a fresh signing key.
func NewIssuer(audience string) (*Issuer, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &Issuer{Audience: audience, key: k, kid: fmt.Sprintf("demo-%d", time.Now().Unix())}, nil
}

// TokenRequest is what a demo token says about its bearer.
type TokenRequest struct {
	Subject string
	Name    string
	Roles   []string
	Scopes  []string
	AMR     []string
	TTL     time.Duration
	Extra   map[string]any // further claims
}

// Token signs a token for r.
func (is *Issuer) Token(r TokenRequest) (string, error) {
	now := time.Now()
	if r.TTL == 0 {
		r.TTL = 8 * time.Hour
	}
	claims := map[string]any{
		"iss": is.URL, "aud": is.Audience, "sub": r.Subject,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(r.TTL).Unix(),
		"tid": "demo-tenant", "oid": "oid-" + r.Subject, "azp": "demo-client",
		"name": r.Name, "idtyp": "user",
	}
	if len(r.Roles) > 0 {
		claims["roles"] = r.Roles
	}
	if len(r.Scopes) > 0 {
		claims["scp"] = strings.Join(r.Scopes, " ")
	}
	if len(r.AMR) > 0 {
		claims["amr"] = r.AMR
	}
	for k, v := range r.Extra {
		claims[k] = v
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, is.kid)
	_ = hdr.Set(jws.TypeKey, "JWT")
	signed, err := jws.Sign(payload, jws.WithKey(jwa.RS256(), is.key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", err
	}
	return string(signed), nil
}

// Handler serves discovery, the JWKS and a token endpoint.
func (is *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                is.URL,
			"jwks_uri":                              is.URL + "/jwks",
			"token_endpoint":                        is.URL + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"x-ztgate-note":                         "DEMO ONLY: this issuer signs any token it is asked for",
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		pub, err := jwk.Import(is.key.Public())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_ = pub.Set(jwk.KeyIDKey, is.kid)
		_ = pub.Set(jwk.AlgorithmKey, jwa.RS256())
		_ = pub.Set(jwk.KeyUsageKey, "sig")
		set := jwk.NewSet()
		_ = set.AddKey(pub)
		writeJSON(w, set)
	})
	// GET /token?sub=alice&roles=Orders.Read,Orders.Write&mfa=1
	mux.HandleFunc("GET /token", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		tr := TokenRequest{Subject: q.Get("sub"), Name: q.Get("sub")}
		if tr.Subject == "" {
			tr.Subject, tr.Name = "demo-user", "demo-user"
		}
		if v := q.Get("roles"); v != "" {
			tr.Roles = strings.Split(v, ",")
		}
		if v := q.Get("scopes"); v != "" {
			tr.Scopes = strings.Split(v, ",")
		}
		tr.AMR = []string{"pwd"}
		if q.Get("mfa") != "" {
			tr.AMR = append(tr.AMR, "mfa")
		}
		tok, err := is.Token(tr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 8 * 3600, "note": "DEMO ONLY"})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
