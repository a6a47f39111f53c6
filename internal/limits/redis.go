package limits

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcraScript applies GCRA atomically in Redis with the server's clock, so
// every gateway node shares one limit and one time. KEYS[1]: the key;
// ARGV: interval (µs), burst. Returns {allowed, remaining, retry_after_µs,
// reset_µs}.
var gcraScript = redis.NewScript(`
local t = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + t
local allow_at = new_tat - burst * t
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / t), 0, new_tat - now}
`)

// FailureMode is what a Redis limiter does when Redis cannot answer.
type FailureMode int

// Failure modes.
const (
	FallbackLocal FailureMode = iota // per-node limits (the default)
	FailOpen                         // allow
	FailClosed                       // deny
)

// ErrStoreUnavailable is returned (with a Result) by a FailClosed limiter
// when Redis cannot answer.
var ErrStoreUnavailable = errors.New("rate limit store unavailable")

// Redis is a limiter shared by every node using the same Redis.
type Redis struct {
	client   redis.UniversalClient
	prefix   string
	local    *Local
	logger   *slog.Logger
	failures atomic.Int64
	OnFail   func() // called on each store failure (metrics)
}

// NewRedis returns a limiter over client; keys are prefixed with prefix.
func NewRedis(client redis.UniversalClient, prefix string, local *Local, logger *slog.Logger) *Redis {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Redis{client: client, prefix: prefix, local: local, logger: logger}
}

// Failures returns how many decisions Redis could not answer.
func (r *Redis) Failures() int64 { return r.failures.Load() }

// AllowMode applies one request under key; when Redis fails, mode decides.
func (r *Redis) AllowMode(ctx context.Context, key string, rate Rate, mode FailureMode) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer cancel()
	t := max(rate.interval().Microseconds(), 1)
	v, err := gcraScript.Run(ctx, r.client, []string{r.prefix + key}, t, rate.burst()).Int64Slice()
	if err == nil && len(v) == 4 {
		return Result{Allowed: v[0] == 1, Limit: rate.burst(), Remaining: int(v[1]), RetryAfter: time.Duration(v[2]) * time.Microsecond, Reset: time.Duration(v[3]) * time.Microsecond}, nil
	}
	if err == nil {
		err = fmt.Errorf("unexpected reply %v", v)
	}
	if n := r.failures.Add(1); n == 1 || n%1000 == 0 {
		r.logger.Error("rate limit store unavailable", "error", err, "mode", mode, "failures", n)
	}
	if r.OnFail != nil {
		r.OnFail()
	}
	switch mode {
	case FailOpen:
		return Result{Allowed: true, Limit: rate.burst()}, nil
	case FailClosed:
		return Result{Limit: rate.burst(), RetryAfter: time.Second}, ErrStoreUnavailable
	}
	return r.local.allow(key, rate), nil
}

// Allow applies one request, falling back to per-node limits on failure.
func (r *Redis) Allow(ctx context.Context, key string, rate Rate) (Result, error) {
	return r.AllowMode(ctx, key, rate, FallbackLocal)
}
