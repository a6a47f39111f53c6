package msgraph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ztgate/ztgate/internal/msgraph/graphtest"
)

// The real Microsoft Graph cannot be reached from a test; these run against
// graphtest, a local server that follows Graph's documented contract.

const (
	tenantA  = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	tenantB  = "0b5c8d7e-1f2a-4c3b-9d8e-7f6a5b4c3d2e"
	userA    = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
	userB    = "4f2504e0-4f89-41d3-9a0c-0305e82c3302"
	spA      = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	gwClient = "11111111-2222-4333-8444-555555555555"
	apiApp   = "6f1d4c9e-5a3b-4c2d-8e1f-0a9b8c7d6e5f"
	secret   = "s3cr3t-value~not-to-be-logged"
)

func group(n int, security bool) graphtest.Group {
	return graphtest.Group{ID: fmt.Sprintf("a0b1c2d3-0000-4000-8000-%012d", n), SecurityEnabled: security}
}

func ids(gs ...graphtest.Group) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.ID
	}
	return out
}

// clock is a settable time.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

type fixture struct {
	g   *graphtest.Server
	r   *Resolver
	clk *clock
	m   *Metrics
}

func setup(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	f := &fixture{g: graphtest.New(t, gwClient, secret), clk: newClock(), m: NewMetrics(prometheus.NewRegistry())}
	cfg := Config{
		Provider: "corp", AuthorityHost: f.g.URL, GraphURL: f.g.URL, ClientID: gwClient, ClientSecret: secret,
		TTL: 10 * time.Minute, FailureTTL: 10 * time.Second, Timeout: 5 * time.Second, Now: f.clk.now, Metrics: f.m,
	}
	if mod != nil {
		mod(&cfg)
	}
	f.r = New(cfg)
	return f
}

func (f *fixture) lookups(result string) float64 {
	return testutil.ToFloat64(f.m.lookups.WithLabelValues("corp", result))
}

// TestGraphContract: each lookup method against Graph's documented shapes.
func TestGraphContract(t *testing.T) {
	sec1, sec2, m365 := group(1, true), group(2, true), group(3, false)
	many := make([]graphtest.Group, 250)
	for i := range many {
		many[i] = group(100+i, true)
	}
	tests := []struct {
		name    string
		cfg     func(*Config)
		setup   func(*graphtest.Server)
		app     bool
		want    []string
		calls   []string // method path?query-prefix of each Graph call
		results string
	}{
		{
			name:  "getMemberObjects, security groups only",
			cfg:   func(c *Config) { c.SecurityEnabledOnly = true },
			setup: func(g *graphtest.Server) { g.SetUser(tenantA, userA, sec2, m365, sec1) },
			want:  ids(sec1, sec2),
			calls: []string{"POST /v1.0/users/" + userA + "/getMemberObjects"},
		},
		{
			name:  "getMemberObjects, every group kind",
			setup: func(g *graphtest.Server) { g.SetUser(tenantA, userA, sec1, m365) },
			want:  ids(sec1, m365),
			calls: []string{"POST /v1.0/users/" + userA + "/getMemberObjects"},
		},
		{
			name:  "service principal",
			setup: func(g *graphtest.Server) { g.SetServicePrincipal(tenantA, spA, sec1) },
			app:   true,
			want:  ids(sec1),
			calls: []string{"POST /v1.0/servicePrincipals/" + spA + "/getMemberObjects"},
		},
		{
			name:  "transitiveMemberOf, paged through @odata.nextLink",
			cfg:   func(c *Config) { c.Method = TransitiveMemberOf },
			setup: func(g *graphtest.Server) { g.MaxPage = 100; g.SetUser(tenantA, userA, many...) },
			want:  ids(many...),
			calls: []string{
				"GET /v1.0/users/" + userA + "/transitiveMemberOf/microsoft.graph.group?$select=id,securityEnabled&$top=999",
				"GET /v1.0/users/" + userA + "/transitiveMemberOf/microsoft.graph.group?%24select=id%2CsecurityEnabled&%24skiptoken=X%27100&%24top=999",
				"GET /v1.0/users/" + userA + "/transitiveMemberOf/microsoft.graph.group?%24select=id%2CsecurityEnabled&%24skiptoken=X%27200&%24top=999",
			},
		},
		{
			name:  "transitiveMemberOf, security groups only by securityEnabled",
			cfg:   func(c *Config) { c.Method = TransitiveMemberOf; c.SecurityEnabledOnly = true },
			setup: func(g *graphtest.Server) { g.SetUser(tenantA, userA, m365, sec1) },
			want:  ids(sec1),
			calls: []string{"GET /v1.0/users/" + userA + "/transitiveMemberOf/microsoft.graph.group?$select=id,securityEnabled&$top=999"},
		},
		{
			name:  "getMemberObjects over its size limit falls back to transitiveMemberOf",
			setup: func(g *graphtest.Server) { g.SizeLimit = 1; g.SetUser(tenantA, userA, sec1, sec2) },
			want:  ids(sec1, sec2),
			calls: []string{
				"POST /v1.0/users/" + userA + "/getMemberObjects",
				"GET /v1.0/users/" + userA + "/transitiveMemberOf/microsoft.graph.group?$select=id,securityEnabled&$top=999",
			},
		},
		{
			name: "only groups assigned to the application",
			cfg:  func(c *Config) { c.AssignedToApp = apiApp },
			setup: func(g *graphtest.Server) {
				g.SetUser(tenantA, userA, sec1, sec2, m365)
				g.Assign(tenantA, apiApp, sec2.ID, group(9, true).ID)
			},
			want: ids(sec2),
			calls: []string{
				"POST /v1.0/users/" + userA + "/getMemberObjects",
				"GET /v1.0/servicePrincipals(appId='" + apiApp + "')/appRoleAssignedTo?$select=principalId,principalType&$top=999",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, tt.cfg)
			tt.setup(f.g)
			oid := userA
			if tt.app {
				oid = spA
			}
			got, err := f.r.Groups(context.Background(), tenantA, oid, tt.app)
			if err != nil {
				t.Fatalf("got %v, want groups", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("groups (-want +got):\n%s", d)
			}
			var calls []string
			for _, c := range f.g.Calls() {
				s := c.Method + " " + c.Path
				if c.Query != "" {
					s += "?" + c.Query
				}
				calls = append(calls, s)
				if c.Tenant != strings.ToLower(tenantA) {
					t.Errorf("call %s with a token of tenant %q, want the caller's tenant %s", s, c.Tenant, tenantA)
				}
				if c.Method == http.MethodPost {
					var body map[string]any
					if err := json.Unmarshal([]byte(c.Body), &body); err != nil || len(body) != 1 {
						t.Errorf("getMemberObjects body %q, want {\"securityEnabledOnly\": bool}", c.Body)
					}
				}
			}
			if d := cmp.Diff(tt.calls, calls); d != "" {
				t.Errorf("Graph calls (-want +got):\n%s", d)
			}
			if f.g.TokenCalls() != 1 {
				t.Errorf("token requests: got %d, want 1", f.g.TokenCalls())
			}
			if n := f.lookups("ok"); n != 1 {
				t.Errorf("lookups{result=ok}: got %v, want 1", n)
			}
		})
	}
}

// TestGraphFailures: every failure leaves the groups unknown, with an error
// a caller can tell apart, and counts under its result.
func TestGraphFailures(t *testing.T) {
	tests := []struct {
		name   string
		cfg    func(*Config)
		setup  func(*graphtest.Server)
		oid    string
		want   error // errors.Is; nil: any error
		result string
		graph  int // Graph calls expected
	}{
		{name: "unknown user", oid: userB, want: ErrNotFound, result: "not_found", graph: 1},
		{name: "wrong client secret", cfg: func(c *Config) { c.ClientSecret = "wrong" }, want: errToken, result: "token_error", graph: 0},
		{name: "unknown client", cfg: func(c *Config) { c.ClientID = "22222222-2222-4333-8444-555555555555" }, want: errToken, result: "token_error", graph: 0},
		{name: "Graph down", setup: func(g *graphtest.Server) { g.Close() }, result: "token_error", graph: 0},
		{name: "insufficient privileges", setup: func(g *graphtest.Server) {
			g.Next(graphtest.Response{Status: 403, Body: `{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}`})
		}, want: ErrForbidden, result: "forbidden", graph: 1},
		{name: "server error", setup: func(g *graphtest.Server) {
			g.Next(graphtest.Response{Status: 500, Body: `{"error":{"code":"UnknownError","message":""}}`})
		}, result: "error", graph: 1},
		{name: "a token Graph keeps refusing", setup: func(g *graphtest.Server) {
			deny := graphtest.Response{Status: 401, Body: `{"error":{"code":"InvalidAuthenticationToken","message":"Access token validation failure."}}`}
			g.Next(deny, deny)
		}, want: ErrUnauthorized, result: "unauthorized", graph: 2},
		{name: "throttled longer than the timeout allows", setup: func(g *graphtest.Server) {
			g.Next(graphtest.Response{Status: 429, Header: http.Header{"Retry-After": {"30"}}})
		}, want: ErrThrottled, result: "throttled", graph: 1},
		{name: "slower than the timeout", cfg: func(c *Config) { c.Timeout = 200 * time.Millisecond }, setup: func(g *graphtest.Server) { g.Delay = time.Second }, want: ErrTimeout, result: "timeout", graph: 1},
		{name: "not a JSON answer", setup: func(g *graphtest.Server) { g.Next(graphtest.Response{Status: 200, Body: "<html>"}) }, result: "error", graph: 1},
		{name: "answer without value", setup: func(g *graphtest.Server) { g.Next(graphtest.Response{Status: 200, Body: `{}`}) }, result: "error", graph: 1},
		{name: "next link to another host", cfg: func(c *Config) { c.Method = TransitiveMemberOf }, setup: func(g *graphtest.Server) {
			g.Next(graphtest.Response{Status: 200, Body: `{"value":[{"id":"a0b1c2d3-0000-4000-8000-000000000001"}],"@odata.nextLink":"https://graph.example.net/v1.0/users/x/transitiveMemberOf?$skiptoken=1"}`})
		}, result: "error", graph: 1},
		{name: "object id not a GUID", oid: "../me", result: "", graph: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, tt.cfg)
			f.g.SetUser(tenantA, userA, group(1, true))
			if tt.setup != nil {
				tt.setup(f.g)
			}
			oid := userA
			if tt.oid != "" {
				oid = tt.oid
			}
			start := time.Now()
			got, err := f.r.Groups(context.Background(), tenantA, oid, false)
			if err == nil {
				t.Fatalf("got groups %v, want an error", got)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got error %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q contains the client secret", err)
			}
			if el := time.Since(start); el > 6*time.Second {
				t.Errorf("took %s, want the lookup bounded by its timeout", el)
			}
			if tt.result != "" {
				if n := f.lookups(tt.result); n != 1 {
					t.Errorf("lookups{result=%s}: got %v, want 1", tt.result, n)
				}
			}
			if n := f.g.GraphCalls(); n != tt.graph {
				t.Errorf("Graph calls: got %d, want %d", n, tt.graph)
			}
			if n := testutil.ToFloat64(f.m.unknown.WithLabelValues("corp")); n != 1 {
				t.Errorf("unresolved: got %v, want 1", n)
			}
		})
	}
}

// TestGraphRetries: a refused token is replaced once; a 429 is waited out
// for its Retry-After.
func TestGraphRetries(t *testing.T) {
	t.Run("401: a new token, then success", func(t *testing.T) {
		f := setup(t, nil)
		f.g.SetUser(tenantA, userA, group(1, true))
		f.g.SetUser(tenantA, userB, group(2, true))
		if _, err := f.r.Groups(context.Background(), tenantA, userA, false); err != nil {
			t.Fatal(err)
		}
		f.g.RevokeTokens()
		got, err := f.r.Groups(context.Background(), tenantA, userB, false)
		if err != nil {
			t.Fatalf("got %v, want the lookup to renew its token", err)
		}
		if d := cmp.Diff(ids(group(2, true)), got); d != "" {
			t.Error(d)
		}
		if n := f.g.TokenCalls(); n != 2 {
			t.Errorf("token requests: got %d, want 2", n)
		}
	})
	t.Run("429 with Retry-After: 1", func(t *testing.T) {
		f := setup(t, nil)
		f.g.SetUser(tenantA, userA, group(1, true))
		f.g.Next(graphtest.Response{Status: 429, Header: http.Header{"Retry-After": {"1"}}})
		start := time.Now()
		if _, err := f.r.Groups(context.Background(), tenantA, userA, false); err != nil {
			t.Fatalf("got %v, want success after the wait", err)
		}
		if el := time.Since(start); el < time.Second {
			t.Errorf("retried after %s, want at least the Retry-After of 1s", el)
		}
		if n := f.g.GraphCalls(); n != 2 {
			t.Errorf("Graph calls: got %d, want 2", n)
		}
	})
	t.Run("429 beyond the timeout holds the tenant back", func(t *testing.T) {
		f := setup(t, nil)
		f.g.SetUser(tenantA, userA, group(1, true))
		f.g.SetUser(tenantA, userB, group(1, true))
		f.g.SetUser(tenantB, userB, group(1, true))
		f.g.Next(graphtest.Response{Status: 429, Header: http.Header{"Retry-After": {"60"}}})
		if _, err := f.r.Groups(context.Background(), tenantA, userA, false); !errors.Is(err, ErrThrottled) {
			t.Fatalf("got %v, want throttled", err)
		}
		if _, err := f.r.Groups(context.Background(), tenantA, userB, false); !errors.Is(err, ErrThrottled) {
			t.Fatalf("another caller of the tenant: got %v, want throttled without asking", err)
		}
		if n := f.g.GraphCalls(); n != 1 {
			t.Errorf("Graph calls: got %d, want 1 (the tenant held back for Retry-After)", n)
		}
		if _, err := f.r.Groups(context.Background(), tenantB, userB, false); err != nil {
			t.Errorf("another tenant: got %v, want it unaffected", err)
		}
		f.clk.advance(61 * time.Second)
		if _, err := f.r.Groups(context.Background(), tenantA, userB, false); err != nil {
			t.Errorf("after Retry-After: got %v, want a lookup", err)
		}
	})
}

// TestGraphCache: answers are reused for their TTL, failures for
// FailureTTL, one token per tenant until it nears expiry.
func TestGraphCache(t *testing.T) {
	f := setup(t, nil)
	f.g.TokenLifetime = time.Hour
	f.g.SetUser(tenantA, userA, group(1, true))
	ctx := context.Background()
	lookup := func(want []string) {
		t.Helper()
		got, err := f.r.Groups(ctx, tenantA, userA, false)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatal(d)
		}
	}
	lookup(ids(group(1, true)))
	f.g.SetUser(tenantA, userA, group(2, true))
	f.clk.advance(9 * time.Minute)
	lookup(ids(group(1, true))) // cached
	if n := f.g.GraphCalls(); n != 1 {
		t.Fatalf("within the TTL: got %d Graph calls, want 1", n)
	}
	if n := testutil.ToFloat64(f.m.hits.WithLabelValues("corp")); n != 1 {
		t.Errorf("cache hits: got %v, want 1", n)
	}
	f.clk.advance(time.Minute)
	lookup(ids(group(2, true))) // TTL expired: asked again
	if n := f.g.GraphCalls(); n != 2 {
		t.Fatalf("after the TTL: got %d Graph calls, want 2", n)
	}
	if n := f.g.TokenCalls(); n != 1 {
		t.Errorf("token requests: got %d, want 1 (token still fresh)", n)
	}
	f.clk.advance(50 * time.Minute) // 60 min in: the token is within 5 min of expiry
	lookup(ids(group(2, true)))
	if n := f.g.TokenCalls(); n != 2 {
		t.Errorf("token requests near expiry: got %d, want 2", n)
	}

	// A failure is remembered for FailureTTL, then asked again.
	f.g.Next(graphtest.Response{Status: 500, Body: `{"error":{"code":"UnknownError"}}`})
	f.clk.advance(10 * time.Minute)
	if _, err := f.r.Groups(ctx, tenantA, userA, false); err == nil {
		t.Fatal("got groups, want the failure")
	}
	calls := f.g.GraphCalls()
	if _, err := f.r.Groups(ctx, tenantA, userA, false); err == nil || f.g.GraphCalls() != calls {
		t.Fatalf("within failure_ttl: got %v with %d new calls, want the remembered failure", err, f.g.GraphCalls()-calls)
	}
	f.clk.advance(10 * time.Second)
	lookup(ids(group(2, true)))
}

// TestGraphOneLookupInFlight: concurrent requests of one caller share one
// lookup; a request that gives up does not cancel it for the others.
func TestGraphOneLookupInFlight(t *testing.T) {
	f := setup(t, nil)
	f.g.Delay = 200 * time.Millisecond
	f.g.SetUser(tenantA, userA, group(1, true))
	impatient, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.r.Groups(impatient, tenantA, userA, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("impatient caller: got %v, want its own deadline", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			got, err := f.r.Groups(context.Background(), tenantA, userA, false)
			if err == nil && len(got) != 1 {
				err = fmt.Errorf("got %v", got)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := f.g.GraphCalls(); n != 1 {
		t.Errorf("Graph calls: got %d, want 1 shared lookup", n)
	}
}

// TestGraphCacheBounded: the cache holds at most CacheSize callers.
func TestGraphCacheBounded(t *testing.T) {
	f := setup(t, func(c *Config) { c.CacheSize = 10 })
	for i := range 25 {
		oid := fmt.Sprintf("3f2504e0-4f89-41d3-9a0c-%012d", i)
		f.g.SetUser(tenantA, oid)
		if _, err := f.r.Groups(context.Background(), tenantA, oid, false); err != nil {
			t.Fatal(err)
		}
		if n := f.r.cache.len(); n > 10 {
			t.Fatalf("cache holds %d entries, want at most 10", n)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              defaultRetryAfter,
		"7":                             7 * time.Second,
		" 2 ":                           2 * time.Second,
		"-3":                            defaultRetryAfter,
		"soon":                          defaultRetryAfter,
		"Mon, 04 May 2026 09:00:30 GMT": 30 * time.Second,
		"Mon, 04 May 2026 08:00:00 GMT": 0,
		"99999999999":                   24 * time.Hour,
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q): got %s, want %s", in, got, want)
		}
	}
}
