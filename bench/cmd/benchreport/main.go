// Command benchreport turns the per-run table bench/run writes (TSV, one
// line a run) into the Markdown of bench/RESULTS.md: medians over rounds,
// ratios to the bare proxy, and issue 8's targets, each met or missed by
// how much.
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// run is one wrk run against one target.
type run struct {
	round    int
	scenario string
	target   string
	conns    int
	rps      float64
	p50, p99 float64 // µs
	cpu      float64 // proxy CPU µs per request
	rssKB    float64 // peak (VmHWM)
	fileKB   float64 // at the end of the run: mapped files (the binary); NaN in old files
	anonKB   float64 // at the end of the run: private memory; NaN in old files
	requests int64   // answered in the measured window
	warm     int64   // answered in the warm-up before it
	non2xx   int64
	errors   int64
	rows     int64 // audit events; -1 where not applicable
	answered int64 // ztgate_requests_total; -1 where not applicable
}

// cell is the runs of one scenario, target and connection count.
type cell struct {
	scenario, target string
	conns            int
	runs             []run
}

func main() {
	in := flag.String("in", "", "TSV written by bench/run")
	flag.Parse()
	f, err := os.Open(*in)
	if err != nil {
		log.Fatal(err)
	}
	runs, err := read(f)
	f.Close()
	if err != nil {
		log.Fatal(err)
	}
	if len(runs) == 0 {
		log.Fatal("no runs")
	}
	cells := group(runs)
	table(os.Stdout, cells)
	targets(os.Stdout, cells, runs)
}

func read(r io.Reader) ([]run, error) {
	cr := csv.NewReader(r)
	cr.Comma = '\t'
	recs, err := cr.ReadAll()
	if err != nil {
		return nil, err
	}
	var runs []run
	for i, rec := range recs {
		if i == 0 || len(rec) == 0 {
			continue // header
		}
		if len(rec) != 15 && len(rec) != 17 {
			return nil, fmt.Errorf("line %d: %d fields, want 17 (or 15, before the RSS split)", i+1, len(rec))
		}
		n := func(j int) float64 {
			v, perr := strconv.ParseFloat(rec[j], 64)
			if perr != nil && err == nil {
				err = fmt.Errorf("line %d field %d: %w", i+1, j+1, perr)
			}
			return v
		}
		runs = append(runs, run{
			round: int(n(0)), scenario: rec[1], target: rec[2], conns: int(n(3)),
			rps: n(4), p50: n(5), p99: n(6), cpu: n(7), rssKB: n(8),
			requests: int64(n(9)), warm: int64(n(10)), non2xx: int64(n(11)), errors: int64(n(12)),
			rows: int64(n(13)), answered: int64(n(14)), fileKB: math.NaN(), anonKB: math.NaN(),
		})
		if len(rec) == 17 {
			runs[len(runs)-1].fileKB, runs[len(runs)-1].anonKB = n(15), n(16)
		}
	}
	return runs, err
}

var scenarioOrder = []string{"same", "noaudit", "fresh", "denied", "pg", "direct"}

var scenarioNames = map[string]string{
	"same":    "same token",
	"fresh":   "fresh token",
	"denied":  "denied (no token)",
	"pg":      "same token, audit on PostgreSQL",
	"noaudit": "same token, no audit",
	"direct":  "direct to upstream",
}

func rank(list []string, s string) int {
	if i := slices.Index(list, s); i >= 0 {
		return i
	}
	return len(list)
}

func targetRank(t string) int { return rank([]string{"baseline", "ztgate"}, t) }

func group(runs []run) []*cell {
	var cells []*cell
	for _, r := range runs {
		i := slices.IndexFunc(cells, func(c *cell) bool {
			return c.scenario == r.scenario && c.target == r.target && c.conns == r.conns
		})
		if i < 0 {
			cells = append(cells, &cell{scenario: r.scenario, target: r.target, conns: r.conns})
			i = len(cells) - 1
		}
		cells[i].runs = append(cells[i].runs, r)
	}
	slices.SortStableFunc(cells, func(a, b *cell) int {
		if d := rank(scenarioOrder, a.scenario) - rank(scenarioOrder, b.scenario); d != 0 {
			return d
		}
		if a.scenario != b.scenario {
			return strings.Compare(a.scenario, b.scenario)
		}
		if a.conns != b.conns {
			return a.conns - b.conns
		}
		if d := targetRank(a.target) - targetRank(b.target); d != 0 {
			return d
		}
		return strings.Compare(a.target, b.target)
	})
	return cells
}

func median(c *cell, f func(run) float64) float64 {
	v := make([]float64, len(c.runs))
	for i, r := range c.runs {
		v[i] = f(r)
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// paired is the median over rounds of f(z's run, b's run) for the runs of
// the same round: the two ran seconds apart, so a machine that slows down
// for a while (shared, noisy) slows both, and their ratio keeps its sense
// where a ratio of separate medians would not.
func paired(z, b *cell, f func(z, b run) float64) float64 {
	var v []float64
	for _, rz := range z.runs {
		for _, rb := range b.runs {
			if rb.round == rz.round {
				v = append(v, f(rz, rb))
			}
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	return medianOf(v)
}

func medianOf(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func rpsRatio(z, b run) float64  { return z.rps / b.rps }
func cpuPerReq(z, b run) float64 { return z.cpu / b.cpu }
func p50Added(z, b run) float64  { return z.p50 - b.p50 }

func peak(c *cell) float64 {
	m := 0.0
	for _, r := range c.runs {
		m = max(m, r.rssKB)
	}
	return m
}

func find(cells []*cell, scenario, target string, conns int) *cell {
	for _, c := range cells {
		if c.scenario == scenario && c.target == target && c.conns == conns {
			return c
		}
	}
	return nil
}

func rps(r run) float64 { return r.rps }
func p50(r run) float64 { return r.p50 }
func p99(r run) float64 { return r.p99 }
func cpu(r run) float64 { return r.cpu }

func ms(us float64) string { return fmt.Sprintf("%.3f", us/1000) }

func table(w io.Writer, cells []*cell) {
	fmt.Fprintln(w, "| scenario | conns | target | req/s | ÷ baseline | p50 ms | p99 ms | CPU µs/req | CPU ÷ baseline | peak RSS MB |")
	fmt.Fprintln(w, "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|")
	for _, c := range cells {
		ratio, cpuRatio := "", ""
		if b := find(cells, c.scenario, "baseline", c.conns); b != nil && c.target != "baseline" {
			ratio = fmt.Sprintf("%.2f", paired(c, b, rpsRatio))
			cpuRatio = fmt.Sprintf("%.2f", paired(c, b, cpuPerReq))
		}
		fmt.Fprintf(w, "| %s | %d | %s | %.0f | %s | %s | %s | %.1f | %s | %.1f |\n",
			scenarioNames[c.scenario], c.conns, c.target, median(c, rps), ratio,
			ms(median(c, p50)), ms(median(c, p99)), median(c, cpu), cpuRatio, peak(c)/1024)
	}
	fmt.Fprintln(w)
	n := 0
	for _, c := range cells {
		n = max(n, len(c.runs))
	}
	fmt.Fprintf(w, "Each figure is the median of %d round(s), except peak RSS (the highest VmHWM of the rounds). "+
		"The ratios (÷ baseline) are the median of each round's ratio: a target and its baseline run seconds apart "+
		"in the same round, so a machine that slows for a while slows both. "+
		"In the direct rows, CPU and RSS are the upstream's.\n\n", n)
}

// verdict says whether got meets a goal (at least goal when atLeast, else
// at most), and by how much it misses.
func verdict(got, goal float64, atLeast bool) string {
	if math.IsNaN(got) {
		return "not measured"
	}
	if (atLeast && got >= goal) || (!atLeast && got <= goal) {
		return "**met**"
	}
	if atLeast {
		return fmt.Sprintf("**missed** by %.0f%% (%.2f short)", (goal-got)/goal*100, goal-got)
	}
	return fmt.Sprintf("**missed** by %.0f%% (%.2f over)", (got-goal)/goal*100, got-goal)
}

func targets(w io.Writer, cells []*cell, runs []run) {
	maxConns := 0
	for _, r := range runs {
		maxConns = max(maxConns, r.conns)
	}
	ratio := func(scenario string, conns int) float64 {
		z, b := find(cells, scenario, "ztgate", conns), find(cells, scenario, "baseline", conns)
		if z == nil || b == nil {
			return math.NaN()
		}
		return paired(z, b, rpsRatio)
	}
	added := func(scenario string) float64 {
		z, b := find(cells, scenario, "ztgate", 1), find(cells, scenario, "baseline", 1)
		if z == nil || b == nil {
			return math.NaN()
		}
		return paired(z, b, p50Added) / 1000
	}
	rss := math.NaN()
	var top run // the ztgate run with the highest peak
	for _, c := range cells {
		if c.target == "ztgate" && c.conns == maxConns {
			if math.IsNaN(rss) {
				rss = 0
			}
			rss = max(rss, peak(c)/1024)
			for _, r := range c.runs {
				if r.rssKB > top.rssKB {
					top = r
				}
			}
		}
	}

	fmt.Fprintln(w, "| target (issue 8) | goal | measured | verdict |")
	fmt.Fprintln(w, "|---|--:|--:|---|")
	same, fresh := ratio("same", maxConns), ratio("fresh", maxConns)
	fmt.Fprintf(w, "| same token, %d conns: req/s ÷ bare proxy | ≥ 0.85 | %.2f | %s |\n", maxConns, same, verdict(same, 0.85, true))
	fmt.Fprintf(w, "| fresh token, %d conns: req/s ÷ bare proxy | ≥ 0.60 | %.2f | %s |\n", maxConns, fresh, verdict(fresh, 0.60, true))
	lat := added("same")
	fmt.Fprintf(w, "| 1 conn, same token: p50 added over bare proxy | ≤ 0.100 ms | %.3f ms | %s |\n", lat, verdict(lat, 0.1, false))
	// What audit adds to the proxy's CPU per request (issue 5): the same
	// token with and without the audit store, in the same run.
	// Each CPU figure is first divided by its own round's baseline (the
	// machine's speed at that moment), then the two scenarios compared.
	if a, n := find(cells, "same", "ztgate", maxConns), find(cells, "noaudit", "ztgate", maxConns); a != nil && n != nil {
		ab, nb := find(cells, "same", "baseline", maxConns), find(cells, "noaudit", "baseline", maxConns)
		share := (median(a, cpu) - median(n, cpu)) / median(n, cpu) * 100
		if ab != nil && nb != nil {
			share = (paired(a, ab, cpuPerReq)/paired(n, nb, cpuPerReq) - 1) * 100
		}
		fmt.Fprintf(w, "| audit (SQLite) added to ztgate's CPU per request, %d conns (each run's CPU ÷ its round's baseline) | < 5%% | %.0f%% (medians %.1f → %.1f µs) | %s |\n",
			maxConns, share, median(n, cpu), median(a, cpu), verdict(share, 5, false))
	}
	if v := ratio("pg", maxConns); !math.IsNaN(v) {
		fmt.Fprintf(w, "| same token, audit on PostgreSQL, %d conns: req/s ÷ bare proxy (for reference) | | %.2f | |\n", maxConns, v)
	}
	for _, s := range []string{"fresh", "denied", "pg"} {
		if v := added(s); !math.IsNaN(v) {
			fmt.Fprintf(w, "| 1 conn, %s: p50 added (for reference) | | %.3f ms | |\n", scenarioNames[s], v)
		}
	}
	fmt.Fprintf(w, "| peak RSS, %d-conn runs (highest of all scenarios) | ≤ 40 MB | %.1f MB | %s |\n", maxConns, rss, verdict(rss, 40, false))
	if top.rssKB > 0 && !math.IsNaN(top.fileKB) {
		fmt.Fprintf(w, "| that run's resident set at its end: the binary's mapped pages (shared, clean) + private memory (for reference) | | %.1f + %.1f MB | |\n", top.fileKB/1024, top.anonKB/1024)
	}
	got, ok := auditSummary(runs)
	fmt.Fprintf(w, "| zero audit loss | 0 lost | %s | %s |\n", got, ok)
	fmt.Fprintln(w)
	for _, s := range checks(runs) {
		fmt.Fprintf(w, "- WARNING: %s\n", s)
	}
}

// auditSummary checks every ztgate run: audit events = requests answered
// (the gateway's own count), and the answered count agrees with wrk's.
func auditSummary(runs []run) (string, string) {
	checked, lost := 0, int64(0)
	for _, r := range runs {
		if r.rows < 0 {
			continue
		}
		checked++
		if d := r.answered - r.rows; d > 0 {
			lost += d
		}
	}
	if checked == 0 {
		return "not checked", "not measured"
	}
	if lost > 0 {
		return fmt.Sprintf("%d events missing over %d runs", lost, checked), "**missed**"
	}
	return fmt.Sprintf("0 missing over %d runs", checked), "**met**"
}

// checks lists what makes a run's numbers suspect.
func checks(runs []run) []string {
	var out []string
	for _, r := range runs {
		id := fmt.Sprintf("round %d, %s, %s, %d conns", r.round, r.scenario, r.target, r.conns)
		if r.errors > 0 {
			out = append(out, fmt.Sprintf("%s: %d socket errors or timeouts", id, r.errors))
		}
		switch {
		case r.scenario == "denied" && r.target == "ztgate" && r.non2xx != r.requests:
			out = append(out, fmt.Sprintf("%s: %d of %d requests were not refused", id, r.requests-r.non2xx, r.requests))
		case r.scenario != "denied" && r.non2xx > 0:
			out = append(out, fmt.Sprintf("%s: %d of %d answers were not 2xx", id, r.non2xx, r.requests))
		}
		if r.rows >= 0 {
			// wrk counts only complete answers; a request cut off when it
			// stops may still be answered (and audited) by the gateway.
			sent := r.requests + r.warm
			if r.rows != r.answered || r.answered < sent || r.answered > sent+2*int64(r.conns) {
				out = append(out, fmt.Sprintf("%s: audit events %d, answered %d, wrk counted %d", id, r.rows, r.answered, sent))
			}
		}
	}
	return out
}
