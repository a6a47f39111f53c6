// Package policy decides whether an authenticated caller may make a request
// on a route. Rules are compiled once from configuration; evaluation is pure
// and records the reason of every criterion. Deny by default: a route with no
// rule denies everyone.
package policy

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
)

// Input is what a decision is made on.
type Input struct {
	Identity *identity.Identity
	IP       netip.Addr
}

// Decision is the outcome of evaluating a route's policy.
type Decision struct {
	Allow bool
	// WouldDeny is set in report-only mode when the rule denied but the
	// request was let through.
	WouldDeny bool
	// Reasons are stable codes, one per evaluated criterion, in order
	// (role_ok, mfa_missing, ...). The first failing one is the deny reason.
	Reasons []string
	Route   string // service/route
	Version string // policy version (hash of the configuration)
}

// DenyReason returns the reason to give the client for a deny.
func (d *Decision) DenyReason() string {
	for _, r := range d.Reasons {
		if !isOK(r) {
			return r
		}
	}
	return ReasonDenied
}

// Stable reason codes that are not per-criterion.
const (
	ReasonNoRule = "no_allow_rule" // default deny: the route has no allow rule
	ReasonDenied = "policy_denied"
)

func isOK(r string) bool { return len(r) > 3 && r[len(r)-3:] == "_ok" }

// Mode is how a route's decision is applied.
type Mode int

// Modes.
const (
	Enforce Mode = iota
	ReportOnly
)

// Policy is the compiled policy of one route.
type Policy struct {
	route   string
	version string
	mode    Mode
	root    criterion // nil: no rule, deny
}

// Compile builds the policy of a route from its allow rule (nil denies all).
func Compile(route, version string, rule *config.Rule, mode Mode) (*Policy, error) {
	p := &Policy{route: route, version: version, mode: mode}
	if rule != nil {
		c, err := compileRule(rule)
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", route, err)
		}
		p.root = c
	}
	return p, nil
}

// Evaluate decides on in. It never fails open: a missing identity or claim
// is a deny with its reason.
func (p *Policy) Evaluate(in *Input) Decision {
	d := Decision{Route: p.route, Version: p.version, Reasons: make([]string, 0, 4)}
	switch {
	case p.root == nil:
		d.Reasons = append(d.Reasons, ReasonNoRule)
	case in.Identity == nil:
		d.Reasons = append(d.Reasons, "unauthenticated")
	default:
		d.Allow = p.root.eval(in, &d.Reasons)
	}
	if !d.Allow && p.mode == ReportOnly && p.root != nil && in.Identity != nil {
		d.Allow, d.WouldDeny = true, true
	}
	return d
}

// criterion is one compiled piece of a rule.
type criterion interface {
	eval(in *Input, reasons *[]string) bool
}

// all holds when every part holds (the criteria of one rule, or all_of).
type all []criterion

func (a all) eval(in *Input, reasons *[]string) bool {
	ok := true
	for _, c := range a {
		if !c.eval(in, reasons) {
			ok = false
		}
	}
	return ok
}

// anyOf holds when one part holds.
type anyOf []criterion

func (a anyOf) eval(in *Input, reasons *[]string) bool {
	mark := len(*reasons)
	for _, c := range a {
		start := len(*reasons)
		if c.eval(in, reasons) {
			// Keep only the reasons of the branch that allowed.
			n := copy((*reasons)[mark:], (*reasons)[start:])
			*reasons = (*reasons)[:mark+n]
			return true
		}
	}
	return false
}

type not struct{ c criterion }

func (n not) eval(in *Input, reasons *[]string) bool {
	var inner []string
	if n.c.eval(in, &inner) {
		*reasons = append(*reasons, "excluded_by_not")
		return false
	}
	*reasons = append(*reasons, "not_ok")
	return true
}

type authenticated struct{}

func (authenticated) eval(in *Input, reasons *[]string) bool {
	*reasons = append(*reasons, "authenticated_ok")
	return true
}

// listCriterion holds when the caller's values intersect the wanted ones.
type listCriterion struct {
	want     []string
	get      func(*identity.Identity) []string
	ok, fail string
}

func (l listCriterion) eval(in *Input, reasons *[]string) bool {
	for _, v := range l.get(in.Identity) {
		if slices.Contains(l.want, v) {
			*reasons = append(*reasons, l.ok)
			return true
		}
	}
	*reasons = append(*reasons, l.fail)
	return false
}

type mfa struct{}

func (mfa) eval(in *Input, reasons *[]string) bool {
	if in.Identity.HasMFA() {
		*reasons = append(*reasons, "mfa_ok")
		return true
	}
	*reasons = append(*reasons, "mfa_missing")
	return false
}

type ipCriterion []netip.Prefix

func (c ipCriterion) eval(in *Input, reasons *[]string) bool {
	ip := in.IP.Unmap()
	for _, p := range c {
		if ip.IsValid() && p.Contains(ip) {
			*reasons = append(*reasons, "ip_ok")
			return true
		}
	}
	*reasons = append(*reasons, "ip_not_allowed")
	return false
}

func one(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func compileRule(r *config.Rule) (criterion, error) {
	var parts all
	if r.Authenticated {
		parts = append(parts, authenticated{})
	}
	lists := []struct {
		want     []string
		get      func(*identity.Identity) []string
		ok, fail string
	}{
		{r.Roles, func(id *identity.Identity) []string { return id.Roles }, "role_ok", "role_missing"},
		{r.Scopes, func(id *identity.Identity) []string { return id.Scopes }, "scope_ok", "scope_missing"},
		{r.Groups, func(id *identity.Identity) []string { return id.Groups }, "group_ok", "group_missing"},
		{r.Tenants, func(id *identity.Identity) []string { return one(id.Tenant) }, "tenant_ok", "tenant_not_allowed"},
		{r.Apps, func(id *identity.Identity) []string { return one(id.AppID) }, "app_ok", "app_not_allowed"},
		{r.Subjects, func(id *identity.Identity) []string { return one(id.Subject) }, "subject_ok", "subject_not_allowed"},
		{r.IdentityTypes, func(id *identity.Identity) []string { return one(string(id.Type)) }, "identity_type_ok", "identity_type_not_allowed"},
	}
	for _, l := range lists {
		if l.want != nil {
			parts = append(parts, listCriterion{want: l.want, get: l.get, ok: l.ok, fail: l.fail})
		}
	}
	if r.MFA {
		parts = append(parts, mfa{})
	}
	if r.IP != nil {
		var c ipCriterion
		for _, s := range r.IP {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, err2 := netip.ParseAddr(s)
				if err2 != nil {
					return nil, fmt.Errorf("bad CIDR %q", s)
				}
				p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			}
			c = append(c, p.Masked())
		}
		parts = append(parts, c)
	}
	if r.AnyOf != nil {
		var a anyOf
		for i := range r.AnyOf {
			c, err := compileRule(&r.AnyOf[i])
			if err != nil {
				return nil, err
			}
			a = append(a, c)
		}
		parts = append(parts, a)
	}
	for i := range r.AllOf {
		c, err := compileRule(&r.AllOf[i])
		if err != nil {
			return nil, err
		}
		parts = append(parts, c)
	}
	if r.Not != nil {
		c, err := compileRule(r.Not)
		if err != nil {
			return nil, err
		}
		parts = append(parts, not{c})
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("empty rule")
	}
	if len(parts) == 1 {
		return parts[0], nil
	}
	return parts, nil
}
