package secrets

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ztgate/ztgate/internal/config"
)

// fakeProvider serves one value per name; err, when set, fails every read.
type fakeProvider struct {
	mu     sync.Mutex
	values map[string]string
	err    error
	reads  []time.Time
}

func (f *fakeProvider) Fetch(_ context.Context, name, _ string) (Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads = append(f.reads, time.Now())
	if f.err != nil {
		return Secret{}, f.err
	}
	v, ok := f.values[name]
	if !ok {
		return Secret{}, ErrNotFound
	}
	return Secret{Value: NewValue(v)}, nil
}

func (f *fakeProvider) set(name, v string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.values[name] = v
	f.err = err
}

func (f *fakeProvider) readTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.reads...)
}

func get(t *testing.T, e *Entry) string {
	t.Helper()
	v, err := e.Get()
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	return v.Reveal()
}

// TestCacheRotationAndMaxStale walks one secret through its life: read at
// once, a rotation picked up after ttl, an outage served from the cache
// until max_stale, then fail closed, then back.
func TestCacheRotationAndMaxStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		c := NewCache(slog.New(slog.NewTextHandler(&logs, nil)))
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go c.Run(ctx)
		p := &fakeProvider{values: map[string]string{"key": "v1"}}
		src := &Source{Name: "kv", Provider: p, TTL: 5 * time.Minute, MaxStale: time.Hour}
		e := c.Track(src, config.SecretRef{Provider: "kv", Name: "key"})
		if err := c.Wait(ctx, []*Entry{e}); err != nil {
			t.Fatal(err)
		}
		if got := get(t, e); got != "v1" {
			t.Fatalf("got %q, want v1", got)
		}

		p.set("key", "v2", nil)
		time.Sleep(5*time.Minute - time.Second)
		if got := get(t, e); got != "v1" {
			t.Fatalf("before ttl: got %q, want v1 (cached)", got)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := get(t, e); got != "v2" {
			t.Fatalf("after ttl: got %q, want the rotated v2", got)
		}
		lastGood := time.Now()

		// The vault goes down: the last value serves until it is an hour old.
		p.set("key", "v2", errors.New("vault unreachable"))
		time.Sleep(time.Hour - time.Minute)
		if got := get(t, e); got != "v2" {
			t.Fatalf("outage under max_stale: got %q, want v2 from the cache", got)
		}
		time.Sleep(time.Minute + time.Second)
		_, err := e.Get()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("outage beyond max_stale: got %v, want ErrUnavailable", err)
		}
		if !strings.Contains(err.Error(), "vault unreachable") || !strings.Contains(err.Error(), "kv/key") {
			t.Errorf("error %q: want the reference and the last read error", err)
		}
		if got := c.Problems(); len(got) != 1 {
			t.Errorf("problems: got %q, want one", got)
		}
		// Retries back off: 1s doubling to a minute, not a read per tick.
		var during int
		for _, r := range p.readTimes() {
			if r.After(lastGood) {
				during++
			}
		}
		if during < 55 || during > 75 {
			t.Errorf("reads during the hour's outage: got %d, want about 60 (one a minute after backoff)", during)
		}

		p.set("key", "v3", nil)
		time.Sleep(61 * time.Second)
		synctest.Wait()
		if got := get(t, e); got != "v3" {
			t.Fatalf("after the outage: got %q, want v3", got)
		}
		if strings.Contains(logs.String(), "v1") || strings.Contains(logs.String(), "v2\"") {
			t.Errorf("logs hold a value:\n%s", logs.String())
		}
		for _, want := range []string{"secret rotated", "its last value serves until max_stale", "beyond max_stale", "readable again"} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("logs lack %q:\n%s", want, logs.String())
			}
		}
	})
}

type retryLater struct{ d time.Duration }

func (r retryLater) Error() string             { return "throttled" }
func (r retryLater) RetryAfter() time.Duration { return r.d }

func TestCacheHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewCache(slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go c.Run(ctx)
		p := &fakeProvider{values: map[string]string{"key": "v1"}, err: retryLater{10 * time.Minute}}
		e := c.Track(&Source{Name: "kv", Provider: p, TTL: time.Minute, MaxStale: time.Hour}, config.SecretRef{Provider: "kv", Name: "key"})
		if err := c.Wait(ctx, []*Entry{e}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable before any read succeeded", err)
		}
		p.set("key", "v1", nil)
		time.Sleep(10*time.Minute - time.Second)
		if n := len(p.readTimes()); n != 1 {
			t.Fatalf("reads within Retry-After: got %d, want 1", n)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := get(t, e); got != "v1" {
			t.Fatalf("after Retry-After: got %q, want v1", got)
		}
	})
}

func TestCacheSharesAndForgetsEntries(t *testing.T) {
	c := NewCache(slog.New(slog.DiscardHandler))
	p := &fakeProvider{values: map[string]string{}}
	src := &Source{Name: "kv", Fingerprint: "a", Provider: p, TTL: time.Minute, MaxStale: time.Hour}
	ref := config.SecretRef{Provider: "kv", Name: "key"}
	a, b := c.Track(src, ref), c.Track(src, ref)
	if a != b {
		t.Fatal("two tracks of one reference: got two entries, want one shared")
	}
	other := c.Track(&Source{Name: "kv", Fingerprint: "b", Provider: p, TTL: time.Minute, MaxStale: time.Hour}, ref)
	if other == a {
		t.Fatal("a changed provider (fingerprint): got the old entry, want a new one")
	}
	c.Release(a)
	if len(c.entries) != 2 {
		t.Fatalf("after one release: got %d entries, want 2", len(c.entries))
	}
	c.Release(b)
	c.Release(other)
	if len(c.entries) != 0 {
		t.Fatalf("after every release: got %d entries, want 0", len(c.entries))
	}
}
