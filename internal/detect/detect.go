// Package detect watches the stream of audit events for attacks and misuse
// as they happen (failed-authentication spikes, probing, new countries,
// impossible travel, unusual hours or apps, volume spikes, a credential
// used from many places, revoked keys) and says what to do about each:
// notify, block the source for a while, or raise the caller's risk so
// policy can ask for more. It runs off the request path, fed with events
// once they are durable, and holds bounded state: per rule, at most MaxKeys
// keys, the least recently seen forgotten first.
package detect

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// Kinds of rule.
const (
	KindAuthFailures      = "auth_failures"      // failed authentications (401) per key
	KindDenials           = "denials"            // policy denials (403) per key: probing
	KindNewCountry        = "new_country"        // an identity seen from a country it never used
	KindImpossibleTravel  = "impossible_travel"  // two places too far apart for the time between
	KindOffHours          = "off_hours"          // an identity active at an hour it never used
	KindNewApp            = "new_app"            // an identity calling through a client app it never used
	KindVolumeSpike       = "volume_spike"       // requests per key far above the key's own baseline
	KindManyIPs           = "many_ips"           // one credential from many source addresses at once
	KindRevokedCredential = "revoked_credential" // a revoked or expired API key presented
	KindTenantNotAllowed  = "tenant_not_allowed" // a token from a tenant the provider does not accept
)

// Keys a rule counts by.
const (
	KeyIP       = "ip"
	KeyIdentity = "identity"
	KeyTenant   = "tenant"
	KeyAPIKey   = "api_key"
	KeyGlobal   = "global"
)

// Actions.
const (
	ActionNotify = "notify"
	ActionBlock  = "block"
	ActionStepUp = "step_up"
)

// Rule is one detection rule.
type Rule struct {
	Name      string
	Kind      string
	Key       string        // what is counted and acted on; a default per kind
	Threshold int           // events (or distinct addresses) that fire the rule
	Window    time.Duration // over which they are counted
	// Factor, for volume_spike and optionally auth_failures: fire when a
	// window's count exceeds Factor times the key's own average.
	Factor float64
	// Learn is how many events of a caller are seen before the
	// behavioural rules (new_country, off_hours, new_app) judge it;
	// volume_spike and a factored auth_failures judge a key once it has
	// been watched for 3 windows.
	Learn       int
	MaxSpeedKMH float64 // impossible_travel
	Severity    string  // low | medium | high
	Action      string  // notify | block | step_up
	For         time.Duration
}

// Defaults fills what a rule leaves unset.
func (r *Rule) Defaults() {
	if r.Key == "" {
		switch r.Kind {
		case KindAuthFailures:
			r.Key = KeyIP
		case KindManyIPs:
			r.Key = KeyIdentity
		case KindRevokedCredential:
			r.Key = KeyAPIKey
		case KindTenantNotAllowed:
			r.Key = KeyIP
		default:
			r.Key = KeyIdentity
		}
	}
	if r.Threshold == 0 {
		switch r.Kind {
		case KindAuthFailures, KindDenials:
			r.Threshold = 20
		case KindManyIPs:
			r.Threshold = 10
		case KindVolumeSpike:
			r.Threshold = 100
		default:
			r.Threshold = 1
		}
	}
	if r.Window == 0 {
		r.Window = time.Minute
		if r.Kind == KindVolumeSpike {
			r.Window = 5 * time.Minute
		}
	}
	if r.Factor == 0 && r.Kind == KindVolumeSpike {
		r.Factor = 5
	}
	if r.Learn == 0 {
		r.Learn = 20
	}
	if r.MaxSpeedKMH == 0 {
		r.MaxSpeedKMH = 1000
	}
	if r.Severity == "" {
		r.Severity = "medium"
	}
	if r.Action == "" {
		r.Action = ActionNotify
	}
	if r.For == 0 {
		r.For = 15 * time.Minute
	}
}

// Validate reports a rule that cannot work.
func (r *Rule) Validate() error {
	switch r.Kind {
	case KindAuthFailures, KindDenials, KindNewCountry, KindImpossibleTravel, KindOffHours, KindNewApp,
		KindVolumeSpike, KindManyIPs, KindRevokedCredential, KindTenantNotAllowed:
	default:
		return fmt.Errorf("unknown kind %q", r.Kind)
	}
	switch r.Key {
	case KeyIP, KeyIdentity, KeyTenant, KeyAPIKey, KeyGlobal:
	default:
		return fmt.Errorf("unknown key %q", r.Key)
	}
	switch r.Kind {
	case KindNewCountry, KindImpossibleTravel, KindOffHours, KindNewApp:
		if r.Key != KeyIdentity && r.Key != KeyAPIKey {
			return fmt.Errorf("kind %s learns per caller: key must be identity or api_key", r.Kind)
		}
	case KindManyIPs:
		if r.Key == KeyIP || r.Key == KeyGlobal {
			return fmt.Errorf("kind many_ips counts addresses per credential: key must be identity, api_key or tenant")
		}
	}
	switch r.Action {
	case ActionNotify, ActionBlock, ActionStepUp:
	default:
		return fmt.Errorf("unknown action %q", r.Action)
	}
	if r.Action == ActionBlock && r.Key == KeyGlobal {
		return fmt.Errorf("action block needs something to block: key global cannot be blocked")
	}
	if r.Action == ActionStepUp && r.Key != KeyIdentity {
		return fmt.Errorf("action step_up raises an identity's risk: key must be identity")
	}
	switch r.Severity {
	case "low", "medium", "high":
	default:
		return fmt.Errorf("unknown severity %q", r.Severity)
	}
	if r.Threshold < 1 || r.Window <= 0 || r.Learn < 1 || r.Factor < 0 {
		return fmt.Errorf("threshold, window and learn must be positive")
	}
	return nil
}

// Event is what a rule looks at: a slice of an audit event.
type Event struct {
	Time      time.Time
	RequestID string
	Status    int
	Decision  string
	Reason    string // result details: the reason code
	SrcIP     string
	Identity  string // stable identity key; "" when the caller was not identified
	APIKey    string // API key id when the caller used one
	Tenant    string
	AppID     string
	Country   string
	Lat, Lon  float64
	HasGeo    bool
}

// Detection is a rule that fired.
type Detection struct {
	Time     time.Time
	Rule     string
	Kind     string
	Severity string
	Action   string
	KeyType  string // ip | identity | tenant | api_key | global
	Key      string
	For      time.Duration // how long a block or step-up lasts
	Summary  string
	Evidence []string // audit request ids
}

// MaxKeys bounds the keys each rule tracks.
const MaxKeys = 100_000

// maxEvidence bounds the request ids a detection carries.
const maxEvidence = 20

// Detector runs rules over events, in time order. Safe for concurrent use.
type Detector struct {
	mu      sync.Mutex
	rules   []*ruleState
	maxKeys int
}

type ruleState struct {
	Rule
	keys map[string]*keyState
}

// keyState is what one rule remembers of one key: a few common fields
// and the part its rule's kind needs, so that a hundred thousand callers
// cost little.
type keyState struct {
	first     time.Time // first event
	seen      time.Time // last event
	quietTill time.Time // no new detection before (one per window)

	cnt *counting
	win *windowed
	beh *behaviour
	geo *lastPlace
	ips []ipSeen
}

// counting: the times and request ids of the last Threshold events.
type counting struct {
	times []time.Time
	ids   []string
}

// windowed: the current window's count and the average of past ones.
type windowed struct {
	winStart time.Time
	count    int
	avg      float64
	windows  int
}

// behaviour: what a caller has done (countries, apps or hours).
type behaviour struct {
	events int
	seen   []string
	hours  [24]uint16
}

type lastPlace struct {
	lat, lon float64
	at       time.Time
	country  string
}

type ipSeen struct {
	ip string
	at time.Time
}

// New returns a detector; rules must have been defaulted and validated.
func New(rules []Rule) *Detector {
	d := &Detector{maxKeys: MaxKeys}
	for _, r := range rules {
		d.rules = append(d.rules, &ruleState{Rule: r, keys: map[string]*keyState{}})
	}
	return d
}

// SetMaxKeys changes the per-rule bound (tests).
func (d *Detector) SetMaxKeys(n int) { d.mu.Lock(); d.maxKeys = n; d.mu.Unlock() }

// Keys returns the keys tracked by all rules (memory accounting).
func (d *Detector) Keys() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, r := range d.rules {
		n += len(r.keys)
	}
	return n
}

// Observe runs every rule over ev and returns what fired.
func (d *Detector) Observe(ev *Event) []Detection {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Detection
	for _, r := range d.rules {
		if det, ok := d.observe(r, ev); ok {
			out = append(out, det)
		}
	}
	return out
}

func keyOf(r *Rule, ev *Event) string {
	switch r.Key {
	case KeyIP:
		return ev.SrcIP
	case KeyIdentity:
		return ev.Identity
	case KeyTenant:
		return ev.Tenant
	case KeyAPIKey:
		return ev.APIKey
	case KeyGlobal:
		return "*"
	}
	return ""
}

func authFailed(ev *Event) bool { return ev.Status == 401 }
func denied(ev *Event) bool     { return ev.Status == 403 && ev.Decision == "deny" }

func (d *Detector) state(r *ruleState, key string, now time.Time) *keyState {
	ks := r.keys[key]
	if ks == nil {
		if len(r.keys) >= d.maxKeys {
			d.evict(r, now)
		}
		ks = &keyState{first: now}
		r.keys[key] = ks
	}
	ks.seen = now
	return ks
}

// evict forgets the keys not seen for a window (counting rules lose
// nothing by it), then, if that was not enough, the least recently seen
// tenth.
func (d *Detector) evict(r *ruleState, now time.Time) {
	horizon := now.Add(-r.Window)
	behavioural := r.Kind == KindNewCountry || r.Kind == KindOffHours || r.Kind == KindNewApp || r.Kind == KindImpossibleTravel || r.Kind == KindVolumeSpike
	if !behavioural {
		for k, ks := range r.keys {
			if ks.seen.Before(horizon) {
				delete(r.keys, k)
			}
		}
		if len(r.keys) < d.maxKeys {
			return
		}
	}
	seen := make([]int64, 0, len(r.keys))
	for _, ks := range r.keys {
		seen = append(seen, ks.seen.UnixNano())
	}
	sort.Slice(seen, func(i, j int) bool { return seen[i] < seen[j] })
	cut := seen[len(seen)/10]
	for k, ks := range r.keys {
		if ks.seen.UnixNano() <= cut {
			delete(r.keys, k)
		}
	}
}

func (d *Detector) observe(r *ruleState, ev *Event) (Detection, bool) {
	// Which events a rule looks at.
	switch r.Kind {
	case KindAuthFailures:
		if !authFailed(ev) {
			return Detection{}, false
		}
	case KindDenials:
		if !denied(ev) {
			return Detection{}, false
		}
	case KindRevokedCredential:
		if ev.Reason != "api_key_revoked" && ev.Reason != "api_key_expired" {
			return Detection{}, false
		}
	case KindTenantNotAllowed:
		if ev.Reason != "tenant_not_allowed" {
			return Detection{}, false
		}
	default:
		// Behaviour is learnt from the requests that got through
		// authentication.
		if authFailed(ev) {
			return Detection{}, false
		}
	}
	key := keyOf(&r.Rule, ev)
	if key == "" {
		return Detection{}, false
	}
	now := ev.Time
	ks := d.state(r, key, now)
	det := Detection{Time: now, Rule: r.Name, Kind: r.Kind, Severity: r.Severity, Action: r.Action, KeyType: r.Key, Key: key, For: r.For}
	fire := func(summary string, evidence []string) (Detection, bool) {
		if now.Before(ks.quietTill) {
			return Detection{}, false
		}
		ks.quietTill = now.Add(r.Window)
		det.Summary = summary
		if len(evidence) > maxEvidence {
			evidence = evidence[len(evidence)-maxEvidence:]
		}
		det.Evidence = append([]string(nil), evidence...)
		return det, true
	}
	switch r.Kind {
	case KindAuthFailures, KindDenials, KindRevokedCredential, KindTenantNotAllowed:
		if r.Factor > 0 && r.Kind == KindAuthFailures {
			if ks.win == nil {
				ks.win = &windowed{}
			}
			if n, avg, ok := ks.win.count1(now, r.Window); ok && n >= r.Threshold && float64(n) > r.Factor*avg {
				return fire(fmt.Sprintf("%d failed authentications from %s %s in %v, %.0f× its usual %.1f", n, r.Key, key, r.Window, float64(n)/math.Max(avg, 1), avg), []string{ev.RequestID})
			}
		}
		if ks.cnt == nil {
			ks.cnt = &counting{}
		}
		if c := ks.cnt; c.push(now, ev.RequestID, r.Threshold, r.Window) {
			what := map[string]string{KindAuthFailures: "failed authentications", KindDenials: "denied requests",
				KindRevokedCredential: "uses of a revoked or expired API key", KindTenantNotAllowed: "tokens from a tenant not allowed"}[r.Kind]
			d, ok := fire(fmt.Sprintf("%d %s from %s %s within %v", r.Threshold, what, r.Key, key, r.Window), c.ids)
			if ok {
				c.times, c.ids = c.times[:0], c.ids[:0]
			}
			return d, ok
		}
	case KindVolumeSpike:
		if ks.win == nil {
			ks.win = &windowed{}
		}
		if n, avg, ok := ks.win.count1(now, r.Window); ok && n >= r.Threshold && float64(n) > r.Factor*avg {
			return fire(fmt.Sprintf("%d requests by %s %s in %v, %.0f× its usual %.1f", n, r.Key, key, r.Window, float64(n)/math.Max(avg, 1), avg), []string{ev.RequestID})
		}
	case KindManyIPs:
		found := false
		kept := ks.ips[:0]
		for _, x := range ks.ips {
			if x.ip == ev.SrcIP {
				x.at, found = now, true
			}
			if now.Sub(x.at) <= r.Window {
				kept = append(kept, x)
			}
		}
		ks.ips = kept
		if !found {
			ks.ips = append(ks.ips, ipSeen{ev.SrcIP, now})
		}
		if len(ks.ips) >= r.Threshold {
			ips := make([]string, 0, len(ks.ips))
			for _, x := range ks.ips {
				ips = append(ips, x.ip)
			}
			sort.Strings(ips)
			if len(ips) > 5 {
				ips = append(ips[:5], "…")
			}
			n := len(ks.ips)
			ks.ips = ks.ips[:0]
			return fire(fmt.Sprintf("%s %s used from %d addresses within %v (%s)", r.Key, key, n, r.Window, strings.Join(ips, ", ")), []string{ev.RequestID})
		}
	case KindNewCountry, KindNewApp:
		v, what := ev.Country, "from %s, a country it never used before"
		if r.Kind == KindNewApp {
			v, what = ev.AppID, "through client app %s, one it never used before"
		}
		if v == "" {
			return Detection{}, false
		}
		if ks.beh == nil {
			ks.beh = &behaviour{}
		}
		b := ks.beh
		known := contains(b.seen, v)
		learnt := b.events >= r.Learn
		b.events++
		if !known {
			b.seen = addBounded(b.seen, v, 32)
			if learnt {
				return fire(fmt.Sprintf("%s %s called "+what, r.Key, key, v), []string{ev.RequestID})
			}
		}
	case KindImpossibleTravel:
		if !ev.HasGeo {
			return Detection{}, false
		}
		last := ks.geo
		ks.geo = &lastPlace{lat: ev.Lat, lon: ev.Lon, at: now, country: ev.Country}
		if last == nil {
			return Detection{}, false
		}
		km := distanceKM(last.lat, last.lon, ev.Lat, ev.Lon)
		hours := now.Sub(last.at).Hours()
		if km > 500 && km > r.MaxSpeedKMH*hours {
			return fire(fmt.Sprintf("%s %s in %s and then %s: %.0f km in %v (more than %.0f km/h)", r.Key, key, placeName(last.country), placeName(ev.Country), km, now.Sub(last.at).Round(time.Second), r.MaxSpeedKMH), []string{ev.RequestID})
		}
	case KindOffHours:
		if ks.beh == nil {
			ks.beh = &behaviour{}
		}
		b := ks.beh
		h := now.UTC().Hour()
		// Hours are judged after a day of watching, so a caller's first
		// morning does not make its afternoon unusual.
		learnt := b.events >= r.Learn && now.Sub(ks.first) >= 24*time.Hour
		usual := b.hours[h] > 0
		b.events++
		if b.hours[h] < math.MaxUint16 {
			b.hours[h]++
		}
		if learnt && !usual {
			return fire(fmt.Sprintf("%s %s active at %02d:00 UTC, an hour it has not used in %d requests", r.Key, key, h, b.events-1), []string{ev.RequestID})
		}
	}
	return Detection{}, false
}

// push records an event and reports whether Threshold of them fall within
// window.
func (c *counting) push(t time.Time, id string, threshold int, window time.Duration) bool {
	if len(c.times) == threshold {
		copy(c.times, c.times[1:])
		copy(c.ids, c.ids[1:])
		c.times, c.ids = c.times[:threshold-1], c.ids[:threshold-1]
	}
	c.times = append(c.times, t)
	c.ids = append(c.ids, id)
	return len(c.times) == threshold && t.Sub(c.times[0]) <= window
}

// baselineWindows is how many windows a key is watched before its own
// average counts as a baseline.
const baselineWindows = 3

// windowCount counts the event into fixed windows and returns the current
// window's count and the average of the windows before it (empty ones
// count as zero; the average weighs the last 20); ok once the key has a
// baseline.
func (ks *windowed) count1(t time.Time, window time.Duration) (int, float64, bool) {
	start := t.Truncate(window)
	if ks.winStart.IsZero() {
		ks.winStart = start
	}
	if start.After(ks.winStart) {
		closed := int(start.Sub(ks.winStart) / window)
		ks.closeWindow(float64(ks.count))
		for i := 1; i < min(closed, 20); i++ {
			ks.closeWindow(0)
		}
		ks.count = 0
		ks.winStart = start
	}
	ks.count++
	return ks.count, ks.avg, ks.windows >= baselineWindows
}

func (ks *windowed) closeWindow(n float64) {
	ks.windows++
	ks.avg += (n - ks.avg) / math.Min(float64(ks.windows), 20)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func addBounded(s []string, v string, max int) []string {
	if len(s) >= max {
		s = s[1:]
	}
	return append(s, v)
}

func placeName(country string) string {
	if country == "" {
		return "an unknown country"
	}
	return country
}

// distanceKM is the great-circle distance between two points.
func distanceKM(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dlat, dlon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(a)))
}
