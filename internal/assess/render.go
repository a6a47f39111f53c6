package assess

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Formats lists the report formats.
var Formats = []string{"html", "md", "json"}

// Write renders the report in a format: html, md or json.
func (rep *Report) Write(w io.Writer, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	case "md", "markdown":
		_, err := io.WriteString(w, rep.Markdown())
		return err
	case "html":
		return rep.HTML(w)
	}
	return fmt.Errorf("unknown format %q: want html, md or json", format)
}

// ContentType is the media type of a format.
func ContentType(format string) string {
	switch format {
	case "json":
		return "application/json"
	case "md", "markdown":
		return "text/markdown; charset=utf-8"
	}
	return "text/html; charset=utf-8"
}

const modelName = "CISA Zero Trust Maturity Model v2.0"

var outcomeMark = map[Outcome]string{
	Pass: "✅", Partial: "🟡", Fail: "❌", Unknown: "❔", NotApplicable: "➖", NotAvailable: "⏳",
}

// Markdown renders the report as Markdown.
func (rep *Report) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Zero Trust maturity assessment\n\n")
	p("- Configuration: `%s` (version `%s`)\n", rep.Config, rep.ConfigHash)
	p("- Traffic window: the last %s, %s to %s (UTC)\n", rep.Window.Since, rep.Window.From.Format(time.DateTime), rep.Window.To.Format(time.DateTime))
	p("- Generated: %s\n", rep.Generated.Format(time.RFC3339))
	p("- Model: %s; Microsoft's three-stage view beside it\n\n", modelName)

	p("## Where we stand\n\n")
	p("**Overall: %s** (Microsoft: %s%s). %s\n\n", rep.Overall.Stage, rep.Overall.Microsoft, prevText(rep.Overall.Previous), rep.Overall.Why)
	p("| Pillar | Stage | Microsoft view | Previous run | Pass | Partial | Fail | Not counted |\n|---|---|---|---|---|---|---|---|\n")
	for _, pr := range rep.Pillars {
		prev := "-"
		if pr.Previous != nil {
			prev = pr.Previous.String()
		}
		p("| [%s](#%s) | **%s** | %s | %s | %d | %d | %d | %d |\n", pr.Name, anchor(pr), pr.Stage, pr.Microsoft, prev,
			pr.Counts[string(Pass)], pr.Counts[string(Partial)], pr.Counts[string(Fail)], notCounted(pr.Counts))
	}
	p("\n")
	if rep.Previous != nil {
		p("### Changes since the previous run (%s, version `%s`)\n\n", rep.Previous.Time.Format(time.RFC3339), rep.Previous.ConfigHash)
		if len(rep.Changes) == 0 {
			p("No check changed its outcome.\n\n")
		}
		for _, c := range rep.Changes {
			from := string(c.From)
			if from == "" {
				from = "new check"
			}
			p("- %s: %s → %s\n", c.ID, from, c.To)
		}
		if len(rep.Changes) > 0 {
			p("\n")
		}
	}

	for _, pr := range rep.Pillars {
		kind := "Pillar"
		if pr.CrossCutting {
			kind = "Cross-cutting capability"
		}
		p("## %s: %s\n\n", pr.Name, pr.Stage)
		p("%s. Microsoft view: %s%s.\n\n", kind, pr.Microsoft, prevText(pr.Previous))
		for _, w := range pr.Why {
			p("- %s\n", w)
		}
		p("\n| Check | Supports | Function | Outcome |\n|---|---|---|---|\n")
		for _, f := range pr.Findings {
			p("| %s %s | %s | %s | %s %s |\n", f.ID, mdCell(f.Title), f.Stage, f.Function, outcomeMark[f.Outcome], f.Outcome.Label())
		}
		p("\n")
		for _, f := range pr.Findings {
			p("### %s %s: %s\n\n", f.ID, f.Title, f.Outcome.Label())
			p("%s %s. *%s; supports %s", outcomeMark[f.Outcome], strings.TrimSuffix(f.Summary, "."), f.Function, f.Stage)
			if f.Previous != "" {
				p("; previous run: %s", f.Previous.Label())
			}
			p(".*\n\n")
			if f.Measure != nil {
				p("Measure: %s.\n\n", f.Measure)
			}
			if len(f.Evidence) > 0 {
				p("Evidence:\n\n")
				for _, e := range f.Evidence {
					if e.Where != "" {
						p("- `%s` %s\n", e.Where, e.Text)
					} else {
						p("- %s\n", e.Text)
					}
				}
				p("\n")
			}
			if f.Next != nil {
				p("Next step: %s\n\n", f.Next.Text)
				if f.Next.YAML != "" {
					p("```yaml\n%s```\n\n", f.Next.YAML)
				}
			}
		}
	}

	if t := rep.Traffic; t != nil {
		p("## Traffic in the window\n\n")
		p("%d audit events from %s, %s.", t.Events, plural(t.Nodes, "node", "nodes"), plural(t.PolicyVersions, "configuration version", "configuration versions"))
		if t.Truncated {
			p(" (The window held more; the newest were read.)")
		}
		p("\n\n| Decision | Events |\n|---|---|\n")
		for _, d := range sortedKeys(t.Decisions) {
			p("| %s | %d |\n", d, t.Decisions[d])
		}
		p("\n| Route | Requests | Reached the upstream | Would deny (report-only) | Denied |\n|---|---|---|---|---|\n")
		for _, r := range t.Routes {
			name := r.Route
			if r.Removed {
				name += " (no longer configured)"
			}
			p("| %s | %d | %d | %d | %d |\n", mdCell(name), r.Total, r.Allowed, r.WouldDeny, r.Denied)
		}
		p("\n")
		if len(t.IdentityTypes) > 0 {
			var parts []string
			for _, k := range sortedKeys(t.IdentityTypes) {
				parts = append(parts, fmt.Sprintf("%s %d", k, t.IdentityTypes[k]))
			}
			p("Callers that reached an upstream, by kind: %s.\n\n", strings.Join(parts, ", "))
		}
	}

	if len(rep.History) > 0 {
		p("## Trend\n\n| Run | Version | Overall |")
		for _, pi := range Pillars {
			p(" %s |", pi.Name)
		}
		p("\n|---|---|---|%s\n", strings.Repeat("---|", len(Pillars)))
		p("| this run | `%s` | **%s** |", rep.ConfigHash, rep.Overall.Stage)
		for _, pr := range rep.Pillars {
			p(" %s |", pr.Stage)
		}
		p("\n")
		for _, h := range rep.History {
			p("| %s | `%s` | %s |", h.Time.Format(time.RFC3339), h.ConfigHash, h.Overall)
			for _, pi := range Pillars {
				if s, ok := h.Stages[pi.ID]; ok {
					p(" %s |", s)
				} else {
					p(" - |")
				}
			}
			p("\n")
		}
		p("\n")
	}

	p("## How to read this report\n\n")
	for _, l := range methodText {
		p("- %s\n", l)
	}
	p("\n| %s | Microsoft's three-stage view |\n|---|---|\n", modelName)
	for _, s := range Stages {
		p("| %s | %s |\n", s, s.Microsoft())
	}
	p("\n")
	if len(rep.Notes) > 0 {
		p("## Notes\n\n")
		for _, n := range rep.Notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	if rep.Recorded {
		p("This run is recorded in the store; the next run shows it as the previous one.\n")
	}
	return b.String()
}

// methodText explains how stages are derived; both renderings show it.
var methodText = []string{
	"Each check evidences one function of one pillar and supports one stage: Initial, Advanced or Optimal. Traditional is where a pillar starts.",
	"A pillar reaches a stage when it has reached the stage below, no check of the stage fails or passes only in part, and at least one check of the stage passes.",
	"Checks that are unknown (no traffic to judge by), not applicable, or not available in this version of ztgate count neither for nor against; the report names them.",
	"The overall stage is the lowest of the eight: Zero Trust is as strong as its weakest pillar.",
	"Sensitive routes are those that accept POST, PUT, PATCH or DELETE, or any method. Traffic evidence comes from the audit trail over the window; configuration evidence names file:line.",
}

func prevText(s *Stage) string {
	if s == nil {
		return ""
	}
	return "; previous run: " + s.String()
}

func notCounted(c map[string]int) int {
	return c[string(Unknown)] + c[string(NotApplicable)] + c[string(NotAvailable)]
}

func anchor(pr PillarResult) string {
	return strings.ToLower(strings.NewReplacer(" & ", "--", " ", "-").Replace(pr.Name)) + "-" + strings.ToLower(pr.Stage.String())
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
