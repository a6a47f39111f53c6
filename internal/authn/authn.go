// Package authn verifies who is calling: bearer tokens from OpenID Connect
// providers, checked against their published keys. It turns a request's
// credentials into an identity.Identity or a Failure with a stable reason.
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
	Status      int // 401, or 503 when keys are unavailable
	Reason      string
	Description string
	Err         error
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
)

func fail(reason, desc string, err error) *Failure {
	return &Failure{Status: http.StatusUnauthorized, Reason: reason, Description: desc, Err: err}
}

// Verifier verifies one kind of token.
type Verifier interface {
	// Issuer is the exact iss value the verifier accepts.
	Issuer() string
	Verify(ctx context.Context, token string) (*identity.Identity, *Failure)
}

// Authenticator picks the verifier for a request's credentials.
type Authenticator struct {
	byIssuer map[string]Verifier
	maxToken int
}

// NewAuthenticator returns an authenticator over the given verifiers.
// maxToken bounds the size of any bearer token before it is decoded.
func NewAuthenticator(maxToken int, vs ...Verifier) *Authenticator {
	a := &Authenticator{byIssuer: map[string]Verifier{}, maxToken: maxToken}
	for _, v := range vs {
		a.byIssuer[v.Issuer()] = v
	}
	return a
}

// Authenticate verifies the request's bearer token. It never lets a request
// through on error: every path without a verified token returns a Failure.
func (a *Authenticator) Authenticate(r *http.Request) (*identity.Identity, *Failure) {
	token, f := BearerToken(r)
	if f != nil {
		return nil, f
	}
	if len(token) > a.maxToken {
		return nil, fail(ReasonTokenTooLarge, fmt.Sprintf("token larger than %d bytes", a.maxToken), nil)
	}
	iss, err := peekIssuer(token)
	if err != nil {
		return nil, fail(ReasonMalformedToken, "the token is not a well-formed JWT", err)
	}
	v, ok := a.byIssuer[iss]
	if !ok {
		return nil, fail(ReasonWrongIssuer, "the token's issuer is not trusted", fmt.Errorf("issuer %q", iss))
	}
	return v.Verify(r.Context(), token)
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
