package assess

import (
	_ "embed"
	"fmt"
	"html"
	"html/template"
	"io"
	"strings"
	"time"
)

//go:embed report.html.tmpl
var reportTemplate string

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"overview":   overviewChart,
	"chart":      pillarChart,
	"label":      func(o Outcome) string { return o.Label() },
	"mark":       func(o Outcome) string { return outcomeMark[o] },
	"date":       func(t time.Time) string { return t.UTC().Format(time.DateTime) },
	"rfc3339":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"lower":      strings.ToLower,
	"stages":     func() []Stage { return Stages },
	"pillars":    func() []PillarInfo { return Pillars },
	"method":     func() []string { return methodText },
	"model":      func() string { return modelName },
	"keys":       sortedKeys,
	"notCounted": notCounted,
	"plural":     plural,
	"stageOf": func(h Snapshot, p Pillar) string {
		if s, ok := h.Stages[p]; ok {
			return s.String()
		}
		return "-"
	},
	"count": func(c map[string]int, o Outcome) int { return c[string(o)] },
}).Parse(reportTemplate))

// HTML renders the report as one self-contained HTML page: inline CSS and
// SVG, no scripts, nothing loaded from elsewhere (its Content-Security-
// Policy forbids it), readable on screen and in print.
func (rep *Report) HTML(w io.Writer) error {
	return htmlReport.Execute(w, rep)
}

var stageFill = map[Stage]string{Traditional: "#b0bec5", Initial: "#90caf9", Advanced: "#42a5f5", Optimal: "#1565c0"}

var outcomeFill = map[Outcome]string{
	Pass: "#2e7d32", Partial: "#f9a825", Fail: "#c62828", Unknown: "#78909c", NotApplicable: "#cfd8dc", NotAvailable: "#eceff1",
}

func textOn(fill string) string {
	switch fill {
	case "#f9a825", "#cfd8dc", "#eceff1", "#b0bec5", "#90caf9":
		return "#1b1b1b"
	}
	return "#ffffff"
}

// overviewChart draws every pillar's stage as a bar of four steps, with the
// previous run's stage marked.
func overviewChart(rep *Report) template.HTML {
	const label, step, row, top = 210, 96, 26, 22
	width := label + 4*step + 10
	hasPrev := rep.Previous != nil
	height := top + row*len(rep.Pillars) + 8
	if hasPrev {
		height += 18
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart overview" role="img" aria-labelledby="overview-title" viewBox="0 0 %d %d" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`, width, height, width, height)
	b.WriteString(`<title id="overview-title">Stage per pillar</title>`)
	for i, s := range Stages {
		fmt.Fprintf(&b, `<text x="%d" y="14" class="axis">%s</text>`, label+i*step+4, s)
	}
	for i, pr := range rep.Pillars {
		y := top + i*row
		fmt.Fprintf(&b, `<text x="0" y="%d" class="name">%s</text>`, y+15, html.EscapeString(pr.Name))
		for j, s := range Stages {
			fill := "#f5f5f5"
			if s <= pr.Stage {
				fill = stageFill[pr.Stage]
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s" stroke="#ffffff"><title>%s: %s</title></rect>`, label+j*step, y+2, step, row-6, fill, html.EscapeString(pr.Name), pr.Stage)
		}
		if pr.Previous != nil {
			x := label + (int(*pr.Previous)+1)*step - 2
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="4" height="%d" fill="#212121"><title>previous run: %s</title></rect>`, x, y, row-2, *pr.Previous)
		}
	}
	if hasPrev {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="4" height="12" fill="#212121"/><text x="%d" y="%d" class="axis">previous run</text>`, label, height-14, label+10, height-4)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// pillarChart draws a pillar's stage ladder and its checks by the stage
// they support, coloured by outcome: what moved the stage and what holds
// it back, at a glance.
func pillarChart(pr PillarResult) template.HTML {
	const label, box, gap, ladder, row = 90, 62, 6, 28, 30
	most := 1
	for _, s := range Stages[1:] {
		n := 0
		for _, f := range pr.Findings {
			if f.Stage == s {
				n++
			}
		}
		most = max(most, n)
	}
	width := max(label+most*(box+gap), 4*165) + 10
	height := ladder + 12 + 3*row + 4
	step := (width - 10) / 4
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-labelledby="chart-%s" viewBox="0 0 %d %d" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`, pr.ID, width, height, width, height)
	fmt.Fprintf(&b, `<title id="chart-%s">%s: %s; checks by the stage they support</title>`, pr.ID, html.EscapeString(pr.Name), pr.Stage)
	for i, s := range Stages {
		fill, text := "#f5f5f5", "#616161"
		if s <= pr.Stage {
			fill = stageFill[pr.Stage]
			text = textOn(fill)
		}
		stroke, dash := "#ffffff", ""
		if pr.Previous != nil && *pr.Previous == s {
			stroke, dash = "#212121", ` stroke-dasharray="4 3"`
		}
		fmt.Fprintf(&b, `<rect x="%d" y="1" width="%d" height="%d" fill="%s" stroke="%s" stroke-width="2"%s/>`, i*step+1, step-2, ladder-2, fill, stroke, dash)
		name := s.String()
		if pr.Previous != nil && *pr.Previous == s && s != pr.Stage {
			name += " (previous)"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s" class="step">%s</text>`, i*step+8, ladder-9, text, name)
	}
	for i, s := range Stages[1:] {
		y := ladder + 12 + i*row
		fmt.Fprintf(&b, `<text x="0" y="%d" class="name">%s</text>`, y+16, s)
		n := 0
		for _, f := range pr.Findings {
			if f.Stage != s {
				continue
			}
			x := label + n*(box+gap)
			fill := outcomeFill[f.Outcome]
			dash := ""
			if f.Outcome == NotAvailable || f.Outcome == Unknown || f.Outcome == NotApplicable {
				dash = ` stroke="#78909c" stroke-dasharray="3 2"`
			}
			fmt.Fprintf(&b, `<a href="#%s"><rect x="%d" y="%d" width="%d" height="22" rx="3" fill="%s"%s><title>%s %s: %s</title></rect>`,
				strings.ToLower(f.ID), x, y+2, box, fill, dash, f.ID, html.EscapeString(f.Title), f.Outcome.Label())
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s" class="id">%s</text></a>`, x+box/2, y+17, textOn(fill), f.ID)
			n++
		}
		if n == 0 {
			fmt.Fprintf(&b, `<text x="%d" y="%d" class="none">no check in this version</text>`, label, y+17)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
