package gateway

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
	"github.com/ztgate/ztgate/internal/limits"
)

// Reasons of limit refusals.
const (
	ReasonQuotaExceeded        = "quota_exceeded"
	ReasonRateLimited          = "rate_limited"
	ReasonRateLimitUnavailable = "rate_limit_unavailable"
)

// limit is one compiled rate limit of a scope (gateway, service or route).
type limit struct {
	scope string // key prefix: g, s:NAME, r:SERVICE/ROUTE
	rate  limits.Rate
	parts []string
	mode  limits.FailureMode
}

func compileLimit(scope string, rl *config.RateLimit) *limit {
	if rl == nil {
		return nil
	}
	l := &limit{scope: scope, rate: limits.Rate{Limit: rl.Limit, Per: rl.Per.D(), Burst: rl.Burst}, parts: strings.Split(rl.Key, "+")}
	switch rl.OnStoreFailure {
	case "allow":
		l.mode = limits.FailOpen
	case "deny":
		l.mode = limits.FailClosed
	}
	return l
}

// key builds the limit's key for a request. An absent part (no tenant, no
// such header) counts under "-", shared by every caller without it.
func (l *limit) key(id *identity.Identity, ip netip.Addr, h http.Header) string {
	var b strings.Builder
	b.WriteString(l.scope)
	for _, p := range l.parts {
		b.WriteByte(0)
		v := ""
		switch {
		case p == "identity":
			v = id.Key()
		case p == "app":
			v = id.AppID
		case p == "tenant":
			v = id.Tenant
		case p == "ip":
			v = ip.String()
		case strings.HasPrefix(p, "header:"):
			v = h.Get(p[len("header:"):])
		case strings.HasPrefix(p, "claim:"):
			if c, ok := id.Claims[p[len("claim:"):]]; ok {
				v = fmt.Sprint(c)
			}
		}
		if v == "" {
			v = "-"
		}
		b.WriteString(v)
	}
	return b.String()
}

func ceilSeconds(d time.Duration) string {
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}

// checkLimits counts the request against each limit in turn; the first
// that refuses answers 429 (or 503 when its store is down and it fails
// closed). The RateLimit-* headers describe the most constrained limit.
func (g *Gateway) checkLimits(w http.ResponseWriter, r *http.Request, store limits.Store, ls []*limit, id *identity.Identity, ip netip.Addr) *httpError {
	if len(ls) == 0 || store == nil {
		return nil
	}
	var tight limits.Result
	have := false
	for _, l := range ls {
		res, err := store.AllowMode(r.Context(), l.key(id, ip, r.Header), l.rate, l.mode)
		if errors.Is(err, limits.ErrStoreUnavailable) {
			return &httpError{Code: http.StatusServiceUnavailable, Reason: ReasonRateLimitUnavailable, Public: "rate limits cannot be checked right now", Err: err,
				Header: http.Header{"Retry-After": {"1"}}}
		}
		if !res.Allowed {
			return &httpError{Code: http.StatusTooManyRequests, Reason: ReasonRateLimited, Public: "rate limit exceeded", Header: http.Header{
				"Retry-After":         {ceilSeconds(res.RetryAfter)},
				"Ratelimit-Limit":     {strconv.Itoa(res.Limit)},
				"Ratelimit-Remaining": {"0"},
				"Ratelimit-Reset":     {ceilSeconds(res.Reset)},
			}}
		}
		if !have || res.Remaining < tight.Remaining {
			tight, have = res, true
		}
	}
	h := w.Header()
	h.Set("RateLimit-Limit", strconv.Itoa(tight.Limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(tight.Remaining))
	h.Set("RateLimit-Reset", ceilSeconds(tight.Reset))
	return nil
}

// quota is one compiled quota of a service or route.
type quota struct {
	keyer *limit // reuses the key builder; its rate is unused
	q     limits.Quota
}

func compileQuota(scope string, c *config.Quota) *quota {
	if c == nil {
		return nil
	}
	p := limits.Day
	if c.Period == "month" {
		p = limits.Month
	}
	return &quota{keyer: &limit{scope: scope, parts: strings.Split(c.Key, "+")}, q: limits.Quota{Calls: c.Calls, Bytes: c.Bytes, Period: p}}
}

// checkQuotas admits the request against each quota; the keys admitted are
// returned so response bytes can be counted afterwards.
func (g *Gateway) checkQuotas(w http.ResponseWriter, r *http.Request, store limits.QuotaStore, qs []*quota, id *identity.Identity, ip netip.Addr) ([]string, *httpError) {
	if len(qs) == 0 || store == nil {
		return nil, nil
	}
	keys := make([]string, len(qs))
	for i, q := range qs {
		keys[i] = q.keyer.key(id, ip, r.Header)
		res, err := store.Admit(r.Context(), keys[i], q.q)
		if err != nil {
			// The counts are unreachable: fail closed, a quota is a contract.
			return nil, &httpError{Code: http.StatusServiceUnavailable, Reason: ReasonRateLimitUnavailable, Public: "quotas cannot be checked right now", Err: err, Header: http.Header{"Retry-After": {"1"}}}
		}
		if !res.Allowed {
			return nil, &httpError{Code: http.StatusTooManyRequests, Reason: ReasonQuotaExceeded, Public: "quota exceeded for this period", Header: http.Header{"Retry-After": {ceilSeconds(res.Reset)}}}
		}
		if res.Remaining >= 0 {
			w.Header().Set("X-Quota-Remaining", strconv.FormatInt(res.Remaining, 10))
		}
	}
	return keys, nil
}
