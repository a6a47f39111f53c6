// Package harness starts the real ztgate binary and the real servers around
// it (an upstream that records what reaches it, a local OpenID Connect
// issuer) for end-to-end and security tests.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
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

// seen is one request as the upstream received it.
type Seen struct {
	Method string
	Path   string // escaped path as received
	Query  string
	Header http.Header
	Host   string
	Body   string
}

// upstream is a real HTTP server on loopback that records what reaches it.
type Upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []Seen
	// delay, when set, is applied to requests whose path contains "slow".
	Delay time.Duration
}

func NewUpstream(t testing.TB) *Upstream {
	u := &Upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, Seen{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Header: r.Header.Clone(), Host: r.Host, Body: string(body)})
		u.mu.Unlock()
		if strings.Contains(r.URL.Path, "slow") {
			time.Sleep(u.Delay)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"upstream":"ok","path":%q}`, r.URL.EscapedPath())
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *Upstream) Requests() []Seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Seen(nil), u.reqs...)
}

func (u *Upstream) Reset() {
	u.mu.Lock()
	u.reqs = nil
	u.mu.Unlock()
}

// issuer is a local OpenID Connect issuer serving discovery and JWKS.
type Issuer struct {
	*demo.Issuer
	srv *httptest.Server
}

func NewIssuer(t testing.TB) *Issuer {
	is, err := demo.NewIssuer("orders-api")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(is.Handler())
	t.Cleanup(srv.Close)
	is.URL = srv.URL
	return &Issuer{Issuer: is, srv: srv}
}

func (is *Issuer) TokenFor(t testing.TB, sub string, roles ...string) string {
	tok, err := is.Token(demo.TokenRequest{Subject: sub, Roles: roles, AMR: []string{"pwd"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// gateway is a running ztgate process.
type Gateway struct {
	t       *testing.T
	Cmd     *exec.Cmd
	CfgPath string
	URL     string // data plane base URL
	Admin   string // admin base URL
	Addr    string // data plane host:port
	Logs    *SyncBuffer
	Done    chan error
}

type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StartGateway writes cfg to a file and runs "ztgate serve" on it, waiting
// until both listeners serve and the identity provider's keys are loaded.
func StartGateway(t *testing.T, cfg string) *Gateway {
	t.Helper()
	return StartGatewayIn(t, t.TempDir(), cfg)
}

// StartGatewayIn is StartGateway with the configuration file in dir.
func StartGatewayIn(t *testing.T, dir, cfg string) *Gateway {
	t.Helper()
	path := filepath.Join(dir, "ztgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &Gateway{t: t, CfgPath: path, Logs: &SyncBuffer{}, Done: make(chan error, 1)}
	g.Cmd = exec.Command(Binary, "serve", "--config", path, "--log-format", "json")
	pr, pw := io.Pipe()
	g.Cmd.Stderr = io.MultiWriter(g.Logs, pw)
	g.Cmd.Stdout = g.Logs
	if err := g.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.Done <- g.Cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		_ = g.Cmd.Process.Kill()
		<-g.Done
		if t.Failed() {
			t.Logf("gateway logs:\n%s", g.Logs.String())
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
	case err := <-g.Done:
		g.Done <- err
		t.Fatalf("gateway exited: %v\n%s", err, g.Logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("gateway did not start:\n%s", g.Logs.String())
	}
	g.WaitReady()
	return g
}

// WaitLog waits until the gateway's output holds s. Its log lines are
// written by a goroutine of their own, a moment after the event they tell.
func (g *Gateway) WaitLog(what, s string) {
	g.t.Helper()
	WaitFor(g.t, what, func() bool { return strings.Contains(g.Logs.String(), s) })
}

func (g *Gateway) WaitReady() {
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
	g.t.Fatalf("gateway not ready:\n%s", g.Logs.String())
}

func (g *Gateway) Signal(s syscall.Signal) {
	if err := g.Cmd.Process.Signal(s); err != nil {
		g.t.Fatal(err)
	}
}

// errorResponse is the gateway's JSON error body.
type ErrorResponse struct {
	Error     string `json:"error"`
	Reason    string `json:"reason"`
	RequestID string `json:"request_id"`
}

// do sends a request and returns the status, body and headers.
func Do(t testing.TB, method, url, token string, hdr map[string]string) (int, []byte, http.Header) {
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

func DecodeError(t testing.TB, body []byte) ErrorResponse {
	t.Helper()
	var e ErrorResponse
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if e.RequestID == "" || e.Reason == "" || e.Error == "" {
		t.Fatalf("error body %q lacks error, reason or request_id", body)
	}
	return e
}

// TryDo is Do without failing the test on transport errors (load tests).
func TryDo(method, url, token string) (int, []byte, http.Header, error) {
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

// RawRequest sends bytes as they are and returns the status line's code.
func RawRequest(t testing.TB, addr, req string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	return resp.StatusCode, string(buf[:n])
}

func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// Binary is the ztgate binary the gateways run; Build sets it.
var Binary string

// Build compiles ztgate (with the race detector when race is set) into a
// temporary directory, sets Binary, and returns a cleanup.
func Build(race bool) (func(), error) {
	dir, err := os.MkdirTemp("", "ztgate-test-")
	if err != nil {
		return nil, err
	}
	Binary = filepath.Join(dir, "ztgate")
	args := []string{"build", "-o", Binary}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/ztgate/ztgate/cmd/ztgate")
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("build ztgate: %w", err)
	}
	return func() { os.RemoveAll(dir) }, nil
}

// Run runs the ztgate binary with args and returns its combined output.
func Run(args ...string) (string, error) {
	out, err := exec.Command(Binary, args...).CombinedOutput()
	return string(out), err
}

// SelfSigned writes a self-signed localhost certificate and key into dir.
func SelfSigned(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "gw.pem"), filepath.Join(dir, "gw.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
