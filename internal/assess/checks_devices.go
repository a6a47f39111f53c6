package assess

import "fmt"

var deviceChecks = []check{
	{"DV-01", "Device signals take part in access decisions", Devices, "Policy Enforcement & Compliance Monitoring", Initial, checkDeviceSignals},
	{"DV-02", "Sensitive routes require a compliant or managed device", Devices, "Resource Access", Advanced, checkDeviceOnSensitive},
	{"DV-03", "Machines prove themselves with certificates (mTLS)", Devices, "Asset & Supply Chain Risk Management", Advanced, checkClientCerts},
	{"DV-04", "Traffic shows a verified device on every user request", Devices, "Policy Enforcement & Compliance Monitoring", Optimal, checkDeviceTraffic},
}

const deviceCriterion = "device: { claims: { xms_compliant: [\"true\"] } }"

func checkDeviceSignals(in *Inputs) Result {
	open, with := 0, []*Route{}
	for i := range in.Routes {
		r := &in.Routes[i]
		if !r.Open() {
			continue
		}
		open++
		if mentions(r.Spec.Rule, deviceRule) || requiresDevice(r) {
			with = append(with, r)
		}
	}
	res := Result{}
	for _, r := range with {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": " + flowRule(r.Spec.Rule)})
	}
	switch {
	case open == 0:
		res.Outcome, res.Summary = NotApplicable, "No route is open to anyone."
	case len(with) == 0:
		res.Outcome, res.Summary = Fail, "No route looks at the caller's device: any device with a valid token gets in."
		r := firstOpen(in)
		res.Next = &NextStep{
			Text: "Have Conditional Access put device claims in tokens (for example xms_compliant or deviceid) and require them.",
			YAML: routeSnippet(r, "allow: "+withCriterion(r.Spec.Rule, deviceCriterion)),
		}
	default:
		res.Outcome = Pass
		res.Summary = fmt.Sprintf("%d of %d open routes %s device claims.", len(with), open, verb(len(with), "checks", "check"))
	}
	return res
}

func firstOpen(in *Inputs) *Route {
	for _, r := range sensitiveOpen(in) {
		return r
	}
	for i := range in.Routes {
		if in.Routes[i].Open() {
			return &in.Routes[i]
		}
	}
	return &in.Routes[0]
}

func checkDeviceOnSensitive(in *Inputs) Result {
	routes := sensitiveOpen(in)
	var lacking []*Route
	for _, r := range routes {
		if !requiresDevice(r) {
			lacking = append(lacking, r)
		}
	}
	res := Result{
		Outcome: share(len(routes)-len(lacking), len(routes)),
		Measure: &Measure{Num: len(routes) - len(lacking), Den: len(routes), Of: "sensitive routes requiring device claims"},
	}
	switch res.Outcome {
	case NotApplicable:
		res.Measure = nil
		res.Summary = "No " + sensitiveNote + " are open to anyone."
		return res
	case Pass:
		res.Summary = "Every sensitive route requires device claims."
	default:
		res.Summary = fmt.Sprintf("%d of %d sensitive routes %s any device.", len(lacking), len(routes), verb(len(lacking), "accepts", "accept"))
	}
	for _, r := range lacking {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": no device claims required"})
	}
	if len(lacking) > 0 {
		r := lacking[0]
		res.Next = &NextStep{Text: "Require a compliant (or managed) device on sensitive routes.", YAML: routeSnippet(r, "allow: "+withCriterion(r.Spec.Rule, deviceCriterion))}
	}
	return res
}

func checkClientCerts(in *Inputs) Result {
	res := Result{}
	mtls := in.Capability("identity.mtls")
	if mtls == Supported && set(in.Cfg, "identity.mtls") {
		res.Outcome = Pass
		res.Summary = "Workloads are identified by their client certificates (identity.mtls)."
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc("identity.mtls"), Text: "identity.mtls is configured"})
		return res
	}
	t := in.Cfg.Listen.TLS
	switch {
	case t != nil && t.ClientAuth == "require":
		res.Outcome = Pass
		res.Summary = "Every client connection must present a certificate from a trusted CA."
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc("listen.tls.client_auth"), Text: "listen.tls.client_auth: require"})
	case t != nil && t.ClientAuth == "optional":
		res.Outcome = Partial
		res.Summary = "Client certificates are verified when presented but not required."
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc("listen.tls.client_auth"), Text: "listen.tls.client_auth: optional"})
	default:
		res.Outcome = Fail
		res.Summary = "No client presents a certificate: machines are known only by the tokens they carry."
	}
	if mtls != Supported {
		res.Evidence = append(res.Evidence, Evidence{Text: "workload identity from certificates (identity.mtls): not available in this version"})
	}
	if res.Outcome.Blocks() {
		res.Next = &NextStep{
			Text: "Ask clients for certificates issued by your CA; require them where only machines call.",
			YAML: "listen:\n  tls: { cert_file: gw.pem, key_file: gw.key, client_ca_file: clients-ca.pem, client_auth: require }\n",
		}
	}
	return res
}

func checkDeviceTraffic(in *Inputs) Result {
	t := in.Traffic
	if t == nil {
		return Result{Outcome: Unknown, Summary: "No audit trail to read: " + in.TrafficNote + "."}
	}
	all := func(*Route) bool { return true }
	users := t.sum(in.Routes, all, func(rt *RouteTraffic) int { return rt.UserAllowed })
	ok := t.sum(in.Routes, all, func(rt *RouteTraffic) int { return rt.DeviceOK })
	res := Result{Outcome: trafficShare(ok, users), Measure: &Measure{Num: ok, Den: users, Of: "user requests with a verified device"}}
	if users == 0 {
		res.Measure = nil
		res.Summary = fmt.Sprintf("No user requests reached an upstream in the last %s.", formatSince(in.Since))
		return res
	}
	res.Summary = fmt.Sprintf("%d%% of user requests passed a device check (target 100%%).", ok*100/users)
	for _, r := range in.Routes {
		if rt := t.Routes[r.Name]; rt != nil && rt.UserAllowed > 0 && rt.DeviceOK < rt.UserAllowed {
			res.Evidence = append(res.Evidence, Evidence{Where: "audit", Text: fmt.Sprintf("%s: %d of %d user requests without a device check", r.Name, rt.UserAllowed-rt.DeviceOK, rt.UserAllowed)})
		}
	}
	if res.Outcome.Blocks() {
		res.Next = &NextStep{Text: "Require device claims on every route users call (see DV-02).", YAML: "      - name: <route>\n        allow: { roles: [<role>], " + deviceCriterion + " }\n"}
	}
	return res
}
