package explain

import (
	"fmt"
	"io"
	"strings"
)

// WriteText writes the explanation for a person at a terminal.
func (r *Result) WriteText(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("request   %s %s\n", r.Method, r.URL)
	if r.Path == "" {
		p("path      refused: %s\n", r.Reason)
		p("decision  %s (%d %s)\n", r.Decision, r.Status, r.Reason)
		return
	}
	p("path      %s (normalised)\n", r.Path)
	p("routes\n")
	width := 0
	for _, c := range r.Candidates {
		width = max(width, len(c.Route))
	}
	for _, c := range r.Candidates {
		mark, why := "  ", c.Reason
		if c.Matched {
			mark, why = "->", "matched"
		}
		host := c.Host
		if host == "" {
			host = "*"
		}
		p("  %s %-*s  host %s, %s: %s\n", mark, width, c.Route, host, c.Match, why)
	}
	if r.Route == "" {
		p("decision  %s (%d %s): no route matches, the request is never forwarded\n", r.Decision, r.Status, r.Reason)
		return
	}
	if len(r.Params) > 0 {
		keys := make([]string, 0, len(r.Params))
		for k, v := range r.Params {
			keys = append(keys, fmt.Sprintf("%s=%v", k, v))
		}
		p("params    %s\n", strings.Join(sorted(keys), " "))
	}
	p("authentication\n")
	for _, a := range r.Auth {
		p("  %s\n", a)
	}
	if id := r.Identity; id != nil {
		p("identity  %s %q (provider %s)", id.Type, id.Subject, id.Provider)
		if id.Tenant != "" {
			p(" tenant %s", id.Tenant)
		}
		if id.AppID != "" {
			p(" app %s", id.AppID)
		}
		if id.Workload != "" && id.Workload != id.Subject {
			p(" via workload %s", id.Workload)
		}
		p("\n")
		for _, l := range []struct {
			k string
			v []string
		}{{"roles", id.Roles}, {"scopes", id.Scopes}, {"groups", id.Groups}, {"amr", id.AMR}, {"acrs", id.ACRS}} {
			if len(l.v) > 0 {
				p("          %-6s %s\n", l.k, strings.Join(l.v, ", "))
			}
		}
		if id.GroupsUnknown {
			p("          groups unknown (group overage, not resolved)\n")
		}
	}
	if r.Mode != "" {
		p("policy    %s, mode %s, version %s\n", r.Route, r.Mode, r.Version)
		for _, s := range r.Steps {
			mark := "FAIL"
			if s.OK() {
				mark = "ok  "
			}
			if s.Reason == "any_of" || s.Reason == "all_of" {
				mark = "    "
			}
			p("  %s%s %-14s want %s", strings.Repeat("  ", s.Depth), mark, s.Criterion, s.Want)
			if s.Have != "" {
				p("; have %s", s.Have)
			}
			if mark != "    " {
				p(" [%s]", s.Reason)
			}
			p("\n")
		}
	}
	switch r.Decision {
	case "allow":
		p("decision  allow (%d)\n", r.Status)
	case "would_deny":
		p("decision  would_deny: let through in report-only mode; enforce would refuse with 403 %s\n", r.Reason)
	default:
		p("decision  deny (%d %s)\n", r.Status, r.Reason)
	}
}

func sorted(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}
