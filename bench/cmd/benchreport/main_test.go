package main

import (
	"math"
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
