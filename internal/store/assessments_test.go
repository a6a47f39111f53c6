package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztgate/ztgate/internal/audit"
)

func TestAssessments(t *testing.T) { eachStore(t, testAssessments) }

func testAssessments(t *testing.T, open func() *DB) {
	ctx := context.Background()
	s := open()
	for i := range 3 {
		a := Assessment{
			Time: time.Unix(int64(100+i), 0).UTC(), Config: "gw.yaml", ConfigHash: fmt.Sprint("h", i), Overall: "Initial",
			Stages:   map[string]string{"identity": []string{"Traditional", "Initial", "Advanced"}[i]},
			Outcomes: map[string]string{"ID-01": "pass"},
		}
		if err := s.AddAssessment(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	// A restarted gateway (a new connection) reads them back.
	s = open()
	got, err := s.Assessments(ctx, time.Unix(102, 0), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d assessments before the third, want 2", len(got))
	}
	want := Assessment{ID: got[0].ID, Time: time.Unix(101, 0).UTC(), Config: "gw.yaml", ConfigHash: "h1", Overall: "Initial",
		Stages: map[string]string{"identity": "Initial"}, Outcomes: map[string]string{"ID-01": "pass"}}
	if d := cmp.Diff(want, got[0]); d != "" {
		t.Errorf("newest first (-want +got):\n%s", d)
	}
	if got[1].ConfigHash != "h0" || got[0].ID == got[1].ID {
		t.Errorf("got %+v second, want h0 with its own id", got[1])
	}
}

func TestEachEvent(t *testing.T) { eachStore(t, testEachEvent) }

func testEachEvent(t *testing.T, open func() *DB) {
	ctx := context.Background()
	s := open()
	fill(t, s, 10) // events at unix 1000..1009
	var seen []string
	err := s.EachEvent(ctx, time.Unix(1004, 0), 4, func(e *audit.Event) error {
		seen = append(seen, e.RequestID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"r9", "r8", "r7", "r6"}, seen); d != "" {
		t.Errorf("newest first, at most the limit (-want +got):\n%s", d)
	}
	stop := errors.New("stop")
	n := 0
	err = s.EachEvent(ctx, time.Unix(0, 0), 100, func(*audit.Event) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("got %v after %d events, want the callback's error after 1", err, n)
	}
}
