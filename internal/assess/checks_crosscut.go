package assess

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

var visibilityChecks = []check{
	{"VA-01", "Every decision is audited", Visibility, "Visibility & Analytics", Initial, checkAudit},
	{"VA-02", "The audit trail is tamper-evident, with a key", Visibility, "Visibility & Analytics", Advanced, checkTamperEvidence},
	{"VA-03", "Audit events reach a SIEM", Visibility, "Visibility & Analytics", Advanced, checkSIEM},
	{"VA-04", "Detection rules watch the traffic", Visibility, "Visibility & Analytics", Optimal, checkDetection},
	{"VA-05", "Alerts are raised and actioned", Visibility, "Visibility & Analytics", Optimal, checkAlerts},
}

var automationChecks = []check{
	{"AO-01", "Configuration reloads without a restart", Automation, "Automation & Orchestration", Initial, checkHotReload},
	{"AO-02", "The configuration is under version control", Automation, "Automation & Orchestration", Advanced, checkVersionControl},
	{"AO-03", "Limits hold across gateway nodes", Automation, "Automation & Orchestration", Advanced, checkSharedState},
	{"AO-04", "Adaptive responses act on detections", Automation, "Automation & Orchestration", Optimal, checkAdaptive},
}

var governanceChecks = []check{
	{"GV-01", "Audit retention is defined", Governance, "Governance", Initial, checkRetention},
	{"GV-02", "Policy tests exist and pass", Governance, "Governance", Initial, checkPolicyTests},
	{"GV-03", "Every route is covered by a policy test", Governance, "Governance", Advanced, checkTestCoverage},
	{"GV-04", "Signing keys rotate without a restart", Governance, "Governance", Advanced, checkKeyRotation},
	{"GV-05", "No unused routes", Governance, "Governance", Advanced, checkUnusedRoutes},
	{"GV-06", "Privileged routes use just-in-time access", Governance, "Governance", Optimal, checkJIT},
}

// capable returns the first of the key paths this version supports.
func capable(in *Inputs, paths ...string) (string, bool) {
	for _, p := range paths {
		if in.Capability(p) == Supported {
			return p, true
		}
	}
	return "", false
}

const storeSnippet = "store: { driver: sqlite, dsn: ztgate.db }   # or postgres://...\n"

func checkAudit(in *Inputs) Result {
	st := in.Cfg.Store
	if st == nil {
		return Result{Outcome: Fail, Summary: "No store is configured: decisions are only logged, with no durable, verifiable trail.",
			Next: &NextStep{Text: "Configure a store; every request's event is then durable before its answer.", YAML: storeSnippet}}
	}
	where := "the " + st.Driver + " store"
	if in.Cfg.Audit.Commit != "store" {
		where = "the local audit journal, shipped to the " + st.Driver + " store,"
	}
	res := Result{Outcome: Pass, Summary: fmt.Sprintf("Every request's decision is written to %s before the client hears it (audit.on_failure: %s).", where, in.Cfg.Audit.OnFailure),
		Evidence: []Evidence{{Where: in.loc("store"), Text: "store.driver: " + st.Driver}}}
	if t := in.Traffic; t != nil {
		res.Evidence = append(res.Evidence, Evidence{Where: "audit", Text: fmt.Sprintf("%d events in the last %s from %s", t.Events, formatSince(in.Since), plural(len(t.Nodes), "node", "nodes"))})
	}
	return res
}

func checkTamperEvidence(in *Inputs) Result {
	switch {
	case in.Cfg.Store == nil:
		return Result{Outcome: Fail, Summary: "There is no audit trail (no store).", Next: &NextStep{Text: "Configure a store and a chain key.", YAML: storeSnippet + "audit: { hmac_key: \"${secret:kv/audit-chain-key}\" }\n"}}
	case in.Cfg.Audit.HMACKey == "":
		return Result{Outcome: Partial, Summary: "Events are hash-chained with plain SHA-256: an edit is detected, but someone with write access to the store can rebuild the chain.",
			Next: &NextStep{Text: "Key the chain: without the key, no one can rebuild it after an edit. `ztgate audit verify` checks it.", YAML: "audit:\n  hmac_key: \"${secret:kv/audit-chain-key}\"\n"}}
	}
	return Result{Outcome: Pass, Summary: "Events are chained with an HMAC: an edit, deletion or reordering is detected by `ztgate audit verify`, and the chain cannot be rebuilt without the key.",
		Evidence: []Evidence{{Where: in.loc("audit.hmac_key"), Text: "audit.hmac_key is set (value not shown)"}}}
}

var siemTypes = []string{"sentinel", "syslog", "otlp", "webhook"}

func checkSIEM(in *Inputs) Result {
	if in.Capability("audit.exporters") != Supported {
		return Result{Outcome: NotAvailable, Summary: "Audit exporters (audit.exporters) are not available in this version; events stay in the store.",
			Next: &NextStep{Text: "When it lands: send events to Microsoft Sentinel (ASIM WebSession) or your SIEM.", YAML: "audit:\n  exporters:\n    - { type: sentinel, endpoint: \"https://<dce>.ingest.monitor.azure.com\", dcr_id: dcr-<id>, stream: Custom-ZtgateWebSession, auth: managed_identity }\n"}}
	}
	res := Result{}
	siem := 0
	for i, e := range listAt(in.Cfg, "audit.exporters") {
		typ := stringAt(e, "type")
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(fmt.Sprintf("audit.exporters[%d]", i)), Text: "exporter " + typ})
		if slices.Contains(siemTypes, typ) {
			siem++
		}
	}
	next := &NextStep{Text: "Send events to your SIEM.", YAML: "audit:\n  exporters:\n    - { type: syslog, network: tls, address: \"siem.internal:6514\" }\n"}
	switch {
	case siem > 0:
		res.Outcome, res.Summary = Pass, fmt.Sprintf("Events go to %s.", plural(siem, "SIEM or log pipeline", "SIEMs or log pipelines"))
	case len(res.Evidence) > 0:
		res.Outcome, res.Summary, res.Next = Partial, "Events are exported to local files only.", next
	default:
		res.Outcome, res.Summary, res.Next = Fail, "No exporter is configured: no one watches the events as they happen.", next
	}
	return res
}

func checkDetection(in *Inputs) Result {
	key, ok := capable(in, "detect")
	if !ok {
		return Result{Outcome: NotAvailable, Summary: "Streaming detection rules are not available in this version; only dependency alerts are raised.",
			Next: &NextStep{Text: "Until then, run detections in your SIEM over the exported events."}}
	}
	if set(in.Cfg, key) {
		return Result{Outcome: Pass, Summary: "Detection rules are configured.", Evidence: []Evidence{{Where: in.loc(key), Text: key + " is configured"}}}
	}
	return Result{Outcome: Fail, Summary: "No detection rules are configured.", Next: &NextStep{Text: "Turn on the detection rules (see the configuration reference for " + key + ")."}}
}

func checkAlerts(in *Inputs) Result {
	if in.Traffic == nil {
		return Result{Outcome: Unknown, Summary: "No audit trail to read: " + in.TrafficNote + "."}
	}
	res := Result{Outcome: NotAvailable, Summary: "Alerts are raised and kept, but acknowledging and resolving them is not available in this version."}
	rules := make([]string, 0, len(in.Traffic.Alerts))
	for r := range in.Traffic.Alerts {
		rules = append(rules, r)
	}
	slices.Sort(rules)
	for _, r := range rules {
		res.Evidence = append(res.Evidence, Evidence{Where: "audit", Text: fmt.Sprintf("alert %s raised %s", r, plural(in.Traffic.Alerts[r], "time", "times"))})
	}
	if len(rules) == 0 {
		res.Evidence = append(res.Evidence, Evidence{Where: "audit", Text: fmt.Sprintf("no alerts in the last %s", formatSince(in.Since))})
	}
	res.Next = &NextStep{Text: "Until then, review `ztgate alerts` (or GET /v1/alerts) daily, or route the alerts to your SIEM."}
	return res
}

func checkHotReload(in *Inputs) Result {
	res := Result{Outcome: Pass, Summary: "A change to the file or SIGHUP reloads the configuration; a broken file is refused and the previous one keeps serving."}
	if t := in.Traffic; t != nil {
		res.Evidence = append(res.Evidence, Evidence{Where: "audit", Text: fmt.Sprintf("%s served in the last %s", plural(len(t.PolicyVersions), "configuration version", "configuration versions"), formatSince(in.Since))})
	}
	return res
}

func checkVersionControl(in *Inputs) Result {
	if in.Repo == "" {
		return Result{Outcome: Fail, Summary: "The configuration is not in a git work tree: changes to policy have no history or review.",
			Next: &NextStep{Text: "Keep the configuration and its policy tests in git, review changes, and deploy from CI after `ztgate check` and `ztgate policy test`."}}
	}
	return Result{Outcome: Pass, Summary: "The configuration is in a git work tree.", Evidence: []Evidence{{Where: in.File, Text: "git repository found at " + filepathSlash(in.Repo)}}}
}

func filepathSlash(p string) string { return strings.ReplaceAll(p, "\\", "/") }

func checkSharedState(in *Inputs) Result {
	if in.Cfg.State.Driver == "redis" {
		return Result{Outcome: Pass, Summary: "Rate limits and quotas are shared by every node through Redis.", Evidence: []Evidence{{Where: in.loc("state.driver"), Text: "state.driver: redis"}}}
	}
	nodes := 0
	if in.Traffic != nil {
		nodes = len(in.Traffic.Nodes)
	}
	if nodes <= 1 {
		return Result{Outcome: NotApplicable, Summary: "One gateway node (as far as the audit trail shows): per-node limits are the gateway's limits."}
	}
	return Result{Outcome: Fail, Summary: fmt.Sprintf("%d nodes each keep their own limits: a caller gets %d times the limit.", nodes, nodes),
		Evidence: []Evidence{{Where: "audit", Text: fmt.Sprintf("events from %d nodes", nodes)}},
		Next:     &NextStep{Text: "Share limits through Redis.", YAML: "state: { driver: redis, url: \"rediss://<host>:6380/0\" }\n"}}
}

func checkAdaptive(in *Inputs) Result {
	key, ok := capable(in, "detect.responses", "detect.actions")
	if !ok {
		return Result{Outcome: NotAvailable, Summary: "Adaptive responses (blocking or stepping up a caller on a detection) are not available in this version."}
	}
	if set(in.Cfg, key) {
		return Result{Outcome: Pass, Summary: "Detections trigger responses.", Evidence: []Evidence{{Where: in.loc(key), Text: key + " is configured"}}}
	}
	return Result{Outcome: Fail, Summary: "Detections raise alerts but trigger no response.", Next: &NextStep{Text: "Configure responses (see the configuration reference for " + key + ")."}}
}

func checkRetention(in *Inputs) Result {
	if in.Cfg.Store == nil {
		return Result{Outcome: NotApplicable, Summary: "There is no audit trail (no store) to keep."}
	}
	if r := in.Cfg.Audit.Retention.D(); r > 0 {
		return Result{Outcome: Pass, Summary: fmt.Sprintf("Audit events are kept for %s and then removed; the chain stays verifiable.", formatSince(r)),
			Evidence: []Evidence{{Where: in.loc("audit.retention"), Text: "audit.retention: " + formatSince(r)}}}
	}
	return Result{Outcome: Partial, Summary: "Audit events are kept forever: no retention decision is written down.",
		Next: &NextStep{Text: "Decide how long events are kept (your records policy) and write it down.", YAML: "audit:\n  retention: 365d\n"}}
}

func checkPolicyTests(in *Inputs) Result {
	next := &NextStep{Text: "Write policy tests beside the configuration (" + in.File[:len(in.File)-len(extOf(in.File))] + "_test.yaml or tests/*_test.yaml) and run them in CI with `ztgate policy test`.",
		YAML: "tests:\n  - name: a reader reads\n    request: { method: GET, url: \"https://api.example.com/orders/42\", claims: { sub: alice, roles: [Orders.Read] } }\n    expect: { decision: allow }\n"}
	if in.Tests == nil {
		return Result{Outcome: Fail, Summary: "No policy tests were found: a policy change is not checked before it serves.", Next: next}
	}
	cases, failed := in.Tests.Totals()
	res := Result{Measure: &Measure{Num: cases - failed, Den: cases, Of: "policy test cases passing"}}
	for _, f := range in.Tests.Files {
		text := fmt.Sprintf("%d cases, %d failed", f.Cases, f.Failed)
		if f.Err != "" {
			text = "cannot be run: " + f.Err
		}
		res.Evidence = append(res.Evidence, Evidence{Where: f.Name, Text: text})
	}
	if failed > 0 {
		res.Outcome = Fail
		res.Summary = fmt.Sprintf("%s of the policy tests fail against this configuration.", plural(failed, "case or file", "cases or files"))
		res.Next = &NextStep{Text: "Run `ztgate policy test --config " + in.File + " " + in.Tests.Files[0].Name + "` and fix the rule or the test."}
		return res
	}
	res.Outcome = Pass
	res.Summary = fmt.Sprintf("%s pass against this configuration.", plural(cases, "policy test case", "policy test cases"))
	return res
}

func extOf(name string) string {
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		return name[i:]
	}
	return ""
}

func checkTestCoverage(in *Inputs) Result {
	if len(in.Routes) == 0 {
		return Result{Outcome: NotApplicable, Summary: "No routes are configured."}
	}
	covered := map[string]bool{}
	if in.Tests != nil {
		covered = in.Tests.Covered
	}
	var missing []*Route
	for i := range in.Routes {
		if r := &in.Routes[i]; !covered[r.Name] {
			missing = append(missing, r)
		}
	}
	n := len(in.Routes)
	res := Result{Outcome: share(n-len(missing), n), Measure: &Measure{Num: n - len(missing), Den: n, Of: "routes some policy test reaches"}}
	for _, r := range missing {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": no test reaches it"})
	}
	switch res.Outcome {
	case Pass:
		res.Summary = "Every route is reached by at least one policy test."
	default:
		res.Summary = fmt.Sprintf("%d of %d routes %s not tested.", len(missing), n, verb(len(missing), "is", "are"))
		r := missing[0]
		method := "GET"
		if len(r.Route.Match.Methods) > 0 {
			method = r.Route.Match.Methods[0]
		}
		res.Next = &NextStep{Text: "Add a case that reaches each untested route, one allowed and one denied caller.",
			YAML: fmt.Sprintf("tests:\n  - name: %s denies a caller without the right\n    request: { method: %s, url: \"https://<host>%s\", claims: { sub: mallory } }\n    expect: { decision: deny, route: %s }\n", r.Name, method, samplePath(r.Route.Match.Path), r.Name)}
	}
	return res
}

// samplePath turns a route pattern into a path it matches.
func samplePath(p string) string {
	var out []string
	for _, seg := range strings.Split(p, "/") {
		switch {
		case seg == "**" || seg == "*":
			out = append(out, "x")
		case strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}"):
			out = append(out, "1")
		default:
			out = append(out, seg)
		}
	}
	return strings.Join(out, "/")
}

// MaxKeyRefresh is the longest interval between refreshes of a provider's
// signing keys that lets a rotation take effect within a day.
const MaxKeyRefresh = 24 * time.Hour

func checkKeyRotation(in *Inputs) Result {
	ps := in.Cfg.Identity.Providers
	if len(ps) == 0 {
		return Result{Outcome: NotApplicable, Summary: "No identity provider is configured."}
	}
	res := Result{Outcome: Pass, Summary: "Every provider's signing keys are refreshed at least daily, and an unknown key id triggers a refresh: the provider can rotate keys without a restart."}
	for i, p := range ps {
		path := fmt.Sprintf("identity.providers[%d]", i)
		if p.JWKSRefresh.D() > MaxKeyRefresh {
			res.Outcome = Fail
			res.Evidence = append(res.Evidence, Evidence{Where: in.loc(path + ".jwks_refresh"), Text: fmt.Sprintf("%s: keys refreshed every %s", p.Name, formatLifetime(p.JWKSRefresh.D()))})
			res.Next = &NextStep{Text: "Refresh keys at least daily so a revoked key stops being trusted.", YAML: fmt.Sprintf("identity:\n  providers:\n    - name: %s\n      jwks_refresh: 1h\n", p.Name)}
		} else {
			res.Evidence = append(res.Evidence, Evidence{Where: in.loc(path), Text: fmt.Sprintf("%s: keys refreshed every %s", p.Name, formatLifetime(p.JWKSRefresh.D()))})
		}
	}
	if res.Outcome == Fail {
		res.Summary = "A provider's keys are refreshed less than daily: a key the provider revoked stays trusted."
	}
	res.Evidence = append(res.Evidence, Evidence{Text: "rotation of audit.hmac_key and of API keys: not available in this version"})
	return res
}

func checkUnusedRoutes(in *Inputs) Result {
	t := in.Traffic
	if t == nil {
		return Result{Outcome: Unknown, Summary: "No audit trail to read: " + in.TrafficNote + "."}
	}
	if t.Events == 0 {
		return Result{Outcome: Unknown, Summary: fmt.Sprintf("No traffic in the last %s to judge by.", formatSince(in.Since))}
	}
	var open, unused []*Route
	for i := range in.Routes {
		r := &in.Routes[i]
		if !r.Open() {
			continue
		}
		open = append(open, r)
		if rt := t.Routes[r.Name]; rt == nil || rt.Allowed == 0 {
			unused = append(unused, r)
		}
	}
	res := Result{Outcome: share(len(open)-len(unused), len(open)), Measure: &Measure{Num: len(open) - len(unused), Den: len(open), Of: "open routes used in the window"}}
	switch res.Outcome {
	case NotApplicable:
		res.Measure = nil
		res.Summary = "No route is open to anyone."
		return res
	case Pass:
		res.Summary = fmt.Sprintf("Every open route let a caller through in the last %s.", formatSince(in.Since))
	default:
		res.Outcome = Partial
		res.Summary = fmt.Sprintf("%d of %d open routes let no caller through in the last %s: access no one uses is access to remove.", len(unused), len(open), formatSince(in.Since))
	}
	for _, r := range unused {
		res.Evidence = append(res.Evidence, Evidence{Where: in.loc(r.Path), Text: r.Name + ": no allowed request"})
	}
	if len(unused) > 0 {
		res.Next = &NextStep{Text: "Remove the route, or its allow rule so it denies, if no one needs it.", YAML: routeSnippet(unused[0], "# allow: removed: the route denies everyone")}
	}
	return res
}

func checkJIT(in *Inputs) Result {
	key, ok := capable(in, "access", "jit")
	if !ok {
		return Result{Outcome: NotAvailable, Summary: "Just-in-time access grants are not available in this version; privileged roles are standing grants.",
			Next: &NextStep{Text: "Until then, grant privileged app roles through Entra ID Privileged Identity Management, so the roles claim itself is just in time."}}
	}
	if set(in.Cfg, key) {
		return Result{Outcome: Pass, Summary: "Just-in-time access is configured.", Evidence: []Evidence{{Where: in.loc(key), Text: key + " is configured"}}}
	}
	return Result{Outcome: Fail, Summary: "Just-in-time access is available but not configured: privileged access is standing.", Next: &NextStep{Text: "Configure just-in-time grants for privileged routes (see the configuration reference for " + key + ")."}}
}
