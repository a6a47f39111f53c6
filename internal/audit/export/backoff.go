package export

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Backoff is exponential backoff with jitter.
type Backoff struct {
	Initial    time.Duration // the first retry waits about this long
	Max        time.Duration // no wait is longer, except one asked for by Retry-After
	MaxElapsed time.Duration // a batch is given up once retrying it would pass this
	// Jitter returns a number in [0, 1); nil means math/rand.
	Jitter func() float64
}

// Delay is the wait before retry number attempt+1 (attempt 0 is the first
// failure): Initial doubled per attempt, capped at Max, then drawn from its
// upper half ("equal jitter": never less than half, so a fleet of gateways
// spreads out without retrying at once). A Retry-After the destination sent
// is a floor: the next attempt never comes sooner.
func (b Backoff) Delay(attempt int, retryAfter time.Duration) time.Duration {
	d := b.Initial
	for i := 0; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	j := b.Jitter
	if j == nil {
		j = rand.Float64
	}
	d = d/2 + time.Duration(j()*float64(d/2))
	return max(d, retryAfter)
}

// ParseRetryAfter reads how long a response asks the client to wait: the
// retry-after-ms and x-ms-retry-after-ms headers of Azure services, else
// Retry-After as seconds or an HTTP date. 0 when absent or unreadable.
func ParseRetryAfter(h http.Header, now time.Time) time.Duration {
	for _, k := range []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if v := strings.TrimSpace(h.Get(k)); v != "" {
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
