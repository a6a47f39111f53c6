package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ztgate/ztgate/internal/demo"
)

// binary is the ztgate binary built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ztgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "ztgate")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "../../cmd/ztgate")
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ztgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// seen is one request as the upstream received it.
type seen struct {
	Method string
	Path   string // escaped path as received
	Query  string
	Header http.Header
	Host   string
	Body   string
}

// upstream is a real HTTP server on loopback that records what reaches it.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
	// delay, when set, is applied to requests whose path contains "slow".
	delay time.Duration
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Header: r.Header.Clone(), Host: r.Host, Body: string(body)})
		u.mu.Unlock()
		if strings.Contains(r.URL.Path, "slow") {
			time.Sleep(u.delay)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"upstream":"ok","path":%q}`, r.URL.EscapedPath())
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.reqs...)
}

func (u *upstream) reset() {
	u.mu.Lock()
	u.reqs = nil
	u.mu.Unlock()
}

// issuer is a local OpenID Connect issuer serving discovery and JWKS.
type issuer struct {
	*demo.Issuer
	srv *httptest.Server
}

func newIssuer(t *testing.T) *issuer {
	is, err := demo.NewIssuer("orders-api")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(is.Handler())
	t.Cleanup(srv.Close)
	is.URL = srv.URL
	return &issuer{Issuer: is, srv: srv}
}

func (is *issuer) token(t *testing.T, sub string, roles ...string) string {
	tok, err := is.Token(demo.TokenRequest{Subject: sub, Roles: roles, AMR: []string{"pwd"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// gateway is a running ztgate process.
type gateway struct {
	t       *testing.T
	cmd     *exec.Cmd
	cfgPath string
	URL     string // data plane base URL
	Admin   string // admin base URL
	Addr    string // data plane host:port
	logs    *syncBuffer
	done    chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startGateway writes cfg to a file and runs "ztgate serve" on it, waiting
// until both listeners serve and the identity provider's keys are loaded.
func startGateway(t *testing.T, cfg string) *gateway {
	t.Helper()
	return startGatewayIn(t, t.TempDir(), cfg)
}

// startGatewayIn is startGateway with the configuration file in dir.
func startGatewayIn(t *testing.T, dir, cfg string) *gateway {
	t.Helper()
	path := filepath.Join(dir, "ztgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gateway{t: t, cfgPath: path, logs: &syncBuffer{}, done: make(chan error, 1)}
	g.cmd = exec.Command(binary, "serve", "--config", path, "--log-format", "json")
	pr, pw := io.Pipe()
	g.cmd.Stderr = io.MultiWriter(g.logs, pw)
	g.cmd.Stdout = g.logs
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.done <- g.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		_ = g.cmd.Process.Kill()
		<-g.done
		if t.Failed() {
			t.Logf("gateway logs:\n%s", g.logs.String())
		}
	})
	addrs := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sent := false
		for sc.Scan() {
			var line struct {
				Msg     string `json:"msg"`
				Address string `json:"address"`
				Admin   string `json:"admin"`
			}
			if !sent && json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "ztgate serving" {
				addrs <- [2]string{line.Address, line.Admin}
				sent = true
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case a := <-addrs:
		g.Addr = a[0]
		g.URL = "http://" + a[0]
		g.Admin = "http://" + a[1]
	case err := <-g.done:
		g.done <- err
		t.Fatalf("gateway exited: %v\n%s", err, g.logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("gateway did not start:\n%s", g.logs.String())
	}
	g.waitReady()
	return g
}

func (g *gateway) waitReady() {
	g.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(g.Admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("gateway not ready:\n%s", g.logs.String())
}

func (g *gateway) signal(s syscall.Signal) {
	if err := g.cmd.Process.Signal(s); err != nil {
		g.t.Fatal(err)
	}
}

// errorResponse is the gateway's JSON error body.
type errorResponse struct {
	Error     string `json:"error"`
	Reason    string `json:"reason"`
	RequestID string `json:"request_id"`
}

// do sends a request and returns the status, body and headers.
func do(t *testing.T, method, url, token string, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body, resp.Header
}

func decodeError(t *testing.T, body []byte) errorResponse {
	t.Helper()
	var e errorResponse
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if e.RequestID == "" || e.Reason == "" || e.Error == "" {
		t.Fatalf("error body %q lacks error, reason or request_id", body)
	}
	return e
}

// baseConfig is the configuration most tests run: an issuer, one service with
// a public-ish area (any authenticated caller), an orders area (role) and an
// admin area (Admin role).
func baseConfig(is *issuer, up *upstream) string {
	return fmt.Sprintf(`listen:
  address: "127.0.0.1:0"
  shutdown_timeout: 10s
admin:
  address: "127.0.0.1:0"
identity:
  providers:
    - name: test
      type: oidc
      issuer: %q
      audiences: [orders-api]
services:
  - name: orders
    upstream: %q
    routes:
      - name: public
        match: { path: "/public/**" }
        allow: { authenticated: true }
      - name: read-orders
        match: { methods: [GET], path: "/orders/**" }
        allow: { roles: [Orders.Read] }
      - name: write-orders
        match: { methods: [POST], path: "/orders/**" }
        allow: { roles: [Orders.Write] }
      - name: admin
        match: { path: "/admin/**" }
        allow: { roles: [Admin] }
      - name: slow
        match: { path: "/slow/**" }
        allow: { authenticated: true }
`, is.URL, up.URL)
}

var execCommand = exec.Command

// tryDo is do without failing the test on transport errors (load tests).
func tryDo(method, url, token string) (int, []byte, http.Header, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body, resp.Header, nil
}
