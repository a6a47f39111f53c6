package inject

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/ztgate/ztgate/internal/identity"
)

// Signer signs identity assertions: short-lived ES256 JWTs that tell an
// upstream who the gateway verified the caller to be, for which route of
// which service, in which request.
//
// Each assertion is signed for its request (jti is the request id) rather
// than cached per caller: the request id ties the assertion to exactly one
// request and its audit event, and lets an upstream refuse a replay by jti.
// Signing costs tens of microseconds (BenchmarkAssertion), small beside an
// upstream round trip.
type Signer struct {
	key    *Key
	issuer string
	ttl    time.Duration
	hdr    jws.Headers
}

// NewSigner returns a signer with key for issuer; assertions live ttl.
func NewSigner(key *Key, issuer string, ttl time.Duration) (*Signer, error) {
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, key.kid); err != nil {
		return nil, err
	}
	if err := hdr.Set(jws.TypeKey, "JWT"); err != nil {
		return nil, err
	}
	return &Signer{key: key, issuer: issuer, ttl: ttl, hdr: hdr}, nil
}

// KeyID returns the kid of the signing key.
func (s *Signer) KeyID() string { return s.key.kid }

// Claims are an assertion's claims. The names follow Microsoft Entra ID's
// access tokens where there is one (oid, tid, roles, scp, azp, idtyp), so
// upstreams written for Entra tokens read them as they are.
type Claims struct {
	Issuer    string   `json:"iss"`
	Audience  string   `json:"aud"`
	Subject   string   `json:"sub"`
	IssuedAt  int64    `json:"iat"`
	Expires   int64    `json:"exp"`
	ID        string   `json:"jti"`             // the gateway's request id (X-Request-Id)
	IDP       string   `json:"idp,omitempty"`   // issuer of the caller's own token
	ObjectID  string   `json:"oid,omitempty"`   // the caller's object id
	Tenant    string   `json:"tid,omitempty"`   // the caller's tenant
	App       string   `json:"azp,omitempty"`   // the client application
	Type      string   `json:"idtyp,omitempty"` // user | app | workload | api_key
	Roles     []string `json:"roles,omitempty"`
	Scopes    string   `json:"scp,omitempty"` // space-separated, as in Entra ID
	Route     string   `json:"route"`         // the route that allowed the request
	AuthLevel []string `json:"amr,omitempty"` // how the caller authenticated
}

// Request is what one assertion is about.
type Request struct {
	Identity  *identity.Identity
	Audience  string
	Route     string
	RequestID string
	Now       time.Time
}

// Claims returns the claims of the assertion for r.
func (s *Signer) Claims(r Request) Claims {
	id := r.Identity
	exp := r.Now.Add(s.ttl)
	if !id.ExpiresAt.IsZero() && id.ExpiresAt.Before(exp) {
		// Never vouch for a caller past the life of its own credential.
		exp = id.ExpiresAt
	}
	c := Claims{
		Issuer:    s.issuer,
		Audience:  r.Audience,
		Subject:   id.Subject,
		IssuedAt:  r.Now.Unix(),
		Expires:   exp.Unix(),
		ID:        r.RequestID,
		IDP:       id.Issuer,
		ObjectID:  id.ObjectID,
		Tenant:    id.Tenant,
		App:       id.AppID,
		Type:      string(id.Type),
		Roles:     id.Roles,
		Route:     r.Route,
		AuthLevel: id.AMR,
	}
	if len(id.Scopes) > 0 {
		c.Scopes = strings.Join(id.Scopes, " ")
	}
	return c
}

// Sign returns the compact JWS of the assertion for r.
func (s *Signer) Sign(r Request) (string, error) {
	payload, err := json.Marshal(s.Claims(r))
	if err != nil {
		return "", fmt.Errorf("assertion claims: %w", err)
	}
	out, err := jws.Sign(payload, jws.WithKey(jwa.ES256(), s.key.priv, jws.WithProtectedHeaders(s.hdr)))
	if err != nil {
		return "", fmt.Errorf("sign assertion: %w", err)
	}
	return string(out), nil
}
