package authn

import (
	"context"
	"log/slog"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
	"github.com/ztgate/ztgate/internal/msgraph"
)

// Group overage: when a user is a member of more groups than a token can
// list (200 in a JWT), Microsoft Entra ID leaves the groups claim out and
// names the groups by reference instead:
//
//	"_claim_names":   {"groups": "src1"},
//	"_claim_sources": {"src1": {"endpoint": "https://graph.windows.net/{tid}/users/{oid}/getMemberObjects"}}
//
// or, in implicit-flow tokens, "hasgroups": true. Such an identity's groups
// are unknown (identity.GroupsUnknown) until a GroupSource resolves them.
// The endpoint in _claim_sources is never called: it is Azure AD Graph,
// retired, and a URL a token chooses is not one the gateway fetches with
// its credentials. The groups are asked of the configured Microsoft Graph
// for the token's verified tid and oid instead.

// groupsOverage reports whether claims name the caller's groups only by
// reference.
func groupsOverage(claims map[string]any) bool {
	if _, listed := claims["groups"]; listed {
		return false
	}
	if names, ok := claims["_claim_names"].(map[string]any); ok {
		if _, ok := names["groups"]; ok {
			return true
		}
	}
	has, _ := claims["hasgroups"].(bool)
	return has
}

// GroupSource looks up the groups of a caller whose token names them only
// by reference: object oid of tenant tid, a service principal when app is
// set. The slice returned is shared and must not be changed.
type GroupSource interface {
	Groups(ctx context.Context, tid, oid string, app bool) ([]string, error)
}

var _ GroupSource = (*msgraph.Resolver)(nil)

// groupResolver is a verifier that can resolve the groups of the
// identities it verified.
type groupResolver interface {
	// resolveGroups returns id with its groups resolved, or id unchanged
	// when they cannot be; ok is false when id is not the verifier's.
	resolveGroups(ctx context.Context, id *identity.Identity) (out *identity.Identity, ok bool)
}

var _ groupResolver = (*OIDC)(nil)

func (o *OIDC) resolveGroups(ctx context.Context, id *identity.Identity) (*identity.Identity, bool) {
	if id.Provider != o.cfg.Name {
		return nil, false
	}
	if o.cfg.Groups == nil {
		return id, true
	}
	groups, err := o.cfg.Groups.Groups(ctx, id.Tenant, id.ObjectID, id.Type == identity.App)
	if err != nil {
		// The source has logged and counted it; the groups stay unknown.
		return id, true
	}
	// The identity may be shared (the token cache holds it): a copy.
	c := *id
	c.Groups, c.GroupsUnknown = groups, false
	return &c, true
}

// ResolveGroups returns id with the groups its token named only by
// reference (group overage), looked up through its provider's
// group_overage. Without one, or when the lookup fails, it returns id: its
// groups stay unknown, and rules on groups deny it (groups_unknown). id
// itself is never changed. Call it only where the groups are needed: it
// may wait for Microsoft Graph (bounded by group_overage.timeout).
func (a *Authenticator) ResolveGroups(ctx context.Context, id *identity.Identity) *identity.Identity {
	if a == nil || id == nil || !id.GroupsUnknown {
		return id
	}
	for _, v := range a.verifiers {
		if r, ok := v.(groupResolver); ok {
			if out, ok := r.resolveGroups(ctx, id); ok {
				return out
			}
		}
	}
	return id
}

// Deps are what a provider's verifier is built with besides its
// configuration.
type Deps struct {
	Logger *slog.Logger
	// GroupMetrics counts group overage lookups; nil: not counted.
	GroupMetrics *msgraph.Metrics
}

// groupSource builds the Microsoft Graph lookup of an Entra ID provider
// with group_overage, or returns nil.
func groupSource(p config.Provider, d Deps) GroupSource {
	g := p.GroupOverage
	if g == nil || p.Type != "entra" {
		return nil
	}
	rc := msgraph.Config{
		Provider: p.Name, AuthorityHost: p.AuthorityHost,
		ClientID: g.ClientID, ClientSecret: g.ClientSecret,
		GraphURL: g.GraphURL, Method: msgraph.Method(g.Method), SecurityEnabledOnly: g.SecurityEnabledOnly,
		TTL: g.TTL.D(), FailureTTL: g.FailureTTL.D(), CacheSize: g.CacheSize, Timeout: g.Timeout.D(),
		Logger: d.Logger, Metrics: d.GroupMetrics,
	}
	if g.AssignedToAppOnly {
		rc.AssignedToApp = p.ClientID
	}
	return msgraph.New(rc)
}
