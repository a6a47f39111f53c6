package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztgate/ztgate/internal/alert"
	"github.com/ztgate/ztgate/internal/apikey"
	"github.com/ztgate/ztgate/internal/audit"
)

// fakeKeys records what the admin API asks of key management.
type fakeKeys struct {
	keys      []apikey.Key
	createErr error
	revokeErr error
	calls     []string // "create by NAME", "revoke ID by NAME"
	lastReq   apikey.Request
}

func (f *fakeKeys) List(context.Context) ([]apikey.Key, error) { return f.keys, nil }

func (f *fakeKeys) Create(_ context.Context, r apikey.Request, by Caller) (string, apikey.Key, error) {
	f.calls = append(f.calls, "create by "+by.Name)
	f.lastReq = r
	if f.createErr != nil {
		return "", apikey.Key{}, f.createErr
	}
	key, k := apikey.New(r, time.Now(), by.Name)
	return key, k, nil
}

func (f *fakeKeys) Revoke(_ context.Context, id string, by Caller) (apikey.Key, bool, error) {
	f.calls = append(f.calls, "revoke "+id+" by "+by.Name)
	if f.revokeErr != nil && !errors.Is(f.revokeErr, apikey.ErrUnrecorded) {
		return apikey.Key{}, false, f.revokeErr
	}
	return apikey.Key{ID: id, RevokedAt: time.Now()}, true, f.revokeErr
}

const testToken = "0123456789abcdef0123456789abcdef"

func testHandler(keys *fakeKeys, token string, loopback bool) http.Handler {
	return Handler(Deps{
		Gatherer: prometheus.NewRegistry(),
		Status:   func() Readiness { return Readiness{Ready: true} },
		Alerts:   func(context.Context, time.Time) ([]alert.Alert, error) { return nil, nil },
		APIKeys:  keys,
		Token:    func() string { return token },
		Loopback: loopback,
	})
}

// TestAdminGuard: who may reach the admin API's endpoints.
func TestAdminGuard(t *testing.T) {
	tests := []struct {
		name     string
		token    string // admin.token
		loopback bool   // the listener
		method   string
		path     string
		remote   string
		host     string
		headers  map[string]string
		status   int
		reason   string
	}{
		{"loopback, no token: key list", "", true, "GET", "/v1/apikeys", "127.0.0.1:5000", "127.0.0.1:9090", nil, 200, ""},
		{"loopback, no token, localhost", "", true, "GET", "/v1/apikeys", "[::1]:5000", "localhost:9090", nil, 200, ""},
		{"DNS rebinding: loopback caller, foreign Host", "", true, "GET", "/v1/apikeys", "127.0.0.1:5000", "evil.example:9090", nil, 403, ReasonAdminNotLoopback},
		{"listener off loopback, no token", "", false, "GET", "/v1/apikeys", "127.0.0.1:5000", "127.0.0.1:9090", nil, 403, ReasonAdminNotLoopback},
		{"listener off loopback, no token, create", "", false, "POST", "/v1/apikeys", "10.0.0.5:5000", "10.0.0.1:9090", map[string]string{"Content-Type": "application/json"}, 403, ReasonAdminNotLoopback},
		{"listener off loopback, no token, revoke", "", false, "POST", "/v1/apikeys/0123456789abcdef/revoke", "10.0.0.5:5000", "10.0.0.1:9090", nil, 403, ReasonAdminNotLoopback},
		{"remote caller, no token", "", true, "GET", "/v1/apikeys", "10.0.0.5:5000", "127.0.0.1:9090", nil, 403, ReasonAdminNotLoopback},
		{"browser on loopback (Origin)", "", true, "POST", "/v1/apikeys/0123456789abcdef/revoke", "127.0.0.1:5000", "127.0.0.1:9090", map[string]string{"Origin": "http://evil.example"}, 403, ReasonCrossOrigin},
		{"browser with the token (Origin)", testToken, false, "GET", "/v1/apikeys", "10.0.0.5:5000", "gw:9090", map[string]string{"Origin": "https://gw", "Authorization": "Bearer " + testToken}, 403, ReasonCrossOrigin},
		{"token configured, none sent", testToken, true, "GET", "/v1/apikeys", "127.0.0.1:5000", "127.0.0.1:9090", nil, 401, ReasonAdminTokenRequired},
		{"token configured, wrong one", testToken, false, "GET", "/v1/apikeys", "10.0.0.5:5000", "gw:9090", map[string]string{"Authorization": "Bearer " + strings.ToUpper(testToken)}, 401, ReasonAdminTokenRequired},
		{"token configured, prefix of it", testToken, false, "GET", "/v1/apikeys", "10.0.0.5:5000", "gw:9090", map[string]string{"Authorization": "Bearer " + testToken[:31]}, 401, ReasonAdminTokenRequired},
		{"token configured, other scheme", testToken, false, "GET", "/v1/apikeys", "10.0.0.5:5000", "gw:9090", map[string]string{"Authorization": "Basic " + testToken}, 401, ReasonAdminTokenRequired},
		{"token, from anywhere", testToken, false, "GET", "/v1/apikeys", "10.0.0.5:5000", "gw:9090", map[string]string{"Authorization": "Bearer " + testToken}, 200, ""},
		{"token guards every /v1/ endpoint", testToken, true, "GET", "/v1/alerts", "127.0.0.1:5000", "127.0.0.1:9090", nil, 401, ReasonAdminTokenRequired},
		{"without a token, other /v1/ endpoints are as before", "", false, "GET", "/v1/alerts", "10.0.0.5:5000", "gw:9090", nil, 200, ""},
		{"health is never guarded", testToken, false, "GET", "/healthz", "10.0.0.5:5000", "gw:9090", nil, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := &fakeKeys{}
			r := httptest.NewRequest(tt.method, tt.path, strings.NewReader(`{"name":"p","service":"orders","expires":"1d"}`))
			r.RemoteAddr, r.Host = tt.remote, tt.host
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			testHandler(keys, tt.token, tt.loopback).ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("got %d %s, want %d", w.Code, w.Body, tt.status)
			}
			if tt.reason != "" {
				var e apiError
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Reason != tt.reason || e.RequestID == "" {
					t.Fatalf("body %s, want reason %s and a request id", w.Body, tt.reason)
				}
				if len(keys.calls) != 0 {
					t.Fatalf("a refused request reached key management: %v", keys.calls)
				}
			}
		})
	}
}

func TestAdminAPIKeys(t *testing.T) {
	do := func(h http.Handler, method, path, ctype, body string) (*httptest.ResponseRecorder, map[string]any) {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.RemoteAddr, r.Host = "127.0.0.1:5000", "127.0.0.1:9090"
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var out map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &out)
		return w, out
	}
	keys := &fakeKeys{}
	h := testHandler(keys, "", true)

	w, out := do(h, "POST", "/v1/apikeys", "application/json", `{"name":"partner-a","service":"orders","roles":["Orders.Read"],"expires":"90d"}`)
	if w.Code != 201 || !strings.HasPrefix(fmt.Sprint(out["key"]), "ztk_") || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("create: got %d %s, want 201 with the key, not cached", w.Code, w.Body)
	}
	if keys.lastReq.TTL != 90*24*time.Hour || keys.calls[0] != "create by admin-loopback" {
		t.Fatalf("create asked %+v by %v", keys.lastReq, keys.calls)
	}
	if strings.Contains(w.Body.String(), apikey.Hash(fmt.Sprint(out["key"]))) {
		t.Fatalf("the response shows the key's hash: %s", w.Body)
	}

	for _, tt := range []struct {
		name, ctype, body string
		err               error
		status            int
		reason            string
	}{
		{"not JSON", "text/plain", `{}`, nil, 415, "unsupported_media_type"},
		{"unknown field", "application/json", `{"name":"p","service":"s","expires":"1d","admin":true}`, nil, 400, "bad_request"},
		{"bad expiry", "application/json", `{"name":"p","service":"s","expires":"soon"}`, nil, 400, "bad_request"},
		{"invalid request", "application/json", `{"name":"p","service":"s","expires":"1d"}`, fmt.Errorf("%w: unknown service", apikey.ErrInvalidRequest), 400, "bad_request"},
		{"not recorded: not made", "application/json", `{"name":"p","service":"s","expires":"1d"}`, fmt.Errorf("%w: disk full", audit.ErrUnavailable), 503, "audit_unavailable"},
		{"disabled", "application/json", `{"name":"p","service":"s","expires":"1d"}`, apikey.ErrDisabled, 404, "api_keys_disabled"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			keys.createErr = tt.err
			w, out := do(h, "POST", "/v1/apikeys", tt.ctype, tt.body)
			if w.Code != tt.status || out["reason"] != tt.reason || out["key"] != nil {
				t.Fatalf("got %d %s, want %d %s and no key", w.Code, w.Body, tt.status, tt.reason)
			}
		})
	}

	w, out = do(h, "POST", "/v1/apikeys/0123456789abcdef/revoke", "", "")
	if w.Code != 200 || out["revoked"] != true || out["audited"] != true {
		t.Fatalf("revoke: got %d %s", w.Code, w.Body)
	}
	keys.revokeErr = fmt.Errorf("%w: disk full", apikey.ErrUnrecorded)
	w, out = do(h, "POST", "/v1/apikeys/0123456789abcdef/revoke", "", "")
	if w.Code != 200 || out["revoked"] != true || out["audited"] != false || out["warning"] == nil {
		t.Fatalf("revoke, unrecorded: got %d %s, want 200 revoked, audited false, a warning", w.Code, w.Body)
	}
	keys.revokeErr = fmt.Errorf("%w: x", apikey.ErrNotFound)
	if w, out := do(h, "POST", "/v1/apikeys/0123456789abcdef/revoke", "", ""); w.Code != 404 || out["reason"] != "api_key_not_found" {
		t.Fatalf("revoke unknown: got %d %s", w.Code, w.Body)
	}

	keys.keys = []apikey.Key{{ID: "k1", Name: "a", Hash: "secrethash", ExpiresAt: time.Now().Add(time.Hour)}}
	w, _ = do(h, "GET", "/v1/apikeys", "", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"state": "active"`) || strings.Contains(w.Body.String(), "secrethash") {
		t.Fatalf("list: got %d %s, want the key's state and never its hash", w.Code, w.Body)
	}

	// Without a store there is nothing to manage.
	nostore := Handler(Deps{Gatherer: prometheus.NewRegistry(), Token: func() string { return "" }, Loopback: true})
	if w, out := do(nostore, "GET", "/v1/apikeys", "", ""); w.Code != 404 || out["reason"] != "no_store" {
		t.Fatalf("no store: got %d %s", w.Code, w.Body)
	}
}
