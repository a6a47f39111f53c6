package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Sink stores chained records durably.
type Sink interface {
	// Append writes records atomically: all or none.
	Append(ctx context.Context, recs []Record) error
	// Last returns the last sequence number and hash of node's chain.
	Last(ctx context.Context, node string) (int64, string, error)
}

// ErrUnavailable is returned when an event could not be made durable; the
// request it describes must then be refused.
var ErrUnavailable = errors.New("audit store unavailable")

type pending struct {
	ev   Event
	done chan error
}

// Pipeline turns events into chained records and writes them in batches
// (group commit): each caller waits until its own event is durable, and one
// transaction carries every event that arrived meanwhile.
type Pipeline struct {
	sink   Sink
	chain  *Chain
	node   string
	logger *slog.Logger
	queue  chan *pending
	// OnFailure is called when a batch could not be written (metrics).
	OnFailure func(n int)
	// OnWritten, when set, is called by the writer with every batch once it
	// is durable, in chain order (exporters, the detector). It must not
	// block: copy what is needed and return.
	OnWritten func(recs []Record)

	mu   sync.Mutex // guards seq and prev, owned by the writer
	seq  int64
	prev string

	failing atomic.Bool // the last write failed

	spool *Spool // audit.on_failure buffer; nil: deny

	// audit.commit: journal (nil: each request waits for the store).
	journal     *Journal
	denyBehind  bool          // on_failure deny: refuse while the store refuses the journal
	open        *jgroup       // chained, waiting for the journal write under way (under mu)
	leading     bool          // a journal write is under way (under mu); open is nil when not
	solo        jgroup        // the group of a write nobody waited on (its leader's alone)
	jprev       string        // hash of the last record in the journal (under mu)
	toShip      []Record      // written to the journal, for the shipper (under mu)
	toShipLost  bool          // some were not kept in toShip: read the journal
	kick        chan struct{} // ship now (Flush, or a full batch waits)
	taken       chan struct{} // the shipper took toShip
	committed   atomic.Int64  // last seq in the journal
	shipped     atomic.Int64  // last seq in the store
	storeFailed atomic.Bool   // the last shipment failed
	catchingUp  bool          // the shipper's: shipping what waited during an outage
	shipGap     bool          // the shipper's: records since shipped are only in the files
	failLogged  time.Time     // the shipper's: when it last logged a failure
	// OnSpool is called when a batch went to the spool instead of the store
	// (metrics, a log line, an alert); OnReplay when the spool emptied into
	// the store.
	OnSpool  func(n int, err error)
	OnReplay func(n int)
}

// UseSpool makes the pipeline spool batches the store cannot take, and
// continues the chain from the spool when it holds records newer than the
// store's. Call before Run.
func (p *Pipeline) UseSpool(s *Spool) error {
	recs, err := s.Records()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.spool = s
	for _, r := range recs {
		if r.Node != p.node {
			return fmt.Errorf("audit spool %s holds records of node %q, not %q", s.Path(), r.Node, p.node)
		}
		if r.Seq > p.seq {
			p.seq, p.prev = r.Seq, r.Hash
		}
	}
	return nil
}

// SpoolLen is the number of records waiting in the spool, or in the
// journal for the store (0 without either).
func (p *Pipeline) SpoolLen() int {
	if p.journal != nil {
		return int(p.committed.Load() - p.shipped.Load())
	}
	if p.spool == nil {
		return 0
	}
	return p.spool.Len()
}

// replayLoop moves the spool into the store while the writer goes on:
// chunks are read and appended outside the writer's lock (new batches keep
// going to the spool meanwhile, behind them), and the spool is emptied under
// the lock once nothing is left, so the store always gets the chain in
// order. Records the store already holds (a replay cut short by a crash) are
// skipped by sequence number.
func (p *Pipeline) replayLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if p.spool.Len() == 0 {
			continue
		}
		if err := p.replay(ctx); err != nil {
			p.logger.Warn("audit spool not replayed yet; the store is still failing", "waiting", p.spool.Len(), "error", err)
		}
	}
}

// ReplaySpool writes what the spool holds into the store now, outside
// Run, and empties it.
func (p *Pipeline) ReplaySpool(ctx context.Context) error {
	if p.spool == nil {
		return nil
	}
	return p.replay(ctx)
}

func (p *Pipeline) replay(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	last, _, err := p.sink.Last(lctx, p.node)
	cancel()
	if err != nil {
		return err
	}
	var off int64
	total := 0
	for {
		p.mu.Lock()
		recs, next, err := p.spool.ReadFrom(off, 2000)
		if err == nil && len(recs) == 0 {
			// Everything is in the store, and the writer (held off by the
			// lock) has added nothing since: empty the spool.
			err = p.spool.Clear()
			p.mu.Unlock()
			if err != nil {
				return err
			}
			if total > 0 {
				p.logger.Info("audit spool replayed into the store", "events", total)
				if p.OnReplay != nil {
					p.OnReplay(total)
				}
			}
			return nil
		}
		p.mu.Unlock()
		if err != nil {
			return err
		}
		todo := recs[:0]
		for _, r := range recs {
			if r.Seq > last {
				todo = append(todo, r)
			}
		}
		if len(todo) > 0 {
			actx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := p.sink.Append(actx, todo)
			cancel()
			if err != nil {
				return err
			}
			last = todo[len(todo)-1].Seq
			total += len(todo)
		}
		off = next
	}
}

// Failing reports whether the last write failed, and with a journal under
// on_failure: deny, whether the store refuses what the journal ships. The
// gateway then refuses requests before they reach an upstream (whose side
// effects would go unrecorded). Without a journal the events of those
// refusals are the probes that find the store back; with one, the
// shipper's retries are, and its first shipment taken clears the flag.
func (p *Pipeline) Failing() bool {
	return p.failing.Load() || p.denyBehind && p.storeFailed.Load()
}

// NewPipeline continues node's chain in sink.
func NewPipeline(ctx context.Context, sink Sink, chain *Chain, node string, queue int, logger *slog.Logger) (*Pipeline, error) {
	seq, prev, err := sink.Last(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("audit: read the chain of node %s: %w", node, err)
	}
	return &Pipeline{sink: sink, chain: chain, node: node, logger: logger, queue: make(chan *pending, queue), seq: seq, prev: prev}, nil
}

// Node returns the node name the pipeline chains under.
func (p *Pipeline) Node() string { return p.node }

// Record makes ev durable and returns nil, or returns ErrUnavailable.
// Without a journal it waits at most wait for room in the queue and for
// the store's commit; with one it waits at most wait behind a journal
// write in progress, and its own write is not timed (see journalRecord).
func (p *Pipeline) Record(ctx context.Context, ev Event, wait time.Duration) error {
	ev.Node = p.node
	if p.journal != nil {
		return p.journalRecord(&ev, wait)
	}
	pd := &pending{ev: ev, done: make(chan error, 1)}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case p.queue <- pd:
	case <-t.C:
		return fmt.Errorf("%w: queue full", ErrUnavailable)
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
	select {
	case err := <-pd.done:
		return err
	case <-t.C:
		return fmt.Errorf("%w: write took longer than %v", ErrUnavailable, wait)
	}
}

// gather lets the goroutines that are ready to run reach their Record
// before the writer takes its batch. Requests wait for their event to be
// durable, so every write is a round of latency for all of them; on few
// cores the writer would otherwise wake for each event alone and pay a
// commit per request. With nothing else to run, a yield returns at once:
// a lone request waits no longer.
func (p *Pipeline) gather() {
	for range 4 {
		n := len(p.queue)
		runtime.Gosched()
		if len(p.queue) == n {
			return
		}
	}
}

// Run writes batches until ctx ends, then drains what is queued.
func (p *Pipeline) Run(ctx context.Context) {
	batch := make([]*pending, 0, 256)
	if p.journal != nil {
		sctx, stop := context.WithCancel(context.Background())
		shipped := make(chan struct{})
		go func() { p.shipLoop(sctx); close(shipped) }()
		defer func() { stop(); <-shipped }()
	}
	if p.spool != nil {
		rctx, stop := context.WithCancel(context.Background())
		defer stop()
		go p.replayLoop(rctx)
	}
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case pd := <-p.queue:
					p.write([]*pending{pd})
				default:
					return
				}
			}
		case pd := <-p.queue:
			batch = append(batch[:0], pd)
			p.gather()
		more:
			for len(batch) < cap(batch) {
				select {
				case pd := <-p.queue:
					batch = append(batch, pd)
				default:
					break more
				}
			}
			p.write(batch)
		}
	}
}

func (p *Pipeline) write(batch []*pending) {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs := make([]Record, 0, len(batch))
	seq, prev := p.seq, p.prev
	for _, pd := range batch {
		bp, err := encodeCanonical(&pd.ev)
		if err != nil {
			pd.done <- fmt.Errorf("%w: %v", ErrUnavailable, err)
			continue
		}
		seq++
		h := p.chain.Link(p.node, seq, prev, *bp)
		recs = append(recs, Record{Node: p.node, Seq: seq, Event: pd.ev, Body: string(*bp), PrevHash: prev, Hash: h})
		releaseCanonical(bp)
		prev = h
	}
	var err error
	spooled := false
	if p.spool != nil && p.spool.Len() > 0 {
		// Records wait behind the spool so the store sees the chain in order.
		err = p.spool.Append(recs)
		spooled = err == nil
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = p.sink.Append(ctx, recs)
		cancel()
		if err != nil && p.spool != nil {
			storeErr := err
			if err = p.spool.Append(recs); err == nil {
				spooled = true
				p.logger.Warn("audit store failing: events spooled to a local file, replayed when it is back", "events", len(recs), "spool", p.spool.Path(), "error", storeErr)
			} else {
				err = errors.Join(storeErr, err)
			}
		}
	}
	if spooled && p.OnSpool != nil {
		p.OnSpool(len(recs), nil)
	}
	if err != nil {
		// The chain does not advance: the refused requests have no events,
		// and the next batch links to the last durable record.
		p.logger.Error("audit events not written; their requests are refused", "events", len(recs), "error", err)
		p.failing.Store(true)
		if p.OnFailure != nil {
			p.OnFailure(len(recs))
		}
		for _, pd := range batch {
			select {
			case pd.done <- fmt.Errorf("%w: %v", ErrUnavailable, err):
			default:
			}
		}
		return
	}
	p.seq, p.prev = seq, prev
	p.failing.Store(false)
	if p.OnWritten != nil {
		p.OnWritten(recs)
	}
	for _, pd := range batch {
		select {
		case pd.done <- nil:
		default:
		}
	}
}
