package assess

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/policy"
)

// Route is one configured route with what the checks need to know of it:
// its effective rule and mode (inherited from service and policy) and
// where it is written.
type Route struct {
	Name      string // service/route
	Path      string // key path in the configuration, services[i].routes[j]
	Line      int
	Service   *config.Service
	ServiceIx int
	Route     *config.Route
	Spec      policy.Spec
	// Sensitive routes change state: they accept POST, PUT, PATCH or
	// DELETE, or any method.
	Sensitive bool
}

// Open reports whether anyone at all may call the route: a route without
// an effective allow rule denies everyone.
func (r *Route) Open() bool { return r.Spec.Rule != nil }

// ReportOnly reports whether the route lets a would-deny through.
func (r *Route) ReportOnly() bool { return r.Spec.Mode == policy.ReportOnly }

// AcceptsBody reports whether the route takes methods that carry a body.
func (r *Route) AcceptsBody() bool { return r.Sensitive }

var writeMethods = []string{"POST", "PUT", "PATCH", "DELETE"}

func routesOf(cfg *config.Config) []Route {
	var out []Route
	for i := range cfg.Services {
		s := &cfg.Services[i]
		for j := range s.Routes {
			r := &s.Routes[j]
			path := fmt.Sprintf("services[%d].routes[%d]", i, j)
			sensitive := len(r.Match.Methods) == 0
			for _, m := range r.Match.Methods {
				if slices.Contains(writeMethods, strings.ToUpper(m)) {
					sensitive = true
				}
			}
			out = append(out, Route{
				Name: s.Name + "/" + r.Name, Path: path, Line: cfg.PosOf(path).Line,
				Service: s, ServiceIx: i, Route: r, Spec: policy.SpecFor(cfg, s, r), Sensitive: sensitive,
			})
		}
	}
	return out
}

// requires reports whether every caller the rule lets through satisfies
// pred: pred holds at the rule itself, or in one of its all_of rules, or in
// every one of its any_of rules. not is ignored (it never guarantees).
func requires(r *config.Rule, pred func(*config.Rule) bool) bool {
	if r == nil {
		return false
	}
	if pred(r) {
		return true
	}
	for i := range r.AllOf {
		if requires(&r.AllOf[i], pred) {
			return true
		}
	}
	if len(r.AnyOf) == 0 {
		return false
	}
	for i := range r.AnyOf {
		if !requires(&r.AnyOf[i], pred) {
			return false
		}
	}
	return true
}

// mentions reports whether pred holds anywhere in the rule.
func mentions(r *config.Rule, pred func(*config.Rule) bool) bool {
	if r == nil {
		return false
	}
	if pred(r) {
		return true
	}
	for _, sub := range slices.Concat(r.AnyOf, r.AllOf) {
		if mentions(&sub, pred) {
			return true
		}
	}
	return mentions(r.Not, pred)
}

// names reports whether the rule names who may call: roles, scopes,
// groups, apps or subjects. Tenants and identity types do not: every user
// of a tenant is still "any authenticated caller" of that organisation.
func names(r *config.Rule) bool {
	return len(r.Roles) > 0 || len(r.Scopes) > 0 || len(r.Groups) > 0 || len(r.Apps) > 0 || len(r.Subjects) > 0
}

func stepUp(r *config.Rule) bool      { return r.MFA || len(r.AuthContext) > 0 }
func authContext(r *config.Rule) bool { return len(r.AuthContext) > 0 }
func deviceRule(r *config.Rule) bool  { return r.Device != nil && len(r.Device.Claims) > 0 }
func contextual(r *config.Rule) bool {
	return len(r.IP) > 0 || len(r.Countries) > 0 || len(r.Time) > 0 || deviceRule(r)
}

// whenNamesCaller: a when expression that reads the identity narrows who
// may call (identity.hasRole("X"), identity.subject == ...).
func whenNamesCaller(when string) bool { return strings.Contains(when, "identity.") }

// whenContextual: a when expression over the request's network, place,
// time or risk.
func whenContextual(when string) bool {
	for _, s := range []string{"request.ip", "geo.", "time", "risk."} {
		if strings.Contains(when, s) {
			return true
		}
	}
	return false
}

// whenStepUp: a when expression over the authentication methods or context.
func whenStepUp(when string) bool {
	return strings.Contains(when, "identity.amr") || strings.Contains(when, "identity.acrs")
}

// broad reports whether the route lets any authenticated caller through:
// its rule has a way to be satisfied that names no one, and its when
// condition does not read the identity.
func broad(r *Route) bool {
	return r.Open() && !requires(r.Spec.Rule, names) && !whenNamesCaller(r.Route.When)
}

// requiresStepUp reports whether every caller of the route shows MFA or an
// authentication context.
func requiresStepUp(r *Route) bool {
	return requires(r.Spec.Rule, stepUp) || whenStepUp(r.Route.When)
}

func requiresDevice(r *Route) bool {
	return requires(r.Spec.Rule, deviceRule) || strings.Contains(r.Route.When, "device")
}

func requiresContext(r *Route) bool {
	return requires(r.Spec.Rule, contextual) || whenContextual(r.Route.When)
}

// loopback reports whether a URL's or address's host is a loopback name or
// address.
func loopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func upstreamURL(s *config.Service) *url.URL {
	u, err := url.Parse(s.Upstream)
	if err != nil {
		return &url.URL{}
	}
	return u
}

// flowRule writes a rule in YAML flow style, for snippets.
func flowRule(r *config.Rule) string {
	if r == nil {
		return "{ }"
	}
	var parts []string
	list := func(k string, v []string) {
		if len(v) > 0 {
			parts = append(parts, k+": ["+strings.Join(v, ", ")+"]")
		}
	}
	if r.Authenticated {
		parts = append(parts, "authenticated: true")
	}
	list("roles", r.Roles)
	list("scopes", r.Scopes)
	list("groups", r.Groups)
	list("tenants", r.Tenants)
	list("apps", r.Apps)
	list("subjects", r.Subjects)
	list("identity_types", r.IdentityTypes)
	if r.MFA {
		parts = append(parts, "mfa: true")
	}
	list("auth_context", r.AuthContext)
	list("ip", r.IP)
	list("countries", r.Countries)
	if len(r.Time) > 0 {
		parts = append(parts, fmt.Sprintf("time: [%d windows]", len(r.Time)))
	}
	if r.Device != nil {
		keys := make([]string, 0, len(r.Device.Claims))
		for k := range r.Device.Claims {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var cs []string
		for _, k := range keys {
			cs = append(cs, k+": ["+strings.Join(r.Device.Claims[k], ", ")+"]")
		}
		parts = append(parts, "device: { claims: { "+strings.Join(cs, ", ")+" } }")
	}
	sub := func(k string, rs []config.Rule) {
		if len(rs) == 0 {
			return
		}
		var s []string
		for i := range rs {
			s = append(s, flowRule(&rs[i]))
		}
		parts = append(parts, k+": [ "+strings.Join(s, ", ")+" ]")
	}
	sub("any_of", r.AnyOf)
	sub("all_of", r.AllOf)
	if r.Not != nil {
		parts = append(parts, "not: "+flowRule(r.Not))
	}
	if len(parts) == 0 {
		return "{ }"
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

// withCriterion returns the rule in flow style with a criterion added:
// beside the existing ones, or around them with all_of when the rule
// combines others.
func withCriterion(r *config.Rule, criterion string) string {
	if r == nil {
		return "{ " + criterion + " }"
	}
	f := flowRule(r)
	if len(r.AnyOf) > 0 || r.Not != nil {
		return "{ all_of: [ " + f + ", { " + criterion + " } ] }"
	}
	if f == "{ }" {
		return "{ " + criterion + " }"
	}
	return strings.TrimSuffix(f, " }") + ", " + criterion + " }"
}

// routeSnippet is a YAML snippet setting keys on one route.
func routeSnippet(r *Route, lines ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "services:\n  - name: %s\n    routes:\n      - name: %s\n", r.Service.Name, r.Route.Name)
	for _, l := range lines {
		b.WriteString("        " + l + "\n")
	}
	return b.String()
}

// serviceSnippet is a YAML snippet setting keys on one service.
func serviceSnippet(s *config.Service, lines ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "services:\n  - name: %s\n", s.Name)
	for _, l := range lines {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}
