package inject

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Token is an access token and when it expires (zero: unknown).
type Token struct {
	Value   string
	Expires time.Time
}

// Fetcher gets a new token from its source.
type Fetcher interface {
	Fetch(ctx context.Context) (Token, error)
}

// FetcherFunc adapts a function to Fetcher.
type FetcherFunc func(ctx context.Context) (Token, error)

// Fetch calls f.
func (f FetcherFunc) Fetch(ctx context.Context) (Token, error) { return f(ctx) }

// Timings of the token cache.
const (
	// fetchTimeout bounds one fetch; it does not end with the request
	// that started it, since other requests wait for it too.
	fetchTimeout = 15 * time.Second
	// refreshAhead is how long before expiry a token is refreshed, in the
	// background while it still serves (at most half its life).
	refreshAhead = 5 * time.Minute
	// minRemaining is the least life a token must have left to be sent:
	// it must outlast the trip to the upstream and the upstream's clock.
	minRemaining = 10 * time.Second
	// unknownLife is how long a token without expires_in is reused.
	unknownLife = 5 * time.Minute
	// After a failed fetch, requests that have no usable token fail at
	// once for a while (doubling up to maxBackoff) rather than each
	// starting a fetch of their own against a failing endpoint.
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// TokenCache keeps one source's token: it is fetched once, reused until
// shortly before it expires, and refreshed by at most one fetch at a time
// however many requests need it.
type TokenCache struct {
	src  Fetcher
	name string // for errors: what the token is for
	// OnFetch, if set before first use, learns of every fetch's outcome
	// (nil: a token), for metrics and alerts.
	OnFetch func(err error)

	mu       sync.Mutex
	tok      Token
	fetched  time.Time
	inflight *fetchCall
	failErr  error     // the last fetch's error, while failUntil
	failTill time.Time // no new fetch for requests without a token until then
	backoff  time.Duration
	fetches  int // fetches started, for tests and metrics
}

type fetchCall struct {
	done chan struct{}
	tok  Token
	err  error
}

// NewTokenCache returns a cache over src; name says what the token is for
// in errors (for example "client_credentials for service orders").
func NewTokenCache(name string, src Fetcher) *TokenCache {
	return &TokenCache{src: src, name: name}
}

// Fetches returns how many fetches the cache has started.
func (c *TokenCache) Fetches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches
}

// Token returns a token with life left, fetching one when needed. While a
// fetch is in flight, every caller without a usable token waits for that
// one fetch (or for ctx).
func (c *TokenCache) Token(ctx context.Context) (string, error) {
	now := time.Now()
	c.mu.Lock()
	if c.tok.Value != "" && now.Before(c.usableUntil()) {
		if !now.Before(c.refreshAt()) && c.inflight == nil && !now.Before(c.failTill) {
			c.start() // refreshed in the background; this token still serves
		}
		v := c.tok.Value
		c.mu.Unlock()
		return v, nil
	}
	if c.inflight == nil && now.Before(c.failTill) {
		err := c.failErr
		c.mu.Unlock()
		return "", err
	}
	call := c.inflight
	if call == nil {
		call = c.start()
	}
	c.mu.Unlock()
	select {
	case <-call.done:
		return call.tok.Value, call.err
	case <-ctx.Done():
		return "", &TokenError{Source: c.name, Err: ctx.Err()}
	}
}

// expires is when the cached token expires; c.mu is held.
func (c *TokenCache) expires() time.Time {
	if c.tok.Expires.IsZero() {
		return c.fetched.Add(unknownLife)
	}
	return c.tok.Expires
}

// usableUntil is the last moment the cached token may be sent.
func (c *TokenCache) usableUntil() time.Time {
	exp := c.expires()
	return exp.Add(-min(minRemaining, exp.Sub(c.fetched)/10))
}

// refreshAt is when a background refresh starts. It is measured from the
// last fetch, so a source that hands back the same token (azidentity has a
// cache of its own) is asked again after half the time left, not on every
// request.
func (c *TokenCache) refreshAt() time.Time {
	exp := c.expires()
	return exp.Add(-min(refreshAhead, exp.Sub(c.fetched)/2))
}

// start begins a fetch; c.mu is held.
func (c *TokenCache) start() *fetchCall {
	call := &fetchCall{done: make(chan struct{})}
	c.inflight = call
	c.fetches++
	go c.run(call)
	return call
}

func (c *TokenCache) run(call *fetchCall) {
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	fetched := time.Now()
	tok, err := c.src.Fetch(ctx)
	if err == nil && tok.Value == "" {
		err = errors.New("the token endpoint returned an empty token")
	}
	if err == nil && !tok.Expires.IsZero() && !tok.Expires.After(fetched.Add(minRemaining)) {
		err = fmt.Errorf("the token endpoint returned a token that expires at %s", tok.Expires.UTC().Format(time.RFC3339))
	}
	c.mu.Lock()
	if err != nil {
		err = &TokenError{Source: c.name, Err: err}
		c.backoff = min(max(2*c.backoff, minBackoff), maxBackoff)
		c.failErr, c.failTill = err, time.Now().Add(c.backoff)
		call.err = err
		// A cached token that is still usable keeps serving.
		if c.tok.Value != "" && time.Now().Before(c.usableUntil()) {
			call.tok = c.tok
			call.err = nil
		}
	} else {
		c.tok, c.fetched = tok, fetched
		c.backoff, c.failErr, c.failTill = 0, nil, time.Time{}
		call.tok = tok
	}
	c.inflight = nil
	c.mu.Unlock()
	close(call.done)
	if c.OnFetch != nil {
		c.OnFetch(err)
	}
}

// TokenError is a failure to get an upstream token. The request it was for
// is refused with 503 and reason upstream_token_unavailable; the error
// itself is logged, never sent.
type TokenError struct {
	Source string
	Err    error
}

func (e *TokenError) Error() string { return "upstream token (" + e.Source + "): " + e.Err.Error() }

func (e *TokenError) Unwrap() error { return e.Err }
