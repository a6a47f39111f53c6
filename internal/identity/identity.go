// Package identity defines who a verified caller is: the facts that
// authentication establishes and policy reads.
package identity

import (
	"context"
	"slices"
	"time"
)

// Type is the kind of caller.
type Type string

// The kinds of caller.
const (
	User     Type = "user"     // a person, with a delegated token
	App      Type = "app"      // an application with its own token (client credentials)
	Workload Type = "workload" // a workload proven by its mTLS certificate
	APIKey   Type = "api_key"  // a partner with a ztgate API key
)

// Identity is a verified caller. It never holds the raw credential.
type Identity struct {
	Type     Type
	Provider string // configured provider name
	Issuer   string
	Subject  string
	Tenant   string
	ObjectID string
	AppID    string // client application (azp, appid or client_id)
	Name     string
	IssuedAt time.Time // the token's iat; zero when it has none
	Roles    []string
	Scopes   []string
	Groups   []string
	AMR      []string
	ACRS     []string // authentication context class references (acrs claim)
	WIDS     []string // Entra ID directory role template ids (wids claim)
	// ClientCapabilities are what the client declared it can handle
	// (xms_cc claim; cp1: claims challenges).
	ClientCapabilities []string
	// Claims are every claim of the token, for policy expressions.
	Claims    map[string]any
	ExpiresAt time.Time
}

// Key identifies the caller across requests (for limits and audit).
func (id *Identity) Key() string {
	if id.Tenant != "" && id.ObjectID != "" {
		return id.Tenant + "/" + id.ObjectID
	}
	return id.Issuer + "|" + id.Subject
}

// HasMFA reports whether the caller authenticated with more than one factor.
func (id *Identity) HasMFA() bool {
	return slices.Contains(id.AMR, "mfa")
}

// ClientCapable reports whether the client declared a capability in the
// xms_cc claim (cp1: it can handle claims challenges).
func (id *Identity) ClientCapable(c string) bool {
	return slices.Contains(id.ClientCapabilities, c)
}

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity in ctx, if any.
func FromContext(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(*Identity)
	return id, ok && id != nil
}
