package authn

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ztgate/ztgate/internal/apikey"
	"github.com/ztgate/ztgate/internal/identity"
)

// fakeKeyStore is an in-memory APIKeyStore that versions changes as the
// real store does.
type fakeKeyStore struct {
	mu      sync.Mutex
	keys    map[string]apikey.Key
	rev     int64
	fail    error
	reads   int                    // APIKey calls
	touches []map[string]time.Time // TouchAPIKeys calls
	onRead  func()                 // runs inside APIKey, before it returns
}

func newFakeKeyStore() *fakeKeyStore { return &fakeKeyStore{keys: map[string]apikey.Key{}} }

func (s *fakeKeyStore) add(t testing.TB, service string, ttl time.Duration, roles ...string) (string, apikey.Key) {
	t.Helper()
	raw, k := apikey.New(apikey.Request{Name: "partner", Service: service, Roles: roles, TTL: ttl}, time.Now(), "test")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	k.Rev = s.rev
	s.keys[k.ID] = k
	return raw, k
}

func (s *fakeKeyStore) revoke(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[id]
	s.rev++
	k.RevokedAt, k.Rev = time.Now(), s.rev
	s.keys[id] = k
}

func (s *fakeKeyStore) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

func (s *fakeKeyStore) APIKey(ctx context.Context, id string) (*apikey.Key, error) {
	s.mu.Lock()
	s.reads++
	err := s.fail
	k, ok := s.keys[id]
	onRead := s.onRead
	s.mu.Unlock()
	if onRead != nil {
		onRead()
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, nil
	}
	return &k, nil
}

func (s *fakeKeyStore) APIKeyChanges(ctx context.Context, after int64, limit int) ([]apikey.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []apikey.Key
	for _, k := range s.keys {
		if k.Rev > after {
			out = append(out, k)
		}
	}
	// Version order, as the store returns them.
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].Rev < out[i].Rev {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (s *fakeKeyStore) TouchAPIKeys(ctx context.Context, used map[string]time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.touches = append(s.touches, maps.Clone(used))
	return nil
}

func (s *fakeKeyStore) stats() (reads int, touches []map[string]time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads, append([]map[string]time.Time(nil), s.touches...)
}

var discard = slog.New(slog.DiscardHandler)

// syncedKeys returns a verifier over st that has polled once.
func syncedKeys(t testing.TB, st APIKeyStore, o APIKeyOptions) *APIKeys {
	t.Helper()
	v := NewAPIKeys(st, discard, o)
	v.Sync(context.Background())
	if ok, err := v.Ready(); !ok {
		t.Fatalf("not ready after a poll: %v", err)
	}
	return v
}

func TestAPIKeyVerify(t *testing.T) {
	st := newFakeKeyStore()
	good, gk := st.add(t, "orders", time.Hour, "Orders.Read")
	revoked, rk := st.add(t, "orders", time.Hour)
	st.revoke(rk.ID)
	expired, ek := st.add(t, "orders", time.Hour)
	other, _ := st.add(t, "billing", time.Hour)
	unknown, _ := apikey.Generate()
	wrongSecret := good[:len(good)-4] + map[bool]string{true: "0000", false: "1111"}[!strings.HasSuffix(good, "0000")]

	now := time.Now()
	clock := func() time.Time { return now }
	v := syncedKeys(t, st, APIKeyOptions{Now: clock})
	tests := []struct {
		name     string
		key      string
		service  string
		at       time.Time // the clock; zero: now
		status   int
		reason   string
		identity bool // the failure names the caller
	}{
		{"valid", good, "orders", time.Time{}, 0, "", false},
		{"valid, any service when none is asked", good, "", time.Time{}, 0, "", false},
		{"malformed", "ztk_short", "orders", time.Time{}, 401, ReasonAPIKeyInvalid, false},
		{"a bearer token", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "orders", time.Time{}, 401, ReasonAPIKeyInvalid, false},
		{"unknown id", unknown, "orders", time.Time{}, 401, ReasonAPIKeyInvalid, false},
		{"known id, wrong secret: nothing about the key is told", wrongSecret, "orders", time.Time{}, 401, ReasonAPIKeyInvalid, false},
		{"revoked", revoked, "orders", time.Time{}, 401, ReasonAPIKeyRevoked, true},
		{"revoked, on another service: revoked first", revoked, "billing", time.Time{}, 401, ReasonAPIKeyRevoked, true},
		{"at expiry", expired, "orders", ek.ExpiresAt, 401, ReasonAPIKeyExpired, true},
		{"one nanosecond before expiry", expired, "orders", ek.ExpiresAt.Add(-time.Nanosecond), 0, "", false},
		{"another service", other, "orders", time.Time{}, 403, ReasonAPIKeyWrongService, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = tt.at
			if now.IsZero() {
				now = time.Now()
			}
			v.Sync(context.Background()) // current at the row's clock
			id, f := v.Verify(context.Background(), tt.key, tt.service)
			if tt.reason == "" {
				if f != nil {
					t.Fatalf("got %v, want the key accepted", f)
				}
				return
			}
			if f == nil || f.Reason != tt.reason || f.Status != tt.status || id != nil {
				t.Fatalf("got %v (identity %v), want %d %s", f, id, tt.status, tt.reason)
			}
			if f.Scheme != SchemeAPIKey {
				t.Errorf("scheme %q, want %q", f.Scheme, SchemeAPIKey)
			}
			if (f.Identity != nil) != tt.identity {
				t.Errorf("failure identity %v, want present=%v", f.Identity, tt.identity)
			}
		})
	}

	now = time.Now()
	id, f := v.Verify(context.Background(), good, "orders")
	if f != nil {
		t.Fatal(f)
	}
	if id.Type != identity.APIKey || id.Subject != gk.ID || id.Name != "partner" || id.Service != "orders" ||
		len(id.Roles) != 1 || id.Roles[0] != "Orders.Read" || id.Key() != "api_key/"+gk.ID {
		t.Fatalf("identity %+v (key %s), want an api_key identity for %s with role Orders.Read", id, id.Key(), gk.ID)
	}
}

func TestAPIKeyUnavailableFailsClosed(t *testing.T) {
	st := newFakeKeyStore()
	good, _ := st.add(t, "orders", time.Hour)
	// Never polled: nothing is known to be current.
	v := NewAPIKeys(st, discard, APIKeyOptions{})
	if _, f := v.Verify(context.Background(), good, "orders"); f == nil || f.Status != 503 || f.Reason != ReasonAPIKeysUnavailable {
		t.Fatalf("before the first poll: got %v, want 503 %s", f, ReasonAPIKeysUnavailable)
	}
	if ok, _ := v.Ready(); ok {
		t.Fatal("ready before the first poll")
	}
	// Polled, but the key read fails on a cache miss.
	v.Sync(context.Background())
	v.known = map[string]*keyEntry{}
	st.setFail(errors.New("connection refused"))
	if _, f := v.Verify(context.Background(), good, "orders"); f == nil || f.Status != 503 || f.Reason != ReasonAPIKeysUnavailable {
		t.Fatalf("store down on a miss: got %v, want 503 %s", f, ReasonAPIKeysUnavailable)
	}
}

// TestAPIKeyRevocationPropagates: a key revoked in the store (by any node)
// is refused here within one poll interval, without a restart.
func TestAPIKeyRevocationPropagates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newFakeKeyStore()
		key, k := st.add(t, "orders", 24*time.Hour)
		v := NewAPIKeys(st, discard, APIKeyOptions{Poll: time.Second})
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		go v.Run(ctx)
		synctest.Wait()
		if _, f := v.Verify(ctx, key, "orders"); f != nil {
			t.Fatalf("before revocation: %v", f)
		}
		st.revoke(k.ID)
		revokedAt := time.Now()
		for {
			_, f := v.Verify(ctx, key, "orders")
			if f != nil && f.Reason == ReasonAPIKeyRevoked {
				break
			}
			if f != nil {
				t.Fatalf("got %v, want the key accepted until the revocation is seen, then %s", f, ReasonAPIKeyRevoked)
			}
			time.Sleep(10 * time.Millisecond)
			synctest.Wait()
		}
		if took := time.Since(revokedAt); took > time.Second {
			t.Fatalf("revocation took %v to take effect, want at most the poll interval (1s)", took)
		}
	})
}

// TestAPIKeyStaleCache: when the store cannot be polled, cached keys serve
// for max_stale, then every API key request is refused; when the store is
// back, keys serve again.
func TestAPIKeyStaleCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newFakeKeyStore()
		key, _ := st.add(t, "orders", 24*time.Hour)
		v := NewAPIKeys(st, discard, APIKeyOptions{Poll: time.Second, MaxStale: 5 * time.Second})
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		go v.Run(ctx)
		synctest.Wait()
		if _, f := v.Verify(ctx, key, "orders"); f != nil {
			t.Fatal(f)
		}
		st.setFail(errors.New("store down"))
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if _, f := v.Verify(ctx, key, "orders"); f != nil {
			t.Fatalf("4s into a store outage (max_stale 5s): got %v, want the cached key served", f)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if _, f := v.Verify(ctx, key, "orders"); f == nil || f.Status != 503 || f.Reason != ReasonAPIKeysUnavailable {
			t.Fatalf("6s into a store outage: got %v, want 503 %s", f, ReasonAPIKeysUnavailable)
		}
		if ok, err := v.Ready(); ok || err == nil || !strings.Contains(err.Error(), "store down") {
			t.Fatalf("ready %v, %v; want not ready, naming the store error", ok, err)
		}
		st.setFail(nil)
		time.Sleep(time.Second)
		synctest.Wait()
		if _, f := v.Verify(ctx, key, "orders"); f != nil {
			t.Fatalf("store back: got %v, want the key served", f)
		}
	})
}

// TestAPIKeyLastUsed: use is written in batches by the background loop,
// never on the request path, and kept for the next batch when a write
// fails.
func TestAPIKeyLastUsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newFakeKeyStore()
		key, k := st.add(t, "orders", 24*time.Hour)
		v := NewAPIKeys(st, discard, APIKeyOptions{Poll: time.Second, MaxStale: 10 * time.Second, Flush: 5 * time.Second})
		ctx, stop := context.WithCancel(context.Background())
		go v.Run(ctx)
		synctest.Wait()
		for range 100 {
			if _, f := v.Verify(ctx, key, "orders"); f != nil {
				t.Fatal(f)
			}
		}
		last := time.Now()
		if reads, touches := st.stats(); len(touches) != 0 || reads != 0 {
			t.Fatalf("after 100 requests: %d store reads, %d writes; want none (the poll warmed the cache, use is written later)", reads, len(touches))
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		_, touches := st.stats()
		if len(touches) != 1 || len(touches[0]) != 1 || !touches[0][k.ID].Equal(last) {
			t.Fatalf("after the flush interval: writes %v, want one batch with %s at %v", touches, k.ID, last)
		}
		// Nothing used, nothing written.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if _, touches := st.stats(); len(touches) != 1 {
			t.Fatalf("idle flush wrote %d batches, want still 1", len(touches))
		}
		// A failed write is retried with the latest time.
		st.setFail(errors.New("down"))
		v.Verify(ctx, key, "orders")
		time.Sleep(5 * time.Second)
		synctest.Wait()
		st.setFail(nil)
		v.Verify(ctx, key, "orders")
		used := time.Now()
		stop() // the last use is written on the way out
		synctest.Wait()
		_, touches = st.stats()
		if len(touches) != 2 || !touches[1][k.ID].Equal(used) {
			t.Fatalf("after a failed write and shutdown: writes %v, want a second batch at %v", touches, used)
		}
	})
}

// TestAPIKeyReadDoesNotUndoRevocation guards a race: a request reads a key
// from the store (not revoked yet), the key is revoked and a poll caches
// the revocation, then the request caches what it read. The older read
// must not replace the revocation.
func TestAPIKeyReadDoesNotUndoRevocation(t *testing.T) {
	st := newFakeKeyStore()
	v := syncedKeys(t, st, APIKeyOptions{})
	key, k := st.add(t, "orders", time.Hour) // created after the poll: not cached
	st.onRead = func() {
		st.onRead = nil
		st.revoke(k.ID)
		v.Sync(context.Background())
	}
	// This request read the key before the revocation: it may pass, or
	// see the revocation the poll cached meanwhile.
	if _, f := v.Verify(context.Background(), key, "orders"); f != nil && f.Reason != ReasonAPIKeyRevoked {
		t.Fatalf("in-flight request: %v", f)
	}
	if _, f := v.Verify(context.Background(), key, "orders"); f == nil || f.Reason != ReasonAPIKeyRevoked {
		t.Fatalf("next request: got %v, want %s", f, ReasonAPIKeyRevoked)
	}
}

// TestAPIKeyNegativeCache: a key created after an unknown id was looked up
// is found at the next poll, and unknown ids are not read from the store
// again on every request.
func TestAPIKeyNegativeCache(t *testing.T) {
	st := newFakeKeyStore()
	v := syncedKeys(t, st, APIKeyOptions{})
	bogus, _ := apikey.Generate()
	for range 10 {
		if _, f := v.Verify(context.Background(), bogus, "orders"); f == nil || f.Reason != ReasonAPIKeyInvalid {
			t.Fatalf("got %v, want %s", f, ReasonAPIKeyInvalid)
		}
	}
	if reads, _ := st.stats(); reads != 1 {
		t.Fatalf("10 requests with one unknown key: %d store reads, want 1", reads)
	}
	key, _ := st.add(t, "orders", time.Hour)
	v.Sync(context.Background())
	if _, f := v.Verify(context.Background(), key, "orders"); f != nil {
		t.Fatalf("a key created after the last poll: %v", f)
	}
}

// TestAPIKeyMadeUpKeys: well-formed keys with made-up ids cost the store
// at most MissReads reads a second, however many arrive; a real key made
// since the last poll is found by the next poll even when reads are spent.
func TestAPIKeyMadeUpKeys(t *testing.T) {
	st := newFakeKeyStore()
	now := time.Now()
	v := syncedKeys(t, st, APIKeyOptions{MissReads: 20, Now: func() time.Time { return now }})
	for range 1000 {
		bogus, _ := apikey.Generate()
		if _, f := v.Verify(context.Background(), bogus, "orders"); f == nil || f.Reason != ReasonAPIKeyInvalid {
			t.Fatalf("got %v, want %s", f, ReasonAPIKeyInvalid)
		}
	}
	if reads, _ := st.stats(); reads != 20 {
		t.Fatalf("1000 made-up keys in one instant: %d store reads, want 20 (MissReads)", reads)
	}
	key, _ := st.add(t, "orders", time.Hour)
	if _, f := v.Verify(context.Background(), key, "orders"); f == nil || f.Reason != ReasonAPIKeyInvalid {
		t.Fatalf("a new key while reads are spent: got %v, want %s until the next poll", f, ReasonAPIKeyInvalid)
	}
	v.Sync(context.Background())
	if _, f := v.Verify(context.Background(), key, "orders"); f != nil {
		t.Fatalf("a new key after a poll: %v", f)
	}
	// Reads come back with time.
	now = now.Add(time.Second)
	bogus, _ := apikey.Generate()
	v.Verify(context.Background(), bogus, "orders")
	if reads, _ := st.stats(); reads != 21 {
		t.Fatalf("a second later: %d store reads, want 21", reads)
	}
}

func TestAPIKeyCredentials(t *testing.T) {
	st := newFakeKeyStore()
	good, _ := st.add(t, "orders", time.Hour)
	v := syncedKeys(t, st, APIKeyOptions{})
	a := NewAuthenticator(16384)
	a.UseAPIKeys(v, "X-Partner-Key")
	tests := []struct {
		name    string
		headers [][2]string
		query   string
		reason  string // "" accepted
	}{
		{"authorization ApiKey", [][2]string{{"Authorization", "ApiKey " + good}}, "", ""},
		{"scheme is case-insensitive", [][2]string{{"Authorization", "apikey " + good}}, "", ""},
		{"configured header", [][2]string{{"X-Partner-Key", good}}, "", ""},
		{"configured header, spaces around", [][2]string{{"X-Partner-Key", "  " + good + " "}}, "", ""},
		{"default header is not the configured one", [][2]string{{"X-API-Key", good}}, "", ReasonMissingCredentials},
		{"header and Authorization", [][2]string{{"X-Partner-Key", good}, {"Authorization", "Bearer a.b.c"}}, "", ReasonAmbiguousCredentials},
		{"two key headers", [][2]string{{"X-Partner-Key", good}, {"X-Partner-Key", good}}, "", ReasonAmbiguousCredentials},
		{"two Authorization headers", [][2]string{{"Authorization", "ApiKey " + good}, {"Authorization", "ApiKey " + good}}, "", ReasonAmbiguousCredentials},
		{"key sent as a bearer token", [][2]string{{"Authorization", "Bearer " + good}}, "", ReasonMalformedToken},
		{"garbage in the header", [][2]string{{"X-Partner-Key", "hunter2"}}, "", ReasonAPIKeyInvalid},
		{"empty ApiKey", [][2]string{{"Authorization", "ApiKey"}}, "", ReasonAPIKeyInvalid},
		{"key in the query", nil, "api_key=" + good, ReasonAPIKeyInQuery},
		{"key in the query, with a valid header", [][2]string{{"Authorization", "ApiKey " + good}}, "key=" + good, ReasonAPIKeyInQuery},
		{"key in the query, percent-encoded", [][2]string{{"Authorization", "ApiKey " + good}}, "k=%7a%74%6b%5f" + good[4:], ReasonAPIKeyInQuery},
		{"key as a query name", nil, url.QueryEscape(good) + "=1", ReasonAPIKeyInQuery},
		{"malformed escape in an ordinary query", [][2]string{{"Authorization", "ApiKey " + good}}, "q=100%&r=%zz", ""},
		{"no credentials", nil, "", ReasonMissingCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/x", nil)
			r.URL.RawQuery = tt.query
			for _, h := range tt.headers {
				r.Header.Add(h[0], h[1])
			}
			id, f := a.Authenticate(r, "orders")
			got := ""
			if f != nil {
				got = f.Reason
			}
			if got != tt.reason || (f == nil) == (id == nil) {
				t.Fatalf("got %q (identity %v), want %q", got, id, tt.reason)
			}
		})
	}
	// Without UseAPIKeys, an ApiKey header is just not a bearer token.
	r := httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("Authorization", "ApiKey "+good)
	if _, f := NewAuthenticator(16384).Authenticate(r, "orders"); f == nil || f.Reason != ReasonMissingCredentials {
		t.Fatalf("API keys off: got %v, want %s", f, ReasonMissingCredentials)
	}
}

func TestIsAPIKeyAuthorization(t *testing.T) {
	for v, want := range map[string]bool{"ApiKey ztk_x": true, "apikey x": true, "APIKEY": true, "Bearer ztk_x": false, "": false, "ApiKeys x": false} {
		if got := IsAPIKeyAuthorization(v); got != want {
			t.Errorf("IsAPIKeyAuthorization(%q) = %v, want %v", v, got, want)
		}
	}
}

// FuzzAPIKeyCredentials: the headers and query a client sends go through
// the API key extraction and verification. Whatever they hold, the answer
// is an identity or a failure, never both, and only the one real key passes.
func FuzzAPIKeyCredentials(f *testing.F) {
	st := newFakeKeyStore()
	good, _ := st.add(f, "orders", time.Hour)
	v := syncedKeys(f, st, APIKeyOptions{})
	a := NewAuthenticator(16384)
	a.UseAPIKeys(v, DefaultAPIKeyHeader)
	f.Add("ApiKey "+good, "", "")
	f.Add("", good, "")
	f.Add("", good, "q=%7Atk_")
	f.Add("Bearer a.b.c", "", "x=ztk_")
	f.Add("ApiKey ztk_0000000000000000_"+strings.Repeat("0", 52), "", "")
	f.Fuzz(func(t *testing.T, authz, header, query string) {
		r := httptest.NewRequest("GET", "/x", nil)
		r.URL.RawQuery = query
		if authz != "" {
			r.Header["Authorization"] = []string{authz}
		}
		if header != "" {
			r.Header["X-Api-Key"] = []string{header}
		}
		id, fl := a.Authenticate(r, "orders")
		if (id == nil) == (fl == nil) {
			t.Fatalf("got identity %v and failure %v; want exactly one", id, fl)
		}
		if id != nil {
			if strings.TrimSpace(header) != good && !strings.HasSuffix(strings.TrimSpace(authz), good) {
				t.Fatalf("accepted credentials other than the key: authz %q header %q", authz, header)
			}
			if keyInQuery(query) {
				t.Fatalf("accepted a request with a key in its query %q", query)
			}
		}
	})
}

func BenchmarkAPIKeyVerify(b *testing.B) {
	st := newFakeKeyStore()
	good, _ := st.add(b, "orders", time.Hour, "Orders.Read")
	v := syncedKeys(b, st, APIKeyOptions{})
	a := NewAuthenticator(16384)
	a.UseAPIKeys(v, DefaultAPIKeyHeader)
	r := httptest.NewRequest("GET", "/orders/1", nil)
	r.Header.Set("Authorization", "ApiKey "+good)
	b.ReportAllocs()
	for b.Loop() {
		if _, f := a.Authenticate(r, "orders"); f != nil {
			b.Fatal(f)
		}
	}
}

var _ APIKeyStore = (*fakeKeyStore)(nil)
