package assess

import (
	"context"
	"slices"
	"time"

	"github.com/ztgate/ztgate/internal/alert"
	"github.com/ztgate/ztgate/internal/audit"
)

// AuditSource is the audit trail an assessment reads: the store.
type AuditSource interface {
	// EachEvent calls fn for the events since a time, newest first, at
	// most limit of them.
	EachEvent(ctx context.Context, since time.Time, limit int, fn func(*audit.Event) error) error
	// Alerts lists alerts raised since a time, newest first.
	Alerts(ctx context.Context, since time.Time, limit int) ([]alert.Alert, error)
}

// LongLived is the token lifetime above which a token counts as long-lived.
const LongLived = 24 * time.Hour

// phishingResistant are the amr values of phishing-resistant methods:
// hardware-bound keys (RFC 8176 hwk, sc), FIDO2 and Windows Hello for
// Business as Entra ID reports them. An authentication context (acrs) a
// route requires counts too: Conditional Access binds it to a strength.
var phishingResistant = []string{"hwk", "sc", "fido", "ngcmfa", "mngcmfa"}

// Traffic is what the audit trail says about the assessment window.
type Traffic struct {
	From, To  time.Time
	Events    int
	Limit     int
	Truncated bool // the window held more than Limit events; the newest were read

	Decisions      map[string]int // allow, deny, would_deny, error, preflight
	Routes         map[string]*RouteTraffic
	NoRoute        int            // denied with no_route
	Nodes          map[string]int // events by gateway node
	PolicyVersions map[string]int // events by configuration hash
	IdentityTypes  map[string]int // allowed requests by kind of caller

	AnonymousAllowed int // allowed without an identity
	WithoutReasons   int // allowed with no recorded reasons

	WithLifetime    int // allowed requests whose token lifetime is recorded
	LongLived       int
	LongLivedIDs    map[string]bool
	LongestLifetime time.Duration

	Alerts    map[string]int // by rule
	AlertsErr string
}

// RouteTraffic is one route's share of the window.
type RouteTraffic struct {
	Total, Allowed, WouldDeny, Denied int

	UserAllowed       int // allowed requests of users (people)
	MFA               int // of them, with amr mfa or an acrs
	PhishingResistant int // of them, with a phishing-resistant amr or an acrs
	DeviceOK          int // of them, with a passed device check

	FirstWouldDeny time.Time
}

// passed reports whether the request reached the upstream.
func passed(decision string) bool { return decision == "allow" || decision == "would_deny" }

func newTraffic(from, to time.Time, limit int) *Traffic {
	return &Traffic{
		From: from, To: to, Limit: limit,
		Decisions: map[string]int{}, Routes: map[string]*RouteTraffic{}, Nodes: map[string]int{},
		PolicyVersions: map[string]int{}, IdentityTypes: map[string]int{}, LongLivedIDs: map[string]bool{},
		Alerts: map[string]int{},
	}
}

func readTraffic(ctx context.Context, src AuditSource, from, to time.Time, limit int) (*Traffic, error) {
	t := newTraffic(from, to, limit)
	err := src.EachEvent(ctx, from, limit+1, func(e *audit.Event) error {
		if e.Time.After(to) {
			return nil
		}
		if t.Events == limit {
			t.Truncated = true
			return nil
		}
		t.add(e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	as, err := src.Alerts(ctx, from, 1000)
	if err != nil {
		t.AlertsErr = err.Error()
	}
	for _, a := range as {
		if !a.Time.After(to) {
			t.Alerts[a.Rule]++
		}
	}
	return t, nil
}

func (t *Traffic) add(e *audit.Event) {
	t.Events++
	t.Decisions[e.Decision]++
	if e.Node != "" {
		t.Nodes[e.Node]++
	}
	if e.PolicyVersion != "" {
		t.PolicyVersions[e.PolicyVersion]++
	}
	if e.Decision == "deny" && e.ResultDetails == "no_route" {
		t.NoRoute++
	}
	if e.Service == "" || e.Route == "" {
		return
	}
	name := e.Service + "/" + e.Route
	rt := t.Routes[name]
	if rt == nil {
		rt = &RouteTraffic{}
		t.Routes[name] = rt
	}
	rt.Total++
	switch {
	case e.Decision == "would_deny":
		rt.WouldDeny++
		if rt.FirstWouldDeny.IsZero() || e.Time.Before(rt.FirstWouldDeny) {
			rt.FirstWouldDeny = e.Time
		}
	case e.Decision == "deny" || e.Decision == "error":
		rt.Denied++
	}
	if !passed(e.Decision) {
		return
	}
	rt.Allowed++
	if e.Identity == "" {
		t.AnonymousAllowed++
	}
	if len(e.Reasons) == 0 {
		t.WithoutReasons++
	}
	if e.IdentityType != "" {
		t.IdentityTypes[e.IdentityType]++
	}
	if e.TokenLifetime > 0 {
		t.WithLifetime++
		lt := time.Duration(e.TokenLifetime) * time.Second
		t.LongestLifetime = max(t.LongestLifetime, lt)
		if lt > LongLived {
			t.LongLived++
			t.LongLivedIDs[e.Identity] = true
		}
	}
	if e.IdentityType != "user" {
		return
	}
	rt.UserAllowed++
	if slices.Contains(e.AuthMethods, "mfa") || len(e.AuthContext) > 0 {
		rt.MFA++
	}
	if len(e.AuthContext) > 0 || slices.ContainsFunc(e.AuthMethods, func(m string) bool { return slices.Contains(phishingResistant, m) }) {
		rt.PhishingResistant++
	}
	if slices.Contains(e.Reasons, "device_ok") {
		rt.DeviceOK++
	}
}

// sum adds up a field of the routes' traffic for the routes that keep.
func (t *Traffic) sum(routes []Route, keep func(*Route) bool, f func(*RouteTraffic) int) int {
	n := 0
	for i := range routes {
		r := &routes[i]
		if rt := t.Routes[r.Name]; rt != nil && keep(r) {
			n += f(rt)
		}
	}
	return n
}

// TrafficReport is the window's traffic as the report shows it.
type TrafficReport struct {
	Events         int            `json:"events"`
	Truncated      bool           `json:"truncated,omitempty"`
	Decisions      map[string]int `json:"decisions"`
	NoRoute        int            `json:"no_route"`
	Nodes          int            `json:"nodes"`
	PolicyVersions int            `json:"policy_versions"`
	IdentityTypes  map[string]int `json:"identity_types"`
	Routes         []RouteReport  `json:"routes"`
	Alerts         map[string]int `json:"alerts"`
}

// RouteReport is one route's traffic.
type RouteReport struct {
	Route     string `json:"route"`
	Total     int    `json:"total"`
	Allowed   int    `json:"allowed"` // reached the upstream, would_deny included
	WouldDeny int    `json:"would_deny"`
	Denied    int    `json:"denied"`
	Removed   bool   `json:"removed,omitempty"` // seen in traffic, no longer configured
}

func trafficReport(in *Inputs) *TrafficReport {
	t := in.Traffic
	if t == nil {
		return nil
	}
	tr := &TrafficReport{
		Events: t.Events, Truncated: t.Truncated, Decisions: t.Decisions, NoRoute: t.NoRoute,
		Nodes: len(t.Nodes), PolicyVersions: len(t.PolicyVersions), IdentityTypes: t.IdentityTypes, Alerts: t.Alerts,
	}
	seen := map[string]bool{}
	for _, r := range in.Routes {
		seen[r.Name] = true
		rr := RouteReport{Route: r.Name}
		if rt := t.Routes[r.Name]; rt != nil {
			rr.Total, rr.Allowed, rr.WouldDeny, rr.Denied = rt.Total, rt.Allowed, rt.WouldDeny, rt.Denied
		}
		tr.Routes = append(tr.Routes, rr)
	}
	var gone []string
	for name := range t.Routes {
		if !seen[name] {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		rt := t.Routes[name]
		tr.Routes = append(tr.Routes, RouteReport{Route: name, Total: rt.Total, Allowed: rt.Allowed, WouldDeny: rt.WouldDeny, Denied: rt.Denied, Removed: true})
	}
	return tr
}
