package authn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
)

// testNow is the fixed clock of the certificate tests.
var testNow = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

var serials atomic.Int64

// testCA is a certificate authority made for a test.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newTestCA(t testing.TB, name string, parent *testCA) *testCA {
	t.Helper()
	key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serials.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: testNow.Add(-24 * time.Hour), NotAfter: testNow.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	signer, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der := must(x509.CreateCertificate(rand.Reader, tmpl, signer, key.Public(), signerKey))
	return &testCA{cert: must(x509.ParseCertificate(der)), key: key}
}

func (ca *testCA) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// leafOpts shape a leaf certificate; the zero value is a good workload
// certificate for spiffe://prod.example/ns/orders/sa/api.
type leafOpts struct {
	uris      []string // raw URI SANs; nil: the default SPIFFE ID; empty: none
	dns       []string
	cn        string
	eku       []x509.ExtKeyUsage // nil: clientAuth
	noEKU     bool
	notBefore time.Time
	notAfter  time.Time
	isCA      bool
}

func (ca *testCA) leaf(t testing.TB, o leafOpts) *x509.Certificate {
	t.Helper()
	key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serials.Add(1)), Subject: pkix.Name{CommonName: o.cn},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames: o.dns,
	}
	if o.uris == nil {
		o.uris = []string{"spiffe://prod.example/ns/orders/sa/api"}
	}
	for _, u := range o.uris {
		tmpl.URIs = append(tmpl.URIs, mustURL(t, u))
	}
	if o.eku != nil {
		tmpl.ExtKeyUsage = o.eku
	}
	if o.noEKU {
		tmpl.ExtKeyUsage = nil
	}
	if !o.notBefore.IsZero() {
		tmpl.NotBefore = o.notBefore
	}
	if !o.notAfter.IsZero() {
		tmpl.NotAfter = o.notAfter
	}
	if o.isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	der := must(x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key))
	return must(x509.ParseCertificate(der))
}

// mustURL parses a URI SAN for the template. url.URL.String, which
// crypto/x509 encodes, gives back what was parsed.
func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url %q: %v", s, err)
	}
	if u.String() != s {
		t.Fatalf("url %q would be encoded as %q", s, u.String())
	}
	return u
}

// crl returns a PEM CRL of ca revoking the given certificates.
func (ca *testCA) crl(t testing.TB, nextUpdate time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(serials.Add(1)), ThisUpdate: testNow.Add(-time.Hour), NextUpdate: nextUpdate}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: testNow.Add(-time.Minute)})
	}
	der := must(x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key))
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

func fixedClock(at *time.Time) func() time.Time { return func() time.Time { return *at } }

func TestMTLSVerify(t *testing.T) {
	root := newTestCA(t, "workload root", nil)
	inter := newTestCA(t, "workload intermediate", root)
	other := newTestCA(t, "another root", nil)

	good := root.leaf(t, leafOpts{})
	viaInter := inter.leaf(t, leafOpts{uris: []string{"spiffe://prod.example/ns/billing/sa/worker"}})
	revoked := root.leaf(t, leafOpts{uris: []string{"spiffe://prod.example/ns/orders/sa/old"}})
	revokedInterCA := newTestCA(t, "revoked intermediate", root)
	underRevoked := revokedInterCA.leaf(t, leafOpts{})
	crls := root.crl(t, testNow.Add(24*time.Hour), revoked, revokedInterCA.cert)

	now := testNow
	m, err := NewMTLS(MTLSOptions{
		TrustBundle:  root.pem(),
		CRLs:         crls,
		TrustDomains: []string{"prod.example", "staging.example"},
		IdentityFrom: []string{"spiffe", "dns", "subject"},
		Now:          fixedClock(&now),
		CacheSize:    -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	spiffeOnly, err := NewMTLS(MTLSOptions{TrustBundle: root.pem(), TrustDomains: []string{"prod.example"}, Now: fixedClock(&now), CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		m         *MTLS
		chain     []*x509.Certificate
		reason    string // "" for success
		status    int
		subject   string // the workload ID, on success or in the failure's identity
		td, path  string
		source    string
		auditedID bool // the failure names the refused workload
	}{
		{name: "good SPIFFE workload", chain: []*x509.Certificate{good}, subject: "spiffe://prod.example/ns/orders/sa/api", td: "prod.example", path: "/ns/orders/sa/api", source: "spiffe"},
		{name: "via an intermediate the client sends", chain: []*x509.Certificate{viaInter, inter.cert}, subject: "spiffe://prod.example/ns/billing/sa/worker", td: "prod.example", path: "/ns/billing/sa/worker", source: "spiffe"},
		{name: "intermediate not sent", chain: []*x509.Certificate{viaInter}, reason: ReasonCertUntrusted},
		{name: "second allowed trust domain", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"spiffe://staging.example/x"}})}, subject: "spiffe://staging.example/x", td: "staging.example", path: "/x", source: "spiffe"},
		{name: "no certificate", chain: nil, reason: ReasonCertMissing},
		{name: "expired leaf", chain: []*x509.Certificate{root.leaf(t, leafOpts{notBefore: testNow.Add(-48 * time.Hour), notAfter: testNow.Add(-time.Second)})}, reason: ReasonCertExpired, subject: "spiffe://prod.example/ns/orders/sa/api", auditedID: true},
		{name: "not yet valid", chain: []*x509.Certificate{root.leaf(t, leafOpts{notBefore: testNow.Add(time.Hour), notAfter: testNow.Add(2 * time.Hour)})}, reason: ReasonCertNotYetValid, auditedID: true, subject: "spiffe://prod.example/ns/orders/sa/api"},
		// Regression: an expired certificate of an unknown CA is untrusted,
		// not "expired" (which would say it was once good).
		{name: "expired leaf of another CA", chain: []*x509.Certificate{other.leaf(t, leafOpts{notBefore: testNow.Add(-48 * time.Hour), notAfter: testNow.Add(-time.Second)})}, reason: ReasonCertUntrusted},
		{name: "wrong trust domain", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"spiffe://evil.example/ns/orders/sa/api"}})}, reason: ReasonTrustDomainNotAllowed, subject: "spiffe://evil.example/ns/orders/sa/api", auditedID: true},
		// Regression: trust domains compare whole names.
		{name: "trust domain with an allowed suffix", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"spiffe://evil-prod.example/x"}})}, reason: ReasonTrustDomainNotAllowed, subject: "spiffe://evil-prod.example/x", auditedID: true},
		{name: "trust domain with an allowed prefix", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"spiffe://prod.example.evil/x"}})}, reason: ReasonTrustDomainNotAllowed, subject: "spiffe://prod.example.evil/x", auditedID: true},
		{name: "revoked via CRL", chain: []*x509.Certificate{revoked}, reason: ReasonCertRevoked, subject: "spiffe://prod.example/ns/orders/sa/old", auditedID: true},
		{name: "issued by a revoked intermediate", chain: []*x509.Certificate{underRevoked, revokedInterCA.cert}, reason: ReasonCertRevoked, auditedID: true, subject: "spiffe://prod.example/ns/orders/sa/api"},
		{name: "no clientAuth EKU", chain: []*x509.Certificate{root.leaf(t, leafOpts{eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})}, reason: ReasonCertUntrusted},
		// Regression: crypto/x509 accepts a leaf without EKUs for any usage.
		{name: "no EKU at all", chain: []*x509.Certificate{root.leaf(t, leafOpts{noEKU: true})}, reason: ReasonCertUntrusted},
		{name: "any EKU is not clientAuth", chain: []*x509.Certificate{root.leaf(t, leafOpts{eku: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})}, reason: ReasonCertUntrusted},
		{name: "other-CA leaf", chain: []*x509.Certificate{other.leaf(t, leafOpts{})}, reason: ReasonCertUntrusted},
		{name: "other-CA leaf with its CA as intermediate", chain: []*x509.Certificate{other.leaf(t, leafOpts{}), other.cert}, reason: ReasonCertUntrusted},
		{name: "CA certificate as leaf", chain: []*x509.Certificate{root.leaf(t, leafOpts{isCA: true})}, reason: ReasonCertUntrusted},
		{name: "the root itself", chain: []*x509.Certificate{root.cert}, reason: ReasonCertUntrusted},
		{name: "two URI SANs", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"spiffe://prod.example/a", "spiffe://prod.example/b"}})}, reason: ReasonBadSPIFFEID},
		{name: "a SPIFFE and an https URI SAN", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"spiffe://prod.example/a", "https://orders.example/"}})}, reason: ReasonBadSPIFFEID},
		{name: "SPIFFE ID without a path", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"spiffe://prod.example"}})}, reason: ReasonBadSPIFFEID},
		{name: "SPIFFE ID with an upper-case trust domain", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"spiffe://Prod.example/x"}})}, reason: ReasonBadSPIFFEID},
		{name: "SPIFFE ID with a port", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"spiffe://prod.example:8443/x"}})}, reason: ReasonBadSPIFFEID},
		{name: "SPIFFE ID with a query", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"spiffe://prod.example/x?admin=1"}})}, reason: ReasonBadSPIFFEID},
		{name: "SPIFFE ID with a dot-dot segment", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"spiffe://prod.example/ns/../admin"}})}, reason: ReasonBadSPIFFEID},
		{name: "SPIFFE ID percent-encoded", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"spiffe://prod.example/a%2Fb"}})}, reason: ReasonBadSPIFFEID},
		// Regression: a bad SPIFFE ID never falls through to the DNS name.
		{name: "bad SPIFFE ID beside a DNS name", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"spiffe://prod.example/x/"}, dns: []string{"orders.internal"}})}, reason: ReasonBadSPIFFEID},
		{name: "https URI SAN falls through to DNS", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"https://orders.example/"}, dns: []string{"Orders.Internal", "other.internal"}})}, subject: "dns:orders.internal", source: "dns"},
		{name: "DNS SAN", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{}, dns: []string{"orders.internal"}, cn: "ignored"})}, subject: "dns:orders.internal", source: "dns"},
		{name: "wildcard DNS SAN", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{}, dns: []string{"*.orders.internal"}})}, reason: ReasonNoWorkloadID},
		{name: "subject CN", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{}, cn: "Orders API"})}, subject: "cn:Orders API", source: "subject"},
		{name: "nothing names a workload", chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{}})}, reason: ReasonNoWorkloadID},
		{name: "spiffe only: DNS SAN is not an identity", m: spiffeOnly, chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{}, dns: []string{"orders.internal"}})}, reason: ReasonNoWorkloadID},
		{name: "spiffe only: good", m: spiffeOnly, chain: []*x509.Certificate{good}, subject: "spiffe://prod.example/ns/orders/sa/api", td: "prod.example", path: "/ns/orders/sa/api", source: "spiffe"},
		{name: "spiffe only: staging not allowed there", m: spiffeOnly, chain: []*x509.Certificate{root.leaf(t, leafOpts{uris: []string{"spiffe://staging.example/x"}})}, reason: ReasonTrustDomainNotAllowed, subject: "spiffe://staging.example/x", auditedID: true},
		{name: "chain too long", chain: []*x509.Certificate{good, root.cert, root.cert, root.cert, root.cert, root.cert, root.cert, root.cert, root.cert}, reason: ReasonCertUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.m
			if v == nil {
				v = m
			}
			id, f := v.Verify(tt.chain)
			if tt.reason != "" {
				if f == nil {
					t.Fatalf("got identity %q, want failure %s", id.Subject, tt.reason)
				}
				if f.Reason != tt.reason {
					t.Fatalf("got reason %s (%v), want %s", f.Reason, f, tt.reason)
				}
				if id != nil {
					t.Errorf("got an identity beside failure %s", f.Reason)
				}
				want := tt.status
				if want == 0 {
					want = http.StatusUnauthorized
				}
				if f.Status != want {
					t.Errorf("got status %d, want %d", f.Status, want)
				}
				if !IsCertReason(f.Reason) {
					t.Errorf("IsCertReason(%s) = false, want true", f.Reason)
				}
				switch {
				case tt.auditedID && (f.Identity == nil || f.Identity.Subject != tt.subject):
					t.Errorf("got failure identity %+v, want one with subject %q", f.Identity, tt.subject)
				case !tt.auditedID && f.Identity != nil:
					t.Errorf("got failure identity %q, want none: the certificate proves nothing", f.Identity.Subject)
				}
				return
			}
			if f != nil {
				t.Fatalf("got failure %v, want workload %s", f, tt.subject)
			}
			cc := id.ClientCert
			if id.Type != identity.Workload || id.Subject != tt.subject || id.Provider != ProviderMTLS || cc == nil {
				t.Fatalf("got identity type %s subject %q provider %q, want workload %q", id.Type, id.Subject, id.Provider, tt.subject)
			}
			if cc.ID != tt.subject || cc.Source != tt.source || cc.TrustDomain != tt.td || cc.Path != tt.path {
				t.Errorf("got client cert %+v, want id %q source %s trust domain %q path %q", cc, tt.subject, tt.source, tt.td, tt.path)
			}
			if id.Key() != tt.subject {
				t.Errorf("Key: got %q, want the workload ID %q", id.Key(), tt.subject)
			}
			if cc.Serial != tt.chain[0].SerialNumber.Text(16) || len(cc.Fingerprint) != 64 || cc.NotAfter.IsZero() {
				t.Errorf("got serial %q fingerprint %q not after %v", cc.Serial, cc.Fingerprint, cc.NotAfter)
			}
		})
	}

	t.Run("stale CRL at verification", func(t *testing.T) {
		late := testNow.Add(25 * time.Hour)
		stale, err := NewMTLS(MTLSOptions{TrustBundle: root.pem(), CRLs: crls, TrustDomains: []string{"prod.example"}, Now: fixedClock(&now), CacheSize: -1})
		if err != nil {
			t.Fatal(err)
		}
		stale.now = fixedClock(&late)
		_, f := stale.Verify([]*x509.Certificate{root.leaf(t, leafOpts{notAfter: testNow.Add(48 * time.Hour)})})
		if f == nil || f.Reason != ReasonCRLStale || f.Status != http.StatusServiceUnavailable {
			t.Fatalf("got %v, want 503 %s", f, ReasonCRLStale)
		}
		// A CA without a CRL is not checked, stale or not.
		if _, f := spiffeOnly.Verify([]*x509.Certificate{revoked}); f != nil {
			t.Fatalf("without a CRL: got %v, want the certificate accepted", f)
		}
	})
}

func TestNewMTLSErrors(t *testing.T) {
	root := newTestCA(t, "root", nil)
	other := newTestCA(t, "other", nil)
	leaf := root.leaf(t, leafOpts{})
	now := testNow
	der := func(p []byte) []byte { b, _ := pem.Decode(p); return b.Bytes }
	tests := []struct {
		name   string
		bundle []byte
		crls   []byte
		want   string // "" for success
	}{
		{"PEM CRL", root.pem(), root.crl(t, testNow.Add(time.Hour), leaf), ""},
		{"DER CRL", root.pem(), der(root.crl(t, testNow.Add(time.Hour), leaf)), ""},
		{"two CAs, two CRLs", append(root.pem(), other.pem()...), append(root.crl(t, testNow.Add(time.Hour)), other.crl(t, testNow.Add(time.Hour))...), ""},
		{"empty bundle", nil, nil, "no PEM certificates"},
		{"garbage bundle", []byte("not pem"), nil, "no PEM certificates"},
		{"leaf in the bundle", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), nil, "is not a CA certificate"},
		{"CRL of a CA not in the bundle", root.pem(), other.crl(t, testNow.Add(time.Hour)), "is not signed by a CA in the trust bundle"},
		{"two CRLs of one CA", root.pem(), append(root.crl(t, testNow.Add(time.Hour)), root.crl(t, testNow.Add(time.Hour))...), "a second CRL"},
		{"stale CRL", root.pem(), root.crl(t, testNow.Add(-time.Minute)), "is stale"},
		{"no CRL in the file", root.pem(), []byte("-----BEGIN NOTHING-----\n-----END NOTHING-----\n"), "no CRL found"},
		{"bad DER CRL", root.pem(), []byte{0x30, 0x03, 0x01, 0x01, 0x00}, "DER CRL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewMTLS(MTLSOptions{TrustBundle: tt.bundle, CRLs: tt.crls, Now: fixedClock(&now)})
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("got %v, want success", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// A DER CRL is checked like a PEM one.
	m, err := NewMTLS(MTLSOptions{TrustBundle: root.pem(), CRLs: der(root.crl(t, testNow.Add(time.Hour), leaf)), TrustDomains: []string{"prod.example"}, Now: fixedClock(&now)})
	if err != nil {
		t.Fatal(err)
	}
	if _, f := m.Verify([]*x509.Certificate{leaf}); f == nil || f.Reason != ReasonCertRevoked {
		t.Fatalf("DER CRL: got %v, want %s", f, ReasonCertRevoked)
	}
}

// TestMTLSCacheExpires: a remembered verification never outlives the
// certificate or the CRL it relied on.
func TestMTLSCacheExpires(t *testing.T) {
	root := newTestCA(t, "root", nil)
	leaf := root.leaf(t, leafOpts{notAfter: testNow.Add(time.Hour)})
	now := testNow
	m, err := NewMTLS(MTLSOptions{TrustBundle: root.pem(), CRLs: root.crl(t, testNow.Add(30*time.Minute)), TrustDomains: []string{"prod.example"}, Now: fixedClock(&now)})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, f := m.Verify([]*x509.Certificate{leaf}); f != nil {
			t.Fatalf("got %v, want success", f)
		}
	}
	if m.cache.len() != 1 {
		t.Fatalf("cache holds %d entries, want 1", m.cache.len())
	}
	now = testNow.Add(31 * time.Minute)
	if _, f := m.Verify([]*x509.Certificate{leaf}); f == nil || f.Reason != ReasonCRLStale {
		t.Fatalf("past the CRL's nextUpdate: got %v, want %s", f, ReasonCRLStale)
	}
	m2, err := NewMTLS(MTLSOptions{TrustBundle: root.pem(), TrustDomains: []string{"prod.example"}, Now: fixedClock(&now)})
	if err != nil {
		t.Fatal(err)
	}
	now = testNow
	if _, f := m2.Verify([]*x509.Certificate{leaf}); f != nil {
		t.Fatal(f)
	}
	now = testNow.Add(61 * time.Minute)
	if _, f := m2.Verify([]*x509.Certificate{leaf}); f == nil || f.Reason != ReasonCertExpired {
		t.Fatalf("past the certificate's expiry: got %v, want %s", f, ReasonCertExpired)
	}
}

func TestMTLSFromConfig(t *testing.T) {
	root := newTestCA(t, "root", nil)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bundle.pem"), root.pem(), 0o600); err != nil {
		t.Fatal(err)
	}
	crl := root.crl(t, time.Now().Add(time.Hour))
	if err := os.WriteFile(filepath.Join(dir, "revoked.crl"), crl, 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "ztgate.yaml")
	yaml := `listen: { address: "127.0.0.1:0", tls: { cert_file: gw.pem, key_file: gw.key, client_auth: optional } }
identity:
  mtls:
    trust_bundle: bundle.pem
    crl_file: revoked.crl
    trust_domains: [prod.example]
services:
  - name: s
    upstream: http://127.0.0.1:1
    routes: [ { name: r, match: { path: "/**" }, allow: { workloads: ["spiffe://prod.example/**"] } } ]
`
	cfg, err := config.Parse(cfgFile, []byte(yaml), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateConfig(cfg); err != nil {
		t.Fatalf("ValidateConfig: %v", err)
	}
	if _, err := MTLSFromConfig(cfg.Identity.MTLS, dir); err != nil {
		t.Fatalf("MTLSFromConfig: %v", err)
	}
	if got := MTLSFiles(cfg.Identity.MTLS, dir); len(got) != 2 || got[0] != filepath.Join(dir, "bundle.pem") {
		t.Errorf("MTLSFiles: got %v", got)
	}

	// Errors name the key, with its line.
	other := newTestCA(t, "other", nil)
	if err := os.WriteFile(filepath.Join(dir, "revoked.crl"), other.crl(t, time.Now().Add(time.Hour)), 0o600); err != nil {
		t.Fatal(err)
	}
	err = ValidateConfig(cfg)
	if err == nil || !strings.Contains(err.Error(), "ztgate.yaml:5:15: identity.mtls.crl_file: CRL 1 (issuer CN=other) is not signed by a CA in the trust bundle") {
		t.Fatalf("got %v, want the crl_file error at its line", err)
	}
	os.Remove(filepath.Join(dir, "bundle.pem"))
	err = ValidateConfig(cfg)
	if err == nil || !strings.Contains(err.Error(), "ztgate.yaml:4:19: identity.mtls.trust_bundle: open ") {
		t.Fatalf("got %v, want the trust_bundle error at its line", err)
	}
}

// TestAuthenticateWithClientCert: the precedence between a client
// certificate and a bearer token.
func TestAuthenticateWithClientCert(t *testing.T) {
	ti := newTestIssuer(t)
	root := newTestCA(t, "root", nil)
	other := newTestCA(t, "other", nil)
	m, err := NewMTLS(MTLSOptions{TrustBundle: root.pem(), TrustDomains: []string{"prod.example"}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	good := root.leaf(t, leafOpts{notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Hour)})
	stranger := other.leaf(t, leafOpts{notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Hour)})
	token := ti.sign(t, "RS256", ti.rsaKey, map[string]any{"kid": "rsa1"}, ti.claims())

	withTokens := NewAuthenticator(16384, ti.verifier(t)).WithMTLS(m)
	certsOnly := NewAuthenticator(16384).WithMTLS(m)
	noMTLS := NewAuthenticator(16384, ti.verifier(t))

	req := func(cert *x509.Certificate, auth string) *http.Request {
		r := httptest.NewRequest("GET", "https://gw/orders", nil)
		r.TLS = &tls.ConnectionState{}
		if cert != nil {
			r.TLS.PeerCertificates = []*x509.Certificate{cert}
		}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return r
	}
	tests := []struct {
		name     string
		a        *Authenticator
		r        *http.Request
		reason   string
		typ      identity.Type
		subject  string
		workload string // the identity's ClientCert ID
	}{
		{"certificate alone: the workload is the caller", withTokens, req(good, ""), "", identity.Workload, "spiffe://prod.example/ns/orders/sa/api", "spiffe://prod.example/ns/orders/sa/api"},
		{"token and certificate: the token is the caller", withTokens, req(good, "Bearer "+token), "", identity.User, "alice", "spiffe://prod.example/ns/orders/sa/api"},
		{"token alone", withTokens, req(nil, "Bearer "+token), "", identity.User, "alice", ""},
		{"untrusted certificate refuses a good token", withTokens, req(stranger, "Bearer "+token), ReasonCertUntrusted, "", "", ""},
		{"good certificate, bad token", withTokens, req(good, "Bearer garbage"), ReasonMalformedToken, "", "", ""},
		{"good certificate, another scheme", withTokens, req(good, "Basic dXNlcjpwYXNz"), ReasonMissingCredentials, "", "", ""},
		{"nothing, with token providers", withTokens, req(nil, ""), ReasonMissingCredentials, "", "", ""},
		{"nothing, certificates only", certsOnly, req(nil, ""), ReasonCertMissing, "", "", ""},
		{"certificates only: a token is not accepted", certsOnly, req(good, "Bearer "+token), ReasonWrongIssuer, "", "", ""},
		{"without mtls a certificate names no one", noMTLS, req(good, ""), ReasonMissingCredentials, "", "", ""},
		{"without mtls a token still works", noMTLS, req(stranger, "Bearer "+token), "", identity.User, "alice", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, f := tt.a.Authenticate(tt.r)
			if tt.reason != "" {
				if f == nil || f.Reason != tt.reason {
					t.Fatalf("got %+v, %v; want failure %s", id, f, tt.reason)
				}
				return
			}
			if f != nil {
				t.Fatalf("got failure %v, want %s %q", f, tt.typ, tt.subject)
			}
			if id.Type != tt.typ || id.Subject != tt.subject {
				t.Errorf("got %s %q, want %s %q", id.Type, id.Subject, tt.typ, tt.subject)
			}
			got := ""
			if id.ClientCert != nil {
				got = id.ClientCert.ID
			}
			if got != tt.workload {
				t.Errorf("got client cert workload %q, want %q", got, tt.workload)
			}
		})
	}
	// Regression: attaching the certificate to a token's identity must not
	// change the identity the token cache shares with other requests.
	id, _ := withTokens.Authenticate(req(nil, "Bearer "+token))
	if id.ClientCert != nil {
		t.Fatalf("a cached token identity carries client cert %q from an earlier request", id.ClientCert.ID)
	}
}

func BenchmarkMTLSVerify(b *testing.B) {
	root := newTestCA(b, "root", nil)
	inter := newTestCA(b, "inter", root)
	leaf := inter.leaf(b, leafOpts{})
	now := testNow
	for _, size := range []int{-1, 0} {
		name := "cached"
		if size < 0 {
			name = "uncached"
		}
		b.Run(name, func(b *testing.B) {
			m, err := NewMTLS(MTLSOptions{TrustBundle: root.pem(), CRLs: root.crl(b, testNow.Add(time.Hour)), TrustDomains: []string{"prod.example"}, Now: fixedClock(&now), CacheSize: size})
			if err != nil {
				b.Fatal(err)
			}
			chain := []*x509.Certificate{leaf, inter.cert}
			b.ReportAllocs()
			for b.Loop() {
				if _, f := m.Verify(chain); f != nil {
					b.Fatal(f)
				}
			}
		})
	}
}

// FuzzURISANs feeds arbitrary subject alternative name extensions (the
// client's bytes) to the URI SAN reader and the SPIFFE ID parser.
func FuzzURISANs(f *testing.F) {
	root := newTestCA(f, "root", nil)
	for _, o := range []leafOpts{{}, {uris: []string{"spiffe://a/b", "https://x/"}, dns: []string{"x.example"}}, {uris: []string{}}} {
		for _, ext := range root.leaf(f, o).Extensions {
			if ext.Id.Equal(oidSubjectAltName) {
				f.Add(ext.Value)
			}
		}
	}
	f.Add([]byte{0x30, 0x80})
	f.Add([]byte("0\x07\x86\x05dns:x"))
	f.Fuzz(func(t *testing.T, ext []byte) {
		c := &x509.Certificate{Extensions: []pkix.Extension{{Id: oidSubjectAltName, Value: ext}}}
		uris, err := uriSANs(c)
		if err != nil {
			return
		}
		m := &config.MTLS{TrustDomains: []string{"a"}, IdentityFrom: []string{"spiffe", "dns", "subject"}}
		for _, u := range uris {
			id, f := WorkloadFromID(m, u)
			if (id == nil) == (f == nil) {
				t.Fatalf("WorkloadFromID(%q) = %v, %v: want exactly one", u, id, f)
			}
			if id != nil && id.ClientCert.Source == "spiffe" && (id.ClientCert.TrustDomain != "a" || !strings.HasPrefix(u, "spiffe://a/")) {
				t.Fatalf("WorkloadFromID(%q) accepted trust domain %q", u, id.ClientCert.TrustDomain)
			}
		}
	})
}
