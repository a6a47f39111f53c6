package assess

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ztgate/ztgate/internal/config"
)

var identityChecks = []check{
	{"ID-01", "Every route requires a verified caller", Identity, "Authentication", Initial, checkAuthEverywhere},
	{"ID-02", "Callers are verified against an enterprise identity provider", Identity, "Identity Stores", Initial, checkIdentityProviders},
	{"ID-03", "Sensitive routes require MFA or an authentication context", Identity, "Authentication", Advanced, checkStepUpRequired},
	{"ID-04", "Traffic on sensitive routes shows MFA", Identity, "Authentication", Advanced, checkMFATraffic},
	{"ID-05", "Static API keys are not the way in", Identity, "Authentication", Advanced, checkAPIKeys},
	{"ID-06", "No long-lived tokens", Identity, "Access Management", Advanced, checkTokenLifetime},
	{"ID-07", "Sensitive routes require phishing-resistant authentication", Identity, "Authentication", Optimal, checkPhishingResistant},
	{"ID-08", "Step-up through claims challenges (continuous access evaluation)", Identity, "Risk Assessments", Optimal, checkClaimsChallenge},
}

func checkAuthEverywhere(in *Inputs) Result {
	if len(in.Routes) == 0 {
		return Result{Outcome: NotApplicable, Summary: "No routes are configured."}
	}
	open := 0
	for _, r := range in.Routes {
		if r.Open() {
			open++
		}
	}
	res := Result{
		Outcome: Pass,
		Summary: fmt.Sprintf("%s a verified identity: ztgate has no anonymous access.", allOf(len(in.Routes), "route requires", "routes require")),
		Measure: &Measure{Num: len(in.Routes), Den: len(in.Routes), Of: "routes requiring authentication"},
	}
	if closed := len(in.Routes) - open; closed > 0 {
		res.Summary += fmt.Sprintf(" %s no allow rule and %s everyone.", plural(closed, "route has", "routes have"), map[bool]string{true: "denies", false: "deny"}[closed == 1])
	}
	if t := in.Traffic; t != nil {
		allowed := t.Decisions["allow"] + t.Decisions["would_deny"]
		res.Evidence = append(res.Evidence, Evidence{Where: "audit", Text: fmt.Sprintf("%d of %d requests that reached an upstream carried a verified identity", allowed-t.AnonymousAllowed, allowed)})
		if t.AnonymousAllowed > 0 {
			res.Outcome = Fail
			res.Summary = fmt.Sprintf("%s reached an upstream without a verified identity.", plural(t.AnonymousAllowed, "request", "requests"))
			res.Next = &NextStep{Text: "This should not happen: report it with the request ids from `ztgate audit query --decision allow`, and upgrade."}
		}
	}
	return res
}

func checkIdentityProviders(in *Inputs) Result {
	ps := in.Cfg.Identity.Providers
	res := Result{Outcome: Pass}
	for i, p := range ps {
		path := fmt.Sprintf("identity.providers[%d]", i)
		desc := fmt.Sprintf("%s (%s)", p.Name, p.Type)
		switch {
		case p.Type == "entra" && slices.Contains(p.AllowedTenants, "*"):
			res.Outcome = Partial
			res.Evidence = append(res.Evidence, Evidence{Where: in.loc(path + ".allowed_tenants"), Text: desc + ": accepts tokens of every Entra ID tenant"})
			res.Next = &NextStep{
				Text: "List the tenants whose callers you expect instead of every tenant.",
				YAML: fmt.Sprintf("identity:\n  providers:\n    - name: %s\n      allowed_tenants: [\"<tenant id>\", \"<partner tenant id>\"]\n", p.Name),
			}
		case p.Type == "entra":
			res.Evidence = append(res.Evidence, Evidence{Where: in.loc(path), Text: desc + ", tenant " + p.Tenant})
		default:
			res.Evidence = append(res.Evidence, Evidence{Where: in.loc(path), Text: desc + ", issuer " + p.Issuer})
		}
	}
	switch {
	case len(ps) == 0:
		res.Outcome = Fail
		res.Summary = "No identity provider is configured: no caller can be verified, so every request is refused."
		res.Next = &NextStep{
			Text: "Trust your organisation's identity provider.",
			YAML: "identity:\n  providers:\n    - name: corp\n      type: entra\n      tenant: <tenant id>\n      client_id: <the API's application id>\n",
		}
	case res.Outcome == Partial:
		res.Summary = "A provider accepts tokens from any tenant."
	default:
		res.Summary = fmt.Sprintf("Callers are verified against %s.", plural(len(ps), "identity provider", "identity providers"))
	}
	return res
}

// sensitiveOpen lists the sensitive routes that anyone may call.
func sensitiveOpen(in *Inputs) []*Route {
	var out []*Route
	for i := range in.Routes {
		if r := &in.Routes[i]; r.Sensitive && r.Open() {
			out = append(out, r)
		}
	}
	return out
}

const sensitiveNote = "sensitive routes (those accepting POST, PUT, PATCH or DELETE, or any method)"

func checkStepUpRequired(in *Inputs) Result {
	routes := sensitiveOpen(in)
	var lacking []*Route
	for _, r := range routes {
		if !requiresStepUp(r) {
			lacking = append(lacking, r)
		}
	}
	res := Result{
		Outcome: share(len(routes)-len(lacking), len(routes)),
		Measure: &Measure{Num: len(routes) - len(lacking), Den: len(routes), Of: "sensitive routes requiring MFA or an authentication context"},
	}
	switch res.Outcome {
	case NotApplicable:
		res.Measure = nil
		res.Summary = "No " + sensitiveNote + " are open to anyone."
		return res
	case Pass:
		res.Summary = "Every sensitive route requires MFA or an authentication context."
	default:
		res.Summary = fmt.Sprintf("%d of %d sensitive routes (accepting POST, PUT, PATCH or DELETE, or any method) %s callers in without MFA.", len(lacking), len(routes), verb(len(lacking), "lets", "let"))
	}
	for _, r := range lacking {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": allow " + flowRule(r.Spec.Rule)})
	}
	if len(lacking) > 0 {
		r := lacking[0]
		res.Next = &NextStep{
			Text: "Require MFA (amr contains mfa) on every sensitive route; capable clients get a claims challenge to step up.",
			YAML: routeSnippet(r, "allow: "+withCriterion(r.Spec.Rule, "mfa: true")),
		}
	}
	return res
}

func checkMFATraffic(in *Inputs) Result {
	t := in.Traffic
	if t == nil {
		return Result{Outcome: Unknown, Summary: "No audit trail to read: " + in.TrafficNote + "."}
	}
	sensitive := func(r *Route) bool { return r.Sensitive }
	users := t.sum(in.Routes, sensitive, func(rt *RouteTraffic) int { return rt.UserAllowed })
	mfa := t.sum(in.Routes, sensitive, func(rt *RouteTraffic) int { return rt.MFA })
	res := Result{Outcome: trafficShare(mfa, users), Measure: &Measure{Num: mfa, Den: users, Of: "user requests on sensitive routes with MFA or an authentication context"}}
	if users == 0 {
		res.Measure = nil
		res.Summary = fmt.Sprintf("No user requests reached sensitive routes in the last %s.", formatSince(in.Since))
		return res
	}
	res.Summary = fmt.Sprintf("%d%% of user requests that reached sensitive routes showed MFA (target 100%%).", mfa*100/users)
	for _, r := range in.Routes {
		if rt := t.Routes[r.Name]; r.Sensitive && rt != nil && rt.UserAllowed > 0 {
			res.Evidence = append(res.Evidence, Evidence{Where: "audit", Text: fmt.Sprintf("%s: %d of %d user requests with MFA", r.Name, rt.MFA, rt.UserAllowed)})
		}
	}
	if res.Outcome.Blocks() {
		res.Next = &NextStep{
			Text: "Require MFA on the routes where users got in without it (see ID-03), then watch this share reach 100%.",
			YAML: "      - name: <route>\n        allow: { roles: [<role>], mfa: true }\n",
		}
	}
	return res
}

func checkAPIKeys(in *Inputs) Result {
	if in.Capability("identity.api_keys") != Supported {
		return Result{Outcome: NotAvailable, Summary: "API keys are not available in this version of ztgate, so none can be in use."}
	}
	enabled := set(in.Cfg, "identity.api_keys.enabled")
	if !enabled {
		return Result{Outcome: Pass, Summary: "API keys are not accepted: every caller proves itself with a token or a certificate."}
	}
	res := Result{Outcome: Pass, Evidence: []Evidence{{Where: in.loc("identity.api_keys"), Text: "identity.api_keys.enabled: true"}}}
	if in.Traffic == nil {
		res.Summary = "API keys are accepted; with no audit trail, their use is not known."
		return res
	}
	keys := in.Traffic.IdentityTypes["api_key"]
	all := 0
	for _, n := range in.Traffic.IdentityTypes {
		all += n
	}
	if keys == 0 {
		res.Summary = fmt.Sprintf("API keys are accepted but none was used in the last %s.", formatSince(in.Since))
		return res
	}
	res.Outcome = Partial
	res.Measure = &Measure{Num: keys, Den: all, Of: "allowed requests made with a static API key"}
	res.Summary = "Static API keys are in use: a leaked key works until it is revoked."
	res.Evidence = append(res.Evidence, Evidence{Where: "audit", Text: fmt.Sprintf("%d requests with API keys in the last %s", keys, formatSince(in.Since))})
	res.Next = &NextStep{
		Text: "Move partners to client credentials (a token from their identity provider) or to workload certificates, then turn API keys off.",
		YAML: "identity:\n  api_keys: { enabled: false }\n",
	}
	return res
}

func checkTokenLifetime(in *Inputs) Result {
	t := in.Traffic
	if t == nil {
		return Result{Outcome: Unknown, Summary: "No audit trail to read: " + in.TrafficNote + "."}
	}
	if t.WithLifetime == 0 {
		return Result{Outcome: Unknown, Summary: "No request in the window recorded its token's lifetime."}
	}
	res := Result{
		Outcome:  Pass,
		Measure:  &Measure{Num: t.WithLifetime - t.LongLived, Den: t.WithLifetime, Of: "requests with tokens valid for at most 24h"},
		Evidence: []Evidence{{Where: "audit", Text: fmt.Sprintf("longest token lifetime seen: %s", formatLifetime(t.LongestLifetime))}},
	}
	if t.LongLived == 0 {
		res.Summary = fmt.Sprintf("No token valid for more than %s was seen.", formatLifetime(LongLived))
		return res
	}
	res.Outcome = Fail
	res.Summary = fmt.Sprintf("%s used tokens valid for more than %s, from %s.", plural(t.LongLived, "request", "requests"), formatLifetime(LongLived), plural(len(t.LongLivedIDs), "caller", "callers"))
	ids := make([]string, 0, len(t.LongLivedIDs))
	for id := range t.LongLivedIDs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		res.Evidence = append(res.Evidence, Evidence{Where: "audit", Text: "long-lived token of " + id})
	}
	res.Next = &NextStep{Text: "Shorten the access token lifetime at the identity provider (Entra ID: 60 to 90 minutes by default; a token lifetime policy or a CAE-capable client otherwise). ztgate honours exp; nothing to change in its configuration."}
	return res
}

func formatLifetime(d time.Duration) string {
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d < time.Hour:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return fmt.Sprintf("%dh%02dm", d/time.Hour, d%time.Hour/time.Minute)
}

func checkPhishingResistant(in *Inputs) Result {
	routes := sensitiveOpen(in)
	var lacking []*Route
	for _, r := range routes {
		if !requires(r.Spec.Rule, authContext) {
			lacking = append(lacking, r)
		}
	}
	res := Result{
		Outcome: share(len(routes)-len(lacking), len(routes)),
		Measure: &Measure{Num: len(routes) - len(lacking), Den: len(routes), Of: "sensitive routes requiring an authentication context"},
	}
	if res.Outcome == NotApplicable {
		res.Measure = nil
		res.Summary = "No " + sensitiveNote + " are open to anyone."
		return res
	}
	if t := in.Traffic; t != nil {
		sensitive := func(r *Route) bool { return r.Sensitive }
		users := t.sum(in.Routes, sensitive, func(rt *RouteTraffic) int { return rt.UserAllowed })
		pr := t.sum(in.Routes, sensitive, func(rt *RouteTraffic) int { return rt.PhishingResistant })
		if users > 0 {
			res.Evidence = append(res.Evidence, Evidence{Where: "audit", Text: fmt.Sprintf("%d of %d user requests on sensitive routes used a phishing-resistant method (%s) or an authentication context", pr, users, strings.Join(phishingResistant, ", "))})
			if res.Outcome == Fail && pr == users {
				res.Outcome = Partial
			}
		}
	}
	for _, r := range lacking {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": no auth_context required"})
	}
	switch res.Outcome {
	case Pass:
		res.Summary = "Every sensitive route requires an authentication context, which Conditional Access binds to a phishing-resistant strength."
	case Partial:
		res.Summary = "Phishing-resistant authentication is seen or required on some sensitive routes, not required on all."
	default:
		res.Summary = "No sensitive route requires phishing-resistant authentication."
	}
	if len(lacking) > 0 {
		r := lacking[0]
		res.Next = &NextStep{
			Text: "Create an authentication context (e.g. c1) in Entra ID bound by Conditional Access to the phishing-resistant MFA strength, and require it on sensitive routes.",
			YAML: routeSnippet(r, "allow: "+withCriterion(r.Spec.Rule, "auth_context: [c1]")),
		}
	}
	return res
}

func checkClaimsChallenge(in *Inputs) Result {
	var stepUps []*Route
	for i := range in.Routes {
		if r := &in.Routes[i]; r.Open() && mentions(r.Spec.Rule, stepUp) {
			stepUps = append(stepUps, r)
		}
	}
	entra := slices.ContainsFunc(in.Cfg.Identity.Providers, func(p config.Provider) bool { return p.Type == "entra" })
	res := Result{}
	for _, r := range stepUps {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": step-up rule " + flowRule(r.Spec.Rule)})
	}
	switch {
	case len(stepUps) == 0:
		res.Outcome = Fail
		res.Summary = "No route asks for MFA or an authentication context, so no caller is ever asked to step up."
		if rs := sensitiveOpen(in); len(rs) > 0 {
			res.Next = &NextStep{Text: "Require MFA or an authentication context on a sensitive route: CAE-capable clients (xms_cc cp1) then get a claims challenge instead of a bare 403.",
				YAML: routeSnippet(rs[0], "allow: "+withCriterion(rs[0].Spec.Rule, "auth_context: [c1]"))}
		} else {
			res.Next = &NextStep{Text: "Require MFA or an authentication context on the routes that matter: CAE-capable clients then get a claims challenge instead of a bare 403.",
				YAML: "      - name: <route>\n        allow: { roles: [<role>], auth_context: [c1] }\n"}
		}
	case !entra:
		res.Outcome = Partial
		res.Summary = "Step-up rules exist, but claims challenges are answered only for Entra ID clients (xms_cc cp1) and no Entra ID provider is configured."
		res.Next = &NextStep{Text: "Claims challenges are an Entra ID protocol; with another provider, clients must re-authenticate on their own after a 403 mfa_missing.",
			YAML: "identity:\n  providers:\n    - name: corp\n      type: entra\n      tenant: <tenant id>\n      client_id: <the API's application id>\n"}
	default:
		res.Outcome = Pass
		res.Summary = fmt.Sprintf("%s for step-up; CAE-capable Entra ID clients get a claims challenge (401 insufficient_claims) instead of a 403.", plural(len(stepUps), "route asks", "routes ask"))
	}
	return res
}
