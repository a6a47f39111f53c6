package detect

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// defaultRules is one rule of each kind, as the documentation suggests.
func defaultRules(t testing.TB) []Rule {
	rules := []Rule{
		{Name: "failed-auth-ip", Kind: KindAuthFailures, Action: ActionBlock},
		{Name: "failed-auth-tenant", Kind: KindAuthFailures, Key: KeyTenant, Threshold: 50},
		{Name: "failed-auth-global", Kind: KindAuthFailures, Key: KeyGlobal, Threshold: 200},
		{Name: "probing", Kind: KindDenials},
		{Name: "new-country", Kind: KindNewCountry, Action: ActionStepUp},
		{Name: "travel", Kind: KindImpossibleTravel, Severity: "high"},
		{Name: "hours", Kind: KindOffHours, Severity: "low"},
		{Name: "new-app", Kind: KindNewApp},
		{Name: "volume", Kind: KindVolumeSpike},
		{Name: "many-ips", Kind: KindManyIPs},
		{Name: "revoked-key", Kind: KindRevokedCredential, Severity: "high", Action: ActionBlock},
		{Name: "tenant", Kind: KindTenantNotAllowed},
	}
	for i := range rules {
		rules[i].Defaults()
		if err := rules[i].Validate(); err != nil {
			t.Fatalf("rule %s: %v", rules[i].Name, err)
		}
	}
	return rules
}

type place struct {
	country  string
	lat, lon float64
}

var (
	berlin = place{"DE", 52.52, 13.40}
	paris  = place{"FR", 48.86, 2.35}
	madrid = place{"ES", 40.42, -3.70}
	sydney = place{"AU", -33.87, 151.21}
	recife = place{"BR", -8.05, -34.88}
)

// stream builds a recorded event stream.
type stream struct {
	evs []Event
	seq int
}

func (s *stream) add(e Event) {
	s.seq++
	e.RequestID = fmt.Sprintf("r%06d", s.seq)
	if e.Status == 0 {
		e.Status = 200
	}
	if e.Decision == "" {
		e.Decision = "allow"
		if e.Status >= 400 {
			e.Decision = "deny"
		}
	}
	s.evs = append(s.evs, e)
}

func call(at time.Time, who int, p place, ip string) Event {
	return Event{Time: at, Identity: fmt.Sprintf("tenant-a/user-%02d", who), Tenant: "tenant-a", AppID: "portal",
		SrcIP: ip, Country: p.country, Lat: p.lat, Lon: p.lon, HasGeo: true}
}

var day0 = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC) // a Monday

// quiet is three working days of ordinary traffic: 40 people, each from
// their own city and address, every 10 minutes from 08:00 to 17:00 UTC,
// through the same app; now and then a stray failed login or a denial.
func quiet() *stream {
	s := &stream{}
	homes := []place{berlin, paris, madrid}
	rng := rand.New(rand.NewPCG(1, 2))
	for d := range 3 {
		for m := 8 * 60; m < 17*60; m += 10 {
			for who := range 40 {
				at := day0.Add(time.Duration(d)*24*time.Hour + time.Duration(m)*time.Minute + time.Duration(who)*time.Second)
				s.add(call(at, who, homes[who%3], fmt.Sprintf("10.0.%d.%d", who%3, who)))
				switch rng.IntN(200) {
				case 0:
					s.add(Event{Time: at.Add(time.Second), SrcIP: fmt.Sprintf("203.0.113.%d", rng.IntN(250)), Status: 401, Reason: "token_expired", Tenant: "tenant-a"})
				case 1:
					e := call(at.Add(2*time.Second), who, homes[who%3], fmt.Sprintf("10.0.%d.%d", who%3, who))
					e.Status, e.Reason = 403, "role_missing"
					s.add(e)
				}
			}
		}
	}
	return s
}

func run(d *Detector, evs []Event) []Detection {
	var out []Detection
	for i := range evs {
		out = append(out, d.Observe(&evs[i])...)
	}
	return out
}

func summary(dets []Detection) []string {
	var s []string
	for _, d := range dets {
		s = append(s, d.Rule+" "+d.KeyType+"="+d.Key)
	}
	sort.Strings(s)
	return s
}

// TestReplayQuietBaseline: ordinary traffic raises nothing.
func TestReplayQuietBaseline(t *testing.T) {
	d := New(defaultRules(t))
	if got := run(d, quiet().evs); len(got) != 0 {
		t.Fatalf("the quiet baseline raised %d detections:\n%s", len(got), strings.Join(summary(got), "\n"))
	}
}

// TestReplayAttacks: each attack, recorded after the quiet baseline,
// raises exactly the detections expected of it and no other.
func TestReplayAttacks(t *testing.T) {
	day3 := day0.Add(3*24*time.Hour + 10*time.Hour) // Thursday 10:00
	tests := []struct {
		name   string
		attack func(s *stream)
		want   []string
		check  func(t *testing.T, dets []Detection)
	}{
		{"burst of bad tokens from one address", func(s *stream) {
			for i := range 30 {
				s.add(Event{Time: day3.Add(time.Duration(i) * time.Second), SrcIP: "198.51.100.7", Status: 401, Reason: "bad_signature"})
			}
		}, []string{"failed-auth-ip ip=198.51.100.7"}, func(t *testing.T, dets []Detection) {
			d := dets[0]
			if d.Action != ActionBlock || d.For != 15*time.Minute || len(d.Evidence) != 20 || d.Evidence[0] == d.Evidence[19] {
				t.Errorf("detection: %+v", d)
			}
		}},
		{"failed logins spread over a tenant's addresses", func(s *stream) {
			for i := range 60 {
				s.add(Event{Time: day3.Add(time.Duration(i) * 500 * time.Millisecond), SrcIP: fmt.Sprintf("198.51.100.%d", i), Tenant: "tenant-b", Status: 401, Reason: "token_expired"})
			}
		}, []string{"failed-auth-tenant tenant=tenant-b"}, nil},
		{"a gateway-wide wave of bad tokens", func(s *stream) {
			for i := range 250 {
				s.add(Event{Time: day3.Add(time.Duration(i) * 200 * time.Millisecond), SrcIP: fmt.Sprintf("198.%d.%d.1", 18+i/250, i%250), Status: 401, Reason: "bad_signature"})
			}
		}, []string{"failed-auth-global global=*"}, nil},
		{"an identity probing routes", func(s *stream) {
			for i := range 25 {
				e := call(day3.Add(time.Duration(i)*time.Second), 4, paris, "10.0.1.4")
				e.Status, e.Reason = 403, "role_missing"
				s.add(e)
			}
		}, []string{"probing identity=tenant-a/user-04"}, nil},
		{"a known identity from a new country", func(s *stream) {
			s.add(call(day3, 3, recife, "10.0.0.3"))
			// 17 hours after its last call from Berlin: far, but possible.
		}, []string{"new-country identity=tenant-a/user-03"}, nil},
		{"impossible travel between two known countries", func(s *stream) {
			// user-00 lives in Berlin: Sydney twenty minutes later is both
			// new and impossible.
			s.add(call(day3, 0, berlin, "10.0.0.0"))
			s.add(call(day3.Add(20*time.Minute), 0, sydney, "10.0.0.0"))
		}, []string{"new-country identity=tenant-a/user-00", "travel identity=tenant-a/user-00"}, nil},
		{"plausible travel is not impossible", func(s *stream) {
			s.add(call(day3, 1, paris, "10.0.1.1"))
			s.add(call(day3.Add(3*time.Hour), 1, berlin, "10.0.1.1"))
		}, []string{"new-country identity=tenant-a/user-01"}, nil},
		{"an identity at three in the morning", func(s *stream) {
			s.add(call(day0.Add(3*24*time.Hour+3*time.Hour), 5, madrid, "10.0.2.5"))
		}, []string{"hours identity=tenant-a/user-05"}, nil},
		{"an identity through a new client app", func(s *stream) {
			e := call(day3, 6, berlin, "10.0.0.6")
			e.AppID = "curl-script"
			s.add(e)
		}, []string{"new-app identity=tenant-a/user-06"}, nil},
		{"a sudden volume spike", func(s *stream) {
			for i := range 400 {
				s.add(call(day3.Add(time.Duration(i)*500*time.Millisecond), 7, paris, "10.0.1.7"))
			}
		}, []string{"volume identity=tenant-a/user-07"}, nil},
		{"one identity from many addresses", func(s *stream) {
			for i := range 12 {
				s.add(call(day3.Add(time.Duration(i)*2*time.Second), 8, madrid, fmt.Sprintf("192.0.2.%d", i)))
			}
		}, []string{"many-ips identity=tenant-a/user-08"}, nil},
		{"a revoked API key presented", func(s *stream) {
			s.add(Event{Time: day3, SrcIP: "192.0.2.50", APIKey: "k7f3", Status: 401, Reason: "api_key_revoked"})
			s.add(Event{Time: day3.Add(time.Second), SrcIP: "192.0.2.50", APIKey: "k7f3", Status: 401, Reason: "api_key_revoked"})
		}, []string{"revoked-key api_key=k7f3"}, nil},
		{"a token from a tenant not allowed", func(s *stream) {
			s.add(Event{Time: day3, SrcIP: "192.0.2.60", Tenant: "tenant-x", Status: 401, Reason: "tenant_not_allowed"})
		}, []string{"tenant ip=192.0.2.60"}, nil},
	}
	base := quiet()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &stream{evs: append([]Event(nil), base.evs...), seq: base.seq}
			tt.attack(s)
			d := New(defaultRules(t))
			if got := run(d, base.evs); len(got) != 0 {
				t.Fatalf("baseline raised %v", summary(got))
			}
			got := run(d, s.evs[len(base.evs):])
			if g, w := strings.Join(summary(got), "\n"), strings.Join(tt.want, "\n"); g != w {
				t.Fatalf("detections:\n%s\nwant:\n%s", g, w)
			}
			for _, det := range got {
				if det.Summary == "" || len(det.Evidence) == 0 || det.Severity == "" {
					t.Errorf("detection without summary or evidence: %+v", det)
				}
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

// TestOneDetectionPerWindow: a sustained attack raises one detection per
// window, not one per event.
func TestOneDetectionPerWindow(t *testing.T) {
	d := New(defaultRules(t))
	s := &stream{}
	for i := range 600 { // 10 minutes, one bad token a second
		s.add(Event{Time: day0.Add(time.Duration(i) * time.Second), SrcIP: "198.51.100.9", Status: 401, Reason: "bad_signature"})
	}
	n := 0
	for _, det := range run(d, s.evs) {
		if det.Rule == "failed-auth-ip" {
			n++
		}
	}
	if n < 9 || n > 11 {
		t.Fatalf("%d detections over 10 windows, want about 10", n)
	}
}

func TestRuleValidation(t *testing.T) {
	tests := []struct {
		rule Rule
		err  string
	}{
		{Rule{Kind: "brute"}, "unknown kind"},
		{Rule{Kind: KindNewCountry, Key: KeyIP}, "key must be identity or api_key"},
		{Rule{Kind: KindManyIPs, Key: KeyIP}, "key must be identity, api_key or tenant"},
		{Rule{Kind: KindAuthFailures, Key: KeyGlobal, Action: ActionBlock}, "key global cannot be blocked"},
		{Rule{Kind: KindAuthFailures, Action: ActionStepUp}, "key must be identity"},
		{Rule{Kind: KindAuthFailures, Action: "shout"}, "unknown action"},
		{Rule{Kind: KindAuthFailures, Severity: "dire"}, "unknown severity"},
		{Rule{Kind: KindAuthFailures, Threshold: -1}, "must be positive"},
		{Rule{Kind: KindAuthFailures}, ""},
	}
	for _, tt := range tests {
		r := tt.rule
		r.Defaults()
		err := r.Validate()
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%+v: got %v, want %q", tt.rule, err, tt.err)
		}
	}
}

// TestBoundedKeys: state stays bounded however many callers pass.
func TestBoundedKeys(t *testing.T) {
	rules := defaultRules(t)
	d := New(rules)
	d.SetMaxKeys(1000)
	for i := range 20_000 {
		e := call(day0.Add(time.Duration(i)*time.Millisecond), 0, berlin, fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255))
		e.Identity = fmt.Sprint("id-", i)
		d.Observe(&e)
		b := Event{Time: e.Time, SrcIP: e.SrcIP, Status: 401}
		d.Observe(&b)
	}
	if n := d.Keys(); n > len(rules)*1000 {
		t.Fatalf("%d keys tracked, bound %d", n, len(rules)*1000)
	}
}

func TestDistance(t *testing.T) {
	if km := distanceKM(berlin.lat, berlin.lon, paris.lat, paris.lon); km < 870 || km > 890 {
		t.Fatalf("Berlin–Paris %.0f km, want about 878", km)
	}
}

// BenchmarkDetector: every rule over a stream of 100,000 distinct
// identities (a tenth of the requests failing authentication), reporting
// events/s and the heap the detector holds.
func BenchmarkDetector(b *testing.B) {
	rules := defaultRules(b)
	const ids = 100_000
	evs := make([]Event, 1<<16)
	rng := rand.New(rand.NewPCG(3, 4))
	homes := []place{berlin, paris, madrid}
	for i := range evs {
		who := rng.IntN(ids)
		p := homes[who%3]
		evs[i] = Event{RequestID: fmt.Sprint("r", i), Identity: fmt.Sprint("tenant-a/", who), Tenant: "tenant-a", AppID: "portal",
			SrcIP: fmt.Sprintf("10.%d.%d.%d", who>>16, who>>8&255, who&255), Country: p.country, Lat: p.lat, Lon: p.lon, HasGeo: true, Status: 200, Decision: "allow"}
		if rng.IntN(10) == 0 {
			evs[i].Status, evs[i].Decision, evs[i].Identity = 401, "deny", ""
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := New(rules)
	start := day0
	b.ResetTimer()
	for i := range b.N {
		e := &evs[i&(len(evs)-1)]
		e.Time = start.Add(time.Duration(i) * 50 * time.Microsecond) // 20,000 events/s of event time
		d.Observe(e)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapInuse-min(after.HeapInuse, before.HeapInuse))/(1<<20), "heap-MiB")
	b.ReportMetric(float64(d.Keys()), "keys")
}
