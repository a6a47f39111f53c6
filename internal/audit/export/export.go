// Package export sends durable audit records to SIEMs and log pipelines:
// JSON lines, Microsoft Sentinel (Logs Ingestion API, ASIM WebSession),
// syslog CEF, OpenTelemetry logs over OTLP/HTTP and signed webhooks.
//
// Each exporter has its own bounded buffer, filled by the audit pipeline
// after a batch is durable and never waited on: when the buffer is full the
// record is dropped for that exporter, counted and logged, and stays in the
// store, which is the durable record. A worker per exporter sends batches,
// retrying with exponential backoff and jitter, and honours a destination's
// Retry-After.
package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztgate/ztgate/internal/audit"
)

// Sender delivers one batch of records, in order, to a destination.
type Sender interface {
	// Send returns nil when every record was delivered. An error wrapping
	// *Partial says how many leading records were; a Permanent error is not
	// retried; an error wrapping *RetryAfter asks for a wait.
	Send(ctx context.Context, recs []audit.Record) error
	Close() error
}

// Partial is a batch of which the first Sent records were delivered.
type Partial struct {
	Sent int
	Err  error
}

func (p *Partial) Error() string { return fmt.Sprintf("%d records sent, then: %v", p.Sent, p.Err) }
func (p *Partial) Unwrap() error { return p.Err }

// RetryAfter is a failure whose destination asked to wait (HTTP 429 or 503
// with Retry-After).
type RetryAfter struct {
	After time.Duration
	Err   error
}

func (r *RetryAfter) Error() string { return fmt.Sprintf("%v (retry after %v)", r.Err, r.After) }
func (r *RetryAfter) Unwrap() error { return r.Err }

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as not worth a retry (the destination refused the
// batch itself, e.g. HTTP 400 or 403).
func Permanent(err error) error { return permanent{err} }

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Metrics are the exporters' Prometheus counters, labelled by exporter name.
type Metrics struct {
	sent, failed, dropped, retries *prometheus.CounterVec
	queued                         *prometheus.GaugeVec
}

// NewMetrics registers the exporter metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sent:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ztgate_audit_export_sent_total", Help: "Audit records delivered by an exporter."}, []string{"exporter"}),
		failed:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ztgate_audit_export_failed_total", Help: "Audit records an exporter gave up on after its retries (they stay in the store)."}, []string{"exporter"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ztgate_audit_export_dropped_total", Help: "Audit records dropped because an exporter's buffer was full (they stay in the store)."}, []string{"exporter"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ztgate_audit_export_retries_total", Help: "Delivery attempts an exporter retried."}, []string{"exporter"}),
		queued:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ztgate_audit_export_queued", Help: "Audit records waiting in an exporter's buffer."}, []string{"exporter"}),
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.failed, m.dropped, m.retries, m.queued)
	}
	return m
}

// Settings tune the worker of one exporter.
type Settings struct {
	Buffer        int           // records held; beyond, dropped
	BatchSize     int           // most records per Send
	FlushInterval time.Duration // how long a batch waits to fill
	Timeout       time.Duration // one attempt
	Backoff       Backoff
}

// Exporter buffers records for one Sender and delivers them from its own
// goroutine.
type Exporter struct {
	name   string
	kind   string
	sender Sender
	set    Settings
	logger *slog.Logger

	queue    chan audit.Record
	stopping chan struct{}
	done     chan struct{}
	ctx      context.Context // ends at the hard stop
	cancel   context.CancelFunc
	started  atomic.Bool

	sent, failed, dropped, retries prometheus.Counter
	queued                         prometheus.Gauge

	dropMu      sync.Mutex
	dropPending int // dropped since the last log line
	dropLogged  time.Time
}

// New returns an exporter named name (the metrics label) of kind (its
// type) around s. Start it, Offer it records, Close it.
func New(name, kind string, s Sender, set Settings, m *Metrics, logger *slog.Logger) *Exporter {
	if m == nil {
		m = NewMetrics(nil)
	}
	if set.BatchSize < 1 {
		set.BatchSize = 1
	}
	if set.Buffer < 1 {
		set.Buffer = 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Exporter{
		name: name, kind: kind, sender: s, set: set,
		logger:   logger.With("exporter", name, "type", kind),
		queue:    make(chan audit.Record, set.Buffer),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
		ctx:      ctx, cancel: cancel,
		sent:    m.sent.WithLabelValues(name),
		failed:  m.failed.WithLabelValues(name),
		dropped: m.dropped.WithLabelValues(name),
		retries: m.retries.WithLabelValues(name),
		queued:  m.queued.WithLabelValues(name),
	}
}

// Name is the exporter's name.
func (e *Exporter) Name() string { return e.name }

// Offer queues recs without ever blocking; a record that finds the buffer
// full is dropped for this exporter and counted.
func (e *Exporter) Offer(recs []audit.Record) {
	n := 0
	for _, r := range recs {
		select {
		case e.queue <- r:
		default:
			n++
		}
	}
	e.queued.Set(float64(len(e.queue)))
	if n > 0 {
		e.dropped.Add(float64(n))
		e.logDrops(n)
	}
}

// logDrops logs drops at most every 10 s, with the count since the last
// line, so a flood of drops does not become a flood of log lines.
func (e *Exporter) logDrops(n int) {
	e.dropMu.Lock()
	e.dropPending += n
	now := time.Now()
	if now.Sub(e.dropLogged) < 10*time.Second {
		e.dropMu.Unlock()
		return
	}
	n, e.dropPending, e.dropLogged = e.dropPending, 0, now
	e.dropMu.Unlock()
	e.logger.Warn("audit export buffer full: records dropped for this exporter; they stay in the store", "dropped", n, "buffer", e.set.Buffer)
}

// Start runs the exporter's worker.
func (e *Exporter) Start() {
	if e.started.Swap(true) {
		return
	}
	go e.run()
}

// Close stops taking records, delivers what is buffered within timeout,
// then closes the sender.
func (e *Exporter) Close(timeout time.Duration) error {
	if !e.started.Load() {
		e.cancel()
		return e.sender.Close()
	}
	close(e.stopping)
	t := time.AfterFunc(timeout, e.cancel)
	<-e.done
	t.Stop()
	e.cancel()
	if n := len(e.queue); n > 0 {
		e.failed.Add(float64(n))
		e.logger.Warn("audit exporter stopped with records not delivered; they stay in the store", "records", n)
	}
	return e.sender.Close()
}

func (e *Exporter) run() {
	defer close(e.done)
	batch := make([]audit.Record, 0, e.set.BatchSize)
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-e.stopping:
			for e.ctx.Err() == nil {
				batch = e.fill(batch[:0])
				if len(batch) == 0 {
					return
				}
				e.deliver(batch)
			}
			return
		case r := <-e.queue:
			batch = append(batch[:0], r)
			batch = e.fill(batch)
			if len(batch) < e.set.BatchSize {
				flush.Reset(e.set.FlushInterval)
			wait:
				for len(batch) < e.set.BatchSize {
					select {
					case r := <-e.queue:
						batch = append(batch, r)
					case <-flush.C:
						break wait
					case <-e.stopping:
						break wait
					case <-e.ctx.Done():
						break wait
					}
				}
				flush.Stop()
			}
			e.queued.Set(float64(len(e.queue)))
			e.deliver(batch)
		}
	}
}

// fill adds what is queued, without waiting, up to the batch size.
func (e *Exporter) fill(batch []audit.Record) []audit.Record {
	for len(batch) < e.set.BatchSize {
		select {
		case r := <-e.queue:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// deliver sends batch until it is delivered, refused for good, or its
// retries run out.
func (e *Exporter) deliver(batch []audit.Record) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(e.ctx, e.set.Timeout)
		err := e.sender.Send(ctx, batch)
		cancel()
		if err == nil {
			e.sent.Add(float64(len(batch)))
			if attempt > 0 {
				e.logger.Info("audit export delivered after retries", "records", len(batch), "attempts", attempt+1)
			}
			return
		}
		var p *Partial
		if errors.As(err, &p) && p.Sent > 0 {
			n := min(p.Sent, len(batch))
			e.sent.Add(float64(n))
			if batch = batch[n:]; len(batch) == 0 {
				return
			}
		}
		if IsPermanent(err) {
			e.giveUp(batch, attempt, "the destination refused the batch", err)
			return
		}
		var ra *RetryAfter
		var after time.Duration
		if errors.As(err, &ra) {
			after = ra.After
		}
		wait := e.set.Backoff.Delay(attempt, after)
		if time.Since(start)+wait > e.set.Backoff.MaxElapsed {
			e.giveUp(batch, attempt, "retries exhausted", err)
			return
		}
		if e.ctx.Err() != nil {
			e.giveUp(batch, attempt, "stopped", err)
			return
		}
		if attempt == 0 {
			e.logger.Warn("audit export failed; retrying", "records", len(batch), "retry_in", wait.String(), "error", err)
		} else {
			e.logger.Debug("audit export failed again", "records", len(batch), "attempt", attempt+1, "retry_in", wait.String(), "error", err)
		}
		e.retries.Inc()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-e.ctx.Done():
			t.Stop()
			e.giveUp(batch, attempt, "stopped", err)
			return
		}
	}
}

func (e *Exporter) giveUp(batch []audit.Record, attempt int, why string, err error) {
	e.failed.Add(float64(len(batch)))
	e.logger.Error("audit export gave up on a batch; its records stay in the store", "why", why, "records", len(batch),
		"first_seq", batch[0].Seq, "last_seq", batch[len(batch)-1].Seq, "attempts", attempt+1, "error", err)
}

// Set is every configured exporter.
type Set []*Exporter

// Offer hands recs to every exporter; it never blocks.
func (s Set) Offer(recs []audit.Record) {
	for _, e := range s {
		e.Offer(recs)
	}
}

// Start starts every exporter.
func (s Set) Start() {
	for _, e := range s {
		e.Start()
	}
}

// Close closes every exporter, each within timeout, in parallel.
func (s Set) Close(timeout time.Duration) error {
	errs := make([]error, len(s))
	var wg sync.WaitGroup
	for i, e := range s {
		wg.Go(func() {
			if err := e.Close(timeout); err != nil {
				errs[i] = fmt.Errorf("audit exporter %s: %w", e.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
