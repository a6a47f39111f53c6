package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// memSink is an in-memory store that can be made to fail (the end-to-end
// tests take a real PostgreSQL server down instead).
type memSink struct {
	mu   sync.Mutex
	recs []Record
	down bool
}

func (m *memSink) Append(_ context.Context, recs []Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return errors.New("store down")
	}
	last := int64(0)
	if n := len(m.recs); n > 0 {
		last = m.recs[n-1].Seq
	}
	for _, r := range recs {
		if r.Seq != last+1 {
			return fmt.Errorf("out of order: %d after %d", r.Seq, last)
		}
		last = r.Seq
	}
	m.recs = append(m.recs, recs...)
	return nil
}

func (m *memSink) Last(context.Context, string) (int64, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return 0, "", errors.New("store down")
	}
	if len(m.recs) == 0 {
		return 0, "", nil
	}
	r := m.recs[len(m.recs)-1]
	return r.Seq, r.Hash, nil
}

func (m *memSink) setDown(d bool) { m.mu.Lock(); m.down = d; m.mu.Unlock() }

func (m *memSink) snapshot() []Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Record(nil), m.recs...)
}

func newSpoolPipeline(t *testing.T, sink *memSink, dir string, max int64) (*Pipeline, *Spool, func()) {
	t.Helper()
	p, err := NewPipeline(context.Background(), sink, NewChain([]byte("k")), "n1", 64, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := OpenSpool(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.UseSpool(sp); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	return p, sp, func() { stop(); <-done; sp.Close() }
}

func record(t *testing.T, p *Pipeline, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := p.Record(context.Background(), Event{Time: time.Unix(int64(i), 0), RequestID: fmt.Sprint("r", i), Decision: "allow"}, 5*time.Second); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
}

func waitEmpty(t *testing.T, sp *Spool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for sp.Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("spool still holds %d records", sp.Len())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func checkAll(t *testing.T, sink *memSink, n int) {
	t.Helper()
	recs := sink.snapshot()
	if len(recs) != n {
		t.Fatalf("store holds %d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if r.Event.RequestID != fmt.Sprint("r", i) {
			t.Fatalf("record %d is %s", i, r.Event.RequestID)
		}
	}
	if p := NewChain([]byte("k")).Verify(recs); p != nil {
		t.Fatalf("chain: %+v", p)
	}
}

// TestSpoolOutageAndReplay: with the store down, events are spooled and the
// requests answered; when it is back they arrive in order, the chain
// verifies, and nothing is lost.
func TestSpoolOutageAndReplay(t *testing.T) {
	sink := &memSink{}
	spooledN := 0
	p, sp, stop := newSpoolPipeline(t, sink, t.TempDir(), 1<<20)
	defer stop()
	p.OnSpool = func(n int, _ error) { spooledN += n }
	record(t, p, 0, 10)
	sink.setDown(true)
	record(t, p, 10, 50)
	if sp.Len() != 50 || spooledN != 50 {
		t.Fatalf("spool holds %d (counted %d), want 50", sp.Len(), spooledN)
	}
	if p.Failing() {
		t.Fatal("spooling counts as durable; the pipeline must not report failing")
	}
	sink.setDown(false)
	// Events keep arriving during the replay; they queue behind the spool.
	record(t, p, 60, 20)
	waitEmpty(t, sp)
	record(t, p, 80, 5)
	checkAll(t, sink, 85)
}

// TestSpoolSurvivesRestart: a gateway stopped with records spooled
// continues the chain from the spool and replays it on the next start.
func TestSpoolSurvivesRestart(t *testing.T) {
	sink := &memSink{}
	dir := t.TempDir()
	p, _, stop := newSpoolPipeline(t, sink, dir, 1<<20)
	record(t, p, 0, 5)
	sink.setDown(true)
	record(t, p, 5, 5)
	stop()
	// A torn last line (killed mid-append, so never acknowledged) is cut.
	f, _ := os.OpenFile(dir+"/audit-spool.jsonl", os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"node":"n1","seq":11,"bo`)
	f.Close()
	sink.setDown(false)
	p, sp, stop := newSpoolPipeline(t, sink, dir, 1<<20)
	defer stop()
	if sp.Len() != 5 {
		t.Fatalf("spool holds %d after restart, want 5", sp.Len())
	}
	record(t, p, 10, 3)
	waitEmpty(t, sp)
	checkAll(t, sink, 13)
}

// TestSpoolReplayCutShort: records already in the store (a replay that
// crashed before it emptied the spool) are skipped, not duplicated.
func TestSpoolReplayCutShort(t *testing.T) {
	sink := &memSink{}
	dir := t.TempDir()
	p, _, stop := newSpoolPipeline(t, sink, dir, 1<<20)
	sink.setDown(true)
	record(t, p, 0, 6)
	stop()
	sp, err := OpenSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := sp.Records()
	sp.Close()
	if err != nil || len(recs) != 6 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	sink.setDown(false)
	sink.Append(context.Background(), recs[:4]) // the first chunk landed, then a crash
	_, sp, stop = newSpoolPipeline(t, sink, dir, 1<<20)
	defer stop()
	waitEmpty(t, sp)
	checkAll(t, sink, 6)
}

// TestSpoolFull: past its bound the spool refuses, and so does the
// pipeline (the requests are then refused, as with deny).
func TestSpoolFull(t *testing.T) {
	sink := &memSink{}
	p, _, stop := newSpoolPipeline(t, sink, t.TempDir(), 2000)
	defer stop()
	sink.setDown(true)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		err = p.Record(context.Background(), Event{RequestID: fmt.Sprint("r", i)}, 5*time.Second)
	}
	if !errors.Is(err, ErrUnavailable) || !p.Failing() {
		t.Fatalf("got %v (failing %v), want ErrUnavailable once the spool is full", err, p.Failing())
	}
}

// TestSpoolOtherNode: a spool written by another node name is refused
// rather than grafted onto this node's chain.
func TestSpoolOtherNode(t *testing.T) {
	sink := &memSink{}
	dir := t.TempDir()
	p, _, stop := newSpoolPipeline(t, sink, dir, 1<<20)
	sink.setDown(true)
	record(t, p, 0, 2)
	stop()
	p2, err := NewPipeline(context.Background(), &memSink{}, NewChain(nil), "n2", 8, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := OpenSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if err := p2.UseSpool(sp); err == nil {
		t.Fatal("a spool of node n1 was accepted by node n2")
	}
}
