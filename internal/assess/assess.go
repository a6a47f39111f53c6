// Package assess tells where a deployment stands on the CISA Zero Trust
// Maturity Model v2.0, with evidence instead of a questionnaire: it reads
// the gateway's configuration and its audit trail, runs checks that each
// evidence one function of one pillar at one stage, derives a stage per
// pillar (explained by the checks that moved it or held it back), and
// writes the report as JSON, Markdown or a self-contained HTML page.
// Results are kept in the store, so a run shows the previous one beside it.
package assess

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/store"
)

// History keeps assessment results: the store.
type History interface {
	AddAssessment(ctx context.Context, a store.Assessment) error
	Assessments(ctx context.Context, before time.Time, limit int) ([]store.Assessment, error)
}

// Options tune a run.
type Options struct {
	Now   time.Time     // the end of the window; zero: time.Now()
	Since time.Duration // the window's length; zero: DefaultSince
	// Name is the configuration file as the report shows it; "": cfg.File.
	Name string
	// Raw is the configuration file's content, read for secret references
	// (resolved values never show them); nil: cfg.File is read.
	Raw []byte
	// Audit is the audit trail; nil: there is none (no store configured).
	Audit AuditSource
	// History keeps results for the trend; nil: no trend.
	History History
	// Record stores this run's result in History.
	Record bool
	// PolicyTests are policy test files to run; nil: *_test.yaml beside
	// the configuration and in its tests/ directory.
	PolicyTests []string
	// MaxEvents bounds the audit events read (the newest first); 0: 1,000,000.
	MaxEvents int
	// Capability overrides the probe of configuration keys (tests).
	Capability func(path string) Capability
}

// DefaultSince is the default window.
const DefaultSince = 30 * 24 * time.Hour

// ReportFormat is the version of the JSON report's shape.
const ReportFormat = 1

// Report is an assessment.
type Report struct {
	Format     int            `json:"format"`
	Generated  time.Time      `json:"generated"`
	Config     string         `json:"config"`
	ConfigHash string         `json:"config_hash"`
	Window     Window         `json:"window"`
	Overall    Overall        `json:"overall"`
	Pillars    []PillarResult `json:"pillars"`
	Traffic    *TrafficReport `json:"traffic,omitempty"`
	// Previous is the run before this one, when one is stored; History
	// lists earlier runs, newest first.
	Previous *Snapshot  `json:"previous,omitempty"`
	History  []Snapshot `json:"history,omitempty"`
	Changes  []Change   `json:"changes,omitempty"`
	Recorded bool       `json:"recorded"`
	Notes    []string   `json:"notes,omitempty"`
}

// Window is the span of audit data read.
type Window struct {
	Since string    `json:"since"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
}

// Overall is the deployment's stage: the lowest of its pillars'.
type Overall struct {
	Stage     Stage          `json:"stage"`
	Microsoft string         `json:"microsoft"`
	Previous  *Stage         `json:"previous,omitempty"`
	Why       string         `json:"why"`
	Counts    map[string]int `json:"counts"` // checks by outcome
}

// PillarResult is one pillar's stage and the findings behind it.
type PillarResult struct {
	PillarInfo
	Stage     Stage          `json:"stage"`
	Microsoft string         `json:"microsoft"`
	Previous  *Stage         `json:"previous,omitempty"`
	Why       []string       `json:"why"`
	Counts    map[string]int `json:"counts"`
	Findings  []Finding      `json:"findings"`
}

// Finding is one check's result.
type Finding struct {
	ID       string     `json:"id"`
	Title    string     `json:"title"`
	Pillar   Pillar     `json:"pillar"`
	Function string     `json:"function"`
	Stage    Stage      `json:"stage"` // the stage a pass supports
	Outcome  Outcome    `json:"outcome"`
	Previous Outcome    `json:"previous,omitempty"`
	Summary  string     `json:"summary"`
	Measure  *Measure   `json:"measure,omitempty"`
	Evidence []Evidence `json:"evidence,omitempty"`
	Next     *NextStep  `json:"next,omitempty"`
}

// Measure is a share: Num of Den things.
type Measure struct {
	Num int    `json:"num"`
	Den int    `json:"den"`
	Of  string `json:"of"`
}

func (m *Measure) String() string {
	if m.Den == 0 {
		return "0 " + m.Of
	}
	return fmt.Sprintf("%d of %d %s (%d%%)", m.Num, m.Den, m.Of, m.Num*100/m.Den)
}

// Evidence is one fact, and where it comes from: file:line of the
// configuration, "audit" for the audit trail, or a file name.
type Evidence struct {
	Where string `json:"where"`
	Text  string `json:"text"`
}

// NextStep is what to do to pass, with a configuration snippet.
type NextStep struct {
	Text string `json:"text"`
	YAML string `json:"yaml,omitempty"`
}

// Snapshot is a stored result.
type Snapshot struct {
	Time       time.Time        `json:"time"`
	ConfigHash string           `json:"config_hash"`
	Overall    Stage            `json:"overall"`
	Stages     map[Pillar]Stage `json:"stages"`
	outcomes   map[string]Outcome
}

// Change is a check whose outcome differs from the previous run's.
type Change struct {
	ID   string  `json:"id"`
	From Outcome `json:"from,omitempty"` // "": the check is new
	To   Outcome `json:"to"`
}

// Run assesses cfg.
func Run(ctx context.Context, cfg *config.Config, o Options) (*Report, error) {
	in, notes, err := Gather(ctx, cfg, o)
	if err != nil {
		return nil, err
	}
	rep := evaluate(in, AllChecks())
	rep.Config = o.Name
	if rep.Config == "" {
		rep.Config = cfg.File
	}
	rep.Notes = append(rep.Notes, notes...)
	if o.History == nil {
		if o.Record {
			rep.Notes = append(rep.Notes, "This run is not recorded: there is no store.")
		}
		return rep, nil
	}
	prev, err := o.History.Assessments(ctx, in.Now.Add(time.Nanosecond), 10)
	if err != nil {
		return nil, fmt.Errorf("assessment history: %w", err)
	}
	rep.withHistory(prev)
	if o.Record {
		if err := o.History.AddAssessment(ctx, rep.stored()); err != nil {
			return nil, fmt.Errorf("record assessment: %w", err)
		}
		rep.Recorded = true
	}
	return rep, nil
}

// Gather collects the inputs of the checks.
func Gather(ctx context.Context, cfg *config.Config, o Options) (*Inputs, []string, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Since <= 0 {
		o.Since = DefaultSince
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = 1_000_000
	}
	in := &Inputs{
		Cfg: cfg, File: filepath.Base(cfg.File), Dir: filepath.Dir(cfg.File),
		Now: o.Now.UTC(), Since: o.Since, Routes: routesOf(cfg), Capability: o.Capability,
	}
	if in.Capability == nil {
		in.Capability = probe
	}
	var notes []string
	raw := o.Raw
	if raw == nil {
		var err error
		if raw, err = os.ReadFile(cfg.File); err != nil {
			in.SecretsErr = err.Error()
		}
	}
	if sum := sha256.Sum256(raw); raw != nil && hex.EncodeToString(sum[:6]) != cfg.Hash {
		in.SecretsErr = "the file differs from the configuration in force (changed since it was loaded)"
		raw = nil
	}
	if raw != nil {
		sv, err := secretValues(cfg, raw)
		if err != nil {
			in.SecretsErr = err.Error()
		}
		in.Secrets = sv
	}
	for _, f := range certFiles(cfg) {
		in.Certs = append(in.Certs, readCert(in.Dir, f[0], f[1]))
	}
	in.Repo = findRepo(in.Dir)
	tests := o.PolicyTests
	if tests == nil {
		tests = discoverTests(in.Dir)
	}
	in.Tests = runTests(ctx, cfg, in.Dir, tests)

	switch {
	case o.Audit != nil:
		t, err := readTraffic(ctx, o.Audit, in.Now.Add(-o.Since), in.Now, o.MaxEvents)
		if err != nil {
			return nil, nil, fmt.Errorf("read the audit trail: %w", err)
		}
		in.Traffic = t
		if t.Truncated {
			notes = append(notes, fmt.Sprintf("The window holds more than %d audit events; the newest %d were read.", t.Limit, t.Limit))
		}
		if t.AlertsErr != "" {
			notes = append(notes, "Alerts could not be read: "+t.AlertsErr)
		}
	case cfg.Store == nil:
		in.TrafficNote = "no store is configured, so there is no audit trail to read"
	default:
		in.TrafficNote = "the audit trail was not read"
	}
	if in.TrafficNote != "" {
		notes = append(notes, "Traffic: "+in.TrafficNote+"; checks that need traffic say unknown.")
	}
	return in, notes, nil
}

// check is one assessment check.
type check struct {
	ID       string
	Title    string
	Pillar   Pillar
	Function string
	Stage    Stage
	Run      func(in *Inputs) Result
}

// Result is what a check found.
type Result struct {
	Outcome  Outcome
	Summary  string
	Measure  *Measure
	Evidence []Evidence
	Next     *NextStep
}

// AllChecks returns every check, by pillar.
func AllChecks() []check {
	return slices.Concat(identityChecks, deviceChecks, networkChecks, applicationChecks, dataChecks,
		visibilityChecks, automationChecks, governanceChecks)
}

// evaluate runs the checks and derives the stages.
func evaluate(in *Inputs, checks []check) *Report {
	rep := &Report{
		Format: ReportFormat, Generated: in.Now, ConfigHash: in.Cfg.Hash,
		Window:  Window{Since: formatSince(in.Since), From: in.Now.Add(-in.Since), To: in.Now},
		Traffic: trafficReport(in),
	}
	byPillar := map[Pillar][]Finding{}
	for _, c := range checks {
		r := c.Run(in)
		if len(r.Evidence) > maxEvidence {
			more := len(r.Evidence) - maxEvidence
			r.Evidence = append(r.Evidence[:maxEvidence:maxEvidence], Evidence{Text: fmt.Sprintf("... and %d more", more)})
		}
		if !r.Outcome.Blocks() && r.Outcome != NotAvailable {
			r.Next = nil
		}
		byPillar[c.Pillar] = append(byPillar[c.Pillar], Finding{
			ID: c.ID, Title: c.Title, Pillar: c.Pillar, Function: c.Function, Stage: c.Stage,
			Outcome: r.Outcome, Summary: r.Summary, Measure: r.Measure, Evidence: r.Evidence, Next: r.Next,
		})
	}
	rep.Overall = Overall{Stage: Optimal, Counts: map[string]int{}}
	var lowest []string
	for _, p := range Pillars {
		fs := byPillar[p.ID]
		stage, why := stageOf(fs)
		pr := PillarResult{PillarInfo: p, Stage: stage, Microsoft: stage.Microsoft(), Why: why, Counts: map[string]int{}, Findings: fs}
		for _, f := range fs {
			pr.Counts[string(f.Outcome)]++
			rep.Overall.Counts[string(f.Outcome)]++
		}
		rep.Pillars = append(rep.Pillars, pr)
		switch {
		case stage < rep.Overall.Stage:
			rep.Overall.Stage, lowest = stage, []string{p.Name}
		case stage == rep.Overall.Stage:
			lowest = append(lowest, p.Name)
		}
	}
	rep.Overall.Microsoft = rep.Overall.Stage.Microsoft()
	rep.Overall.Why = fmt.Sprintf("The overall stage is the lowest of the eight pillars and capabilities (the weakest link): %s at %s.",
		joinAnd(lowest), rep.Overall.Stage)
	return rep
}

const maxEvidence = 12

// stageOf derives a pillar's stage from its findings: a stage is reached
// when the one below it is, no check of the stage fails or passes only in
// part, and at least one check of the stage passes. Checks that are
// unknown, not applicable or not available in this version count neither
// way. Every stage gets a line saying why.
func stageOf(fs []Finding) (Stage, []string) {
	stage := Traditional
	var why []string
	reached := true
	for _, s := range Stages[1:] {
		var pass, block, other []string
		for _, f := range fs {
			if f.Stage != s {
				continue
			}
			switch {
			case f.Outcome == Pass:
				pass = append(pass, f.ID)
			case f.Outcome.Blocks():
				block = append(block, fmt.Sprintf("%s (%s)", f.ID, f.Outcome))
			default:
				other = append(other, fmt.Sprintf("%s (%s)", f.ID, f.Outcome.Label()))
			}
		}
		ok := len(block) == 0 && len(pass) > 0
		var line string
		if reached && ok {
			stage = s
			line = fmt.Sprintf("%s: reached: %s %s.", s, joinAnd(pass), passVerb(len(pass)))
		} else {
			var reasons []string
			switch {
			case len(block) > 0:
				reasons = append(reasons, "held back by "+joinAnd(block))
			case len(pass) == 0 && len(other) == 0:
				reasons = append(reasons, "no check evidences this stage")
			case len(pass) == 0:
				reasons = append(reasons, "no check of this stage passes")
			}
			if !reached {
				r := fmt.Sprintf("%s must be reached first", stage+1)
				if ok {
					r += fmt.Sprintf(" (%s %s)", joinAnd(pass), passVerb(len(pass)))
				}
				reasons = append(reasons, r)
			}
			line = fmt.Sprintf("%s: not reached: %s.", s, strings.Join(reasons, "; "))
			reached = false
		}
		if len(other) > 0 {
			line += " Not counted: " + joinAnd(other) + "."
		}
		why = append(why, line)
	}
	return stage, why
}

func passVerb(n int) string {
	if n == 1 {
		return "passes"
	}
	return "pass"
}

func joinAnd(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// formatSince writes a window length the way it is given: 30d, 12h, 90m.
func formatSince(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m")
}

// withHistory adds the stored runs before this one.
func (rep *Report) withHistory(prev []store.Assessment) {
	for _, a := range prev {
		r := Snapshot{Time: a.Time, ConfigHash: a.ConfigHash, Stages: map[Pillar]Stage{}, outcomes: map[string]Outcome{}}
		_ = r.Overall.UnmarshalText([]byte(a.Overall))
		for p, s := range a.Stages {
			var st Stage
			if st.UnmarshalText([]byte(s)) == nil {
				r.Stages[Pillar(p)] = st
			}
		}
		for id, o := range a.Outcomes {
			r.outcomes[id] = Outcome(o)
		}
		rep.History = append(rep.History, r)
	}
	if len(rep.History) == 0 {
		return
	}
	p := rep.History[0]
	rep.Previous = &p
	ov := p.Overall
	rep.Overall.Previous = &ov
	for i := range rep.Pillars {
		pr := &rep.Pillars[i]
		if s, ok := p.Stages[pr.ID]; ok {
			pr.Previous = &s
		}
		for j := range pr.Findings {
			f := &pr.Findings[j]
			f.Previous = p.outcomes[f.ID]
			if f.Previous != f.Outcome {
				rep.Changes = append(rep.Changes, Change{ID: f.ID, From: f.Previous, To: f.Outcome})
			}
		}
	}
}

// stored is the result as the store keeps it.
func (rep *Report) stored() store.Assessment {
	a := store.Assessment{
		Time: rep.Generated, Config: rep.Config, ConfigHash: rep.ConfigHash, Overall: rep.Overall.Stage.String(),
		Stages: map[string]string{}, Outcomes: map[string]string{},
	}
	for _, p := range rep.Pillars {
		a.Stages[string(p.ID)] = p.Stage.String()
		for _, f := range p.Findings {
			a.Outcomes[f.ID] = string(f.Outcome)
		}
	}
	return a
}

// Result helpers for the checks.

// share judges a share where all is the target.
func share(num, den int) Outcome {
	switch {
	case den == 0:
		return NotApplicable
	case num == den:
		return Pass
	case num == 0:
		return Fail
	}
	return Partial
}

// trafficShare is share for traffic, where no data is unknown.
func trafficShare(num, den int) Outcome {
	if den == 0 {
		return Unknown
	}
	return share(num, den)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// verb picks the verb form for n subjects.
func verb(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// allOf is "The one thing is" or "All 3 things are".
func allOf(n int, one, many string) string {
	if n == 1 {
		return "The one " + one
	}
	return fmt.Sprintf("All %d %s", n, many)
}
