package security

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ztgate/ztgate/test/harness"
)

func TestMain(m *testing.M) {
	cleanup, err := harness.Build(raceEnabled)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// attack is one hostile request. It is refused when the answer is one of
// the statuses (0: the connection is closed without an answer). It is let
// through when the upstream sees what leaked decides.
type attack struct {
	name   string
	raw    string                                                  // the request, byte for byte; TOKEN is replaced
	status []int                                                   // acceptable answers
	reason string                                                  // the reason the error body must carry, if any
	leaked func(harness.Seen) bool                                 // what the upstream must never see
	check  func(t *testing.T, body string, up []harness.Seen) bool // extra proof; nil: none
}

func toAdmin(s harness.Seen) bool { return strings.Contains(strings.ToLower(s.Path), "admin") }

func anything(harness.Seen) bool { return true }

const cfg = `listen:
  address: "127.0.0.1:0"
  read_header_timeout: 1s
  max_header_bytes: 8192
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
assertion: { issuer: "https://gw.security.test", header: X-Caller-Assertion }
services:
  - name: app
    upstream: %q
    max_body_bytes: 1024
    inject: { identity_assertion: true }
    cors: { allowed_origins: [https://app.example.com] }
    routes:
      - { name: public, match: { path: "/public/**" }, allow: { authenticated: true } }
      - { name: admin, match: { path: "/admin/**" }, allow: { roles: [Admin] } }
`

func get(path, extra string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer TOKEN\r\n" + extra + "Connection: close\r\n\r\n"
}

func attacks() []attack {
	refused := []int{0, 400, 401, 403, 404, 405, 413, 414, 431, 501, 505}
	var as []attack
	// Path confusion: an authenticated caller without the Admin role tries
	// to reach /admin through the /public route.
	for _, p := range []struct{ name, path string }{
		{"path ..", "/public/../admin/keys"},
		{"path %2e%2e", "/public/%2e%2e/admin/keys"},
		{"path %2E%2e", "/public/%2E%2e/admin/keys"},
		{"path .%2e", "/public/.%2e/admin/keys"},
		{"path %2f", "/public%2f..%2fadmin/keys"},
		{"path ..%2f", "/public/..%2Fadmin/keys"},
		{"path double encoding", "/public/%252e%252e/admin/keys"},
		{"path double encoded slash", "/public/..%252fadmin/keys"},
		{"path double encoding assembled from escapes", "/public/%250%61/../admin/keys"},
		{"path ;parameters (..;)", "/public/..;/admin/keys"},
		{"path ;parameters (.;)", "/public/.;/../admin/keys"},
		{"path backslash", "/public/..\\admin/keys"},
		{"path encoded backslash", "/public/..%5cadmin/keys"},
		{"path overlong UTF-8", "/public/%c0%ae%c0%ae/admin/keys"},
		{"path overlong UTF-8 3 bytes", "/public/%e0%80%ae%e0%80%ae/admin/keys"},
		{"path NUL", "/public/%00/../admin/keys"},
		{"path case folding", "/ADMIN/keys"},
		{"path duplicate slashes", "//admin//keys"},
		{"path fragment", "/public/x#/../../admin/keys"},
		{"path query confusion", "/public/x?/../../admin/keys"},
	} {
		as = append(as, attack{name: p.name, raw: get(p.path, ""), status: append([]int{200}, refused...), leaked: toAdmin})
	}
	as = append(as,
		// Request smuggling.
		attack{name: "smuggling CL.TE", raw: "POST /public/x HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer TOKEN\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer TOKEN\r\n\r\n", status: append([]int{200}, refused...), leaked: toAdmin},
		attack{name: "smuggling duplicate Content-Length", raw: "POST /public/x HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer TOKEN\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd", status: refused, leaked: anything},
		attack{name: "smuggling obfuscated Transfer-Encoding", raw: "POST /public/x HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer TOKEN\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", status: refused, leaked: anything},
		attack{name: "smuggling Transfer-Encoding list", raw: "POST /public/x HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer TOKEN\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", status: refused, leaked: anything},
		// RFC 9112 §5.2: a folded line is refused or unfolded before forwarding.
		attack{name: "smuggling obs-fold", raw: "GET /public/x HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer TOKEN\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n", status: append([]int{200}, refused...), leaked: func(s harness.Seen) bool { return strings.ContainsAny(s.Header.Get("X-A"), "\r\n") }},
		attack{name: "smuggling bare LF in headers", raw: "GET /public/x HTTP/1.1\nHost: gw.example\nAuthorization: Bearer TOKEN\nX-Forwarded-For: 6.6.6.6\n\n", status: append([]int{200}, refused...), leaked: func(s harness.Seen) bool { return s.Header.Get("X-Forwarded-For") != "127.0.0.1" }},
		// Host and request-target tricks.
		attack{name: "absolute-form target to another host", raw: "GET http://evil.example/public/x HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer TOKEN\r\nConnection: close\r\n\r\n", status: []int{400}, reason: "bad_request_target", leaked: anything},
		attack{name: "CONNECT tunnel", raw: "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nAuthorization: Bearer TOKEN\r\nConnection: close\r\n\r\n", status: refused, leaked: anything},
		// net/http answers OPTIONS * itself; it never reaches a route.
		attack{name: "asterisk-form", raw: "OPTIONS * HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n", status: append([]int{200}, refused...), leaked: anything},
		attack{name: "duplicate Host", raw: "GET /public/x HTTP/1.1\r\nHost: gw.example\r\nHost: evil.example\r\nAuthorization: Bearer TOKEN\r\nConnection: close\r\n\r\n", status: refused, leaked: anything},
		attack{name: "Host with a path", raw: "GET /public/x HTTP/1.1\r\nHost: evil.example/admin\r\nAuthorization: Bearer TOKEN\r\nConnection: close\r\n\r\n", status: refused, leaked: anything},
		attack{name: "Host picks the upstream", raw: get("/public/x", "X-Forwarded-Host: evil.example\r\n"), status: []int{200}, leaked: func(s harness.Seen) bool { return s.Host == "evil.example" || s.Host == "gw.example" }},
		// Header injection and identity spoofing.
		attack{name: "duplicate Authorization", raw: "GET /public/x HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer TOKEN\r\nAuthorization: Bearer TOKEN\r\nConnection: close\r\n\r\n", status: []int{401}, reason: "ambiguous_credentials", leaked: anything},
		attack{name: "CR in a header value", raw: "GET /public/x HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer TOKEN\r\nX-A: a\rX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n", status: append([]int{200}, refused...), leaked: func(s harness.Seen) bool { return strings.Contains(fmt.Sprint(s.Header), "6.6.6.6") }},
		attack{name: "spoofed X-Forwarded-For", raw: get("/public/x", "X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n"), status: []int{200}, leaked: func(s harness.Seen) bool { return strings.Contains(fmt.Sprint(s.Header), "6.6.6.6") }},
		attack{name: "spoofed App Service principal", raw: get("/public/x", "X-MS-CLIENT-PRINCIPAL-NAME: admin@contoso.com\r\nX-MS-CLIENT-PRINCIPAL: e30=\r\n"), status: []int{200}, leaked: func(s harness.Seen) bool {
			return strings.Contains(fmt.Sprint(s.Header), "contoso") || s.Header.Get("X-Ms-Client-Principal") != ""
		}},
		attack{name: "spoofed identity with underscores", raw: get("/public/x", "X_Forwarded_User: admin\r\nX_Remote_User: admin\r\n"), status: []int{200}, leaked: func(s harness.Seen) bool { return strings.Contains(fmt.Sprint(s.Header), "admin") }},
		attack{name: "spoofed identity assertion", raw: get("/public/x", "X-Caller-Assertion: forged\r\nX_Caller_Assertion: forged\r\nX-Ztgate-Identity: forged\r\n"), status: []int{200}, leaked: func(s harness.Seen) bool {
			return strings.Contains(fmt.Sprint(s.Header), "forged") || len(s.Header.Values("X-Caller-Assertion")) != 1
		}},
		attack{name: "hop-by-hop removal of the identity assertion", raw: get("/public/x", "Connection: X-Caller-Assertion\r\n"), status: []int{200}, leaked: func(s harness.Seen) bool { return s.Header.Get("X-Caller-Assertion") == "" }},
		attack{name: "assertion keys path routed to a service", raw: "GET /.well-known/jwks.json HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n", status: []int{200}, leaked: anything},
		attack{name: "hop-by-hop listing of the gateway's headers", raw: get("/public/x", "Connection: X-Forwarded-For, X-Request-Id\r\n"), status: []int{200}, leaked: func(s harness.Seen) bool {
			return s.Header.Get("X-Forwarded-For") == "" || s.Header.Get("X-Request-Id") == ""
		}},
		attack{name: "token forwarded to the upstream", raw: get("/public/x", ""), status: []int{200}, leaked: func(s harness.Seen) bool { return s.Header.Get("Authorization") != "" }},
		attack{name: "token in the query string", raw: "GET /public/x?access_token=TOKEN HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n", status: []int{401}, reason: "token_in_query", leaked: anything},
		attack{name: "alg none token", raw: strings.Replace(get("/public/x", ""), "TOKEN", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiIsInJvbGVzIjpbIkFkbWluIl19.", 1), status: []int{401}, leaked: anything},
		// Oversized input.
		attack{name: "oversized headers", raw: get("/public/x", "X-Big: "+strings.Repeat("a", 10000)+"\r\n"), status: []int{431}, leaked: anything},
		attack{name: "oversized headers within net/http's slack", raw: get("/public/x", "X-Big: "+strings.Repeat("a", 8200)+"\r\n"), status: []int{431}, reason: "headers_too_large", leaked: anything},
		attack{name: "many small headers", raw: get("/public/x", strings.Repeat("X-H: a\r\n", 1200)), status: []int{431}, leaked: anything},
		attack{name: "oversized token", raw: strings.Replace(get("/public/x", ""), "TOKEN", strings.Repeat("a", 7000)+"."+strings.Repeat("b", 100)+".c", 1), status: []int{401, 431}, leaked: anything},
		attack{name: "oversized body", raw: "POST /public/x HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer TOKEN\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n" + strings.Repeat("x", 5000), status: []int{413}, reason: "body_too_large", leaked: anything},
		attack{name: "oversized chunked body", raw: "POST /public/x HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer TOKEN\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1388\r\n" + strings.Repeat("x", 5000) + "\r\n0\r\n\r\n", status: []int{413}, leaked: anything},
		// CORS.
		attack{name: "CORS origin reflection on a preflight", raw: "OPTIONS /public/x HTTP/1.1\r\nHost: gw.example\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: GET\r\nConnection: close\r\n\r\n", status: []int{403}, reason: "cors_preflight_refused", leaked: anything},
		attack{name: "CORS origin reflection on a request", raw: get("/public/x", "Origin: https://evil.example\r\n"), status: []int{200}, leaked: func(harness.Seen) bool { return false }, check: func(t *testing.T, resp string, _ []harness.Seen) bool {
			return !strings.Contains(strings.ToLower(resp), "access-control-allow-origin")
		}},
	)
	return as
}

// send writes raw and reads one answer: its status line code (0 when the
// connection closed first) and the whole response text.
func send(t *testing.T, addr, raw string) (int, string) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return 0, ""
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	for k, v := range resp.Header {
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(v, ","))
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	b.Write(body)
	return resp.StatusCode, b.String()
}

func TestAttacks(t *testing.T) {
	is, up := harness.NewIssuer(t), harness.NewUpstream(t)
	g := harness.StartGateway(t, fmt.Sprintf(cfg, is.URL, up.URL))
	token := is.TokenFor(t, "mallory") // authenticated, no roles
	total, refused, through := 0, 0, 0
	for _, a := range attacks() {
		total++
		t.Run(a.name, func(t *testing.T) {
			up.Reset()
			status, resp := send(t, g.Addr, strings.ReplaceAll(a.raw, "TOKEN", token))
			seen := up.Requests()
			for _, s := range seen {
				if a.leaked(s) {
					through++
					t.Fatalf("LET THROUGH: the upstream saw %s %s %v (answer %d)", s.Method, s.Path, s.Header, status)
				}
			}
			if a.check != nil && !a.check(t, resp, seen) {
				through++
				t.Fatalf("LET THROUGH: %s", resp)
			}
			ok := false
			for _, s := range a.status {
				ok = ok || s == status
			}
			if !ok {
				t.Fatalf("got answer %d, want one of %v:\n%s", status, a.status, resp)
			}
			if a.reason != "" && !strings.Contains(resp, `"reason":"`+a.reason+`"`) {
				t.Fatalf("answer lacks reason %s:\n%s", a.reason, resp)
			}
			refused++
		})
	}
	// Slowloris: headers trickled slower than read_header_timeout.
	total++
	t.Run("slowloris headers", func(t *testing.T) {
		up.Reset()
		c, err := net.Dial("tcp", g.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		closed := false
		for i := 0; i < 30 && !closed; i++ {
			if _, err := io.WriteString(c, "X-Slow-"+fmt.Sprint(i)+": a\r\n"); err != nil {
				closed = true
				break
			}
			if i == 0 {
				io.WriteString(c, "GET /public/x HTTP/1.1\r\nHost: gw.example\r\n")
			}
			time.Sleep(200 * time.Millisecond)
			_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
				closed = true
			}
		}
		if !closed || time.Since(start) > 4*time.Second || len(up.Requests()) != 0 {
			through++
			t.Fatalf("a trickled request held the connection for %v (closed %v)", time.Since(start), closed)
		}
		refused++
	})
	// The gateway still serves after the attacks.
	if s, b, _ := harness.Do(t, "GET", g.URL+"/public/ok", token, nil); s != 200 {
		t.Fatalf("after the attacks: got %d %s", s, b)
	}
	fmt.Printf("security: %d attacks, %d refused, %d let through\n", total, refused, through)
	if through > 0 || refused != total {
		t.Fatalf("security: %d attacks, %d refused, %d let through", total, refused, through)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
