package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGuardsAndCORS: guard failures never reach the upstream; preflights are
// answered at the gateway; origins are never reflected unless listed.
func TestGuardsAndCORS(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "order.json"), []byte(`{"type":"object","required":["qty"],"properties":{"qty":{"type":"integer","minimum":1}}}`), 0o600)
	cfg := fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
services:
  - name: orders
    upstream: %q
    cors:
      allowed_origins: [https://app.example.com]
      allowed_methods: [GET, POST]
      allow_credentials: true
      exposed_headers: [X-Request-Id]
    routes:
      - name: create
        match: { methods: [POST], path: "/orders" }
        allow: { authenticated: true }
        rate_limit: { key: identity, limit: 1000, per: 1s }
        guard:
          max_body_bytes: 1024
          content_types: [application/json]
          json_schema: %q
          required_headers: [X-Tenant]
          allowed_query: [dry_run]
      - name: read
        match: { methods: [GET], path: "/orders/**" }
        allow: { authenticated: true }
`, is.URL, up.URL, filepath.Join(dir, "order.json"))
	// The configuration is written next to a relative schema too: check
	// that path resolution works by writing it relative.
	cfg = strings.Replace(cfg, filepath.Join(dir, "order.json"), "order.json", 1)
	g := startGatewayIn(t, dir, cfg)
	tok := is.TokenFor(t, "alice")

	post := func(body, ctype, query string, hdr map[string]string) (int, string, http.Header) {
		req, _ := http.NewRequest("POST", g.URL+"/orders"+query, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.Header.Set("X-Tenant", "t1")
		for k, v := range hdr {
			if v == "" {
				req.Header.Del(k)
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	tests := []struct {
		name, body, ctype, query string
		hdr                      map[string]string
		status                   int
		reason                   string
	}{
		{"schema violation", `{"qty":0}`, "application/json", "", nil, 400, "schema_violation"},
		{"wrong content type", `{"qty":1}`, "text/plain", "", nil, 415, "unsupported_content_type"},
		{"oversized", `{"qty":1,"pad":"` + strings.Repeat("x", 2000) + `"}`, "application/json", "", nil, 413, "body_too_large"},
		{"deep nesting", `{"qty":1,"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, "application/json", "", nil, 400, "json_too_deep"},
		{"missing header", `{"qty":1}`, "application/json", "", map[string]string{"X-Tenant": ""}, 400, "missing_required_header"},
		{"query not allowed", `{"qty":1}`, "application/json", "?admin=1", nil, 400, "query_parameter_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.Reset()
			status, body, _ := post(tt.body, tt.ctype, tt.query, tt.hdr)
			if status != tt.status || !strings.Contains(body, `"reason":"`+tt.reason+`"`) {
				t.Fatalf("got %d %s, want %d %s", status, body, tt.status, tt.reason)
			}
			if n := len(up.Requests()); n != 0 {
				t.Fatalf("upstream saw %d requests", n)
			}
		})
	}
	up.Reset()
	status, body, hdr := post(`{"qty":3}`, "application/json", "?dry_run=1", map[string]string{"Origin": "https://app.example.com"})
	if status != 200 || len(up.Requests()) != 1 || up.Requests()[0].Body != `{"qty":3}` {
		t.Fatalf("valid order: got %d %s; upstream %v", status, body, up.Requests())
	}
	if hdr.Get("Access-Control-Allow-Origin") != "https://app.example.com" || hdr.Get("Access-Control-Allow-Credentials") != "true" || hdr.Get("RateLimit-Limit") != "1000" {
		t.Errorf("allowed origin response headers: %v", hdr)
	}

	// Preflight: answered at the gateway, no token needed, upstream untouched.
	preflight := func(origin, method, headers string) (int, http.Header) {
		req, _ := http.NewRequest("OPTIONS", g.URL+"/orders", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		if headers != "" {
			req.Header.Set("Access-Control-Request-Headers", headers)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	up.Reset()
	status, hdr = preflight("https://app.example.com", "POST", "authorization, content-type")
	if status != 204 || hdr.Get("Access-Control-Allow-Origin") != "https://app.example.com" || !strings.Contains(hdr.Get("Access-Control-Allow-Methods"), "POST") || hdr.Get("Access-Control-Max-Age") != "600" {
		t.Errorf("allowed preflight: got %d %v", status, hdr)
	}
	for _, c := range []struct{ origin, method, headers string }{
		{"https://evil.example.com", "POST", ""},
		{"https://app.example.com.evil.com", "POST", ""},
		{"null", "POST", ""},
		{"https://app.example.com", "DELETE", ""},
		{"https://app.example.com", "POST", "x-admin"},
	} {
		status, hdr = preflight(c.origin, c.method, c.headers)
		// 403 cors_preflight_refused, or 404 when no route takes the method.
		if (status != 403 && status != 404) || hdr.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight %+v: got %d with ACAO %q, want a refusal and no CORS headers", c, status, hdr.Get("Access-Control-Allow-Origin"))
		}
	}
	if n := len(up.Requests()); n != 0 {
		t.Errorf("upstream saw %d preflights", n)
	}
	// A disallowed origin on a real request: answered, but without CORS
	// headers, so the browser hides it from the page.
	status, _, hdr = do(t, "GET", g.URL+"/orders/1", tok, map[string]string{"Origin": "https://evil.example.com"})
	if status != 200 || hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("disallowed origin: got %d, ACAO %q; want no reflection", status, hdr.Get("Access-Control-Allow-Origin"))
	}
}
