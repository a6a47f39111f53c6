package audit

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// Shipping of the journal into the store (audit.commit: journal).
const (
	shipInterval = 50 * time.Millisecond  // how often the journal is shipped
	shipRetry    = 250 * time.Millisecond // and how often, while the store fails
	shipBatch    = 4096                   // most records in one store transaction
	shipTimeout  = 10 * time.Second       // one store transaction
	drainTimeout = 10 * time.Second       // shipping what is left at shutdown
)

// shipMemory is the most records held in memory for the shipper; past it
// the shipper reads them back from the journal (a variable for tests).
var shipMemory = 2 * shipBatch

// UseJournal makes every write go to j before its requests are answered,
// and ships j into the store behind them. deny (audit.on_failure: deny)
// refuses requests while the store refuses what the journal ships; without
// it the journal keeps taking events, up to its bound, until the store is
// back. The chain continues from j when it holds records newer than the
// store's (a run that ended before shipping them). Call before Run.
func (p *Pipeline) UseJournal(j *Journal, deny bool) error {
	last := j.Last()
	p.mu.Lock()
	defer p.mu.Unlock()
	if last.Seq != 0 && last.Node != p.node {
		return fmt.Errorf("audit journal %s holds records of node %q, not %q", j.Dir(), last.Node, p.node)
	}
	p.shipped.Store(p.seq)
	p.shipGap = last.Seq > p.seq // left by an earlier run: read from the files
	if last.Seq > p.seq {
		p.seq, p.prev = last.Seq, last.Hash
	}
	p.committed.Store(p.seq)
	p.jprev = p.prev
	p.journal, p.denyBehind = j, deny
	p.kick = make(chan struct{}, 1)
	p.taken = make(chan struct{}, 1)
	return nil
}

// Flush returns once everything in the journal when it was called is in
// the store (at once without a journal): what a reader of the store, such
// as the admin API's audit query, waits for to see its own requests.
func (p *Pipeline) Flush(ctx context.Context) error {
	if p.journal == nil {
		return nil
	}
	target := p.committed.Load()
	for p.shipped.Load() < target {
		select {
		case p.kick <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("audit events not yet in the store: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// jgroup is the records chained while a journal write was under way: the
// next write takes them all (group commit without a writer goroutine).
type jgroup struct {
	recs     []Record
	err      error
	done     chan struct{} // closed once written (err nil) or failed
	lead     chan struct{} // one waiting member becomes the writer of the group
	detached bool          // a goroutine stands in as its writer (members gave up waiting)
}

// stalledGroup is how many records may wait behind a journal write in
// progress; past it requests are refused at once, without adding to the
// group (a variable for tests). Waiting requests give up after the write
// timeout, but their records stay: they are chained.
var stalledGroup = shipBatch

// journalRecord chains ev and makes it durable in the journal. The first
// caller with nothing being written writes its event itself, with no
// handoff to another goroutine; callers arriving meanwhile join the next
// group, which one of them writes (one write(2) for the group) as soon as
// the write before it is done. Listeners (OnWritten) see the records in
// chain order; the shipper finds them in memory.
//
// A request that waits behind a write in progress (a disk that stalls)
// gives up after wait and is refused; its record stays in its group and is
// written with it, as a store commit that outlives its wait still lands.
// The request whose write is under way waits for the disk.
func (p *Pipeline) journalRecord(ev *Event, wait time.Duration) error {
	bp, err := encodeCanonical(ev)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	rec := Record{Node: p.node, Event: *ev, Body: string(*bp)}
	p.mu.Lock()
	if p.leading && p.open != nil && len(p.open.recs) >= stalledGroup {
		p.mu.Unlock()
		releaseCanonical(bp)
		return fmt.Errorf("%w: the audit journal write has stalled (%d events waiting)", ErrUnavailable, stalledGroup)
	}
	seq := p.seq + 1
	rec.Seq, rec.PrevHash = seq, p.prev
	rec.Hash = p.chain.Link(p.node, seq, p.prev, *bp)
	p.seq, p.prev = seq, rec.Hash
	releaseCanonical(bp)
	if !p.leading {
		// Nothing is being written (and no group waits): this caller
		// writes its record alone, in the pipeline's own group, which
		// nobody else sees or waits on.
		p.leading = true
		g := &p.solo
		g.recs, g.err = append(getGroupRecs(), rec), nil
		p.mu.Unlock()
		// Let the requests that are ready to run record theirs first, and
		// write them with this one. With one CPU (or a few, busy) a group
		// would otherwise hardly ever form: nothing else runs during a
		// short write(2), so every request would make its own.
		runtime.Gosched()
		p.mu.Lock()
		joined := p.open
		if joined != nil {
			p.open = nil
			g.recs = append(g.recs, joined.recs...)
		}
		p.mu.Unlock()
		return p.writeGroup(g, joined)
	}
	g := p.open
	if g == nil {
		g = &jgroup{recs: getGroupRecs(), done: make(chan struct{}), lead: make(chan struct{}, 1)}
		p.open = g
	}
	g.recs = append(g.recs, rec)
	p.mu.Unlock()
	if lead, err := p.awaitGroup(g, wait); !lead {
		return err
	}
	p.mu.Lock()
	p.open = nil // handed over: p.leading stays set
	p.mu.Unlock()
	return p.writeGroup(g, nil)
}

// awaitGroup waits, as a member of g, until g is written (its result is
// returned) or handed to this member to write (lead). After wait it gives
// up with an error; a goroutine then stands in to write g when its turn
// comes, since the records after it are chained to its records.
func (p *Pipeline) awaitGroup(g *jgroup, wait time.Duration) (lead bool, err error) {
	var expired <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-g.done:
		return false, g.err
	case <-g.lead: // the writer before handed this group over
		return true, nil
	case <-expired:
	}
	p.mu.Lock()
	if !g.detached {
		g.detached = true
		go func() {
			select {
			case <-g.done: // a member wrote it after all
			case <-g.lead:
				p.mu.Lock()
				p.leading = true
				p.open = nil
				p.mu.Unlock()
				p.writeGroup(g, nil)
			}
		}()
	}
	p.mu.Unlock()
	return false, fmt.Errorf("%w: the audit journal write took longer than %v", ErrUnavailable, wait)
}

// writeGroup writes g, the group this goroutine leads, then hands the
// next group (if any) to one of its members. joined, when set, is a group
// whose records g took over (after its own): its members learn g's result.
func (p *Pipeline) writeGroup(g, joined *jgroup) error {
	err := p.journal.Append(g.recs)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		// The chain goes back to the last record written; the group after
		// this one was chained onto it, so it fails too.
		p.seq, p.prev = p.committed.Load(), p.jprev
		g.err = fmt.Errorf("%w: %v", ErrUnavailable, err)
		if next := p.open; next != nil {
			next.err = g.err
			close(next.done)
			p.open = nil
		}
		if !p.failing.Swap(true) {
			p.logger.Error("audit journal not written: requests are refused until it is", "journal", p.journal.Dir(), "error", err)
			if p.OnFailure != nil {
				p.OnFailure(len(g.recs))
			}
		}
	} else {
		last := g.recs[len(g.recs)-1]
		p.jprev = last.Hash
		p.committed.Store(last.Seq)
		p.failing.Store(false)
		// A shipper that cannot keep up holds the writers back a little
		// (the old store commit's pace) rather than falling back to
		// reading the journal's files, which costs more.
		var deadline time.Time // set only when the writers must wait
		for len(p.toShip)+len(g.recs) > shipMemory && !p.storeFailed.Load() {
			if deadline.IsZero() {
				deadline = time.Now().Add(time.Second)
			} else if time.Now().After(deadline) {
				break
			}
			select {
			case p.kick <- struct{}{}:
			default:
			}
			p.mu.Unlock()
			select {
			case <-p.taken:
			case <-time.After(50 * time.Millisecond):
			}
			p.mu.Lock()
		}
		if len(p.toShip)+len(g.recs) <= shipMemory && !p.storeFailed.Load() {
			p.toShip = append(p.toShip, g.recs...)
			if len(p.toShip) >= shipBatch {
				select {
				case p.kick <- struct{}{}:
				default:
				}
			}
		} else {
			// The store is failing or far behind: hold nothing in memory,
			// the shipper reads these from the journal.
			p.toShipLost = true
		}
		if p.OnWritten != nil {
			p.OnWritten(g.recs)
		}
	}
	for _, d := range [2]*jgroup{g, joined} {
		if d == nil {
			continue
		}
		if d != &p.solo { // the solo group has no members to tell
			d.err = g.err
			close(d.done)
		}
		putGroupRecs(d.recs) // copied into toShip; listeners copy what they keep
		d.recs = nil
	}
	if p.open != nil {
		p.open.lead <- struct{}{}
	} else {
		p.leading = false
	}
	return g.err
}

// groupRecs holds the arrays of written groups for the next ones: a group's
// records are copied out once written, and growing a fresh array for every
// group cost about 800 bytes per event in garbage.
var groupRecs sync.Pool

func getGroupRecs() []Record {
	if rp, ok := groupRecs.Get().(*[]Record); ok {
		return *rp
	}
	return make([]Record, 0, 16)
}

func putGroupRecs(recs []Record) {
	if cap(recs) > 1024 {
		return // a burst's array is not kept
	}
	clear(recs) // the bodies go to the collector
	recs = recs[:0]
	groupRecs.Put(&recs)
}

// takeToShip hands the shipper what was written since it last took.
// lost reports that some records since the last take are only in the
// journal's files.
func (p *Pipeline) takeToShip(mem []Record) (_ []Record, lost bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.toShipLost || p.storeFailed.Load() {
		// While the store fails nothing is held in memory: what was
		// dropped, and what the writers did not hand over, is read from
		// the journal; what follows is kept.
		lost = true
		p.toShipLost = false
		clear(mem)
		mem = mem[:0]
		clear(p.toShip)
		p.toShip = p.toShip[:0]
	}
	// What does not fit stays for the next time (writers wait for room).
	n := min(len(p.toShip), max(shipMemory-len(mem), 0))
	mem = append(mem, p.toShip[:n]...)
	rest := copy(p.toShip, p.toShip[n:])
	clear(p.toShip[rest:])
	p.toShip = p.toShip[:rest]
	select {
	case p.taken <- struct{}{}:
	default:
	}
	return mem, lost
}

// ShipJournal ships what the journal holds into the store now, outside
// Run (a command reading the store after the gateway stopped or died).
func (p *Pipeline) ShipJournal(ctx context.Context) error {
	if p.journal == nil {
		return nil
	}
	p.ship(ctx, nil)
	if n := p.committed.Load() - p.shipped.Load(); n > 0 {
		return fmt.Errorf("%d audit events remain in the journal %s: the store did not take them", n, p.journal.Dir())
	}
	return nil
}

// shipLoop ships the journal into the store every shipInterval, or sooner
// when a full batch waits, until ctx ends; then it ships what is left.
func (p *Pipeline) shipLoop(ctx context.Context) {
	var mem []Record // written to the journal, in order, maybe after a gap
	tick := time.NewTicker(shipInterval)
	defer tick.Stop()
	var retryAt time.Time
	for {
		select {
		case <-ctx.Done():
			mem, _ = p.takeToShip(mem)
			dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			p.ship(dctx, mem)
			cancel()
			if n := p.committed.Load() - p.shipped.Load(); n > 0 {
				p.logger.Warn("audit events left in the journal at shutdown; shipped to the store at the next start", "events", n, "journal", p.journal.Dir())
			}
			return
		case <-tick.C:
		case <-p.kick:
		}
		if p.storeFailed.Load() && time.Now().Before(retryAt) {
			continue
		}
		mem = p.ship(ctx, mem)
		if p.storeFailed.Load() {
			retryAt = time.Now().Add(shipRetry)
		}
	}
}

// ship appends to the store every journal record it does not hold yet,
// from mem when mem has them in order, from the journal's files otherwise,
// and releases them from the journal. It returns what is left of mem.
func (p *Pipeline) ship(ctx context.Context, mem []Record) []Record {
	if p.storeFailed.Load() {
		// A failed transaction may have committed all the same (the
		// connection broke during COMMIT): ask the store where it is.
		lctx, cancel := context.WithTimeout(ctx, shipTimeout)
		last, _, err := p.sink.Last(lctx, p.node)
		cancel()
		if err != nil {
			p.shipFailed(err, p.committed.Load()-p.shipped.Load())
			return mem
		}
		if last > p.shipped.Load() && last <= p.committed.Load() {
			p.shipped.Store(last)
		}
	}
	// trim drops what the store holds, keeping mem's array for the next
	// records (reslicing from the front would allocate a new one each round).
	trim := func(shipped int64) {
		i := 0
		for i < len(mem) && mem[i].Seq <= shipped {
			i++
		}
		n := copy(mem, mem[i:])
		clear(mem[n:]) // the shipped bodies go to the collector
		mem = mem[:n]
	}
	for {
		shipped, target := p.shipped.Load(), p.committed.Load()
		trim(shipped)
		if shipped >= target {
			break
		}
		if len(mem) == 0 || mem[0].Seq != shipped+1 {
			var lost bool
			mem, lost = p.takeToShip(mem)
			p.shipGap = p.shipGap || lost
			trim(shipped)
		}
		var batch []Record
		if len(mem) > 0 && mem[0].Seq == shipped+1 {
			p.shipGap = false
			n := 1
			for n < len(mem) && n < shipBatch && mem[n].Seq == mem[n-1].Seq+1 {
				n++
			}
			batch = mem[:n]
		} else if len(mem) == 0 && !p.shipGap {
			// The rest is on its way from the writers (committed, not yet
			// handed over): the next round takes it.
			break
		} else {
			// Records only the journal's files have: a run that ended
			// before shipping them, or writers that ran past the memory.
			recs, err := p.journal.Read(shipped, shipBatch)
			if err != nil {
				p.shipFailed(err, target-shipped)
				return mem
			}
			if len(recs) == 0 || recs[0].Seq != shipped+1 {
				p.shipFailed(fmt.Errorf("audit journal %s: record %d missing", p.journal.Dir(), shipped+1), target-shipped)
				return mem
			}
			batch = recs
		}
		actx, cancel := context.WithTimeout(ctx, shipTimeout)
		err := p.sink.Append(actx, batch)
		cancel()
		if err != nil {
			p.shipFailed(err, target-shipped)
			return mem
		}
		end := batch[len(batch)-1].Seq
		recovering := p.storeFailed.Swap(false)
		p.shipped.Store(end)
		if recovering && !p.catchingUp {
			p.catchingUp = true
			p.logger.Info("audit store is back: the journal is being shipped into it", "waiting", target-shipped)
		}
		if p.catchingUp && p.OnReplay != nil {
			p.OnReplay(len(batch))
		}
		if err := p.journal.Release(end); err != nil {
			p.logger.Warn("audit journal: shipped segments not removed", "error", err)
		}
	}
	if p.catchingUp {
		p.catchingUp = false
		p.logger.Info("audit journal shipped: the store has caught up")
	}
	return mem
}

// shipFailed reports a shipment the store refused: under on_failure deny
// requests are refused from now on (Failing), under buffer they go on into
// the journal; either way, once per outage, a log line and the callback
// that counts and alerts.
func (p *Pipeline) shipFailed(err error, waiting int64) {
	if p.storeFailed.Swap(true) {
		if time.Since(p.failLogged) >= time.Minute {
			p.failLogged = time.Now()
			p.logger.Warn("audit store still failing: events wait in the local journal", "waiting", waiting, "journal", p.journal.Dir(), "error", err)
		}
		return
	}
	p.failLogged = time.Now()
	if p.denyBehind {
		p.logger.Error("audit store failing: requests are refused until it takes the journal again", "waiting", waiting, "journal", p.journal.Dir(), "error", err)
		if p.OnFailure != nil {
			p.OnFailure(int(waiting))
		}
		return
	}
	p.logger.Warn("audit store failing: events wait in the local journal, shipped when it is back", "waiting", waiting, "journal", p.journal.Dir(), "error", err)
	if p.OnSpool != nil {
		p.OnSpool(int(waiting), err)
	}
}
