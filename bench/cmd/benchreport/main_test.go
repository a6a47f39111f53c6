package main

import (
	"math"
	"strings"
	"testing"
)

// TestPaired: ratios are taken within each round, then their median; a
// round with only one of the two targets is left out.
func TestPaired(t *testing.T) {
	mk := func(target string, rps ...float64) *cell {
		c := &cell{scenario: "same", target: target, conns: 64}
		for i, v := range rps {
			c.runs = append(c.runs, run{round: i + 1, rps: v})
		}
		return c
	}
	for _, tc := range []struct {
		name string
		z, b *cell
		want float64
	}{
		// Separate medians would give 600/1000 = 0.6; every round says 0.9.
		{"a slow round slows both", mk("ztgate", 900, 450, 600), mk("baseline", 1000, 500, 666.67), 0.9},
		{"even count", mk("ztgate", 1, 3), mk("baseline", 1, 1), 2},
		{"missing round", mk("ztgate", 5, 5, 5), mk("baseline", 10), 0.5},
		{"nothing paired", mk("ztgate"), mk("baseline", 1), math.NaN()},
	} {
		got := paired(tc.z, tc.b, rpsRatio)
		if math.IsNaN(tc.want) != math.IsNaN(got) || !math.IsNaN(got) && math.Abs(got-tc.want) > 0.001 {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestReadRSSSplit: the file and private parts of the resident set are
// read when the TSV has them, and are unknown (NaN) in the older shape.
func TestReadRSSSplit(t *testing.T) {
	head := "round\tscenario\ttarget\tconns\trps\tp50_us\tp99_us\tcpu_us_per_req\trss_kb\trequests\twarm_requests\tnon2xx\terrors\taudit_rows\tanswered"
	row := "1\tsame\tztgate\t64\t5000\t100\t900\t150\t53000\t50000\t9000\t0\t0\t50000\t50000"
	for _, tc := range []struct {
		name       string
		in         string
		file, anon float64
		err        bool
	}{
		{"with the split", head + "\trss_file_kb\trss_anon_kb\n" + row + "\t28000\t24000\n", 28000, 24000, false},
		{"older file", head + "\n" + row + "\n", math.NaN(), math.NaN(), false},
		{"one field short", head + "\n" + row + "\t28000\n", 0, 0, true},
	} {
		runs, err := read(strings.NewReader(tc.in))
		if tc.err {
			if err == nil {
				t.Errorf("%s: read it, want an error", tc.name)
			}
			continue
		}
		if err != nil || len(runs) != 1 {
			t.Fatalf("%s: %d runs, %v", tc.name, len(runs), err)
		}
		r := runs[0]
		same := func(a, b float64) bool { return math.IsNaN(a) && math.IsNaN(b) || a == b }
		if r.rssKB != 53000 || !same(r.fileKB, tc.file) || !same(r.anonKB, tc.anon) {
			t.Errorf("%s: rss %v file %v anon %v, want 53000 %v %v", tc.name, r.rssKB, r.fileKB, r.anonKB, tc.file, tc.anon)
		}
	}
}
