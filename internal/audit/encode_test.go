package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// checkCanonical fails t unless Canonical and AppendCanonical give exactly
// json.Marshal's bytes for e, or, where json.Marshal fails, Canonical fails
// with the same error.
func checkCanonical(t *testing.T, e *Event) {
	t.Helper()
	want, wantErr := json.Marshal(e)
	// Canonical leaves to json.Marshal only the events it rejects.
	if encodable(e) != (wantErr == nil) {
		t.Fatalf("encodable = %v, json.Marshal error = %v", encodable(e), wantErr)
	}
	got, err := Canonical(e)
	if wantErr != nil {
		if err == nil || err.Error() != wantErr.Error() {
			t.Fatalf("Canonical error = %v, json.Marshal error = %v", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("Canonical: %v (json.Marshal succeeded: %s)", err, want)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Canonical differs from json.Marshal\n got: %s\nwant: %s", got, want)
	}
	// AppendCanonical appends: what dst held is kept.
	prefix := []byte("prefix")
	app := AppendCanonical(prefix, e)
	if !bytes.HasPrefix(app, prefix) || !bytes.Equal(app[len(prefix):], want) {
		t.Fatalf("AppendCanonical differs from json.Marshal\n got: %s\nwant: prefix%s", app, want)
	}
}

// fullEvent has every field set.
func fullEvent() Event {
	return Event{
		Time: time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC), EventType: "ApiRequest", RequestID: "0123456789abcdef",
		Result: "Failure", ResultDetails: "roles_missing", Decision: "deny", Reasons: []string{"roles_missing", "when_failed"},
		Message: "burst of denials", PolicyVersion: "3f2a9c41", Service: "orders", Route: "read-orders", IdentityType: "user",
		Tenant: "72f988bf", ObjectID: "1c2d3e4f", Subject: "alice", AppID: "6f1d4c9e", Identity: "72f988bf/1c2d3e4f",
		Workload: "spiffe://example.org/batch", CertSerial: "0a1b2c", CertIssuer: "CN=Example CA", AuthMethods: []string{"pwd", "mfa"},
		AuthContext: []string{"c1"}, TokenLifetime: 3600, SrcIP: "2001:db8::1", SrcCountry: "NL", SrcLat: 52.3676, SrcLon: -4.9041,
		UserAgent: "partner-client/2.1", Method: "POST", URL: "/orders?id=REDACTED", Status: 403, RequestBytes: 1 << 40,
		DurationMS: 12.5, DLP: map[string]int{"iban": 2, "credit_card": 1, "Email": 7}, DLPOverLimit: true,
		DLPUnscannedBytes: 4096, Node: "gw-1", Object: "api_key/k1",
	}
}

func TestAppendCanonical(t *testing.T) {
	with := func(f func(e *Event)) *Event {
		e := fullEvent()
		f(&e)
		return &e
	}
	amsterdam := time.FixedZone("CET", 3600)
	nepal := time.FixedZone("NPT", 5*3600+45*60)
	newYork := time.FixedZone("EST", -5*3600)
	cases := map[string]*Event{
		"empty": {},
		"full":  with(func(*Event) {}),
		"empty slices and map": with(func(e *Event) {
			e.Reasons, e.AuthMethods, e.AuthContext, e.DLP = []string{}, []string{}, nil, map[string]int{}
		}),
		"slices of empty strings": with(func(e *Event) { e.Reasons, e.AuthMethods = []string{""}, []string{"", ""} }),
		"quotes and backslashes":  with(func(e *Event) { e.Message = `say "hi" \ \\ "\"` }),
		"control characters": with(func(e *Event) {
			var all []byte
			for c := range 0x20 {
				all = append(all, byte(c))
			}
			e.Message = string(all) + "\x7f"
		}),
		"html characters":       with(func(e *Event) { e.URL = `/search?q=<script>alert("x")</script>&a=b` }),
		"line separators":       with(func(e *Event) { e.UserAgent = "a\u2028b\u2029c\u2027\u202a" }),
		"invalid utf-8":         with(func(e *Event) { e.Message = "a\xffb\xc3(c\xe2\x82d\xed\xa0\x80e\xf4\x90\x80\x80" }),
		"truncated rune at end": with(func(e *Event) { e.Message = "end\xe2\x82" }),
		"multi-byte runes":      with(func(e *Event) { e.Subject = "Zoë Ünal, 日本語, 🙂, \u00a0\ufeff\ufffd" }),
		"escaped map keys":      with(func(e *Event) { e.DLP = map[string]int{"<b>": 1, "a\"b": -2, "é": 0, "": 3, "\xff": 4} }),
		"float zero":            with(func(e *Event) { e.DurationMS, e.SrcLat, e.SrcLon = 0, 0, 0 }),
		"float negative zero":   with(func(e *Event) { e.DurationMS, e.SrcLat = math.Copysign(0, -1), math.Copysign(0, -1) }),
		"float 1e21":            with(func(e *Event) { e.DurationMS, e.SrcLat = 1e21, 1e21-65536 }),
		"float 1e-7":            with(func(e *Event) { e.DurationMS, e.SrcLat, e.SrcLon = 1e-7, 1e-6, -1e-7 }),
		"float plain":           with(func(e *Event) { e.DurationMS, e.SrcLat, e.SrcLon = 123456789.123, -0.5, 0.1 }),
		"float extremes": with(func(e *Event) {
			e.DurationMS, e.SrcLat, e.SrcLon = math.MaxFloat64, math.SmallestNonzeroFloat64, -1e-300
		}),
		"float exponent cleanup": with(func(e *Event) { e.DurationMS, e.SrcLat, e.SrcLon = 1.5e-9, 2e-10, 3e100 }),
		"integers": with(func(e *Event) {
			e.Status, e.RequestBytes, e.TokenLifetime, e.DLPUnscannedBytes = -1, math.MinInt64, math.MaxInt64, -7
		}),
		"zero integers":          with(func(e *Event) { e.Status, e.RequestBytes, e.TokenLifetime, e.DLPUnscannedBytes = 0, 0, 0, 0 }),
		"time zero":              with(func(e *Event) { e.Time = time.Time{} }),
		"time zero nanoseconds":  with(func(e *Event) { e.Time = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }),
		"time trailing zeros":    with(func(e *Event) { e.Time = time.Date(2025, 1, 2, 3, 4, 5, 120000000, time.UTC) }),
		"time east of UTC":       with(func(e *Event) { e.Time = time.Date(2025, 6, 1, 12, 0, 0, 1, amsterdam) }),
		"time west of UTC":       with(func(e *Event) { e.Time = time.Date(2025, 6, 1, 12, 0, 0, 999999999, newYork) }),
		"time odd offset":        with(func(e *Event) { e.Time = time.Date(2025, 6, 1, 12, 0, 0, 0, nepal) }),
		"time offset seconds":    with(func(e *Event) { e.Time = time.Date(2025, 6, 1, 12, 0, 0, 0, time.FixedZone("", 3600+30)) }),
		"time offset 23:59":      with(func(e *Event) { e.Time = time.Date(2025, 6, 1, 12, 0, 0, 0, time.FixedZone("", -(24*3600-60))) }),
		"time local":             with(func(e *Event) { e.Time = time.Unix(1700000000, 5).Local() }),
		"time monotonic":         with(func(e *Event) { e.Time = time.Now() }),
		"time year 0":            with(func(e *Event) { e.Time = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC) }),
		"time year 9999":         with(func(e *Event) { e.Time = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC) }),
		"error: time year -1":    with(func(e *Event) { e.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }),
		"error: time year -100":  with(func(e *Event) { e.Time = time.Date(-100, 1, 1, 0, 0, 0, 0, time.UTC) }),
		"error: time year 10000": with(func(e *Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }),
		"error: time offset 24h": with(func(e *Event) { e.Time = time.Date(2025, 6, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600)) }),
		"error: time offset -25h": with(func(e *Event) {
			e.Time = time.Date(2025, 6, 1, 0, 0, 0, 0, time.FixedZone("", -25*3600))
		}),
		"error: duration NaN":       with(func(e *Event) { e.DurationMS = math.NaN() }),
		"error: duration +Inf":      with(func(e *Event) { e.DurationMS = math.Inf(1) }),
		"error: latitude -Inf":      with(func(e *Event) { e.SrcLat = math.Inf(-1) }),
		"error: longitude NaN":      with(func(e *Event) { e.SrcLon = math.NaN() }),
		"error: NaN in empty event": {SrcLat: math.NaN()},
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			checkCanonical(t, e)
			if _, err := json.Marshal(e); strings.HasPrefix(name, "error:") != (err != nil) {
				t.Fatalf("json.Marshal error = %v; the case's name says whether one is expected", err)
			}
		})
	}
}

// TestAppendCanonicalCoversEveryField sets each field of Event in turn, and
// then all of them, to a value that is not zero, found by reflection, so
// that a field added to Event but not to AppendCanonical fails here.
func TestAppendCanonicalCoversEveryField(t *testing.T) {
	typ := reflect.TypeFor[Event]()
	set := func(t *testing.T, v reflect.Value) {
		t.Helper()
		switch v.Interface().(type) {
		case time.Time:
			v.Set(reflect.ValueOf(time.Date(2025, 3, 14, 15, 9, 26, 5, time.FixedZone("", -3600))))
		case string:
			v.SetString("<" + typ.Name() + "> \"x\"")
		case []string:
			v.Set(reflect.ValueOf([]string{"a", "b&c"}))
		case int, int64:
			v.SetInt(-42)
		case float64:
			v.SetFloat(0.25)
		case bool:
			v.SetBool(true)
		case map[string]int:
			v.Set(reflect.ValueOf(map[string]int{"z": 1, "a": 2}))
		default:
			t.Fatalf("field of type %s: teach this test (and AppendCanonical) about it", v.Type())
		}
	}
	var all Event
	for i := range typ.NumField() {
		f := typ.Field(i)
		t.Run(f.Name, func(t *testing.T) {
			var one Event
			set(t, reflect.ValueOf(&one).Elem().Field(i))
			checkCanonical(t, &one)
		})
		set(t, reflect.ValueOf(&all).Elem().Field(i))
	}
	checkCanonical(t, &all)
}

func FuzzAppendCanonical(f *testing.F) {
	f.Add("req-1", "/orders/42?x=<y>&z", "alice", int64(200), 0.42, 52.37, int64(1741964966), int64(535897932), 3600, false)
	f.Add("", "", "", int64(0), 0.0, 0.0, int64(0), int64(0), 0, false)
	f.Add("a\u2028b\"\\", "\x00\x1f\x7f\xff\xc3", "日本,🙂,é", int64(-1), 1e21, -1e-7, int64(-62135596800), int64(0), -5*3600, true)
	f.Add("x", "y", "detector,detector,other", int64(1<<40), 123456789.123, -0.5, int64(253402300799), int64(999999999), 86399, true)
	f.Add("year", "out", "of range", int64(7), 1.5e-9, 3e100, int64(253402300800), int64(1), 0, false)
	f.Add("zone", "out", "of range", int64(7), 2.0, 3.0, int64(0), int64(1), 86400, false)
	f.Fuzz(func(t *testing.T, a, b, c string, n int64, x, y float64, sec, nsec int64, offset int, flag bool) {
		e := Event{
			Time:      time.Unix(sec, nsec).In(time.FixedZone(a, offset)),
			EventType: a, RequestID: b, Result: c, ResultDetails: a + b, Decision: c + a,
			Message: b, PolicyVersion: c, Service: a, Route: b, Subject: c, Identity: a + "/" + c,
			SrcIP: b, SrcCountry: c, SrcLat: x, SrcLon: y, UserAgent: a, Method: b, URL: c,
			Status: int(n), RequestBytes: n, DurationMS: x * y, TokenLifetime: -n, DLPOverLimit: flag,
			DLPUnscannedBytes: n / 3, Node: a, Object: b,
		}
		if a != "" {
			e.Reasons = strings.Split(a, ",")
		}
		if c != "" {
			e.AuthMethods = strings.Split(c, ",")
			e.DLP = make(map[string]int)
			for i, k := range strings.Split(c, ",") {
				e.DLP[k] = int(n) + i
			}
		}
		checkCanonical(t, &e)
	})
}

// BenchmarkCanonical compares json.Marshal (what Canonical was) with
// Canonical and with AppendCanonical into a reused buffer, on a typical
// allowed request.
func BenchmarkCanonical(b *testing.B) {
	e := Event{
		Time: time.Now().UTC(), EventType: "ApiRequest", RequestID: "0123456789abcdef", Result: "Success",
		Decision: "allow", Reasons: []string{"roles_ok", "when_ok"}, PolicyVersion: "3f2a9c41d0b7e6a5",
		Service: "orders", Route: "read-orders", IdentityType: "user", Tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47",
		ObjectID: "1c2d3e4f-0000-4000-8000-000000000001", Subject: "alice", AppID: "6f1d4c9e-0000-0000-0000-000000000000",
		Identity: "72f988bf-86f1-41af-91ab-2d7cd011db47/1c2d3e4f-0000-4000-8000-000000000001", SrcIP: "10.1.2.3",
		UserAgent: "partner-client/2.1", Method: "GET", URL: "/orders/42?expand=REDACTED", Status: 200, DurationMS: 0.42,
	}
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Canonical", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Canonical(&e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendCanonical", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = AppendCanonical(buf[:0], &e)
		}
	})
}
