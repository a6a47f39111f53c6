package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newJournalPipeline(t *testing.T, sink *memSink, dir string, max int64, deny bool) (*Pipeline, *Journal, func()) {
	t.Helper()
	p, err := NewPipeline(context.Background(), sink, NewChain([]byte("k")), "n1", 64, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	j, err := OpenJournal(dir, max, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.UseJournal(j, deny); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	return p, j, func() { stop(); <-done; j.Close() }
}

func flush(t *testing.T, p *Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestJournalShipsToStore: answered events reach the store behind the
// requests, in chain order; Flush makes a reader see its own events; the
// journal is emptied of what the store holds.
func TestJournalShipsToStore(t *testing.T) {
	sink := &memSink{}
	p, j, stop := newJournalPipeline(t, sink, t.TempDir(), 1<<20, true)
	defer stop()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := p.Record(context.Background(), Event{RequestID: fmt.Sprint("w", w, "-", i)}, 5*time.Second); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	flush(t, p)
	recs := sink.snapshot()
	if len(recs) != 200 {
		t.Fatalf("store holds %d records after Flush, want 200", len(recs))
	}
	if pr := NewChain([]byte("k")).Verify(recs); pr != nil {
		t.Fatalf("chain: %+v", pr)
	}
	if p.SpoolLen() != 0 || j.Len() != 0 || j.Size() != 0 {
		t.Fatalf("after shipping: %d waiting, journal holds %d records in %d bytes", p.SpoolLen(), j.Len(), j.Size())
	}
}

// TestJournalStoreOutage, under both on_failure modes: with buffer the
// requests go on and their events wait in the journal; with deny the
// pipeline reports failing (the gateway refuses requests) once a shipment
// failed. Either way the events arrive, in order, when the store is back,
// including more than the shipper holds in memory (read back from the
// journal's files), and none is lost.
func TestJournalStoreOutage(t *testing.T) {
	for _, deny := range []bool{false, true} {
		t.Run(fmt.Sprint("deny=", deny), func(t *testing.T) {
			defer func(m int) { shipMemory = m }(shipMemory)
			shipMemory = 200
			sink := &memSink{}
			p, j, stop := newJournalPipeline(t, sink, t.TempDir(), 64<<20, deny)
			defer stop()
			var failures, spooled, replayed int
			var mu sync.Mutex
			p.OnFailure = func(int) { mu.Lock(); failures++; mu.Unlock() }
			p.OnSpool = func(int, error) { mu.Lock(); spooled++; mu.Unlock() }
			p.OnReplay = func(n int) { mu.Lock(); replayed += n; mu.Unlock() }
			record(t, p, 0, 10)
			flush(t, p)
			sink.setDown(true)
			n := shipMemory + 500
			record(t, p, 10, n)
			deadline := time.Now().Add(5 * time.Second)
			for !p.storeFailed.Load() && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if p.Failing() != deny {
				t.Fatalf("Failing() = %v with the store down, want %v", p.Failing(), deny)
			}
			if got := p.SpoolLen(); got != n {
				t.Fatalf("%d events waiting, want %d", got, n)
			}
			if j.Len() < n {
				t.Fatalf("journal holds %d records, want at least %d", j.Len(), n)
			}
			sink.setDown(false)
			flush(t, p)
			if p.Failing() {
				t.Fatal("still failing once the store took the journal")
			}
			record(t, p, 10+n, 5)
			flush(t, p)
			checkAll(t, sink, 15+n)
			mu.Lock()
			defer mu.Unlock()
			if deny && (failures != 1 || spooled != 0) || !deny && (spooled != 1 || failures != 0) || replayed < n || replayed > n+5 {
				// The 5 events after the outage may be shipped while the
				// catch-up is still under way, and counted with it.
				t.Fatalf("callbacks: failure %d, spool %d, replayed %d events (want %d to %d)", failures, spooled, replayed, n, n+5)
			}
		})
	}
}

// TestJournalSurvivesRestart: a gateway that stopped (or died) before
// shipping continues its chain from the journal and ships it at the next
// start; a torn last line, never acknowledged, is cut off; records the
// store already has (shipped, then died before the journal was released)
// are not written twice.
func TestJournalSurvivesRestart(t *testing.T) {
	sink := &memSink{}
	dir := t.TempDir()
	p, _, stop := newJournalPipeline(t, sink, dir, 1<<20, false)
	record(t, p, 0, 5)
	flush(t, p)
	sink.setDown(true)
	record(t, p, 5, 7)
	stop() // the final shipment fails: 7 records stay in the journal
	j, err := OpenJournal(dir, 1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := j.Read(0, 100)
	j.Close()
	if err != nil || len(recs) != 7 || recs[0].Seq != 6 {
		t.Fatalf("journal after stop: %d records from %v, %v", len(recs), recs, err)
	}
	sink.setDown(false)
	sink.Append(context.Background(), recs[:3]) // shipped, then killed before the release
	segs, _ := filepath.Glob(filepath.Join(dir, "journal-*.jsonl"))
	f, _ := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"node":"n1","seq":13,"prev_hash":"ab`)
	f.Close()
	p, _, stop = newJournalPipeline(t, sink, dir, 1<<20, false)
	defer stop()
	record(t, p, 12, 3)
	flush(t, p)
	checkAll(t, sink, 15)
}

// TestJournalSegments: segments are closed at their size and removed once
// shipped; Read finds records across them; the bound refuses, and the
// directory cannot be opened twice.
func TestJournalSegments(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.segMax = 2000
	c := NewChain(nil)
	prev := ""
	for seq := int64(1); seq <= 100; seq++ {
		ev := Event{RequestID: fmt.Sprint("r", seq), Node: "n1"}
		body, _ := Canonical(&ev)
		h := c.Link("n1", seq, prev, body)
		if err := j.Append([]Record{{Node: "n1", Seq: seq, Event: ev, Body: string(body), PrevHash: prev, Hash: h}}); err != nil {
			t.Fatal(err)
		}
		prev = h
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "journal-*.jsonl"))
	if len(segs) < 5 {
		t.Fatalf("%d segments, want several of about 2000 bytes", len(segs))
	}
	recs, err := j.Read(37, 30)
	if err != nil || len(recs) != 30 || recs[0].Seq != 38 || recs[29].Seq != 67 || recs[0].Event.RequestID != "r38" {
		t.Fatalf("Read(37, 30): %d records, %v", len(recs), err)
	}
	if err := c.VerifyFrom(37, recs[0].PrevHash, recs); err != nil {
		t.Fatalf("read-back records do not chain: %+v", err)
	}
	before := j.Size()
	if err := j.Release(60); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "journal-*.jsonl"))
	if len(left) >= len(segs) || j.Size() >= before || j.Len() < 40 {
		t.Fatalf("after Release(60): %d of %d segments, %d of %d bytes, %d records", len(left), len(segs), j.Size(), before, j.Len())
	}
	if recs, _ := j.Read(0, 1000); len(recs) == 0 || recs[0].Seq > 61 || recs[len(recs)-1].Seq != 100 {
		t.Fatalf("after Release(60) the journal reads %d records", len(recs))
	}
	if _, err := OpenJournal(dir, 1<<20, false); err == nil {
		t.Fatal("a journal directory in use was opened a second time")
	}
	j.max = j.Size() + 10
	ev := Event{RequestID: "big"}
	body, _ := Canonical(&ev)
	if err := j.Append([]Record{{Node: "n1", Seq: 101, Body: string(body), PrevHash: prev}}); !errors.Is(err, ErrJournalFull) {
		t.Fatalf("past its bound: %v, want ErrJournalFull", err)
	}
	if err := j.Release(100); err != nil || j.Len() != 0 || j.Size() != 0 {
		t.Fatalf("after Release(100): %d records, %d bytes, %v", j.Len(), j.Size(), err)
	}
}

// TestJournalOtherNode: a journal written under another node name is
// refused rather than grafted onto this node's chain.
func TestJournalOtherNode(t *testing.T) {
	sink := &memSink{}
	dir := t.TempDir()
	p, _, stop := newJournalPipeline(t, sink, dir, 1<<20, false)
	sink.setDown(true)
	record(t, p, 0, 2)
	stop()
	p2, err := NewPipeline(context.Background(), &memSink{}, NewChain(nil), "n2", 8, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	j, err := OpenJournal(dir, 1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := p2.UseJournal(j, false); err == nil {
		t.Fatal("a journal of node n1 was accepted by node n2")
	}
}

// lyingSink commits a batch and then reports an error, once: a connection
// that broke during COMMIT.
type lyingSink struct {
	*memSink
	lie sync.Once
}

func (l *lyingSink) Append(ctx context.Context, recs []Record) error {
	err := l.memSink.Append(ctx, recs)
	lied := false
	l.lie.Do(func() { lied = true })
	if err == nil && lied {
		return errors.New("connection reset during COMMIT")
	}
	return err
}

// TestJournalAmbiguousCommit: after a shipment that failed but committed,
// the shipper asks the store where it stands instead of sending the same
// records again (which the store would refuse for ever as duplicates).
func TestJournalAmbiguousCommit(t *testing.T) {
	sink := &lyingSink{memSink: &memSink{}}
	p, err := NewPipeline(context.Background(), sink, NewChain([]byte("k")), "n1", 64, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	j, err := OpenJournal(t.TempDir(), 1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := p.UseJournal(j, true); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { stop(); <-done }()
	record(t, p, 0, 20)
	flush(t, p)
	record(t, p, 20, 5)
	flush(t, p)
	checkAll(t, sink.memSink, 25)
	if p.Failing() {
		t.Fatal("still failing")
	}
}

// TestJournalConcurrentFull: many requests at once, the store down and the
// journal filling up. The requests whose write failed are refused, those
// chained behind them too, and the chain goes on from the last record
// written: once the store is back, it holds exactly the acknowledged
// events, in one unbroken chain.
func TestJournalConcurrentFull(t *testing.T) {
	sink := &memSink{}
	p, _, stop := newJournalPipeline(t, sink, t.TempDir(), 40_000, false)
	defer stop()
	sink.setDown(true)
	var acked, refused sync.Map
	var wg sync.WaitGroup
	run := func(tag string, n int) {
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					id := fmt.Sprint(tag, w, "-", i)
					if err := p.Record(context.Background(), Event{RequestID: id}, time.Second); err != nil {
						if !errors.Is(err, ErrUnavailable) {
							t.Error(err)
						}
						refused.Store(id, true)
						continue
					}
					acked.Store(id, true)
				}
			}()
		}
		wg.Wait()
	}
	run("a", 40)
	if !p.Failing() {
		t.Fatal("the journal is full, yet the pipeline does not report failing")
	}
	sink.setDown(false)
	flush(t, p)
	run("b", 20)
	flush(t, p)
	recs := sink.snapshot()
	if pr := NewChain([]byte("k")).Verify(recs); pr != nil {
		t.Fatalf("chain: %+v", pr)
	}
	n := 0
	acked.Range(func(k, _ any) bool { n++; return true })
	nr := 0
	refused.Range(func(k, _ any) bool { nr++; return true })
	if len(recs) != n || nr == 0 {
		t.Fatalf("store holds %d events; %d acknowledged, %d refused", len(recs), n, nr)
	}
	for _, r := range recs {
		if _, ok := acked.Load(r.Event.RequestID); !ok {
			t.Fatalf("%s is in the store but was refused", r.Event.RequestID)
		}
	}
}

// TestJournalStalledWrite: while a journal write hangs (a stalled disk),
// the requests waiting behind it are refused after their wait instead of
// hanging, and past stalledGroup new ones are refused at once. Once the
// disk answers, every record that was chained is written, in order: the
// chain has no hole, and the refused requests' events are in it (as a
// store commit that outlives its wait still lands).
func TestJournalStalledWrite(t *testing.T) {
	defer func(n int) { stalledGroup = n }(stalledGroup)
	stalledGroup = 3
	sink := &memSink{}
	p, j, stop := newJournalPipeline(t, sink, t.TempDir(), 1<<20, true)
	defer stop()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	j.mu.Lock()
	j.beforeWrite = func() {
		once.Do(func() { close(entered); <-release })
	}
	j.mu.Unlock()
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { first <- p.Record(ctx, Event{RequestID: "stuck"}, 50*time.Millisecond) }()
	<-entered // its write hangs
	waiters := make(chan error, 3)
	for i := range 3 {
		go func() { waiters <- p.Record(ctx, Event{RequestID: fmt.Sprint("waits-", i)}, 50*time.Millisecond) }()
	}
	for range 3 {
		select {
		case err := <-waiters:
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("a request behind a stalled write: %v, want ErrUnavailable", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a request behind a stalled write waited past its timeout")
		}
	}
	// Three records wait in the group: a new request is refused at once.
	start := time.Now()
	if err := p.Record(ctx, Event{RequestID: "refused"}, time.Hour); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("past stalledGroup: %v, want ErrUnavailable at once", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("past stalledGroup the refusal took %v", d)
	}
	select {
	case err := <-first:
		t.Fatalf("the request whose write hangs returned early: %v", err)
	default:
	}

	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the stalled write, once the disk answered: %v", err)
	}
	// The group of refused requests is written by the stand-in writer,
	// and requests go on as before.
	for deadline := time.Now().Add(5 * time.Second); p.committed.Load() < 4; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the waiters' group was not written: %d records committed", p.committed.Load())
		}
	}
	if err := p.Record(ctx, Event{RequestID: "after"}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	flush(t, p)
	recs := sink.snapshot()
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.Event.RequestID)
	}
	if len(recs) != 5 || ids[0] != "stuck" || ids[4] != "after" {
		t.Fatalf("store holds %v; want stuck, the three refused waiters, after", ids)
	}
	if prob := NewChain([]byte("k")).Verify(recs); prob != nil {
		t.Fatalf("chain broken: %+v", prob)
	}
}

// TestJournalGroupsOnOneCPU: with one CPU nothing else runs during a short
// write(2), so requests would each write their own record; the writer
// yields once before writing, and the requests ready to run join it.
func TestJournalGroupsOnOneCPU(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	sink := &memSink{}
	p, j, stop := newJournalPipeline(t, sink, t.TempDir(), 1<<20, true)
	defer stop()
	var writes atomic.Int64
	j.mu.Lock()
	j.beforeWrite = func() { writes.Add(1) }
	j.mu.Unlock()

	const n = 64
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		go func() {
			<-start
			errs <- p.Record(context.Background(), Event{RequestID: fmt.Sprint("r-", i)}, 5*time.Second)
		}()
	}
	close(start)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if w := writes.Load(); w > n/4 {
		t.Errorf("%d records took %d journal writes on one CPU, want at most %d", n, w, n/4)
	}
	flush(t, p)
	recs := sink.snapshot()
	if len(recs) != n {
		t.Fatalf("store holds %d records, want %d", len(recs), n)
	}
	if prob := NewChain([]byte("k")).Verify(recs); prob != nil {
		t.Fatalf("chain broken: %+v", prob)
	}
}
