package limits

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Period is a quota's renewal period, aligned to the UTC calendar.
type Period int

// Periods.
const (
	Day Period = iota
	Month
)

// Bounds returns the start and end of the period containing t.
func (p Period) Bounds(t time.Time) (time.Time, time.Time) {
	t = t.UTC()
	if p == Month {
		start := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	start := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 0, 1)
}

// Quota is a volume a key may use per period: calls, response bytes, or
// both (0: unlimited).
type Quota struct {
	Calls  int64
	Bytes  int64
	Period Period
}

// QuotaResult is the state of a quota after admitting (or not) a call.
type QuotaResult struct {
	Allowed   bool
	Remaining int64         // calls left this period (-1: calls not limited)
	Reset     time.Duration // until the period renews
}

// QuotaStore counts calls and bytes per key and period.
type QuotaStore interface {
	// Admit counts one call unless the calls or bytes quota is spent.
	Admit(ctx context.Context, key string, q Quota) (QuotaResult, error)
	// AddBytes counts response bytes after a call.
	AddBytes(ctx context.Context, key string, q Quota, n int64) error
}

// LocalQuotas counts in memory, per node. Counts do not survive a restart.
type LocalQuotas struct {
	mu     sync.Mutex
	counts map[string]*usage
	max    int
	now    func() time.Time
}

type usage struct {
	period      time.Time
	calls, byts int64
}

// NewLocalQuotas returns an in-memory quota store of at most maxKeys keys.
func NewLocalQuotas(maxKeys int, now func() time.Time) *LocalQuotas {
	if now == nil {
		now = time.Now
	}
	return &LocalQuotas{counts: map[string]*usage{}, max: maxKeys, now: now}
}

func (l *LocalQuotas) get(key string, start time.Time) *usage {
	u := l.counts[key]
	if u == nil || !u.period.Equal(start) {
		if u == nil && len(l.counts) >= l.max {
			for k, v := range l.counts { // drop usage of past periods first
				if v.period.Before(start) {
					delete(l.counts, k)
				}
			}
			if len(l.counts) >= l.max {
				for k := range l.counts {
					delete(l.counts, k)
					break
				}
			}
		}
		u = &usage{period: start}
		l.counts[key] = u
	}
	return u
}

// Admit counts one call.
func (l *LocalQuotas) Admit(_ context.Context, key string, q Quota) (QuotaResult, error) {
	now := l.now()
	start, end := q.Period.Bounds(now)
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.get(key, start)
	res := QuotaResult{Reset: end.Sub(now), Remaining: -1}
	if (q.Calls > 0 && u.calls >= q.Calls) || (q.Bytes > 0 && u.byts >= q.Bytes) {
		if q.Calls > 0 {
			res.Remaining = max(q.Calls-u.calls, 0)
		}
		return res, nil
	}
	u.calls++
	res.Allowed = true
	if q.Calls > 0 {
		res.Remaining = q.Calls - u.calls
	}
	return res, nil
}

// AddBytes counts response bytes.
func (l *LocalQuotas) AddBytes(_ context.Context, key string, q Quota, n int64) error {
	start, _ := q.Period.Bounds(l.now())
	l.mu.Lock()
	l.get(key, start).byts += n
	l.mu.Unlock()
	return nil
}

// RedisQuotas counts in Redis, shared by every node and kept across
// restarts. Keys expire a day after their period ends.
type RedisQuotas struct {
	client redis.UniversalClient
	prefix string
	now    func() time.Time
}

// NewRedisQuotas returns a Redis quota store.
func NewRedisQuotas(client redis.UniversalClient, prefix string) *RedisQuotas {
	return &RedisQuotas{client: client, prefix: prefix, now: time.Now}
}

// quotaScript: KEYS calls key, bytes key; ARGV calls limit, bytes limit,
// expire-at (unix s). Returns {allowed, calls used}.
var quotaScript = redis.NewScript(`
local calls = tonumber(redis.call('GET', KEYS[1]) or '0')
local bytes = tonumber(redis.call('GET', KEYS[2]) or '0')
local cl, bl = tonumber(ARGV[1]), tonumber(ARGV[2])
if (cl > 0 and calls >= cl) or (bl > 0 and bytes >= bl) then
  return {0, calls}
end
calls = redis.call('INCR', KEYS[1])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return {1, calls}
`)

// ErrQuotaStore wraps a Redis failure.
var ErrQuotaStore = errors.New("quota store unavailable")

func (r *RedisQuotas) keys(key string, q Quota) (string, string, time.Time, time.Time) {
	start, end := q.Period.Bounds(r.now())
	base := r.prefix + strconv.FormatInt(start.Unix(), 10) + ":" + key
	return base + ":c", base + ":b", start, end
}

// Admit counts one call.
func (r *RedisQuotas) Admit(ctx context.Context, key string, q Quota) (QuotaResult, error) {
	ck, bk, _, end := r.keys(key, q)
	ctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer cancel()
	v, err := quotaScript.Run(ctx, r.client, []string{ck, bk}, q.Calls, q.Bytes, end.Add(24*time.Hour).Unix()).Int64Slice()
	if err != nil || len(v) != 2 {
		return QuotaResult{}, errors.Join(ErrQuotaStore, err)
	}
	res := QuotaResult{Allowed: v[0] == 1, Reset: end.Sub(r.now()), Remaining: -1}
	if q.Calls > 0 {
		res.Remaining = max(q.Calls-v[1], 0)
	}
	return res, nil
}

// AddBytes counts response bytes.
func (r *RedisQuotas) AddBytes(ctx context.Context, key string, q Quota, n int64) error {
	_, bk, _, end := r.keys(key, q)
	ctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer cancel()
	pipe := r.client.TxPipeline()
	pipe.IncrBy(ctx, bk, n)
	pipe.ExpireAt(ctx, bk, end.Add(24*time.Hour))
	if _, err := pipe.Exec(ctx); err != nil {
		return errors.Join(ErrQuotaStore, err)
	}
	return nil
}

var (
	_ QuotaStore = (*LocalQuotas)(nil)
	_ QuotaStore = (*RedisQuotas)(nil)
)
