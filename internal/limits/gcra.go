// Package limits enforces rate limits with the generic cell rate algorithm
// (GCRA): smooth, burst-tolerant, one timestamp per key. Limits hold per
// node in memory, or across nodes in Redis.
package limits

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// Rate is a limit: Limit requests per Per, of which Burst may come at once.
type Rate struct {
	Limit int
	Per   time.Duration
	Burst int // 0 means Limit
}

func (r Rate) interval() time.Duration { return max(r.Per/time.Duration(r.Limit), 1) }

func (r Rate) burst() int {
	if r.Burst > 0 {
		return r.Burst
	}
	return r.Limit
}

// Result is the outcome of one request against a limit.
type Result struct {
	Allowed    bool
	Limit      int
	Remaining  int           // requests that could be made now
	RetryAfter time.Duration // when denied: until the next request is allowed
	Reset      time.Duration // until the limit is fully replenished
}

// Limiter decides whether a request under key may proceed.
type Limiter interface {
	Allow(ctx context.Context, key string, r Rate) (Result, error)
}

// gcra applies one request at now to the theoretical arrival time tat and
// returns the new tat (unchanged when denied).
func gcra(tat, now int64, r Rate) (int64, Result) {
	t := int64(r.interval())
	b := int64(r.burst())
	if tat < now {
		tat = now
	}
	newTAT := tat + t
	allowAt := newTAT - b*t
	res := Result{Limit: r.burst()}
	if now < allowAt {
		res.RetryAfter = time.Duration(allowAt - now)
		res.Reset = time.Duration(tat - now)
		res.Remaining = 0
		return tat, res
	}
	res.Allowed = true
	res.Remaining = int((now - allowAt) / t)
	res.Reset = time.Duration(newTAT - now)
	return newTAT, res
}

// Local is an in-process limiter: sharded, with a bounded number of keys.
// When a shard is full, keys whose bucket has refilled are dropped first
// (forgetting them changes nothing), then the oldest.
type Local struct {
	shards   [64]shard
	seed     maphash.Seed
	perShard int
	now      func() time.Time
}

type shard struct {
	mu   sync.Mutex
	tats map[string]int64
}

// NewLocal returns a limiter holding at most maxKeys keys.
func NewLocal(maxKeys int, now func() time.Time) *Local {
	if now == nil {
		now = time.Now
	}
	l := &Local{seed: maphash.MakeSeed(), perShard: max(maxKeys/64, 16), now: now}
	for i := range l.shards {
		l.shards[i].tats = map[string]int64{}
	}
	return l
}

var _ Limiter = (*Local)(nil)

// Allow applies one request under key.
func (l *Local) Allow(_ context.Context, key string, r Rate) (Result, error) {
	return l.allow(key, r), nil
}

func (l *Local) allow(key string, r Rate) Result {
	s := &l.shards[maphash.String(l.seed, key)&63]
	now := l.now().UnixNano()
	s.mu.Lock()
	tat, ok := s.tats[key]
	if !ok && len(s.tats) >= l.perShard {
		s.evict(now)
	}
	newTAT, res := gcra(tat, now, r)
	if res.Allowed {
		s.tats[key] = newTAT
	}
	s.mu.Unlock()
	return res
}

// evict makes room: first every key whose bucket has refilled, else an
// arbitrary one (map order).
func (s *shard) evict(now int64) {
	n := 0
	for k, tat := range s.tats {
		if tat <= now {
			delete(s.tats, k)
			n++
		}
	}
	if n > 0 {
		return
	}
	for k := range s.tats {
		delete(s.tats, k)
		return
	}
}

// Len returns the number of keys held.
func (l *Local) Len() int {
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].tats)
		l.shards[i].mu.Unlock()
	}
	return n
}

// AllowMode is Allow; a local limiter never fails, so mode is unused.
func (l *Local) AllowMode(_ context.Context, key string, r Rate, _ FailureMode) (Result, error) {
	return l.allow(key, r), nil
}

// Store is a limiter that may be backed by a remote store.
type Store interface {
	AllowMode(ctx context.Context, key string, r Rate, mode FailureMode) (Result, error)
}

var (
	_ Store = (*Local)(nil)
	_ Store = (*Redis)(nil)
)
