package inject

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/ztgate/ztgate/internal/config"
)

// Grant types and token types of RFC 8693 and RFC 7523.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	grantJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
)

// Exchanger gets, for each caller, a token narrowed to the upstream in
// exchange for the caller's own access token: RFC 8693 token exchange, or
// Microsoft Entra ID's on-behalf-of flow. Each caller token has its own
// cache (one exchange in flight, reused until shortly before expiry, never
// past the caller's token); at most size are kept.
type Exchanger struct {
	name string
	c    *config.TokenExchange
	size int
	// OnFetch, if set before first use, learns of every exchange's
	// outcome (nil: a token).
	OnFetch func(err error)

	mu     sync.Mutex
	caches map[[sha256.Size]byte]*TokenCache
}

// NewExchanger returns an exchanger for c; name says what it is for in
// errors.
func NewExchanger(name string, c *config.TokenExchange) *Exchanger {
	return &Exchanger{name: name, c: c, size: max(c.CacheSize, 1), caches: map[[sha256.Size]byte]*TokenCache{}}
}

// Token returns the exchanged token for the caller's token subject, which
// expires at subjectExpires (zero: unknown).
func (e *Exchanger) Token(ctx context.Context, subject string, subjectExpires time.Time) (string, error) {
	if subject == "" {
		return "", &TokenError{Source: e.name, Err: errors.New("no caller token to exchange")}
	}
	key := sha256.Sum256([]byte(subject))
	e.mu.Lock()
	c := e.caches[key]
	if c == nil {
		if len(e.caches) >= e.size {
			e.evict()
		}
		c = NewTokenCache(e.name, FetcherFunc(func(ctx context.Context) (Token, error) {
			t, err := e.exchange(ctx, subject)
			if err == nil && !subjectExpires.IsZero() && (t.Expires.IsZero() || subjectExpires.Before(t.Expires)) {
				// Nothing the caller's token allowed outlives it.
				t.Expires = subjectExpires
			}
			return t, err
		}))
		c.OnFetch = e.OnFetch
		e.caches[key] = c
	}
	e.mu.Unlock()
	return c.Token(ctx)
}

// evict makes room for one cache: first those that can serve nothing, then
// any; e.mu is held.
func (e *Exchanger) evict() {
	now := time.Now()
	for k, c := range e.caches {
		if c.stale(now) {
			delete(e.caches, k)
		}
	}
	for k := range e.caches {
		if len(e.caches) < e.size {
			return
		}
		delete(e.caches, k)
	}
}

// Len returns how many caller tokens have a cache.
func (e *Exchanger) Len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.caches)
}

// exchange makes one exchange. x/oauth2's client credentials request
// carries it: the grant type is replaced and the subject sent as a
// parameter, so client authentication, error responses and expiry are
// handled as for any token request.
func (e *Exchanger) exchange(ctx context.Context, subject string) (Token, error) {
	params := url.Values{}
	switch e.c.Grant {
	case "on_behalf_of":
		params.Set("grant_type", grantJWTBearer)
		params.Set("assertion", subject)
		params.Set("requested_token_use", "on_behalf_of")
	default:
		params.Set("grant_type", grantTokenExchange)
		params.Set("subject_token", subject)
		params.Set("subject_token_type", tokenTypeAccess)
		params.Set("requested_token_type", tokenTypeAccess)
	}
	if e.c.Audience != "" {
		params.Set("audience", e.c.Audience)
	}
	if e.c.Resource != "" {
		params.Set("resource", e.c.Resource)
	}
	style := oauth2.AuthStyleInHeader
	if e.c.AuthMethod == "post" {
		style = oauth2.AuthStyleInParams
	}
	cc := &ClientCredentials{
		conf: clientcredentials.Config{
			ClientID: e.c.ClientID, ClientSecret: e.c.ClientSecret, TokenURL: e.c.TokenURL,
			Scopes: e.c.Scopes, EndpointParams: params, AuthStyle: style,
		},
		client: tokenClient,
	}
	t, err := cc.Fetch(ctx)
	if err != nil {
		return Token{}, fmt.Errorf("exchange: %w", err)
	}
	return t, nil
}

// stale reports whether the cache has no token it could still send and no
// fetch in flight.
func (c *TokenCache) stale(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inflight == nil && (c.tok.Value == "" || !now.Before(c.usableUntil()))
}
