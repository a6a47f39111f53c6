package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ztgate/ztgate/internal/audit"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// records returns n chained-looking records with sequence numbers from 1.
func records(n int) []audit.Record {
	out := make([]audit.Record, n)
	for i := range out {
		seq := int64(i + 1)
		ev := audit.Event{
			Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond), EventType: "ApiRequest",
			RequestID: fmt.Sprintf("req-%d", seq), Result: "Success", ResultDetails: "allowed", Decision: "allow",
			PolicyVersion: "abc123", Service: "orders", Route: "read", IdentityType: "user", Tenant: "t1", ObjectID: "o1",
			Subject: "alice", AppID: "app1", Identity: "t1/o1", SrcIP: "10.1.2.3", UserAgent: "curl/8", Method: "GET",
			URL: fmt.Sprintf("/orders/%d?x=REDACTED", seq), Status: 200, RequestBytes: 12, DurationMS: 3.5, Node: "gw-1",
		}
		body, _ := audit.Canonical(&ev)
		out[i] = audit.Record{Node: "gw-1", Seq: seq, Event: ev, Body: string(body), PrevHash: fmt.Sprintf("h%d", seq-1), Hash: fmt.Sprintf("h%d", seq)}
	}
	return out
}

// fakeSender records what it is sent and fails as told; a hand-written
// fake for the worker tests.
type fakeSender struct {
	mu    sync.Mutex
	got   []int64     // sequence numbers delivered
	times []time.Time // of every attempt
	fail  func(attempt int, recs []audit.Record) error
	block chan struct{} // when set, Send waits on it
}

func (f *fakeSender) Send(ctx context.Context, recs []audit.Record) error {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	attempt := len(f.times)
	f.times = append(f.times, time.Now())
	if f.fail != nil {
		if err := f.fail(attempt, recs); err != nil {
			var p *Partial
			if errors.As(err, &p) {
				for _, r := range recs[:p.Sent] {
					f.got = append(f.got, r.Seq)
				}
			}
			return err
		}
	}
	for _, r := range recs {
		f.got = append(f.got, r.Seq)
	}
	return nil
}

func (f *fakeSender) Close() error { return nil }

func (f *fakeSender) delivered() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.got...)
}

func settings() Settings {
	return Settings{Buffer: 100, BatchSize: 10, FlushInterval: 50 * time.Millisecond, Timeout: time.Second,
		Backoff: Backoff{Initial: 100 * time.Millisecond, Max: time.Second, MaxElapsed: time.Minute, Jitter: func() float64 { return 0 }}}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 30 * time.Second}
	tests := []struct {
		name       string
		attempt    int
		jitter     float64
		retryAfter time.Duration
		want       time.Duration
	}{
		{"first retry, least jitter", 0, 0, 0, 500 * time.Millisecond},
		{"first retry, half jitter", 0, 0.5, 0, 750 * time.Millisecond},
		{"doubles", 3, 0, 0, 4 * time.Second},
		{"capped at max", 10, 0.5, 0, 22500 * time.Millisecond},
		{"huge attempt does not overflow", 1000, 0, 0, 15 * time.Second},
		{"Retry-After longer than backoff wins", 0, 0.5, 7 * time.Second, 7 * time.Second},
		{"Retry-After longer than max still wins (regression: capping it would retry too soon)", 10, 0, 2 * time.Minute, 2 * time.Minute},
		{"Retry-After shorter than backoff: backoff", 4, 0, time.Second, 8 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := b
			b.Jitter = func() float64 { return tt.jitter }
			if got := b.Delay(tt.attempt, tt.retryAfter); got.Round(time.Microsecond) != tt.want {
				t.Errorf("Delay(%d, %v): got %v, want %v", tt.attempt, tt.retryAfter, got, tt.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		h    http.Header
		want time.Duration
	}{
		{"absent", http.Header{}, 0},
		{"seconds", http.Header{"Retry-After": {"3"}}, 3 * time.Second},
		{"http date", http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{"date in the past", http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0},
		{"negative", http.Header{"Retry-After": {"-5"}}, 0},
		{"absurd is capped at a day", http.Header{"Retry-After": {"99999999"}}, 24 * time.Hour},
		{"azure retry-after-ms first", http.Header{"Retry-After-Ms": {"1500"}, "Retry-After": {"9"}}, 1500 * time.Millisecond},
		{"azure x-ms-retry-after-ms", http.Header{"X-Ms-Retry-After-Ms": {"250"}}, 250 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseRetryAfter(tt.h, now); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStatusError(t *testing.T) {
	tests := []struct {
		code      int
		h         http.Header
		ok        bool
		permanent bool
		after     time.Duration
	}{
		{200, nil, true, false, 0},
		{204, nil, true, false, 0},
		{400, nil, false, true, 0},
		{401, nil, false, true, 0},
		{413, nil, false, true, 0},
		{408, nil, false, false, 0},
		{429, http.Header{"Retry-After": {"2"}}, false, false, 2 * time.Second},
		{429, nil, false, false, 0},
		{500, nil, false, false, 0},
		{503, http.Header{"Retry-After": {"5"}}, false, false, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			err := statusError(tt.code, tt.h, []byte("  some\n body "))
			if (err == nil) != tt.ok {
				t.Fatalf("got %v, want ok=%v", err, tt.ok)
			}
			if err == nil {
				return
			}
			if IsPermanent(err) != tt.permanent {
				t.Errorf("IsPermanent: got %v, want %v", IsPermanent(err), tt.permanent)
			}
			var ra *RetryAfter
			if got := time.Duration(0); errors.As(err, &ra) {
				got = ra.After
				if got != tt.after {
					t.Errorf("Retry-After: got %v, want %v", got, tt.after)
				}
			} else if tt.after != 0 {
				t.Errorf("no Retry-After in %v, want %v", err, tt.after)
			}
		})
	}
}

// TestBufferFullDropsAndCounts: a stuck destination fills the buffer; Offer
// never blocks, and every record that did not fit is counted as dropped.
func TestBufferFullDropsAndCounts(t *testing.T) {
	f := &fakeSender{block: make(chan struct{})}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	set := settings()
	set.Buffer, set.BatchSize = 5, 1
	e := New("stuck", "webhook", f, set, m, discard)
	e.Start()
	recs := records(50)
	e.Offer(recs[:1])
	// The worker takes the first record and blocks in Send; the buffer
	// then holds 5 and the rest are dropped.
	deadline := time.Now().Add(5 * time.Second)
	for len(e.queue) != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	e.Offer(recs[1:])
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Offer took %v with a full buffer, want no wait", d)
	}
	if got, want := testutil.ToFloat64(m.dropped.WithLabelValues("stuck")), 44.0; got != want {
		t.Errorf("ztgate_audit_export_dropped_total{exporter=stuck}: got %v, want %v", got, want)
	}
	close(f.block)
	if err := e.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := len(f.delivered()), 6; got != want {
		t.Errorf("delivered %d, want %d (the first record and the 5 buffered)", got, want)
	}
	if got := testutil.ToFloat64(m.sent.WithLabelValues("stuck")); got != 6 {
		t.Errorf("sent counter: got %v, want 6", got)
	}
}

func TestDropLogIsRateLimited(t *testing.T) {
	var logs syncBuf
	f := &fakeSender{block: make(chan struct{})}
	defer close(f.block)
	set := settings()
	set.Buffer = 1
	e := New("x", "jsonl", f, set, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	for range 100 {
		e.Offer(records(3))
	}
	if got := countLines(logs.String(), "records dropped"); got != 1 {
		t.Errorf("got %d drop log lines for 100 overflowing offers, want 1:\n%s", got, logs.String())
	}
}

func TestRetryHonoursRetryAfterAndBackoff(t *testing.T) {
	tests := []struct {
		name     string
		fail     func(attempt int, recs []audit.Record) error
		wantGaps []time.Duration // between attempts
		wantSent int
		wantFail int
	}{
		{
			name: "Retry-After is waited out",
			fail: func(a int, _ []audit.Record) error {
				return ifFirst(a, 1, &RetryAfter{After: 3 * time.Second, Err: errors.New("429")})
			},
			wantGaps: []time.Duration{3 * time.Second},
			wantSent: 10,
		},
		{
			name:     "exponential backoff without Retry-After",
			fail:     func(a int, _ []audit.Record) error { return ifFirst(a, 3, errors.New("connection refused")) },
			wantGaps: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond},
			wantSent: 10,
		},
		{
			name:     "permanent error is not retried",
			fail:     func(a int, _ []audit.Record) error { return Permanent(errors.New("400")) },
			wantGaps: nil,
			wantFail: 10,
		},
		{
			name: "partial delivery resends only the rest",
			fail: func(a int, _ []audit.Record) error {
				return ifFirst(a, 1, &Partial{Sent: 4, Err: &RetryAfter{After: time.Second, Err: errors.New("503")}})
			},
			wantGaps: []time.Duration{time.Second},
			wantSent: 10,
		},
		{
			name: "gives up after max elapsed",
			fail: func(a int, _ []audit.Record) error {
				return &RetryAfter{After: 40 * time.Second, Err: errors.New("429")}
			},
			wantGaps: []time.Duration{40 * time.Second},
			wantFail: 10,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeSender{fail: tt.fail}
				m := NewMetrics(nil)
				e := New("x", "webhook", f, settings(), m, discard)
				e.Start()
				e.Offer(records(10))
				time.Sleep(2 * time.Minute)
				synctest.Wait()
				f.mu.Lock()
				times := append([]time.Time(nil), f.times...)
				f.mu.Unlock()
				var gaps []time.Duration
				for i := 1; i < len(times); i++ {
					gaps = append(gaps, times[i].Sub(times[i-1]))
				}
				if fmt.Sprint(gaps) != fmt.Sprint(tt.wantGaps) {
					t.Errorf("gaps between attempts: got %v, want %v", gaps, tt.wantGaps)
				}
				if got := testutil.ToFloat64(m.sent.WithLabelValues("x")); got != float64(tt.wantSent) {
					t.Errorf("sent: got %v, want %v", got, tt.wantSent)
				}
				if got := testutil.ToFloat64(m.failed.WithLabelValues("x")); got != float64(tt.wantFail) {
					t.Errorf("failed: got %v, want %v", got, tt.wantFail)
				}
				if tt.wantSent == 10 {
					got := f.delivered()
					for i, seq := range got {
						if seq != int64(i+1) {
							t.Fatalf("delivered %v, want 1..10 once each, in order", got)
						}
					}
				}
				e.Close(time.Second)
			})
		})
	}
}

func TestBatchingBySizeAndInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sizes []int // guarded by f.mu
		f := &fakeSender{fail: func(_ int, recs []audit.Record) error { sizes = append(sizes, len(recs)); return nil }}
		batches := func() string {
			f.mu.Lock()
			defer f.mu.Unlock()
			return fmt.Sprint(sizes)
		}
		e := New("x", "otlp", f, settings(), nil, discard)
		e.Start()
		e.Offer(records(25))
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		if got := batches(); got != "[10 10 5]" {
			t.Errorf("batches: got %v, want [10 10 5]", got)
		}
		e.Offer(records(3))
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		if got := batches(); got != "[10 10 5]" {
			t.Errorf("a partial batch went out before flush_interval: %v", got)
		}
		time.Sleep(50 * time.Millisecond)
		synctest.Wait()
		if got := batches(); got != "[10 10 5 3]" {
			t.Errorf("after flush_interval: got %v, want a batch of 3 more", got)
		}
		e.Close(time.Second)
	})
}

func TestCloseDeliversBuffered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSender{}
		set := settings()
		set.FlushInterval = time.Hour
		e := New("x", "jsonl", f, set, nil, discard)
		e.Start()
		e.Offer(records(7))
		if err := e.Close(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		if got := len(f.delivered()); got != 7 {
			t.Errorf("delivered %d at close, want 7", got)
		}
	})
}

func ifFirst(attempt, n int, err error) error {
	if attempt < n {
		return err
	}
	return nil
}
