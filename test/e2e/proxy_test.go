package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ztgate test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a leaf certificate and key to dir and returns their paths.
func (ca *testCA) issue(t *testing.T, dir, name string, client bool) (certFile, keyFile string, pair tls.Certificate) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	pair, _ = tls.X509KeyPair(certPEM, keyPEM)
	return certFile, keyFile, pair
}

// TestTLSAndUpstreamMTLS: clients speak HTTP/2 over TLS to the gateway; the
// gateway speaks mTLS to an upstream that requires its client certificate.
func TestTLSAndUpstreamMTLS(t *testing.T) {
	is := newIssuer(t)
	dir := t.TempDir()
	ca := newCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, ca.pem, 0o600)
	gwCert, gwKey, _ := ca.issue(t, dir, "gateway", false)
	clientCert, clientKey, _ := ca.issue(t, dir, "gateway-client", true)
	_, _, upPair := ca.issue(t, dir, "upstream", false)

	var sawClientCN string
	upSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			sawClientCN = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		fmt.Fprint(w, `{"ok":true}`)
	}))
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	upSrv.TLS = &tls.Config{Certificates: []tls.Certificate{upPair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	upSrv.StartTLS()
	defer upSrv.Close()

	cfg := fmt.Sprintf(`listen:
  address: "127.0.0.1:0"
  tls: { cert_file: %q, key_file: %q, client_ca_file: %q, client_auth: optional }
admin:
  address: "127.0.0.1:0"
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
services:
  - name: orders
    upstream: %q
    upstream_tls: { ca_file: %q, cert_file: %q, key_file: %q }
    routes:
      - name: all
        match: { path: "/**" }
        allow: { roles: [Orders.Read] }
`, gwCert, gwKey, caFile, is.URL, upSrv.URL, caFile, clientCert, clientKey)
	g := startGateway(t, cfg)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", "https://"+g.Addr+"/orders/1", nil)
	req.Header.Set("Authorization", "Bearer "+is.TokenFor(t, "alice", "Orders.Read"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("got %d %s, want 200", resp.StatusCode, body)
	}
	if resp.Proto != "HTTP/2.0" {
		t.Errorf("client protocol: got %s, want HTTP/2.0", resp.Proto)
	}
	if sawClientCN != "gateway-client" {
		t.Errorf("upstream saw client certificate %q, want gateway-client", sawClientCN)
	}
	firstSerial := resp.TLS.PeerCertificates[0].SerialNumber

	// client_auth optional: a certificate from another CA is refused in the
	// handshake; none at all is fine.
	otherCA := newCA(t)
	_, _, stranger := otherCA.issue(t, t.TempDir(), "stranger", true)
	if c, err := tls.Dial("tcp", g.Addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{stranger}}); err == nil {
		_, err = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		if err == nil {
			_, err = c.Read(make([]byte, 1))
		}
		c.Close()
		if err == nil {
			t.Error("a client certificate from an untrusted CA was accepted")
		}
	}

	// Certificate rotation: new files on disk are served to new connections
	// without a restart.
	newCert, newKey, _ := ca.issue(t, t.TempDir(), "gateway-rotated", false)
	certPEM, _ := os.ReadFile(newCert)
	keyPEM, _ := os.ReadFile(newKey)
	future := time.Now().Add(time.Minute)
	os.WriteFile(gwKey, keyPEM, 0o600)
	os.WriteFile(gwCert, certPEM, 0o600)
	os.Chtimes(gwKey, future, future)
	os.Chtimes(gwCert, future, future)
	waitFor(t, "rotated certificate served", func() bool {
		c, err := tls.Dial("tcp", g.Addr, &tls.Config{RootCAs: pool})
		if err != nil {
			return false
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(firstSerial) != 0
	})
}

func TestUpstreamFailuresAndLimits(t *testing.T) {
	is := newIssuer(t)
	var slowHits atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slowHits.Add(1)
		time.Sleep(3 * time.Second)
	}))
	defer slow.Close()
	deadLn, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + deadLn.Addr().String()
	deadLn.Close()
	up := newUpstream(t)
	cfg := fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
services:
  - name: slow
    upstream: %q
    timeouts: { response_header: 500ms }
    routes: [ { name: all, match: { path: "/slow/**" }, allow: { authenticated: true } } ]
  - name: dead
    upstream: %q
    routes: [ { name: all, match: { path: "/dead/**" }, allow: { authenticated: true } } ]
  - name: small
    upstream: %q
    max_body_bytes: 1024
    routes: [ { name: all, match: { path: "/small/**" }, allow: { authenticated: true } } ]
`, is.URL, slow.URL, dead, up.URL)
	g := startGateway(t, cfg)
	tok := is.TokenFor(t, "alice")

	status, body, _ := do(t, "GET", g.URL+"/slow/x", tok, nil)
	if e := decodeError(t, body); status != 504 || e.Reason != "upstream_timeout" {
		t.Errorf("slow upstream: got %d %s, want 504 upstream_timeout", status, body)
	}
	if n := slowHits.Load(); n != 1 {
		t.Errorf("slow upstream received %d attempts for one request, want 1 (no retries)", n)
	}
	status, body, _ = do(t, "GET", g.URL+"/dead/x", tok, nil)
	if e := decodeError(t, body); status != 502 || e.Reason != "upstream_unavailable" {
		t.Errorf("dead upstream: got %d %s, want 502 upstream_unavailable", status, body)
	}
	if strings.Contains(string(body), "connection refused") || strings.Contains(string(body), "127.0.0.1") {
		t.Errorf("internal error text leaked to the client: %s", body)
	}
	// Declared too large: refused before the upstream.
	req, _ := http.NewRequest("POST", g.URL+"/small/x", strings.NewReader(strings.Repeat("x", 2048)))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !strings.Contains(string(body), "body_too_large") {
		t.Errorf("large body: got %d %s, want 413 body_too_large", resp.StatusCode, body)
	}
	// Chunked (no Content-Length) and too large: cut off while streaming.
	req, _ = http.NewRequest("POST", g.URL+"/small/x", io.MultiReader(strings.NewReader(strings.Repeat("y", 4096))))
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("large chunked body: got %d %s, want 413", resp.StatusCode, body)
	}
	for _, r := range up.Requests() {
		if len(r.Body) > 1024 {
			t.Errorf("upstream received a %d-byte body beyond the 1024 limit", len(r.Body))
		}
	}
}

// TestStreamingAndWebSocket: a streamed response reaches the client before
// the upstream finishes; an Upgrade passes through only after authorisation.
func TestStreamingAndWebSocket(t *testing.T) {
	is := newIssuer(t)
	release := make(chan struct{})
	upSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			<-release
			fmt.Fprint(w, "data: second\n\n")
		case "/ws":
			if r.Header.Get("Upgrade") != "websocket" {
				http.Error(w, "want upgrade", 400)
				return
			}
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			line, _ := brw.ReadString('\n')
			brw.WriteString("echo:" + line)
			brw.Flush()
		}
	}))
	defer upSrv.Close()
	cfg := fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
services:
  - name: live
    upstream: %q
    routes: [ { name: all, match: { path: "/**" }, allow: { roles: [Live] } } ]
`, is.URL, upSrv.URL)
	g := startGateway(t, cfg)
	tok := is.TokenFor(t, "alice", "Live")

	req, _ := http.NewRequest("GET", g.URL+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || first != "data: first\n" {
		t.Fatalf("got %q, %v before the upstream finished; want the first event streamed", first, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	resp.Body.Close()
	if !strings.Contains(string(rest), "data: second") {
		t.Errorf("got %q, want the second event", rest)
	}

	ws := func(token string) (int, string) {
		c, err := net.Dial("tcp", g.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		auth := ""
		if token != "" {
			auth = "Authorization: Bearer " + token + "\r\n"
		}
		fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n", auth)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 101 {
			return resp.StatusCode, ""
		}
		fmt.Fprint(c, "hello\n")
		line, _ := br.ReadString('\n')
		return 101, line
	}
	if status, _ := ws(""); status != 401 {
		t.Errorf("unauthenticated upgrade: got %d, want 401", status)
	}
	if status, _ := ws(is.TokenFor(t, "bob", "Other")); status != 403 {
		t.Errorf("unauthorised upgrade: got %d, want 403", status)
	}
	if status, echo := ws(tok); status != 101 || echo != "echo:hello\n" {
		t.Errorf("authorised upgrade: got %d %q, want 101 and the echo", status, echo)
	}
}
