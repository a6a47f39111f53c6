package e2e

import (
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRoutingAndIdentity(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	g := startGateway(t, baseConfig(is, up))
	reader := is.TokenFor(t, "alice", "Orders.Read")

	tests := []struct {
		name     string
		method   string
		path     string
		token    string
		status   int
		reason   string
		upstream bool // whether the upstream may see it
	}{
		{"allowed", "GET", "/orders/42", reader, 200, "", true},
		{"unknown path", "GET", "/nowhere", reader, 404, "no_route", false},
		{"unknown path without token is still 404", "GET", "/nowhere", "", 404, "no_route", false},
		{"method not routed", "DELETE", "/orders/42", reader, 404, "no_route", false},
		{"no token", "GET", "/orders/42", "", 401, "missing_credentials", false},
		{"garbage token", "GET", "/orders/42", "not-a-jwt", 401, "malformed_token", false},
		{"role missing", "POST", "/orders/42", reader, 403, "role_missing", false},
		{"admin denied", "GET", "/admin/keys", reader, 403, "role_missing", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.Reset()
			status, body, hdr := do(t, tt.method, g.URL+tt.path, tt.token, nil)
			if status != tt.status {
				t.Fatalf("got status %d (%s), want %d", status, body, tt.status)
			}
			if hdr.Get("X-Request-Id") == "" {
				t.Error("response has no X-Request-Id")
			}
			if tt.reason != "" {
				e := decodeError(t, body)
				if e.Reason != tt.reason {
					t.Errorf("got reason %q, want %q", e.Reason, tt.reason)
				}
				if e.RequestID != hdr.Get("X-Request-Id") {
					t.Errorf("body request_id %q differs from header %q", e.RequestID, hdr.Get("X-Request-Id"))
				}
			}
			if status == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %q", hdr.Get("WWW-Authenticate"))
			}
			if got := len(up.Requests()); (got > 0) != tt.upstream {
				t.Errorf("upstream saw %d requests, want any=%v", got, tt.upstream)
			}
		})
	}
	_, metrics, _ := do(t, "GET", g.Admin+"/metrics", "", nil)
	for _, want := range []string{
		`ztgate_requests_total{decision="allow",route="read-orders",service="orders",status="200"} 1`,
		`ztgate_requests_total{decision="deny",route="read-orders",service="orders",status="401"} 2`,
		`ztgate_requests_total{decision="deny",route="",service="",status="404"} 3`,
		`ztgate_denials_total{reason="role_missing",route="write-orders",service="orders"} 1`,
		`ztgate_request_duration_seconds_bucket{decision="allow",route="read-orders",service="orders",le=`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	_, ready, _ := do(t, "GET", g.Admin+"/readyz", "", nil)
	if !strings.Contains(string(ready), `"keys_loaded": true`) || !strings.Contains(string(ready), `"config_hash"`) {
		t.Errorf("readyz lacks provider state or config hash: %s", ready)
	}
}

// TestPathConfusionCannotReachOtherRoutes sends paths that a lax proxy would
// route as /public/** but an upstream would resolve to /admin/...: each must
// be refused, or matched exactly as the upstream will see it.
func TestPathConfusionCannotReachOtherRoutes(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	g := startGateway(t, baseConfig(is, up))
	token := is.TokenFor(t, "mallory") // authenticated, no roles: /public only

	attacks := []struct {
		name string
		path string
	}{
		{"dot-dot", "/public/../admin/keys"},
		{"encoded dot-dot lower", "/public/%2e%2e/admin/keys"},
		{"encoded dot-dot upper", "/public/%2E%2E/admin/keys"},
		{"mixed encoded dot-dot", "/public/.%2e/admin/keys"},
		{"mixed encoded dot-dot 2", "/public/%2e./admin/keys"},
		{"dot segment then dot-dot", "/public/./../admin/keys"},
		{"too many dot-dots", "/public/../../../admin/keys"},
		{"encoded slash", "/public%2f..%2fadmin/keys"},
		{"encoded slash upper", "/public/..%2Fadmin/keys"},
		{"backslash", "/public/..\\admin/keys"},
		{"encoded backslash", "/public/..%5cadmin/keys"},
		{"double encoding", "/public/%252e%252e/admin/keys"},
		{"double encoded slash", "/public/..%252fadmin/keys"},
		{"semicolon parameter (Tomcat)", "/public/..;/admin/keys"},
		{"semicolon parameter after dot", "/public/.;/../admin/keys"},
		{"overlong UTF-8 dot", "/public/%c0%ae%c0%ae/admin/keys"},
		{"overlong UTF-8 3 byte", "/public/%e0%80%ae%e0%80%ae/admin/keys"},
		{"null byte", "/public/%00/../admin/keys"},
		{"duplicate slashes", "//admin/keys"},
		{"duplicate slashes deep", "/public//..//admin/keys"},
		{"trailing dot-dot", "/public/x/.."},
		{"case folding", "/ADMIN/keys"},
		{"case folding public prefix", "/Public/../Admin/keys"},
		{"tab in path", "/public/\t/../admin"},
	}
	let := 0
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			up.Reset()
			status, body := rawRequest(t, g.Addr, "GET "+a.path+" HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "+token+"\r\nConnection: close\r\n\r\n")
			for _, r := range up.Requests() {
				if strings.Contains(strings.ToLower(r.Path), "admin") {
					let++
					t.Fatalf("upstream received %q for %q (status %d)", r.Path, a.path, status)
				}
				if strings.Contains(r.Path, "..") || strings.Contains(r.Path, "//") {
					t.Fatalf("upstream received a non-normalised path %q", r.Path)
				}
			}
			if status == 200 && !strings.HasPrefix(up.Requests()[0].Path, "/public") {
				t.Fatalf("status 200 for %q outside /public: %s", a.path, body)
			}
			if status < 400 && status != 200 {
				t.Fatalf("got status %d, want a refusal or a /public match", status)
			}
		})
	}
	t.Logf("path confusion: %d attacks, %d reached another route", len(attacks), let)
}

func TestSpoofedHeadersNeverReachUpstream(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	g := startGateway(t, baseConfig(is, up))
	reader := is.TokenFor(t, "alice", "Orders.Read")
	spoofed := map[string]string{
		"X-Forwarded-For":            "6.6.6.6",
		"X-Forwarded-Host":           "evil.example",
		"X-Forwarded-Proto":          "https",
		"Forwarded":                  "for=6.6.6.6",
		"X-Real-IP":                  "6.6.6.6",
		"X-MS-CLIENT-PRINCIPAL-NAME": "admin@contoso.com",
		"X-MS-CLIENT-PRINCIPAL-ID":   "00000000-0000-0000-0000-000000000000",
		"X-Forwarded-User":           "admin",
		"X-Auth-Request-Email":       "admin@contoso.com",
		"X-Ztgate-Identity":          "admin",
		"X-Remote-User":              "admin",
		"X-Ssl-Client-Cert":          "forged",
		"X-Request-Id":               "client-chosen-id",
		"X_Forwarded_For":            "6.6.6.6",
		"Connection":                 "X-Custom-Hop",
		"X-Custom-Hop":               "should-be-removed",
	}
	status, body, hdr := do(t, "GET", g.URL+"/orders/1", reader, spoofed)
	if status != 200 {
		t.Fatalf("got %d %s, want 200", status, body)
	}
	reqs := up.Requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream saw %d requests, want 1", len(reqs))
	}
	got := reqs[0].Header
	if v := got.Values("X-Forwarded-For"); len(v) != 1 || v[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For: got %q, want [127.0.0.1] (the client's value discarded)", v)
	}
	if v := got.Get("X-Forwarded-Host"); v != "localhost" && !strings.HasPrefix(v, "127.0.0.1") {
		t.Errorf("X-Forwarded-Host: got %q, want the request's Host", v)
	}
	if v := got.Get("X-Forwarded-Proto"); v != "http" {
		t.Errorf("X-Forwarded-Proto: got %q, want http", v)
	}
	for _, k := range []string{"Forwarded", "X-Real-Ip", "X-Ms-Client-Principal-Name", "X-Ms-Client-Principal-Id", "X-Forwarded-User", "X-Auth-Request-Email", "X-Ztgate-Identity", "X-Remote-User", "X-Ssl-Client-Cert", "X_forwarded_for", "X-Custom-Hop", "Authorization"} {
		if v := got.Values(k); len(v) > 0 {
			t.Errorf("upstream received %s: %q", k, v)
		}
	}
	rid := hdr.Get("X-Request-Id")
	if rid == "" || rid == "client-chosen-id" {
		t.Errorf("response X-Request-Id %q: want a gateway-generated id", rid)
	}
	if v := got.Get("X-Request-Id"); v != rid {
		t.Errorf("upstream X-Request-Id %q, want the gateway's %q", v, rid)
	}
	if v := got.Get("X-Client-Request-Id"); v != "client-chosen-id" {
		t.Errorf("upstream X-Client-Request-Id %q, want the client's id kept for correlation", v)
	}

	// A client id that could forge log lines is dropped.
	up.Reset()
	_, _, _ = do(t, "GET", g.URL+"/orders/2", reader, map[string]string{"X-Request-Id": strings.Repeat("a", 65)})
	if v := up.Requests()[0].Header.Get("X-Client-Request-Id"); v != "" {
		t.Errorf("overlong client request id forwarded: %q", v)
	}
	// The Host header cannot choose the upstream.
	up.Reset()
	status, _ = rawRequest(t, g.Addr, "GET /orders/3 HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer "+reader+"\r\nConnection: close\r\n\r\n")
	if status != 200 || up.Requests()[0].Host != strings.TrimPrefix(up.URL, "http://") {
		t.Errorf("Host header: got status %d, upstream Host %q; want 200 at the configured upstream", status, up.Requests()[0].Host)
	}
	// Absolute-form targets are refused.
	up.Reset()
	status, sbody := rawRequest(t, g.Addr, "GET http://evil.example/orders/3 HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer "+reader+"\r\nConnection: close\r\n\r\n")
	if status != 400 || !strings.Contains(sbody, "bad_request_target") || len(up.Requests()) != 0 {
		t.Errorf("absolute-form: got %d %s, upstream saw %d; want 400 bad_request_target", status, sbody, len(up.Requests()))
	}
}

func TestReloadKeepsOldConfigOnError(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	g := startGateway(t, baseConfig(is, up))
	reader := is.TokenFor(t, "alice", "Orders.Read")
	if s, b, _ := do(t, "GET", g.URL+"/orders/1", reader, nil); s != 200 {
		t.Fatalf("before reload: got %d %s", s, b)
	}
	// A broken file: unknown key. SIGHUP must keep the old routes serving.
	broken := strings.Replace(baseConfig(is, up), "routes:", "routez:", 1)
	if err := os.WriteFile(g.CfgPath, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	g.Signal(syscall.SIGHUP)
	waitFor(t, "reload failure in /readyz", func() bool {
		_, b, _ := do(t, "GET", g.Admin+"/readyz", "", nil)
		return strings.Contains(string(b), `"ok": false`) && strings.Contains(string(b), "routez")
	})
	if s, b, _ := do(t, "GET", g.URL+"/orders/1", reader, nil); s != 200 {
		t.Fatalf("after broken reload: got %d %s, want the old routes serving", s, b)
	}
	g.WaitLog("a log line for the failed reload", "configuration reload failed")
	// A good file is picked up by the file watch, without a signal.
	good := strings.Replace(baseConfig(is, up), "roles: [Orders.Read]", "roles: [Orders.Reader]", 1)
	if err := os.WriteFile(g.CfgPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "new config in force", func() bool {
		s, _, _ := do(t, "GET", g.URL+"/orders/1", reader, nil)
		return s == 403
	})
}

func TestSIGTERMDrainsInFlight(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	up.Delay = 1500 * time.Millisecond
	g := startGateway(t, baseConfig(is, up))
	tok := is.TokenFor(t, "alice")
	type result struct {
		status int
		body   string
	}
	res := make(chan result, 1)
	go func() {
		s, b, _ := do(t, "GET", g.URL+"/slow/x", tok, nil)
		res <- result{s, string(b)}
	}()
	waitFor(t, "slow request at the upstream", func() bool { return len(up.Requests()) == 1 })
	g.Signal(syscall.SIGTERM)
	r := <-res
	if r.status != 200 {
		t.Fatalf("in-flight request: got %d %s, want 200 after drain", r.status, r.body)
	}
	select {
	case err := <-g.Done:
		g.Done <- err
		if err != nil {
			t.Fatalf("gateway exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not exit after draining")
	}
	if _, err := net.DialTimeout("tcp", g.Addr, time.Second); err == nil {
		t.Error("listener still accepts after shutdown")
	}
}

func TestCheckCommand(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	dir := t.TempDir()
	good := dir + "/good.yaml"
	bad := dir + "/bad.yaml"
	os.WriteFile(good, []byte(baseConfig(is, up)), 0o600)
	os.WriteFile(bad, []byte(strings.Replace(baseConfig(is, up), "  shutdown_timeout: 10s", "  shutdown_timeout: 10s\n  adress: x", 1)), 0o600)
	out, err := runBinary("check", "--config", good)
	if err != nil {
		t.Fatalf("check good: %v\n%s", err, out)
	}
	out, err = runBinary("check", "--config", bad)
	if err == nil {
		t.Fatalf("check bad: exit 0, want non-zero\n%s", out)
	}
	if want := fmt.Sprintf("%s:4:3: listen.adress: unknown key", bad); !strings.Contains(out, want) {
		t.Fatalf("check bad: got\n%s\nwant it to contain %q", out, want)
	}
}
