package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztgate/ztgate/internal/apikey"
	"github.com/ztgate/ztgate/internal/authn"
	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/limits"
)

// keyStore is an in-memory authn.APIKeyStore.
type keyStore struct {
	mu   sync.Mutex
	keys map[string]apikey.Key
	rev  int64
}

func (s *keyStore) add(service string, roles ...string) (string, apikey.Key) {
	raw, k := apikey.New(apikey.Request{Name: "partner", Service: service, Roles: roles, TTL: time.Hour}, time.Now(), "test")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	k.Rev = s.rev
	s.keys[k.ID] = k
	return raw, k
}

func (s *keyStore) revoke(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[id]
	s.rev++
	k.RevokedAt, k.Rev = time.Now(), s.rev
	s.keys[id] = k
}

func (s *keyStore) APIKey(_ context.Context, id string) (*apikey.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[id]; ok {
		return &k, nil
	}
	return nil, nil
}

func (s *keyStore) APIKeyChanges(_ context.Context, after int64, limit int) ([]apikey.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []apikey.Key
	for r := after + 1; r <= s.rev && len(out) < limit; r++ {
		for _, k := range s.keys {
			if k.Rev == r {
				out = append(out, k)
			}
		}
	}
	return out, nil
}

func (s *keyStore) TouchAPIKeys(context.Context, map[string]time.Time) error { return nil }

// TestAPIKeyNeverReachesUpstream: the gateway checks API keys and never
// passes one on, in the configured header or in Authorization, even on a
// service with forward_authorization; refused requests reach no upstream.
func TestAPIKeyNeverReachesUpstream(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
	}))
	defer up.Close()
	cfg, err := config.Parse("gw.yaml", fmt.Appendf(nil, `
identity:
  api_keys: { enabled: true, header: X-Partner-Key }
store: { dsn: unused.db }
services:
  - name: orders
    upstream: %q
    forward_authorization: true
    routes:
      - { name: read, match: { methods: [GET], path: "/orders/**" }, allow: { roles: [Orders.Read] } }
      - { name: write, match: { methods: [POST], path: "/orders/**" }, allow: { roles: [Orders.Write] } }
  - name: billing
    upstream: %q
    hosts: [billing.example]
    routes:
      - { name: read, match: { path: "/**" }, allow: { authenticated: true } }
`, up.URL, up.URL), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := &keyStore{keys: map[string]apikey.Key{}}
	reader, _ := st.add("orders", "Orders.Read")
	revoked, rk := st.add("orders", "Orders.Read")
	st.revoke(rk.ID)
	logger := slog.New(slog.DiscardHandler)
	keys := authn.NewAPIKeys(st, logger, authn.APIKeyOptions{})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go keys.Run(ctx)
	for ok := false; !ok; ok, _ = keys.Ready() {
		time.Sleep(time.Millisecond)
	}
	an := authn.NewAuthenticator(16384)
	an.UseAPIKeys(keys, cfg.Identity.APIKeys.Header)
	rt, err := Build(cfg, an, State{Limits: limits.NewLocal(1024, nil), Quotas: limits.NewLocalQuotas(1024, nil)}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	g := New(rt, logger, NewMetrics(prometheus.NewRegistry()), nil, time.Second)

	tests := []struct {
		name    string
		method  string
		host    string
		headers map[string]string
		status  int
		reason  string
	}{
		{"Authorization: ApiKey on a forward_authorization service", "GET", "", map[string]string{"Authorization": "ApiKey " + reader}, 200, ""},
		{"configured header", "GET", "", map[string]string{"X-Partner-Key": reader}, 200, ""},
		{"role the key lacks", "POST", "", map[string]string{"X-Partner-Key": reader}, 403, "role_missing"},
		{"another service", "GET", "billing.example", map[string]string{"X-Partner-Key": reader}, 403, authn.ReasonAPIKeyWrongService},
		{"revoked", "GET", "", map[string]string{"Authorization": "ApiKey " + revoked}, 401, authn.ReasonAPIKeyRevoked},
		{"garbage", "GET", "", map[string]string{"X-Partner-Key": "let-me-in"}, 401, authn.ReasonAPIKeyInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			r := httptest.NewRequest(tt.method, "/orders/1", nil)
			if tt.host != "" {
				r.Host = tt.host
			}
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			g.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("got %d %s, want %d", w.Code, w.Body, tt.status)
			}
			mu.Lock()
			got := seen
			mu.Unlock()
			if tt.status != 200 {
				var body errorBody
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Reason != tt.reason {
					t.Fatalf("body %s, want reason %s", w.Body, tt.reason)
				}
				if tt.status == 401 && w.Header().Get("WWW-Authenticate") != `ApiKey realm="ztgate"` {
					t.Errorf("challenge %q, want ApiKey", w.Header().Get("WWW-Authenticate"))
				}
				if len(got) != 0 {
					t.Fatalf("a refused request reached the upstream: %v", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("upstream saw %d requests, want 1", len(got))
			}
			if v := got[0].Get("Authorization"); v != "" {
				t.Errorf("upstream saw Authorization %q", v)
			}
			if v := got[0].Get("X-Partner-Key"); v != "" {
				t.Errorf("upstream saw X-Partner-Key %q", v)
			}
		})
	}
}
