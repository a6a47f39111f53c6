// Package msgraph resolves the groups of a Microsoft Entra ID user or
// service principal through Microsoft Graph, for tokens that carry too many
// groups to list them (group overage). It signs in with the gateway's own
// client credentials, per tenant; answers are cached per tenant and object
// for a TTL, and one lookup per caller is in flight at a time.
package msgraph

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Method is how a caller's groups are asked for.
type Method string

// The lookup methods.
const (
	// GetMemberObjects is one POST .../getMemberObjects: groups, directory
	// roles and administrative units, transitively, up to 11,000 (beyond,
	// TransitiveMemberOf takes over).
	GetMemberObjects Method = "get_member_objects"
	// TransitiveMemberOf is GET .../transitiveMemberOf/microsoft.graph.group,
	// paged through @odata.nextLink: groups only.
	TransitiveMemberOf Method = "transitive_member_of"
)

// Defaults of Config's zero values.
const (
	DefaultGraphURL      = "https://graph.microsoft.com"
	DefaultAuthorityHost = "https://login.microsoftonline.com"
	DefaultTTL           = 10 * time.Minute
	DefaultTimeout       = 5 * time.Second
	DefaultCacheSize     = 10000
)

// Config configures a Resolver.
type Config struct {
	Provider      string // the identity provider's name, for logs and metrics
	AuthorityHost string // where tokens come from: {AuthorityHost}/{tenant}/oauth2/v2.0/token
	ClientID      string // the gateway's application id
	ClientSecret  string // never logged
	GraphURL      string // Microsoft Graph of the cloud, no path
	Method        Method
	// SecurityEnabledOnly keeps security groups only (getMemberObjects'
	// securityEnabledOnly; for transitiveMemberOf, groups whose
	// securityEnabled is true).
	SecurityEnabledOnly bool
	// AssignedToApp, when set, is an application id: only the groups
	// assigned to its service principal in the caller's tenant are kept.
	AssignedToApp string
	TTL           time.Duration // how long an answer is reused
	// FailureTTL is how long a failed lookup is remembered, so that a
	// failing Graph is not asked again on every request; 0: not remembered.
	FailureTTL time.Duration
	CacheSize  int           // callers remembered
	Timeout    time.Duration // one lookup: token, pages and retries
	Client     *http.Client  // nil: one that follows no redirects
	Logger     *slog.Logger
	Metrics    *Metrics // nil: not counted
	Now        func() time.Time
}

// Resolver looks up and caches callers' groups.
type Resolver struct {
	cfg    Config
	graph  string // GraphURL without a trailing slash
	client *http.Client
	tokens *tokenSource
	cache  *cache
	flight singleflight.Group

	mu   sync.Mutex
	held map[string]time.Time // tenant -> no lookups before (Retry-After)
}

// New returns a resolver for cfg.
func New(cfg Config) *Resolver {
	cfg.GraphURL = cmp.Or(cfg.GraphURL, DefaultGraphURL)
	cfg.AuthorityHost = cmp.Or(cfg.AuthorityHost, DefaultAuthorityHost)
	cfg.Method = cmp.Or(cfg.Method, GetMemberObjects)
	cfg.TTL = cmp.Or(cfg.TTL, DefaultTTL)
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	cfg.CacheSize = cmp.Or(cfg.CacheSize, DefaultCacheSize)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	client := cfg.Client
	if client == nil {
		// No redirects: the client secret and the Graph token go to the
		// configured hosts only.
		client = &http.Client{
			Timeout:       cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	graph := strings.TrimRight(cfg.GraphURL, "/")
	return &Resolver{
		cfg:    cfg,
		graph:  graph,
		client: client,
		tokens: &tokenSource{
			authority: strings.TrimRight(cfg.AuthorityHost, "/"),
			clientID:  cfg.ClientID,
			secret:    cfg.ClientSecret,
			scope:     graph + "/.default",
			client:    client,
			now:       cfg.Now,
			tokens:    map[string]graphToken{},
		},
		cache: &cache{max: cfg.CacheSize, m: map[string]entry{}},
		held:  map[string]time.Time{},
	}
}

func (r *Resolver) now() time.Time { return r.cfg.Now() }

// Groups returns the ids of the groups that object oid of tenant tid (a
// service principal when app is set, else a user) is a member of,
// transitively. The slice is shared: callers must not change it. On error
// the caller's groups are unknown.
func (r *Resolver) Groups(ctx context.Context, tid, oid string, app bool) ([]string, error) {
	if !isGUID(tid) || !isGUID(oid) {
		r.cfg.Metrics.unresolved(r.cfg.Provider)
		return nil, fmt.Errorf("tenant %q and object %q must be ids", tid, oid)
	}
	kind := "users"
	if app {
		kind = "servicePrincipals"
	}
	key := strings.ToLower(tid + "/" + kind + "/" + oid)
	if e, ok := r.cache.get(key, r.now()); ok {
		if e.err != nil {
			r.cfg.Metrics.unresolved(r.cfg.Provider)
			return nil, e.err
		}
		r.cfg.Metrics.hit(r.cfg.Provider)
		return e.groups, nil
	}
	ch := r.flight.DoChan(key, func() (any, error) {
		if e, ok := r.cache.get(key, r.now()); ok {
			return e.groups, e.err
		}
		// Detached from the request that started it: others may be
		// waiting on the same lookup.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
		defer cancel()
		groups, err := r.lookup(lctx, tid, kind, oid)
		if err != nil && errors.Is(lctx.Err(), context.DeadlineExceeded) && !errors.Is(err, ErrThrottled) {
			err = fmt.Errorf("%w after %s: %w", ErrTimeout, r.cfg.Timeout, err)
		}
		r.cfg.Metrics.lookup(r.cfg.Provider, result(err))
		now := r.now()
		if err != nil {
			r.cfg.Logger.Warn("group overage: the caller's groups could not be resolved through Microsoft Graph; rules on groups deny the caller (groups_unknown)",
				"provider", r.cfg.Provider, "tenant", tid, "object_id", oid, "object_type", kind, "error", err)
			if r.cfg.FailureTTL > 0 {
				r.cache.put(key, entry{err: err, exp: now.Add(r.cfg.FailureTTL)}, now)
			}
			return nil, err
		}
		r.cache.put(key, entry{groups: groups, exp: now.Add(r.cfg.TTL)}, now)
		return groups, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			r.cfg.Metrics.unresolved(r.cfg.Provider)
			return nil, res.Err
		}
		return res.Val.([]string), nil
	case <-ctx.Done():
		r.cfg.Metrics.unresolved(r.cfg.Provider)
		return nil, ctx.Err()
	}
}

// lookup asks Graph for an object's groups.
func (r *Resolver) lookup(ctx context.Context, tid, kind, oid string) ([]string, error) {
	object := r.graph + "/v1.0/" + kind + "/" + oid
	var groups []string
	var err error
	if r.cfg.Method == TransitiveMemberOf {
		groups, err = r.transitiveMemberOf(ctx, tid, object)
	} else {
		groups, err = r.memberObjects(ctx, tid, object)
		if errors.Is(err, errSizeLimit) {
			groups, err = r.transitiveMemberOf(ctx, tid, object)
		}
	}
	if err != nil {
		return nil, err
	}
	if r.cfg.AssignedToApp != "" {
		assigned, err := r.assigned(ctx, tid)
		if err != nil {
			return nil, fmt.Errorf("groups assigned to application %s: %w", r.cfg.AssignedToApp, err)
		}
		groups = slices.DeleteFunc(groups, func(g string) bool { return !assigned[strings.ToLower(g)] })
	}
	slices.Sort(groups)
	return slices.Compact(groups), nil
}

// assigned returns the groups assigned to the application in tenant tid,
// cached like a caller's groups.
func (r *Resolver) assigned(ctx context.Context, tid string) (map[string]bool, error) {
	key := strings.ToLower(tid + "/assigned")
	if e, ok := r.cache.get(key, r.now()); ok && e.err == nil {
		return e.set, nil
	}
	v, err, _ := r.flight.Do(key, func() (any, error) {
		groups, err := r.assignedGroups(ctx, tid)
		if err != nil {
			return nil, err
		}
		set := make(map[string]bool, len(groups))
		for _, g := range groups {
			set[strings.ToLower(g)] = true
		}
		now := r.now()
		r.cache.put(key, entry{set: set, exp: now.Add(r.cfg.TTL)}, now)
		return set, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(map[string]bool), nil
}

// throttled reports whether tenant tid's lookups are held back, and until
// when.
func (r *Resolver) throttled(tid string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.held[tid]
	if ok && !r.now().Before(until) {
		delete(r.held, tid)
		return time.Time{}, false
	}
	return until, ok
}

// holdBack stops tenant tid's lookups for d (Graph's Retry-After).
func (r *Resolver) holdBack(tid string, d time.Duration) {
	if d <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for k, until := range r.held {
		if !now.Before(until) {
			delete(r.held, k)
		}
	}
	if len(r.held) < maxTenants {
		r.held[tid] = now.Add(d)
	}
}

// result is a lookup's outcome as a metric label.
func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrThrottled):
		return "throttled"
	case errors.Is(err, ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, ErrForbidden):
		return "forbidden"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, errToken):
		return "token_error"
	}
	return "error"
}

// isGUID reports whether s is a GUID in its 8-4-4-4-12 form: what may stand
// in a Graph URL's path.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// cache holds answers until they expire, at most max of them.
type cache struct {
	mu  sync.Mutex
	max int
	m   map[string]entry
}

type entry struct {
	groups []string
	set    map[string]bool // the application's assigned groups
	err    error           // a remembered failure
	exp    time.Time
}

func (c *cache) get(key string, now time.Time) (entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return entry{}, false
	}
	if !now.Before(e.exp) {
		delete(c.m, key)
		return entry{}, false
	}
	return e, true
}

func (c *cache) put(key string, e entry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		// Expired entries first; else an arbitrary tenth (map order).
		for k, old := range c.m {
			if !now.Before(old.exp) {
				delete(c.m, k)
			}
		}
		n := len(c.m) - c.max*9/10
		for k := range c.m {
			if n <= 0 {
				break
			}
			delete(c.m, k)
			n--
		}
	}
	c.m[key] = e
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
