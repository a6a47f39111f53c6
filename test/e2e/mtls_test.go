package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ztgate/ztgate/test/harness"
)

// workloadCA issues workload certificates (SPIFFE X.509-SVIDs) and CRLs.
type workloadCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var workloadSerial, crlWrites atomic.Int64

func newWorkloadCA(t *testing.T, name string) *workloadCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(workloadSerial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &workloadCA{cert: cert, key: key}
}

func (ca *workloadCA) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// svid issues a client certificate naming spiffeID.
func (ca *workloadCA) svid(t *testing.T, spiffeID string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, err := url.Parse(spiffeID)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(workloadSerial.Add(1)), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// writeCRL writes a PEM CRL of ca revoking certs to path, with a
// modification time after any earlier one (so the gateway sees a change
// even within the file system's time resolution).
func (ca *workloadCA) writeCRL(t *testing.T, path string, certs ...tls.Certificate) {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(workloadSerial.Add(1)), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(24 * time.Hour)}
	for _, c := range certs {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: c.Leaf.SerialNumber, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Now().Add(time.Duration(crlWrites.Add(1)) * time.Minute)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

// TestMTLSWorkloadIdentity runs the gateway with TLS and identity.mtls:
// workloads prove who they are with SPIFFE certificates, revoked ones and
// those of another trust domain are refused with their reason, and the
// upstream sees only the allowed requests.
func TestMTLSWorkloadIdentity(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	dir := t.TempDir()
	gwCert, gwKey := harness.SelfSigned(t, dir)
	serverPool := x509.NewCertPool()
	serverPEM, _ := os.ReadFile(gwCert)
	serverPool.AppendCertsFromPEM(serverPEM)

	ca := newWorkloadCA(t, "prod workloads")
	if err := os.WriteFile(filepath.Join(dir, "workloads-ca.pem"), ca.pem(), 0o600); err != nil {
		t.Fatal(err)
	}
	orders := ca.svid(t, "spiffe://prod.example/ns/orders/sa/api")
	revoked := ca.svid(t, "spiffe://prod.example/ns/orders/sa/retired")
	foreign := ca.svid(t, "spiffe://evil.example/ns/orders/sa/api")
	billing := ca.svid(t, "spiffe://prod.example/ns/billing/sa/api")
	stranger := newWorkloadCA(t, "someone else").svid(t, "spiffe://prod.example/ns/orders/sa/api")
	crlFile := filepath.Join(dir, "workloads.crl")
	ca.writeCRL(t, crlFile, revoked)

	cfg := fmt.Sprintf(`listen:
  address: "127.0.0.1:0"
  tls: { cert_file: %q, key_file: %q, client_auth: optional }
admin:
  address: "127.0.0.1:0"
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
  mtls:
    trust_bundle: workloads-ca.pem
    crl_file: workloads.crl
    trust_domains: [prod.example]
store: { driver: sqlite, dsn: audit.db }
services:
  - name: orders
    upstream: %q
    routes:
      - name: orders
        match: { path: "/orders/**" }
        require_client_cert: true
        allow: { identity_types: [workload], workloads: ["spiffe://prod.example/ns/orders/*/*"] }
      - name: reports
        match: { path: "/reports/**" }
        require_client_cert: true
        allow: { roles: [Reports.Read], workloads: ["spiffe://prod.example/ns/orders/**"] }
      - name: public
        match: { path: "/public/**" }
        allow: { authenticated: true }
        when: 'identity.type != "workload" || identity.workload.trust_domain == "prod.example"'
`, gwCert, gwKey, is.URL, up.URL)
	g := startGatewayIn(t, dir, cfg)
	reportsToken := is.TokenFor(t, "alice", "Reports.Read")

	clients := map[string]*http.Client{}
	client := func(name string, cert *tls.Certificate) *http.Client {
		if c, ok := clients[name]; ok {
			return c
		}
		tc := &tls.Config{RootCAs: serverPool}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
		clients[name] = c
		t.Cleanup(c.CloseIdleConnections)
		return c
	}
	call := func(t *testing.T, c *http.Client, path, token string) (int, []byte, http.Header) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+g.Addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		// A client's claim to a forwarded certificate never reaches the upstream.
		req.Header.Set("X-Forwarded-Client-Cert", "By=spiffe://prod.example/ns/admin/sa/root")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body, resp.Header
	}

	tests := []struct {
		name   string
		cert   *tls.Certificate
		certID string
		path   string
		token  string
		status int
		reason string
	}{
		{"good workload", &orders, "orders", "/orders/1", "", 200, ""},
		{"revoked workload", &revoked, "revoked", "/orders/2", "", 401, "cert_revoked"},
		{"another trust domain", &foreign, "foreign", "/orders/3", "", 401, "trust_domain_not_allowed"},
		{"no certificate", nil, "none", "/orders/4", "", 401, "cert_missing"},
		{"no certificate, with a token", nil, "none", "/orders/5", reportsToken, 401, "cert_missing"},
		{"certificate of another CA", &stranger, "stranger", "/orders/6", "", 401, "cert_untrusted"},
		{"workload not allowed on the route", &billing, "billing", "/orders/7", "", 403, "workload_not_allowed"},
		{"token through an allowed workload", &orders, "orders", "/reports/1", reportsToken, 200, ""},
		{"workload without the token's role", &orders, "orders", "/reports/2", "", 403, "role_missing"},
		{"token through a workload not allowed", &billing, "billing", "/reports/3", reportsToken, 403, "workload_not_allowed"},
		{"a revoked certificate refuses a good token", &revoked, "revoked", "/public/1", reportsToken, 401, "cert_revoked"},
		{"token without a certificate where none is required", nil, "none", "/public/2", reportsToken, 200, ""},
		{"workload alone on an authenticated route", &billing, "billing", "/public/3", "", 200, ""},
		{"nothing at all", nil, "none", "/public/4", "", 401, "missing_credentials"},
	}
	var allowed []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.Reset()
			status, body, hdr := call(t, client(tt.certID, tt.cert), tt.path, tt.token)
			if status != tt.status {
				t.Fatalf("got %d %s, want %d", status, body, tt.status)
			}
			seen := up.Requests()
			if tt.reason != "" {
				if e := decodeError(t, body); e.Reason != tt.reason {
					t.Errorf("got reason %q, want %q", e.Reason, tt.reason)
				}
				if status == 401 && strings.Contains(hdr.Get("WWW-Authenticate"), "invalid_token") && strings.HasPrefix(tt.reason, "cert_") {
					t.Errorf("a certificate refusal blames a token: %q", hdr.Get("WWW-Authenticate"))
				}
				if len(seen) != 0 {
					t.Fatalf("the upstream saw a refused request: %+v", seen)
				}
				return
			}
			if len(seen) != 1 || seen[0].Path != tt.path {
				t.Fatalf("the upstream saw %+v, want exactly %s", seen, tt.path)
			}
			if v := seen[0].Header.Get("X-Forwarded-Client-Cert"); v != "" {
				t.Errorf("the upstream saw the client's X-Forwarded-Client-Cert %q", v)
			}
			allowed = append(allowed, tt.path)
		})
	}
	if len(allowed) != 4 {
		t.Fatalf("allowed %v, want 4 requests", allowed)
	}

	// The audit trail names each workload, including the refused ones
	// whose certificate was genuine.
	out, err := runBinary("audit", "query", "--config", g.CfgPath, "--json", "--limit", "1000")
	if err != nil {
		t.Fatalf("audit query: %v\n%s", err, out)
	}
	type auditEvent struct {
		URL, Decision, IdentityType, Subject, Identity, Workload, ResultDetails, CertSerial string
	}
	events := map[string]auditEvent{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct {
			URL           string `json:"url"`
			Decision      string `json:"decision"`
			IdentityType  string `json:"identity_type"`
			Subject       string `json:"subject"`
			Identity      string `json:"identity"`
			Workload      string `json:"workload"`
			ResultDetails string `json:"result_details"`
			CertSerial    string `json:"cert_serial"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		events[e.URL] = auditEvent(e)
	}
	for _, want := range []auditEvent{
		{URL: "/orders/1", Decision: "allow", IdentityType: "workload", Subject: "spiffe://prod.example/ns/orders/sa/api", Identity: "spiffe://prod.example/ns/orders/sa/api", Workload: "spiffe://prod.example/ns/orders/sa/api", CertSerial: orders.Leaf.SerialNumber.Text(16)},
		{URL: "/orders/2", Decision: "deny", IdentityType: "workload", Subject: "spiffe://prod.example/ns/orders/sa/retired", Identity: "spiffe://prod.example/ns/orders/sa/retired", Workload: "spiffe://prod.example/ns/orders/sa/retired", ResultDetails: "cert_revoked", CertSerial: revoked.Leaf.SerialNumber.Text(16)},
		{URL: "/orders/3", Decision: "deny", IdentityType: "workload", Subject: "spiffe://evil.example/ns/orders/sa/api", Identity: "spiffe://evil.example/ns/orders/sa/api", Workload: "spiffe://evil.example/ns/orders/sa/api", ResultDetails: "trust_domain_not_allowed", CertSerial: foreign.Leaf.SerialNumber.Text(16)},
		{URL: "/orders/4", Decision: "deny", ResultDetails: "cert_missing"},
		{URL: "/orders/6", Decision: "deny", ResultDetails: "cert_untrusted"}, // an unknown CA's certificate proves nothing
		{URL: "/reports/1", Decision: "allow", IdentityType: "user", Subject: "alice", Workload: "spiffe://prod.example/ns/orders/sa/api", CertSerial: orders.Leaf.SerialNumber.Text(16)},
	} {
		got, ok := events[want.URL]
		if !ok {
			t.Errorf("no audit event for %s", want.URL)
			continue
		}
		if want.Identity == "" && want.IdentityType == "user" {
			want.Identity = got.Identity // iss|sub, checked by other tests
		}
		if got != want {
			t.Errorf("audit event for %s:\n got %+v\nwant %+v", want.URL, got, want)
		}
	}

	// Revoking a certificate takes effect when the CRL file changes,
	// without a restart; the same connection is checked again.
	ca.writeCRL(t, crlFile, revoked, orders)
	waitFor(t, "the rewritten CRL to revoke the orders workload", func() bool {
		status, body, _ := call(t, client("orders", &orders), "/orders/8", "")
		return status == 401 && strings.Contains(string(body), `"cert_revoked"`)
	})
	g.WaitLog("the reload logged", "configuration reloaded")
	up.Reset()
	// A CRL that is not signed by the trust bundle's CA is refused, and the
	// previous one keeps serving.
	newWorkloadCA(t, "forger").writeCRL(t, crlFile)
	g.WaitLog("the forged CRL to be refused", "is not signed by a CA in the trust bundle")
	if status, _, _ := call(t, client("orders", &orders), "/orders/9", ""); status != 401 {
		t.Errorf("after a forged CRL: got %d, want 401 (the last good CRL still revokes)", status)
	}
	if status, _, _ := call(t, client("billing", &billing), "/public/5", ""); status != 200 {
		t.Errorf("after a forged CRL: an unrevoked workload got %d, want 200", status)
	}
	if seen := up.Requests(); len(seen) != 1 || seen[0].Path != "/public/5" {
		t.Errorf("after the revocation the upstream saw %+v, want only /public/5", seen)
	}
}

// TestMTLSConfigErrors: mTLS without TLS on the listener is refused with
// file:line.
func TestMTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ztgate.yaml")
	ca := newWorkloadCA(t, "ca")
	os.WriteFile(filepath.Join(dir, "ca.pem"), ca.pem(), 0o600)
	cfg := `listen: { address: "127.0.0.1:0" }
identity:
  mtls: { trust_bundle: ca.pem, trust_domains: [prod.example] }
services:
  - name: s
    upstream: http://127.0.0.1:1
    routes: [ { name: r, match: { path: "/**" }, allow: { workloads: ["spiffe://prod.example/**"] } } ]
`
	os.WriteFile(path, []byte(cfg), 0o600)
	out, err := runBinary("check", "--config", path)
	if err == nil || !strings.Contains(out, path+":3:9: identity.mtls: client certificates need TLS on the listener") {
		t.Fatalf("got %v:\n%s\nwant the identity.mtls error at line 3", err, out)
	}
	os.WriteFile(path, []byte(strings.Replace(cfg, `listen: { address: "127.0.0.1:0" }`, `listen: { address: "127.0.0.1:0", tls: { cert_file: a.pem, key_file: a.key, client_auth: optional } }`, 1)+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("not a certificate"), 0o600)
	out, err = runBinary("check", "--config", path)
	if err == nil || !strings.Contains(out, path+":3:25: identity.mtls.trust_bundle: trust bundle holds no PEM certificates") {
		t.Fatalf("got %v:\n%s\nwant the trust_bundle error at line 3", err, out)
	}
}
