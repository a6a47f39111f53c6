// Package authn verifies who is calling: bearer tokens from OpenID Connect
// providers and Microsoft Entra ID, checked against their published keys,
// and client certificates naming workloads (mTLS, SPIFFE IDs). It turns a
// request's credentials into an identity.Identity or a Failure with a
// stable reason.
package authn

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/ztgate/ztgate/internal/identity"
)

// Failure is a refused authentication. Reason is a stable machine-readable
// code; Description is safe to show the client; Err is for the log only.
type Failure struct {
	Status      int // 401, or 503 when keys (or a current CRL) are unavailable
	Reason      string
	Description string
	Err         error
	// Identity is the refused caller when its credential was genuine but
	// is not accepted (a revoked or expired certificate of a trusted CA, a
	// workload of another trust domain), for the audit event. It never
	// admits a request.
	Identity *identity.Identity
}

func (f *Failure) Error() string {
	if f.Err != nil {
		return fmt.Sprintf("%s: %s: %v", f.Reason, f.Description, f.Err)
	}
	return f.Reason + ": " + f.Description
}

// Stable reason codes.
const (
	ReasonMissingCredentials   = "missing_credentials"
	ReasonAmbiguousCredentials = "ambiguous_credentials"
	ReasonTokenInQuery         = "token_in_query"
	ReasonMalformedToken       = "malformed_token"
	ReasonTokenTooLarge        = "token_too_large"
	ReasonAlgNotAllowed        = "alg_not_allowed"
	ReasonForbiddenHeader      = "forbidden_token_header"
	ReasonWrongType            = "wrong_token_type"
	ReasonUnknownKID           = "unknown_kid"
	ReasonKeyMismatch          = "key_mismatch"
	ReasonWeakKey              = "weak_key"
	ReasonBadSignature         = "bad_signature"
	ReasonWrongIssuer          = "wrong_issuer"
	ReasonWrongAudience        = "wrong_audience"
	ReasonTokenExpired         = "token_expired"
	ReasonMissingExp           = "missing_exp"
	ReasonNotYetValid          = "token_not_yet_valid"
	ReasonIssuedInFuture       = "iat_in_future"
	ReasonMissingSubject       = "missing_sub"
	ReasonKeysUnavailable      = "keys_unavailable"
	// Entra ID.
	ReasonUnsupportedVersion = "unsupported_token_version"
	ReasonMalformedTID       = "malformed_tid"
	ReasonTIDMismatch        = "tid_mismatch"
	ReasonTenantNotAllowed   = "tenant_not_allowed"
	ReasonKeyIssuerMismatch  = "key_issuer_mismatch"
)

func fail(reason, desc string, err error) *Failure {
	return &Failure{Status: http.StatusUnauthorized, Reason: reason, Description: desc, Err: err}
}

// Verifier verifies the tokens of one provider.
type Verifier interface {
	// Match reports how well the verifier fits tokens of issuer iss.
	Match(iss string) Match
	Verify(ctx context.Context, token string) (*identity.Identity, *Failure)
}

// Match is how well a verifier fits a token's issuer. A token goes to the
// verifier that fits it best; among equals, to the first configured.
type Match int

// The degrees of fit, worst first.
const (
	NoMatch Match = iota
	// MatchOther: an issuer the verifier knows only to refuse, with a
	// precise reason (another Entra ID tenant on a single-tenant provider).
	MatchOther
	// MatchTemplate: one of the many issuers a multi-tenant provider
	// accepts.
	MatchTemplate
	// MatchExact: the verifier's own issuer.
	MatchExact
)

// cachingVerifier remembers the tokens it verified by their SHA-256, so the
// authenticator hashes a token once and answers a repeated one before
// decoding it.
type cachingVerifier interface {
	caches() bool // false when the cache is turned off
	cached(k [32]byte) (*identity.Identity, bool)
	verifyHashed(ctx context.Context, token string, k [32]byte) (*identity.Identity, *Failure)
}

// Authenticator picks the verifier for a request's credentials.
type Authenticator struct {
	verifiers []Verifier
	caching   []cachingVerifier
	maxToken  int
	mtls      *MTLS // nil: client certificates name no one
}

// NewAuthenticator returns an authenticator over the given verifiers.
// maxToken bounds the size of any bearer token before it is decoded.
func NewAuthenticator(maxToken int, vs ...Verifier) *Authenticator {
	a := &Authenticator{verifiers: vs, maxToken: maxToken}
	for _, v := range vs {
		if c, ok := v.(cachingVerifier); ok && c.caches() {
			a.caching = append(a.caching, c)
		}
	}
	return a
}

// WithMTLS makes client certificates verified by m identify workloads. It
// is part of construction: call it before the authenticator is used.
func (a *Authenticator) WithMTLS(m *MTLS) *Authenticator {
	a.mtls = m
	return a
}

// MTLS returns the client certificate verifier, nil without one.
func (a *Authenticator) MTLS() *MTLS { return a.mtls }

// Authenticate verifies the request's credentials. It never lets a request
// through on error: every path without a verified credential returns a
// Failure.
//
// With mTLS, a client certificate, when presented, must verify, whatever
// else the request carries. A bearer token, when present, is the caller;
// the verified certificate's workload rides along in the identity's
// ClientCert. Without a token, the certificate's workload is the caller.
func (a *Authenticator) Authenticate(r *http.Request) (*identity.Identity, *Failure) {
	var workload *identity.Identity
	if a.mtls != nil && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		id, f := a.mtls.Verify(r.TLS.PeerCertificates)
		if f != nil {
			return nil, f
		}
		workload = id
	}
	token, f := BearerToken(r)
	if f != nil {
		if a.mtls == nil || f.Reason != ReasonMissingCredentials || len(r.Header.Values("Authorization")) > 0 {
			return nil, f
		}
		switch {
		case workload != nil:
			return workload, nil
		case len(a.verifiers) == 0:
			return nil, certFail(ReasonCertMissing, "no credentials: present a client certificate", nil)
		}
		return nil, fail(ReasonMissingCredentials, "no credentials: present a client certificate or send an Authorization: Bearer token", nil)
	}
	id, f := a.AuthenticateToken(r.Context(), token)
	if f != nil || workload == nil {
		return id, f
	}
	both := *id // the verified identity may be shared by the token cache
	both.ClientCert = workload.ClientCert
	return &both, nil
}

// AuthenticateToken verifies a bearer token already taken from a request.
func (a *Authenticator) AuthenticateToken(ctx context.Context, token string) (*identity.Identity, *Failure) {
	if len(token) > a.maxToken {
		return nil, fail(ReasonTokenTooLarge, fmt.Sprintf("token larger than %d bytes", a.maxToken), nil)
	}
	var k [32]byte
	if len(a.caching) > 0 {
		k = tokenKey(token)
		for _, c := range a.caching {
			if id, ok := c.cached(k); ok {
				return id, nil
			}
		}
	}
	iss, err := peekIssuer(token)
	if err != nil {
		return nil, fail(ReasonMalformedToken, "the token is not a well-formed JWT", err)
	}
	var best Verifier
	bestMatch := NoMatch
	for _, v := range a.verifiers {
		if m := v.Match(iss); m > bestMatch {
			best, bestMatch = v, m
		}
	}
	if best == nil {
		return nil, fail(ReasonWrongIssuer, "the token's issuer is not trusted", fmt.Errorf("issuer %q", iss))
	}
	if c, ok := best.(cachingVerifier); ok && c.caches() {
		return c.verifyHashed(ctx, token, k)
	}
	return best.Verify(ctx, token)
}

// BearerToken extracts the bearer token from the Authorization header. A
// request with several Authorization headers, another scheme, or a token in
// the query string is refused.
func BearerToken(r *http.Request) (string, *Failure) {
	if q := r.URL.RawQuery; q != "" && (strings.Contains(q, "access_token=") || strings.Contains(q, "access_token%3D")) {
		if r.URL.Query().Has("access_token") {
			return "", fail(ReasonTokenInQuery, "tokens in the query string are refused; send an Authorization: Bearer header", nil)
		}
	}
	vals := r.Header.Values("Authorization")
	switch {
	case len(vals) == 0:
		return "", fail(ReasonMissingCredentials, "no credentials: send an Authorization: Bearer token", nil)
	case len(vals) > 1:
		return "", fail(ReasonAmbiguousCredentials, "more than one Authorization header", nil)
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fail(ReasonMissingCredentials, "the Authorization header must use the Bearer scheme", nil)
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || strings.ContainsAny(token, " \t,") {
		return "", fail(ReasonMalformedToken, "malformed bearer token", nil)
	}
	return token, nil
}
