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
	Roles    []string
	Scopes   []string
	Groups   []string
	AMR      []string
	ACRS     []string // authentication context class references (acrs claim)
	WIDS     []string // Entra ID directory role template ids (wids claim)
	// ClientCapabilities are what the client declared it can handle
	// (xms_cc claim; cp1: claims challenges).
	ClientCapabilities []string
	// GroupsUnknown is set when the token names the caller's groups only
	// by reference (group overage: too many to list) and they have not
	// been resolved. Groups is then empty, and policy that tests groups
	// denies with groups_unknown rather than guessing.
	GroupsUnknown bool
	// Claims are every claim of the token, for policy expressions.
	Claims    map[string]any
	ExpiresAt time.Time
	// ClientCert is the request's verified client certificate and the
	// workload it names: the caller itself when Type is Workload, else the
	// workload whose connection carried the bearer token. Nil without one.
	ClientCert *ClientCert
}

// ClientCert is a verified client certificate and the workload it names.
type ClientCert struct {
	// ID is the workload's identity: a SPIFFE ID (spiffe://td/path),
	// dns:NAME from a DNS SAN, or cn:NAME from the subject common name.
	ID          string
	Source      string // spiffe | dns | subject
	TrustDomain string // SPIFFE only
	Path        string // SPIFFE only
	Serial      string // the certificate's serial number, hex
	Issuer      string // the issuing CA's subject
	Fingerprint string // SHA-256 of the certificate, hex
	NotAfter    time.Time
}

// Key identifies the caller across requests (for limits and audit).
func (id *Identity) Key() string {
	if id.Type == Workload {
		return id.Subject // a workload ID names its trust domain or its source
	}
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
