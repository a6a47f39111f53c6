// Package policy decides whether an authenticated caller may make a request
// on a route. Rules are compiled once from configuration; evaluation is pure
// and records the reason of every criterion. Deny by default: a route with no
// rule denies everyone, a missing claim denies, and an expression that fails
// to evaluate denies.
package policy

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
)

// Input is what a decision is made on.
type Input struct {
	Identity *identity.Identity
	IP       netip.Addr
	Country  string    // ISO 3166 code of IP, "" when unknown
	Time     time.Time // when the request arrived
	Request  Request
	Risk     Risk
}

// Request is the part of the HTTP request policy may read.
type Request struct {
	Method   string
	Host     string
	Path     string              // normalised
	Params   map[string]string   // path parameters
	RawQuery string              // parsed only when an expression reads it
	Headers  map[string][]string // canonical header names
}

// Risk is what anomaly detection says about the caller.
type Risk struct {
	Level  string // none | low | medium | high
	Alerts []string
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
	// GroupsUnknown is set on a deny that knowing the caller's groups
	// could have turned into an allow: the token named them by reference
	// (group overage) and they were not resolved. The deny reason is then
	// groups_unknown.
	GroupsUnknown bool

	buf [12]string
	tr  trace
}

// DenyReason returns the reason to give the client for a deny.
func (d *Decision) DenyReason() string {
	if d.GroupsUnknown {
		return ReasonGroupsUnknown
	}
	// Otherwise something denies whatever the groups: that is the reason.
	for _, r := range d.Reasons {
		if !isOK(r) && r != ReasonGroupsUnknown {
			return r
		}
	}
	return ReasonDenied
}

// Stable reason codes that are not per-criterion.
const (
	ReasonNoRule          = "no_allow_rule" // default deny: the route has no allow rule
	ReasonDenied          = "policy_denied"
	ReasonUnauthenticated = "unauthenticated"
	// ReasonGroupsUnknown: a rule tests groups, and the caller's are not
	// known (group overage not resolved). Fail closed.
	ReasonGroupsUnknown = "groups_unknown"
)

func isOK(r string) bool { return len(r) > 3 && r[len(r)-3:] == "_ok" }

// Mode is how a route's decision is applied.
type Mode int

// Modes.
const (
	Enforce Mode = iota
	ReportOnly
)

func (m Mode) String() string {
	if m == ReportOnly {
		return "report_only"
	}
	return "enforce"
}

// Policy is the compiled policy of one route.
type Policy struct {
	route   string
	version string
	mode    Mode
	root    criterion // nil: no rule, deny
	when    *expr     // nil: none
	acrs    []string  // auth context values the rule asks for, for step-up
	groups  bool      // the rule or the when expression reads groups
}

// Spec is what a route's policy is compiled from.
type Spec struct {
	Route   string // service/route
	Version string
	Rule    *config.Rule // nil denies all
	When    string       // CEL; "" none
	Mode    Mode
}

// Compile builds the policy of a route.
func Compile(s Spec) (*Policy, error) {
	p := &Policy{route: s.Route, version: s.Version, mode: s.Mode}
	if s.Rule != nil {
		c, err := compileRule(s.Rule)
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", s.Route, err)
		}
		p.root = c
		p.acrs = firstAuthContext(s.Rule)
		p.groups = testsGroups(s.Rule)
	}
	if s.When != "" {
		e, err := compileExpr(s.When)
		if err != nil {
			return nil, fmt.Errorf("route %s: when: %w", s.Route, err)
		}
		p.when = e
		p.groups = p.groups || readsGroups(s.When)
	}
	return p, nil
}

// UsesGroups reports whether deciding may need the caller's groups, so
// that groups a token names only by reference are resolved only for the
// routes that test them. An expression that reaches groups in a way this
// does not see still denies (groups_unknown): the answer is an
// optimisation, never a way around the check.
func (p *Policy) UsesGroups() bool { return p.groups }

func testsGroups(r *config.Rule) bool {
	if r == nil {
		return false
	}
	if r.Groups != nil || testsGroups(r.Not) {
		return true
	}
	for i := range r.AnyOf {
		if testsGroups(&r.AnyOf[i]) {
			return true
		}
	}
	for i := range r.AllOf {
		if testsGroups(&r.AllOf[i]) {
			return true
		}
	}
	return false
}

// Mode returns the policy's mode.
func (p *Policy) Mode() Mode { return p.mode }

// Evaluate decides on in.
func (p *Policy) Evaluate(in *Input) Decision {
	var d Decision
	p.EvaluateInto(in, &d)
	r := make([]string, len(d.Reasons))
	copy(r, d.Reasons)
	d.Reasons = r
	return d
}

// EvaluateInto decides on in, writing into d without allocating on the
// shorthand path (d's reasons use its own buffer).
func (p *Policy) EvaluateInto(in *Input, d *Decision) {
	p.eval(in, d, nil)
}

func (p *Policy) eval(in *Input, d *Decision, steps *[]Step) {
	d.Allow, d.WouldDeny, d.GroupsUnknown = false, false, false
	d.Route, d.Version = p.route, p.version
	d.Reasons = d.buf[:0]
	d.tr = trace{reasons: &d.Reasons, steps: steps}
	p.evalTrace(in, d, &d.tr)
}

func (p *Policy) evalTrace(in *Input, d *Decision, t *trace) {
	switch {
	case p.root == nil:
		t.add(ReasonNoRule, "allow", "route has no allow rule", "")
	case in.Identity == nil:
		t.add(ReasonUnauthenticated, "identity", "an authenticated caller", "none")
	default:
		// Kleene's three values: a part that does not hold denies; a part
		// that cannot be told (unknown groups) denies as groups_unknown
		// unless another part denies anyway.
		t.unknown = false
		rootOK := p.root.eval(in, t)
		no, unknown := !rootOK && !t.unknown, !rootOK && t.unknown
		d.Allow = rootOK
		if p.when != nil {
			t.unknown = false
			if !p.when.eval(in, t) {
				d.Allow = false
				no = no || !t.unknown
				unknown = unknown || t.unknown
			}
		}
		d.GroupsUnknown = !d.Allow && !no && unknown
	}
	if !d.Allow && p.mode == ReportOnly && p.root != nil && in.Identity != nil {
		d.Allow, d.WouldDeny = true, true
	}
}

// Step is one evaluated criterion, for explaining a decision.
type Step struct {
	Depth     int    // nesting under any_of / all_of / not
	Criterion string // e.g. "roles"
	Want      string // what the rule asks for
	Have      string // what the caller has
	Reason    string // the criterion's reason code
}

// OK reports whether the step's criterion held.
func (s Step) OK() bool { return isOK(s.Reason) }

// Explain evaluates in and returns the decision with every step.
func (p *Policy) Explain(in *Input) (Decision, []Step) {
	var d Decision
	var steps []Step
	p.eval(in, &d, &steps)
	r := make([]string, len(d.Reasons))
	copy(r, d.Reasons)
	d.Reasons = r
	return d, steps
}

// trace collects reasons, and steps when explaining.
type trace struct {
	reasons *[]string
	steps   *[]Step
	depth   int
	// unknown is set by a criterion that returned false because it cannot
	// be told (unknown groups) rather than because it does not hold.
	unknown bool
}

func (t *trace) add(reason, criterion, want, have string) {
	*t.reasons = append(*t.reasons, reason)
	if t.steps != nil {
		*t.steps = append(*t.steps, Step{Depth: t.depth, Criterion: criterion, Want: want, Have: have, Reason: reason})
	}
}

// note records a reason without the explanation (the hot path).
func (t *trace) note(reason string) { *t.reasons = append(*t.reasons, reason) }

func (t *trace) explaining() bool { return t.steps != nil }

// ValidateConfig compiles every when expression of cfg and reports those
// that fail, positioned in the configuration file.
func ValidateConfig(cfg *config.Config) error {
	var errs config.Errors
	for i, s := range cfg.Services {
		for j, r := range s.Routes {
			if r.When == "" {
				continue
			}
			path := fmt.Sprintf("services[%d].routes[%d].when", i, j)
			if err := CheckExpr(r.When); err != nil {
				p := cfg.PosOf(path)
				errs = append(errs, &config.Error{File: cfg.File, Line: p.Line, Column: p.Column, Path: path, Msg: err.Error()})
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// SpecFor returns the policy spec of a route, with the inheritance of
// allow and mode applied: route, then service, then the policy section.
func SpecFor(cfg *config.Config, s *config.Service, r *config.Route) Spec {
	rule := r.Allow
	if rule == nil {
		rule = s.Allow
	}
	if rule == nil {
		rule = cfg.Policy.Allow
	}
	modeName := r.Mode
	if modeName == "" {
		modeName = s.Mode
	}
	if modeName == "" {
		modeName = cfg.Policy.Mode
	}
	mode := Enforce
	if modeName == "report_only" {
		mode = ReportOnly
	}
	return Spec{Route: s.Name + "/" + r.Name, Version: cfg.Hash, Rule: rule, When: r.When, Mode: mode}
}

func firstAuthContext(r *config.Rule) []string {
	if len(r.AuthContext) > 0 {
		return r.AuthContext
	}
	for i := range r.AllOf {
		if a := firstAuthContext(&r.AllOf[i]); a != nil {
			return a
		}
	}
	for i := range r.AnyOf {
		if a := firstAuthContext(&r.AnyOf[i]); a != nil {
			return a
		}
	}
	return nil
}

// ClaimsChallenge returns the claims a client must obtain to pass a step-up
// deny (mfa_missing, auth_context_missing), base64-encoded as in Entra ID's
// claims challenge, or "" when the deny is not one a new token could fix.
func (p *Policy) ClaimsChallenge(d *Decision) string {
	var claims string
	switch d.DenyReason() {
	case "auth_context_missing":
		if len(p.acrs) == 0 {
			return ""
		}
		claims = `{"access_token":{"acrs":{"essential":true,"value":` + strconv.Quote(p.acrs[0]) + `}}}`
	case "mfa_missing":
		claims = `{"access_token":{"amr":{"essential":true,"values":["mfa"]}}}`
	default:
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(claims))
}
