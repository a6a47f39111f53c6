package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ztgate/ztgate/internal/config"
)

// ErrUnavailable is wrapped by the error of a secret that cannot be served:
// never read, or its last good value older than max_stale.
var ErrUnavailable = errors.New("secret unavailable")

// Cache keeps the secrets that injected credentials use, and reads each one
// again in the background when its ttl has passed. A request only loads a
// pointer: no I/O and no lock on the request path.
//
// While reads fail, the last good value serves until it is max_stale old;
// then Get fails with ErrUnavailable (fail closed) until a read succeeds.
type Cache struct {
	logger *slog.Logger
	// FetchTimeout bounds one read, the SDK's own retries included.
	FetchTimeout time.Duration
	// OnRefresh, when set, is called after each background read with its
	// outcome (for metrics); err is nil on success.
	OnRefresh func(provider string, err error)

	mu      sync.Mutex
	entries map[string]*Entry
	wake    chan struct{}
}

// NewCache returns an empty cache; Run refreshes it.
func NewCache(logger *slog.Logger) *Cache {
	return &Cache{logger: logger, FetchTimeout: 30 * time.Second, entries: map[string]*Entry{}, wake: make(chan struct{}, 1)}
}

// Entry is one cached secret reference.
type Entry struct {
	key     string
	src     *Source
	ref     config.SecretRef
	cur     atomic.Pointer[snapshot]
	lastErr atomic.Pointer[error] // of the last read; nil after a success

	// guarded by Cache.mu
	refs     int
	due      time.Time
	failures int
	inflight bool
	tried    chan struct{} // closed when the first read has finished
}

type snapshot struct {
	s       Secret
	fetched time.Time
}

// Track returns the entry for ref in src, creating it (to be read at once)
// or adding a user to it. Each Track is paired with a Release.
func (c *Cache) Track(src *Source, ref config.SecretRef) *Entry {
	key := src.Name + "\x00" + src.Fingerprint + "\x00" + ref.String()
	c.mu.Lock()
	e, ok := c.entries[key]
	if !ok {
		e = &Entry{key: key, src: src, ref: ref, tried: make(chan struct{})}
		c.entries[key] = e
	}
	e.refs++
	c.mu.Unlock()
	if !ok {
		c.poke()
	}
	return e
}

// Release drops a user of e; an entry nobody uses is forgotten.
func (c *Cache) Release(e *Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	if e.refs <= 0 && c.entries[e.key] == e {
		delete(c.entries, e.key)
	}
}

func (c *Cache) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Ref is the reference the entry reads.
func (e *Entry) Ref() config.SecretRef { return e.ref }

// Get returns the secret's current value, or an error wrapping
// ErrUnavailable. It does no I/O and takes no lock.
func (e *Entry) Get() (Value, error) {
	s, err := e.Secret()
	return s.Value, err
}

// Secret is Get with the version and content type.
func (e *Entry) Secret() (Secret, error) {
	snap := e.cur.Load()
	if snap == nil {
		return Secret{}, e.unavailable("not read yet")
	}
	if age := time.Since(snap.fetched); age > e.src.MaxStale {
		return Secret{}, e.unavailable(fmt.Sprintf("last read %s ago, beyond max_stale %s", age.Round(time.Second), e.src.MaxStale))
	}
	return snap.s, nil
}

func (e *Entry) unavailable(why string) error {
	ue := &UnavailableError{Ref: e.ref, Why: why}
	if p := e.lastErr.Load(); p != nil {
		ue.Last = *p
	}
	return ue
}

// UnavailableError is a secret that cannot be served. It names the
// reference and why, never a value.
type UnavailableError struct {
	Ref  config.SecretRef
	Why  string
	Last error // the last read's error, if it failed
}

func (e *UnavailableError) Error() string {
	msg := fmt.Sprintf("secret %s unavailable: %s", e.Ref, e.Why)
	if e.Last != nil {
		msg += "; last read: " + e.Last.Error()
	}
	return msg
}

// Is makes errors.Is(err, ErrUnavailable) hold.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unwrap returns the last read's error.
func (e *UnavailableError) Unwrap() error { return e.Last }

// Run reads due entries in the background until ctx ends.
func (c *Cache) Run(ctx context.Context) {
	sem := make(chan struct{}, 4) // reads at once
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := c.dispatch(ctx, sem)
		d := time.Hour
		if !next.IsZero() {
			d = max(time.Until(next), 0)
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-timer.C:
		}
	}
}

// dispatch starts a read of every due entry and returns when the next one
// is due (zero: none is waiting).
func (c *Cache) dispatch(ctx context.Context, sem chan struct{}) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	var next time.Time
	for _, e := range c.entries {
		if e.inflight {
			continue
		}
		if !e.due.After(now) {
			e.inflight = true
			go func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				c.refresh(ctx, e)
			}()
			continue
		}
		if next.IsZero() || e.due.Before(next) {
			next = e.due
		}
	}
	return next
}

// refresh reads one entry and schedules its next read.
func (c *Cache) refresh(ctx context.Context, e *Entry) {
	fctx, cancel := context.WithTimeout(ctx, c.FetchTimeout)
	s, err := e.src.Provider.Fetch(fctx, e.ref.Name, e.ref.Version)
	cancel()
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	prev := e.cur.Load()
	attrs := []any{slog.String("secret", e.ref.String())}

	c.mu.Lock()
	e.inflight = false
	if err == nil {
		e.cur.Store(&snapshot{s: s, fetched: now})
		e.lastErr.Store(nil)
		e.failures = 0
		e.due = now.Add(e.src.TTL)
	} else {
		e.lastErr.Store(&err)
		e.failures++
		e.due = now.Add(retryDelay(e.failures, e.src.TTL, err))
		// One more try when the last value reaches max_stale, so that the
		// moment it stops serving is tried for and logged.
		if prev != nil {
			if expiry := prev.fetched.Add(e.src.MaxStale + time.Millisecond); expiry.After(now) && expiry.Before(e.due) {
				e.due = expiry
			}
		}
	}
	failures, due := e.failures, e.due
	select {
	case <-e.tried:
	default:
		close(e.tried)
	}
	c.mu.Unlock()
	c.poke()

	if c.OnRefresh != nil {
		c.OnRefresh(e.src.Name, err)
	}
	switch {
	case err == nil:
		if prev != nil && now.Sub(prev.fetched) > e.src.MaxStale {
			c.logger.Info("secret readable again: requests that inject it are served", attrs...)
		}
		if prev != nil && !prev.s.Value.Equal(s.Value) {
			attrs = append(attrs, slog.String("version", s.Version), slog.String("previous_version", prev.s.Version))
			c.logger.Info("secret rotated: the new value serves from now on", attrs...)
		}
	case prev == nil:
		c.logger.Error("secret not read: requests that inject it are refused (503 secret_unavailable)", append(attrs, slog.String("error", err.Error()), slog.Int("failures", failures), slog.Time("next_try", due))...)
	case now.Sub(prev.fetched) > e.src.MaxStale:
		c.logger.Error("secret not refreshed and its last value is beyond max_stale: requests that inject it are refused (503 secret_unavailable)", append(attrs, slog.String("error", err.Error()), slog.Duration("age", now.Sub(prev.fetched)), slog.Int("failures", failures), slog.Time("next_try", due))...)
	default:
		c.logger.Warn("secret not refreshed; its last value serves until max_stale", append(attrs, slog.String("error", err.Error()), slog.Duration("age", now.Sub(prev.fetched)), slog.Duration("max_stale", e.src.MaxStale), slog.Int("failures", failures), slog.Time("next_try", due))...)
	}
}

// retryDelay is the wait before another read after failures: 1s doubling to
// a minute (at most ttl), with jitter so that nodes spread out, and never
// sooner than a vault's Retry-After.
func retryDelay(failures int, ttl time.Duration, err error) time.Duration {
	d := time.Second << min(failures-1, 6)
	d = min(d, time.Minute, ttl)
	d = d - d/5 + time.Duration(rand.Int64N(int64(d/5)+1))
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) && ra.RetryAfter() > d {
		d = min(ra.RetryAfter(), time.Hour)
	}
	return d
}

// Wait waits until each of entries has been read once (or ctx ends) and
// returns the errors of those that cannot be served.
func (c *Cache) Wait(ctx context.Context, entries []*Entry) error {
	var errs []error
	for _, e := range entries {
		select {
		case <-e.tried:
		case <-ctx.Done():
		}
		if _, err := e.Get(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Problems lists the tracked secrets that cannot be served, for readiness.
func (c *Cache) Problems() []string {
	c.mu.Lock()
	entries := make([]*Entry, 0, len(c.entries))
	for _, e := range c.entries {
		entries = append(entries, e)
	}
	c.mu.Unlock()
	var out []string
	for _, e := range entries {
		if _, err := e.Get(); err != nil {
			out = append(out, err.Error())
		}
	}
	slices.Sort(out)
	return out
}
