package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
	"github.com/ztgate/ztgate/internal/spiffeid"
)

// criterion is one compiled piece of a rule.
type criterion interface {
	eval(in *Input, t *trace) bool
}

// all holds when every part holds (the criteria of one rule, or all_of).
// Every part is evaluated so the decision lists every reason.
type all []criterion

func (a all) eval(in *Input, t *trace) bool {
	no, unknown := false, false
	for _, c := range a {
		t.unknown = false
		if !c.eval(in, t) {
			if t.unknown {
				unknown = true
			} else {
				no = true
			}
		}
	}
	// A part that does not hold decides; only parts that cannot be told
	// (unknown groups) leave the whole unknown.
	t.unknown = !no && unknown
	return !no && !unknown
}

// anyOf holds when one part holds; only the allowing branch's reasons are
// kept.
type anyOf []criterion

func (a anyOf) eval(in *Input, t *trace) bool {
	mark := len(*t.reasons)
	if t.explaining() {
		t.add("any_of", "any_of", "one of the branches below", "")
		(*t.reasons) = (*t.reasons)[:mark]
	}
	t.depth++
	defer func() { t.depth-- }()
	unknown := false
	for _, c := range a {
		start := len(*t.reasons)
		t.unknown = false
		if c.eval(in, t) {
			n := copy((*t.reasons)[mark:], (*t.reasons)[start:])
			*t.reasons = (*t.reasons)[:mark+n]
			t.unknown = false
			return true
		}
		unknown = unknown || t.unknown
	}
	// No branch holds; if one could not be told, neither can the whole.
	t.unknown = unknown
	return false
}

type allOf []criterion

func (a allOf) eval(in *Input, t *trace) bool {
	if t.explaining() {
		mark := len(*t.reasons)
		t.add("all_of", "all_of", "every branch below", "")
		*t.reasons = (*t.reasons)[:mark]
	}
	t.depth++
	defer func() { t.depth-- }()
	return all(a).eval(in, t)
}

type not struct{ c criterion }

// not holds when its rule does not. When its rule cannot be told (unknown
// groups), neither can not: it denies with groups_unknown, never allows.
func (n not) eval(in *Input, t *trace) bool {
	mark := len(*t.reasons)
	if !t.explaining() {
		t.unknown = false
		held := n.c.eval(in, t)
		*t.reasons = (*t.reasons)[:mark]
		switch {
		case held:
			t.note("excluded_by_not")
		case t.unknown:
			t.note(ReasonGroupsUnknown)
			return false
		default:
			t.note("not_ok")
		}
		return !held
	}
	var steps []Step
	inner := &trace{reasons: t.reasons, depth: t.depth + 1, steps: &steps}
	held := n.c.eval(in, inner)
	*t.reasons = (*t.reasons)[:mark]
	t.unknown = !held && inner.unknown
	switch {
	case held:
		t.add("excluded_by_not", "not", "the rule below must not hold", "it holds")
	case t.unknown:
		t.add(ReasonGroupsUnknown, "not", "the rule below must not hold", "cannot tell: the caller's groups are unknown")
	default:
		t.add("not_ok", "not", "the rule below must not hold", "it does not")
	}
	*t.steps = append(*t.steps, steps...)
	return !held && !t.unknown
}

type authenticated struct{}

func (authenticated) eval(in *Input, t *trace) bool {
	if t.explaining() {
		t.add("authenticated_ok", "authenticated", "any authenticated caller", in.Identity.Key())
	} else {
		t.note("authenticated_ok")
	}
	return true
}

// listCriterion holds when the caller's values intersect the wanted ones.
type listCriterion struct {
	name     string
	want     []string
	get      func(*identity.Identity) []string
	ok, fail string
	// unknown, when set, reports that the caller's values are not known
	// (groups under group overage): the criterion then cannot be told.
	unknown func(*identity.Identity) bool
}

func (l *listCriterion) eval(in *Input, t *trace) bool {
	if l.unknown != nil && l.unknown(in.Identity) {
		t.unknown = true
		if t.explaining() {
			t.add(ReasonGroupsUnknown, l.name, "one of "+list(l.want), "unknown: the token names them by reference (group overage) and they were not resolved")
		} else {
			t.note(ReasonGroupsUnknown)
		}
		return false
	}
	have := l.get(in.Identity)
	for _, v := range have {
		if slices.Contains(l.want, v) {
			if t.explaining() {
				t.add(l.ok, l.name, "one of "+list(l.want), list(have))
			} else {
				t.note(l.ok)
			}
			return true
		}
	}
	if t.explaining() {
		t.add(l.fail, l.name, "one of "+list(l.want), list(have))
	} else {
		t.note(l.fail)
	}
	return false
}

// valueCriterion holds when one caller value is among the wanted ones.
type valueCriterion struct {
	name     string
	want     []string
	get      func(*identity.Identity) string
	ok, fail string
}

func (c *valueCriterion) eval(in *Input, t *trace) bool {
	v := c.get(in.Identity)
	ok := v != "" && slices.Contains(c.want, v)
	r := c.fail
	if ok {
		r = c.ok
	}
	if t.explaining() {
		t.add(r, c.name, "one of "+list(c.want), quoteOrNone(v))
	} else {
		t.note(r)
	}
	return ok
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func quoteOrNone(s string) string {
	if s == "" {
		return "none"
	}
	return fmt.Sprintf("%q", s)
}

// workloadCriterion holds when the request's verified client certificate
// names one of the listed workloads.
type workloadCriterion struct {
	want   []string // as written, for explanations
	spiffe []spiffeid.Pattern
	dns    []string // exact names, or *.domain for one label
	cn     []string
}

func compileWorkloads(want []string) (*workloadCriterion, error) {
	c := &workloadCriterion{want: want}
	for _, w := range want {
		if err := config.CheckWorkloadPattern(w); err != nil {
			return nil, err
		}
		switch {
		case strings.HasPrefix(w, "spiffe://"):
			p, err := spiffeid.ParsePattern(w)
			if err != nil {
				return nil, err
			}
			c.spiffe = append(c.spiffe, p)
		case strings.HasPrefix(w, "dns:"):
			c.dns = append(c.dns, w[len("dns:"):])
		case strings.HasPrefix(w, "cn:"):
			c.cn = append(c.cn, w[len("cn:"):])
		}
	}
	return c, nil
}

func (c *workloadCriterion) match(cc *identity.ClientCert) bool {
	switch cc.Source {
	case "spiffe":
		id := spiffeid.ID{TrustDomain: cc.TrustDomain, Path: cc.Path}
		for _, p := range c.spiffe {
			if p.Match(id) {
				return true
			}
		}
	case "dns":
		name := strings.TrimPrefix(cc.ID, "dns:")
		for _, d := range c.dns {
			if d == name {
				return true
			}
			if suffix, ok := strings.CutPrefix(d, "*"); ok {
				label, found := strings.CutSuffix(name, suffix)
				if found && label != "" && !strings.Contains(label, ".") {
					return true
				}
			}
		}
	case "subject":
		return slices.Contains(c.cn, strings.TrimPrefix(cc.ID, "cn:"))
	}
	return false
}

func (c *workloadCriterion) eval(in *Input, t *trace) bool {
	cc := in.Identity.ClientCert
	r, have := "workload_missing", "no client certificate"
	if cc != nil {
		r, have = "workload_not_allowed", quoteOrNone(cc.ID)
		if c.match(cc) {
			r = "workload_ok"
		}
	}
	if t.explaining() {
		t.add(r, "workloads", "one of "+list(c.want), have)
	} else {
		t.note(r)
	}
	return r == "workload_ok"
}

type mfa struct{}

func (mfa) eval(in *Input, t *trace) bool {
	ok := in.Identity.HasMFA()
	r := "mfa_missing"
	if ok {
		r = "mfa_ok"
	}
	if t.explaining() {
		t.add(r, "mfa", "amr contains mfa", list(in.Identity.AMR))
	} else {
		t.note(r)
	}
	return ok
}

type countryCriterion []string

func (c countryCriterion) eval(in *Input, t *trace) bool {
	r := "country_not_allowed"
	switch {
	case in.Country == "":
		r = "country_unknown"
	case slices.Contains(c, in.Country):
		r = "country_ok"
	}
	if t.explaining() {
		t.add(r, "countries", "one of "+list(c), quoteOrNone(in.Country))
	} else {
		t.note(r)
	}
	return r == "country_ok"
}

type ipCriterion []netip.Prefix

func (c ipCriterion) eval(in *Input, t *trace) bool {
	ip := in.IP.Unmap()
	ok := false
	for _, p := range c {
		if ip.IsValid() && p.Contains(ip) {
			ok = true
			break
		}
	}
	r := "ip_not_allowed"
	if ok {
		r = "ip_ok"
	}
	if t.explaining() {
		t.add(r, "ip", c.String(), ip.String())
	} else {
		t.note(r)
	}
	return ok
}

func (c ipCriterion) String() string {
	s := make([]string, len(c))
	for i, p := range c {
		s[i] = p.String()
	}
	return "in " + list(s)
}

// window is a compiled weekly time window.
type window struct {
	days     uint8 // bit per time.Weekday; 0 = every day
	from, to int   // minutes after midnight
	loc      *time.Location
	text     string
}

func (w *window) contains(at time.Time) bool {
	lt := at.In(w.loc)
	m := lt.Hour()*60 + lt.Minute()
	day := lt.Weekday()
	if w.from < w.to {
		return w.dayOK(day) && m >= w.from && m < w.to
	}
	// Spans midnight: the part after midnight belongs to the previous day.
	if m >= w.from {
		return w.dayOK(day)
	}
	return m < w.to && w.dayOK((day+6)%7)
}

func (w *window) dayOK(d time.Weekday) bool { return w.days == 0 || w.days&(1<<d) != 0 }

type timeCriterion []window

func (c timeCriterion) eval(in *Input, t *trace) bool {
	for i := range c {
		if c[i].contains(in.Time) {
			if t.explaining() {
				t.add("time_ok", "time", c.String(), in.Time.UTC().Format(time.RFC3339))
			} else {
				t.note("time_ok")
			}
			return true
		}
	}
	if t.explaining() {
		t.add("outside_time_window", "time", c.String(), in.Time.UTC().Format(time.RFC3339))
	} else {
		t.note("outside_time_window")
	}
	return false
}

func (c timeCriterion) String() string {
	s := make([]string, len(c))
	for i := range c {
		s[i] = c[i].text
	}
	return "within " + strings.Join(s, " or ")
}

// deviceCriterion requires device claims.
type deviceCriterion struct {
	claims []string // sorted names
	want   map[string][]string
}

func (c *deviceCriterion) eval(in *Input, t *trace) bool {
	for _, name := range c.claims {
		v, ok := in.Identity.Claims[name]
		accepted := c.want[name]
		if ok && (slices.Contains(accepted, "*") || claimIn(v, accepted)) {
			continue
		}
		if t.explaining() {
			have := "none"
			if ok {
				have = fmt.Sprint(v)
			}
			t.add("device_claim_missing", "device."+name, "one of "+list(accepted), have)
		} else {
			t.note("device_claim_missing")
		}
		return false
	}
	if t.explaining() {
		t.add("device_ok", "device", fmt.Sprint(c.want), "present")
	} else {
		t.note("device_ok")
	}
	return true
}

// claimIn reports whether a claim value is one of the accepted strings;
// booleans and numbers compare by their JSON text.
func claimIn(v any, accepted []string) bool {
	switch x := v.(type) {
	case string:
		return slices.Contains(accepted, x)
	case bool:
		if x {
			return slices.Contains(accepted, "true")
		}
		return slices.Contains(accepted, "false")
	case fmt.Stringer: // json.Number
		return slices.Contains(accepted, x.String())
	}
	return false
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

func compileRule(r *config.Rule) (criterion, error) {
	var parts all
	if r.Authenticated {
		parts = append(parts, authenticated{})
	}
	lists := []*listCriterion{
		{name: "roles", want: r.Roles, get: func(id *identity.Identity) []string { return id.Roles }, ok: "role_ok", fail: "role_missing"},
		{name: "scopes", want: r.Scopes, get: func(id *identity.Identity) []string { return id.Scopes }, ok: "scope_ok", fail: "scope_missing"},
		{name: "groups", want: r.Groups, get: func(id *identity.Identity) []string { return id.Groups }, ok: "group_ok", fail: "group_missing",
			unknown: func(id *identity.Identity) bool { return id.GroupsUnknown }},
		{name: "auth_context", want: r.AuthContext, get: func(id *identity.Identity) []string { return id.ACRS }, ok: "auth_context_ok", fail: "auth_context_missing"},
	}
	for _, l := range lists {
		if l.want != nil {
			parts = append(parts, l)
		}
	}
	values := []*valueCriterion{
		{name: "tenants", want: r.Tenants, get: func(id *identity.Identity) string { return id.Tenant }, ok: "tenant_ok", fail: "tenant_not_allowed"},
		{name: "apps", want: r.Apps, get: func(id *identity.Identity) string { return id.AppID }, ok: "app_ok", fail: "app_not_allowed"},
		{name: "subjects", want: r.Subjects, get: func(id *identity.Identity) string { return id.Subject }, ok: "subject_ok", fail: "subject_not_allowed"},
		{name: "identity_types", want: r.IdentityTypes, get: func(id *identity.Identity) string { return string(id.Type) }, ok: "identity_type_ok", fail: "identity_type_not_allowed"},
	}
	for _, v := range values {
		if v.want != nil {
			parts = append(parts, v)
		}
	}
	if r.Workloads != nil {
		c, err := compileWorkloads(r.Workloads)
		if err != nil {
			return nil, err
		}
		parts = append(parts, c)
	}
	if r.MFA {
		parts = append(parts, mfa{})
	}
	if r.Countries != nil {
		parts = append(parts, countryCriterion(r.Countries))
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
	if r.Time != nil {
		var c timeCriterion
		for _, w := range r.Time {
			from, err := config.ParseClock(w.From)
			if err != nil {
				return nil, err
			}
			to, err := config.ParseClock(w.To)
			if err != nil {
				return nil, err
			}
			loc, err := time.LoadLocation(w.Zone)
			if err != nil {
				return nil, fmt.Errorf("time zone %q: %w", w.Zone, err)
			}
			cw := window{from: from, to: to, loc: loc}
			for _, d := range w.Days {
				wd, ok := weekdays[d]
				if !ok {
					return nil, fmt.Errorf("bad day %q", d)
				}
				cw.days |= 1 << wd
			}
			days := "every day"
			if len(w.Days) > 0 {
				days = strings.Join(w.Days, ",")
			}
			cw.text = fmt.Sprintf("%s %s-%s %s", days, w.From, w.To, w.Zone)
			c = append(c, cw)
		}
		parts = append(parts, c)
	}
	if r.Device != nil {
		c := &deviceCriterion{want: r.Device.Claims}
		for k := range r.Device.Claims {
			c.claims = append(c.claims, k)
		}
		slices.Sort(c.claims)
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
	if r.AllOf != nil {
		var a allOf
		for i := range r.AllOf {
			c, err := compileRule(&r.AllOf[i])
			if err != nil {
				return nil, err
			}
			a = append(a, c)
		}
		parts = append(parts, a)
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
