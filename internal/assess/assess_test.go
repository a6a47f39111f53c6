package assess

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztgate/ztgate/internal/config"
)

func f(id string, s Stage, o Outcome) Finding { return Finding{ID: id, Stage: s, Outcome: o} }

func TestStageOf(t *testing.T) {
	tests := []struct {
		name     string
		findings []Finding
		want     Stage
		why      []string
	}{
		{
			name:     "nothing passes",
			findings: []Finding{f("A-1", Initial, Fail), f("A-2", Advanced, Pass)},
			want:     Traditional,
			why: []string{
				"Initial: not reached: held back by A-1 (fail).",
				"Advanced: not reached: Initial must be reached first (A-2 passes).",
				"Optimal: not reached: no check evidences this stage; Initial must be reached first.",
			},
		},
		{
			name:     "a partial holds a stage back",
			findings: []Finding{f("A-1", Initial, Pass), f("A-2", Advanced, Pass), f("A-3", Advanced, Partial), f("A-4", Optimal, Pass)},
			want:     Initial,
			why: []string{
				"Initial: reached: A-1 passes.",
				"Advanced: not reached: held back by A-3 (partial).",
				"Optimal: not reached: Advanced must be reached first (A-4 passes).",
			},
		},
		{
			name:     "checks that are not counted neither help nor hold back",
			findings: []Finding{f("A-1", Initial, Pass), f("A-2", Initial, NotAvailable), f("A-3", Advanced, Pass), f("A-4", Advanced, Unknown), f("A-5", Optimal, NotApplicable)},
			want:     Advanced,
			why: []string{
				"Initial: reached: A-1 passes. Not counted: A-2 (not available in this version).",
				"Advanced: reached: A-3 passes. Not counted: A-4 (unknown).",
				"Optimal: not reached: no check of this stage passes. Not counted: A-5 (not applicable).",
			},
		},
		{
			name:     "a stage needs a pass, not only the absence of failures",
			findings: []Finding{f("A-1", Initial, NotAvailable), f("A-2", Advanced, Pass)},
			want:     Traditional,
		},
		{
			name:     "optimal",
			findings: []Finding{f("A-1", Initial, Pass), f("A-2", Advanced, Pass), f("A-3", Optimal, Pass), f("A-4", Optimal, Pass)},
			want:     Optimal,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := stageOf(tt.findings)
			if got != tt.want {
				t.Errorf("got %s, want %s (%v)", got, tt.want, why)
			}
			if tt.why != nil {
				if d := cmp.Diff(tt.why, why); d != "" {
					t.Errorf("why (-want +got):\n%s", d)
				}
			}
		})
	}
}

func TestMicrosoftView(t *testing.T) {
	want := map[Stage]string{Traditional: "Initial", Initial: "Initial", Advanced: "Intermediate/Advanced", Optimal: "Optimal"}
	for s, w := range want {
		if got := s.Microsoft(); got != w {
			t.Errorf("%s: got %q, want %q", s, got, w)
		}
	}
	var s Stage
	if err := s.UnmarshalText([]byte("advanced")); err != nil || s != Advanced {
		t.Errorf("unmarshal advanced: got %v %v", s, err)
	}
	if err := s.UnmarshalText([]byte("Perfect")); err == nil {
		t.Error("unmarshal Perfect: got no error")
	}
}

func TestProbe(t *testing.T) {
	tests := []struct {
		path string
		want Capability
	}{
		{"listen.tls.cert_file", Supported},
		{"services.routes.rate_limit", Supported},
		{"services.upstream_tls.insecure_skip_verify", Unsupported},
		{"no.such.key", Absent},
		{"listen.address.deeper", Absent},
	}
	for _, tt := range tests {
		if got := probe(tt.path); got != tt.want {
			t.Errorf("probe(%q): got %d, want %d", tt.path, got, tt.want)
		}
	}
	// A value this version refuses is found by parsing a configuration that
	// uses it; the answer follows the validator, whatever it is.
	_, err := config.Parse("p.yaml", []byte(valueProbes["secrets.providers.type=azure_keyvault"]), config.Options{})
	refused := err != nil && strings.Contains(err.Error(), "not supported by this version")
	if got := probe("secrets.providers.type=azure_keyvault"); (got == Unsupported) != refused {
		t.Errorf("azure_keyvault: got %d, but the validator refuses it: %v", got, refused)
	}
}

func TestLookup(t *testing.T) {
	cfg := &config.Config{Audit: config.Audit{HMACKey: "k"}, Services: []config.Service{{Name: "a"}, {Name: "b"}}}
	if got := stringAt(cfg, "audit.hmac_key"); got != "k" {
		t.Errorf("audit.hmac_key: got %q, want k", got)
	}
	if set(cfg, "identity.mtls") || set(cfg, "no.such") {
		t.Error("an absent or nil key reads as set")
	}
	if got := len(listAt(cfg, "services")); got != 2 {
		t.Errorf("services: got %d, want 2", got)
	}
	if got := stringAt(listAt(cfg, "services")[1], "name"); got != "b" {
		t.Errorf("services[1].name: got %q, want b", got)
	}
}

func TestSecretValues(t *testing.T) {
	y := `secrets:
  providers: [ { name: f, type: file, dir: /s } ]
store: { driver: postgres, dsn: "postgres://u:${env:PW}@db/z" }
audit:
  hmac_key: "${secret:f/chain}"
limits:
  rate_limit: { key: identity, limit: 1, per: 1s }
`
	cfg := &config.Config{Secrets: config.Secrets{Providers: []config.SecretProvider{{Name: "f", Type: "file"}}}}
	got, err := secretValues(cfg, []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	want := []SecretValue{
		{Path: "store.dsn", Line: 3, Source: "env"},
		{Path: "audit.hmac_key", Line: 5, Source: "provider", Provider: "f"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("rate_limit.key is not a secret; the others are (-want +got):\n%s", d)
	}
}

func TestFlowRule(t *testing.T) {
	r := &config.Rule{AnyOf: []config.Rule{{Roles: []string{"A"}}, {Scopes: []string{"s"}, MFA: true}}}
	if got, want := flowRule(r), "{ any_of: [ { roles: [A] }, { scopes: [s], mfa: true } ] }"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if got, want := withCriterion(r, "mfa: true"), "{ all_of: [ { any_of: [ { roles: [A] }, { scopes: [s], mfa: true } ] }, { mfa: true } ] }"; got != want {
		t.Errorf("around any_of: got %s, want %s", got, want)
	}
	if got, want := withCriterion(&config.Rule{Roles: []string{"W"}}, "mfa: true"), "{ roles: [W], mfa: true }"; got != want {
		t.Errorf("beside: got %s, want %s", got, want)
	}
	if got, want := withCriterion(nil, "mfa: true"), "{ mfa: true }"; got != want {
		t.Errorf("no rule: got %s, want %s", got, want)
	}
}

// TestTrend: a second run shows the first's stages beside its own and
// names the checks whose outcome changed.
func TestTrend(t *testing.T) {
	sc := scenarios[1] // typical
	first := runScenario(t, sc, Options{Record: true})
	if !first.Recorded || first.Previous != nil {
		t.Fatalf("first run: recorded %v, previous %v; want recorded with no previous", first.Recorded, first.Previous)
	}
	// The same store, a day later, with a policy test that now covers
	// every route: GV-03 changes.
	ctx := context.Background()
	dir := t.TempDir()
	copyDir(t, "testdata/typical", dir)
	sc.setup(t, dir)
	cfg := loadConfig(t, dir+"/ztgate.yaml")
	st := seed(t, goldenNow, sc.traffic)
	if err := st.AddAssessment(ctx, first.stored()); err != nil {
		t.Fatal(err)
	}
	o := Options{Now: goldenNow.Add(24 * time.Hour), Audit: st, History: st, Record: true, PolicyTests: []string{}}
	second, err := Run(ctx, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if second.Previous == nil || !second.Previous.Time.Equal(goldenNow) {
		t.Fatalf("previous: got %+v, want the first run", second.Previous)
	}
	if second.Overall.Previous == nil || *second.Overall.Previous != first.Overall.Stage {
		t.Errorf("overall previous: got %v, want %s", second.Overall.Previous, first.Overall.Stage)
	}
	for i, p := range second.Pillars {
		if p.Previous == nil || *p.Previous != first.Pillars[i].Stage {
			t.Errorf("%s previous: got %v, want %s", p.Name, p.Previous, first.Pillars[i].Stage)
		}
	}
	// Without test files GV-02 fails where it passed.
	want := Change{ID: "GV-02", From: Pass, To: Fail}
	found := false
	for _, c := range second.Changes {
		found = found || c == want
	}
	if !found {
		t.Errorf("changes: got %+v, want %+v among them", second.Changes, want)
	}
	var md bytes.Buffer
	if err := second.Write(&md, "md"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"## Trend", "GV-02: pass → fail", "previous run: pass"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("markdown lacks %q", s)
		}
	}
	third, err := Run(ctx, cfg, Options{Now: goldenNow.Add(48 * time.Hour), Audit: st, History: st})
	if err != nil {
		t.Fatal(err)
	}
	if len(third.History) != 2 || third.Recorded {
		t.Errorf("third run: got %d earlier runs, recorded %v; want 2, not recorded", len(third.History), third.Recorded)
	}
}

func TestWriteFormats(t *testing.T) {
	rep := runScenario(t, scenarios[0], Options{})
	for _, format := range Formats {
		var b bytes.Buffer
		if err := rep.Write(&b, format); err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if b.Len() == 0 {
			t.Errorf("%s: empty", format)
		}
		if format == "json" && !json.Valid(b.Bytes()) {
			t.Error("json: not valid JSON")
		}
	}
	if err := rep.Write(&bytes.Buffer{}, "pdf"); err == nil {
		t.Error("pdf: got no error")
	}
}

// TestNoStore: without a store the report says what it could not judge and
// does not record.
func TestNoStore(t *testing.T) {
	cfg := loadConfig(t, "testdata/weak/ztgate.yaml")
	cfg.Store = nil
	rep, err := Run(context.Background(), cfg, Options{Now: goldenNow, Record: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Traffic != nil || rep.Recorded {
		t.Errorf("got traffic %v, recorded %v; want neither", rep.Traffic, rep.Recorded)
	}
	notes := strings.Join(rep.Notes, "\n")
	for _, s := range []string{"no store is configured", "not recorded"} {
		if !strings.Contains(notes, s) {
			t.Errorf("notes lack %q: %s", s, notes)
		}
	}
}

// TestEveryConfigInTheRepository: whatever a valid configuration holds,
// the assessment completes, in every format.
func TestEveryConfigInTheRepository(t *testing.T) {
	for _, path := range []string{
		"../../examples/demo/ztgate.yaml",
		"../config/testdata/valid.yaml",
		"../explain/testdata/gateway.yaml",
	} {
		t.Run(path, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse(path, data, config.Options{
				Secrets:   func([]config.SecretProvider) (config.SecretResolver, error) { return fakeSecrets{}, nil },
				LookupEnv: func(name string) (string, bool) { return "env-" + name, true },
			})
			if err != nil {
				t.Skipf("not a configuration this version loads: %v", err)
			}
			st := seed(t, goldenNow, demoTraffic)
			rep, err := Run(context.Background(), cfg, Options{Now: goldenNow, Audit: st, History: st, Record: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, format := range Formats {
				if err := rep.Write(io.Discard, format); err != nil {
					t.Errorf("%s: %v", format, err)
				}
			}
		})
	}
}
