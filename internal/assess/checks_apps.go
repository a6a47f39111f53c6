package assess

import (
	"fmt"
	"time"
)

var applicationChecks = []check{
	{"AW-01", "Default deny", Applications, "Application Access", Initial, checkDefaultDeny},
	{"AW-02", "Every request is authorised on its own, with reasons", Applications, "Application Access", Initial, checkPerRequest},
	{"AW-03", "Upstreams never see the caller's token", Applications, "Application Threat Protections", Initial, checkTokenForwarding},
	{"AW-04", "No route is open to any authenticated caller", Applications, "Application Access", Advanced, checkBroadRules},
	{"AW-05", "Report-only routes are not left unenforced", Applications, "Application Access", Advanced, checkReportOnly},
	{"AW-06", "Request bodies are validated before the upstream", Applications, "Application Threat Protections", Advanced, checkValidation},
	{"AW-07", "Sensitive routes weigh context beyond identity", Applications, "Application Access", Optimal, checkContext},
	{"AW-08", "Upstreams get injected credentials or a signed identity assertion", Applications, "Accessible Applications", Optimal, checkInjection},
}

func checkDefaultDeny(in *Inputs) Result {
	res := Result{}
	if a := in.Cfg.Policy.Allow; a != nil {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc("policy.allow"), Text: "policy.allow: " + flowRule(a)})
		res.Next = &NextStep{Text: "Remove the gateway-wide default rule and give each route (or service) its own; a route without a rule then denies.", YAML: "policy:\n  # allow: " + flowRule(a) + "   <- remove\n"}
		if !requires(a, names) {
			res.Outcome = Fail
			res.Summary = "A gateway-wide default rule lets any authenticated caller through every route that sets no rule of its own."
			return res
		}
		res.Outcome = Partial
		res.Summary = "A gateway-wide default rule applies to every route that sets none: a new route is open by default."
		return res
	}
	closed := 0
	for _, r := range in.Routes {
		if !r.Open() {
			closed++
			res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": no allow rule, denies everyone"})
		}
	}
	res.Outcome = Pass
	res.Summary = "There is no gateway-wide default rule: a route without a rule denies, and an unknown path is refused (404 no_route)."
	if t := in.Traffic; t != nil {
		res.Evidence = append(res.Evidence, Evidence{Where: "audit", Text: fmt.Sprintf("%d requests for unknown paths refused in the last %s", t.NoRoute, formatSince(in.Since))})
	}
	return res
}

func checkPerRequest(in *Inputs) Result {
	if len(in.Routes) == 0 {
		return Result{Outcome: NotApplicable, Summary: "No routes are configured."}
	}
	res := Result{Outcome: Pass, Summary: "Every request is authorised against its route's rule when it arrives, and every decision records its reasons."}
	if t := in.Traffic; t != nil {
		allowed := t.Decisions["allow"] + t.Decisions["would_deny"]
		res.Evidence = append(res.Evidence, Evidence{Where: "audit", Text: fmt.Sprintf("%d decisions in the last %s, %d of them allowing with recorded reasons", t.Events, formatSince(in.Since), allowed-t.WithoutReasons)})
		if t.WithoutReasons > 0 {
			res.Outcome = Fail
			res.Summary = fmt.Sprintf("%s reached an upstream with no recorded reason.", plural(t.WithoutReasons, "request", "requests"))
			res.Next = &NextStep{Text: "This should not happen: report it with the request ids from `ztgate audit query --decision allow`, and upgrade."}
		}
	}
	return res
}

func checkTokenForwarding(in *Inputs) Result {
	n := len(in.Cfg.Services)
	var fwd []int
	for i, s := range in.Cfg.Services {
		if s.ForwardAuthorization {
			fwd = append(fwd, i)
		}
	}
	res := Result{Outcome: share(n-len(fwd), n), Measure: &Measure{Num: n - len(fwd), Den: n, Of: "services that keep the caller's token from the upstream"}}
	switch res.Outcome {
	case NotApplicable:
		res.Measure = nil
		res.Summary = "No services are configured."
		return res
	case Pass:
		res.Summary = "No upstream receives the caller's Authorization header: a compromised upstream cannot replay it."
	default:
		res.Summary = fmt.Sprintf("%s the caller's token to the upstream.", plural(len(fwd), "service forwards", "services forward"))
	}
	for _, i := range fwd {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(fmt.Sprintf("services[%d].forward_authorization", i)), Text: in.Cfg.Services[i].Name + ": forward_authorization: true"})
	}
	if len(fwd) > 0 {
		res.Next = &NextStep{Text: "Stop forwarding the caller's token; have the upstream trust the gateway (mTLS) and read the caller from a signed assertion when that is available.", YAML: serviceSnippet(&in.Cfg.Services[fwd[0]], "forward_authorization: false")}
	}
	return res
}

func checkBroadRules(in *Inputs) Result {
	open := 0
	var wide []*Route
	for i := range in.Routes {
		r := &in.Routes[i]
		if !r.Open() {
			continue
		}
		open++
		if broad(r) {
			wide = append(wide, r)
		}
	}
	res := Result{Outcome: share(open-len(wide), open), Measure: &Measure{Num: open - len(wide), Den: open, Of: "open routes naming who may call (roles, scopes, groups, apps or subjects)"}}
	switch res.Outcome {
	case NotApplicable:
		res.Measure = nil
		res.Summary = "No route is open to anyone."
		return res
	case Pass:
		res.Summary = "Every open route names who may call it."
	default:
		res.Summary = fmt.Sprintf("%d of %d open routes %s any authenticated caller in.", len(wide), open, verb(len(wide), "lets", "let"))
	}
	for _, r := range wide {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": allow " + flowRule(r.Spec.Rule)})
	}
	if len(wide) > 0 {
		res.Next = &NextStep{Text: "Name an app role (or scope) for each route and grant it to those who need it.", YAML: routeSnippet(wide[0], "allow: { roles: [<App.Role>] }")}
	}
	return res
}

// ReportOnlyGrace is how long a route may stay report-only while its
// rule is tried out.
const ReportOnlyGrace = 14 * 24 * time.Hour

func checkReportOnly(in *Inputs) Result {
	var ro []*Route
	for i := range in.Routes {
		if r := &in.Routes[i]; r.Open() && r.ReportOnly() {
			ro = append(ro, r)
		}
	}
	if len(ro) == 0 {
		return Result{Outcome: Pass, Summary: "Every route enforces its rule."}
	}
	res := Result{Outcome: Partial}
	old := 0
	for _, r := range ro {
		var rt *RouteTraffic
		if in.Traffic != nil {
			rt = in.Traffic.Routes[r.Name]
		}
		switch {
		case rt == nil || rt.FirstWouldDeny.IsZero():
			res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": report_only; no would-deny recorded, so for how long is not known"})
		default:
			days := int(in.Now.Sub(rt.FirstWouldDeny).Hours() / 24)
			if in.Now.Sub(rt.FirstWouldDeny) > ReportOnlyGrace {
				old++
			}
			res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: fmt.Sprintf("%s: report_only; %d requests would have been denied, the first %d days ago", r.Name, rt.WouldDeny, days)})
		}
	}
	if old > 0 {
		res.Outcome = Fail
		res.Summary = fmt.Sprintf("%s let would-be denials through for more than %d days.", plural(old, "report-only route has", "report-only routes have"), int(ReportOnlyGrace.Hours()/24))
	} else {
		res.Summary = fmt.Sprintf("%s: callers the rule would deny get through.", plural(len(ro), "route only reports", "routes only report"))
	}
	res.Next = &NextStep{Text: "Review the would_deny events (ztgate audit query --decision would_deny), fix the rule or the callers, then enforce.", YAML: routeSnippet(ro[0], "mode: enforce")}
	return res
}

func checkValidation(in *Inputs) Result {
	var routes, lacking []*Route
	for i := range in.Routes {
		r := &in.Routes[i]
		if !r.Open() || !r.AcceptsBody() {
			continue
		}
		routes = append(routes, r)
		if g := r.Route.Guard; g == nil || (len(g.ContentTypes) == 0 && g.JSONSchema == "") {
			lacking = append(lacking, r)
		}
	}
	res := Result{Outcome: share(len(routes)-len(lacking), len(routes)), Measure: &Measure{Num: len(routes) - len(lacking), Den: len(routes), Of: "open routes taking a body that check its type or schema"}}
	switch res.Outcome {
	case NotApplicable:
		res.Measure = nil
		res.Summary = "No open route takes a request body."
		return res
	case Pass:
		res.Summary = "Every open route that takes a body checks its media type or JSON Schema."
	default:
		res.Summary = fmt.Sprintf("%s bodies to the upstream unchecked.", plural(len(lacking), "route passes", "routes pass"))
	}
	for _, r := range lacking {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": no guard.content_types or guard.json_schema"})
	}
	if len(lacking) > 0 {
		res.Next = &NextStep{Text: "Accept only the media type the upstream expects, and check JSON bodies against a schema.", YAML: routeSnippet(lacking[0], "guard: { content_types: [application/json], json_schema: schemas/"+lacking[0].Route.Name+".json }")}
	}
	return res
}

func checkContext(in *Inputs) Result {
	routes := sensitiveOpen(in)
	var lacking []*Route
	for _, r := range routes {
		if !requiresContext(r) {
			lacking = append(lacking, r)
		}
	}
	res := Result{Outcome: share(len(routes)-len(lacking), len(routes)), Measure: &Measure{Num: len(routes) - len(lacking), Den: len(routes), Of: "sensitive routes with a network, place, time, device or risk condition"}}
	switch res.Outcome {
	case NotApplicable:
		res.Measure = nil
		res.Summary = "No " + sensitiveNote + " are open to anyone."
		return res
	case Pass:
		res.Summary = "Every sensitive route also weighs where, when or from what the call comes."
	default:
		res.Summary = fmt.Sprintf("%d of %d sensitive routes %s on identity alone.", len(lacking), len(routes), verb(len(lacking), "decides", "decide"))
	}
	for _, r := range lacking {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": no ip, countries, time, device or when condition"})
	}
	if len(lacking) > 0 {
		res.Next = &NextStep{Text: "Add a condition on the request's context, in the rule or as a CEL expression.", YAML: routeSnippet(lacking[0], `when: 'request.ip in cidr("10.0.0.0/8") && risk.level != "high"'`)}
	}
	return res
}

func checkInjection(in *Inputs) Result {
	if in.Capability("services.inject") != Supported {
		return Result{Outcome: NotAvailable, Summary: "Credential injection and signed identity assertions (services[].inject) are not available in this version.",
			Next: &NextStep{Text: "When it lands: keep upstream credentials in a vault and have the gateway add them, with a signed assertion of the caller.", YAML: "services:\n  - name: <service>\n    inject:\n      headers: { x-functions-key: \"${secret:kv/function-key}\" }\n      identity_assertion: true\n"}}
	}
	n := len(in.Cfg.Services)
	var without []int
	for i := range in.Cfg.Services {
		if !set(&in.Cfg.Services[i], "inject") {
			without = append(without, i)
		}
	}
	res := Result{Outcome: share(n-len(without), n), Measure: &Measure{Num: n - len(without), Den: n, Of: "services with injected upstream credentials"}}
	switch res.Outcome {
	case NotApplicable:
		res.Measure = nil
		res.Summary = "No services are configured."
		return res
	case Pass:
		res.Summary = "Every upstream gets its credentials from the gateway."
	default:
		res.Summary = fmt.Sprintf("%d of %d services %s no credentials.", len(without), n, verb(len(without), "injects", "inject"))
	}
	for _, i := range without {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(fmt.Sprintf("services[%d]", i)), Text: in.Cfg.Services[i].Name + ": no inject"})
	}
	if len(without) > 0 {
		res.Next = &NextStep{Text: "Have the gateway add upstream credentials from a vault, with a signed assertion of the caller.", YAML: serviceSnippet(&in.Cfg.Services[without[0]], "inject:", "  identity_assertion: true")}
	}
	return res
}
