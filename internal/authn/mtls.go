package authn

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
	"github.com/ztgate/ztgate/internal/spiffeid"
)

// Reasons of client certificate verification.
const (
	ReasonCertMissing           = "cert_missing"
	ReasonCertUntrusted         = "cert_untrusted"
	ReasonCertExpired           = "cert_expired"
	ReasonCertNotYetValid       = "cert_not_yet_valid"
	ReasonCertRevoked           = "cert_revoked"
	ReasonCRLStale              = "crl_stale"
	ReasonTrustDomainNotAllowed = "trust_domain_not_allowed"
	ReasonBadSPIFFEID           = "bad_spiffe_id"
	ReasonNoWorkloadID          = "no_workload_id"
)

// IsCertReason reports whether a reason is about a client certificate
// rather than a bearer token.
func IsCertReason(reason string) bool {
	switch reason {
	case ReasonCertMissing, ReasonCertUntrusted, ReasonCertExpired, ReasonCertNotYetValid, ReasonCertRevoked,
		ReasonCRLStale, ReasonTrustDomainNotAllowed, ReasonBadSPIFFEID, ReasonNoWorkloadID:
		return true
	}
	return false
}

// ProviderMTLS is the provider name of workload identities.
const ProviderMTLS = "mtls"

// maxPeerChain bounds the certificates a client may send: a leaf and its
// intermediates.
const maxPeerChain = 8

// MTLSOptions configure client certificate verification.
type MTLSOptions struct {
	// TrustBundle is PEM: the CAs client certificates must chain to.
	TrustBundle []byte
	// CRLs is PEM (X509 CRL blocks) or one DER CRL; nil: no revocation
	// checks.
	CRLs []byte
	// TrustDomains are the SPIFFE trust domains accepted.
	TrustDomains []string
	// IdentityFrom lists the identity sources in order: spiffe, dns,
	// subject. Empty: spiffe.
	IdentityFrom []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// CacheSize is how many verified chains are remembered; 0 means
	// DefaultCacheSize, negative turns the cache off.
	CacheSize int
}

// MTLS verifies client certificates and turns them into workload
// identities. It is immutable once built; a reload builds a new one.
type MTLS struct {
	roots        *x509.CertPool
	crls         map[string]*revocationList // by issuer (subject and key)
	trustDomains []string
	from         []string
	now          func() time.Time
	cache        *tokenCache // nil: off
}

// revocationList is a verified CRL.
type revocationList struct {
	issuer     string // the CA's subject, for messages
	revoked    map[string]bool
	nextUpdate time.Time // zero: none given
}

// NewMTLS parses the trust bundle and CRLs. Every CRL must be signed by a CA
// of the bundle, at most one per CA, and still be current.
func NewMTLS(o MTLSOptions) (*MTLS, error) {
	m := &MTLS{trustDomains: o.TrustDomains, from: o.IdentityFrom, now: o.Now, crls: map[string]*revocationList{}}
	if m.now == nil {
		m.now = time.Now
	}
	if len(m.from) == 0 {
		m.from = []string{"spiffe"}
	}
	cas, err := parseBundle(o.TrustBundle)
	if err != nil {
		return nil, err
	}
	m.roots = x509.NewCertPool()
	for _, c := range cas {
		m.roots.AddCert(c)
	}
	if o.CRLs != nil {
		lists, err := parseCRLs(o.CRLs)
		if err != nil {
			return nil, err
		}
		now := m.now()
		for i, l := range lists {
			ca := signerOf(l, cas)
			if ca == nil {
				return nil, fmt.Errorf("CRL %d (issuer %s) is not signed by a CA in the trust bundle", i+1, l.Issuer)
			}
			k := caKey(ca)
			if _, dup := m.crls[k]; dup {
				return nil, fmt.Errorf("CRL %d: a second CRL of %s; give one CRL per CA", i+1, ca.Subject)
			}
			if !l.NextUpdate.IsZero() && now.After(l.NextUpdate) {
				return nil, fmt.Errorf("CRL %d of %s is stale: its nextUpdate %s has passed; write a fresh one", i+1, ca.Subject, l.NextUpdate.UTC().Format(time.RFC3339))
			}
			rl := &revocationList{issuer: ca.Subject.String(), revoked: map[string]bool{}, nextUpdate: l.NextUpdate}
			for _, e := range l.RevokedCertificateEntries {
				rl.revoked[serialKey(e.SerialNumber)] = true
			}
			m.crls[k] = rl
		}
	}
	switch {
	case o.CacheSize == 0:
		m.cache = newTokenCache(DefaultCacheSize)
	case o.CacheSize > 0:
		m.cache = newTokenCache(o.CacheSize)
	}
	return m, nil
}

func parseBundle(data []byte) ([]*x509.Certificate, error) {
	var cas []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("trust bundle certificate %d: %w", len(cas)+1, err)
		}
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, fmt.Errorf("trust bundle certificate %d (%s) is not a CA certificate", len(cas)+1, c.Subject)
		}
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, errors.New("trust bundle holds no PEM certificates")
	}
	return cas, nil
}

// parseCRLs reads PEM X509 CRL blocks, or one DER CRL.
func parseCRLs(data []byte) ([]*x509.RevocationList, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == 0x30 { // DER: an ASN.1 SEQUENCE
		l, err := x509.ParseRevocationList(data)
		if err != nil {
			return nil, fmt.Errorf("DER CRL: %w", err)
		}
		return []*x509.RevocationList{l}, nil
	}
	var out []*x509.RevocationList
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "X509 CRL" {
			continue
		}
		l, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CRL %d: %w", len(out)+1, err)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, errors.New("no CRL found: want PEM X509 CRL blocks or one DER CRL")
	}
	return out, nil
}

// signerOf returns the CA of cas that signed l, or nil.
func signerOf(l *x509.RevocationList, cas []*x509.Certificate) *x509.Certificate {
	for _, ca := range cas {
		if bytes.Equal(ca.RawSubject, l.RawIssuer) && l.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// caKey identifies a CA by its subject and public key, so a CRL applies to
// every certificate of that CA, cross-signed copies included.
func caKey(c *x509.Certificate) string {
	return string(c.RawSubject) + "\x00" + string(c.RawSubjectPublicKeyInfo)
}

func serialKey(n *big.Int) string {
	if n == nil {
		return ""
	}
	return n.Text(16)
}

// MTLSFromConfig reads the files of m; relative names are relative to dir
// (the configuration file's directory).
func MTLSFromConfig(m *config.MTLS, dir string) (*MTLS, error) {
	o := MTLSOptions{TrustDomains: m.TrustDomains, IdentityFrom: m.IdentityFrom}
	var err error
	if o.TrustBundle, err = os.ReadFile(resolve(dir, m.TrustBundle)); err != nil {
		return nil, fmt.Errorf("identity.mtls.trust_bundle: %w", err)
	}
	if m.CRLFile != "" {
		if o.CRLs, err = os.ReadFile(resolve(dir, m.CRLFile)); err != nil {
			return nil, fmt.Errorf("identity.mtls.crl_file: %w", err)
		}
	}
	return NewMTLS(o)
}

// MTLSFiles returns the files of m as MTLSFromConfig reads them, for a
// watcher to reload when they change.
func MTLSFiles(m *config.MTLS, dir string) []string {
	if m == nil {
		return nil
	}
	files := []string{resolve(dir, m.TrustBundle)}
	if m.CRLFile != "" {
		files = append(files, resolve(dir, m.CRLFile))
	}
	return files
}

func resolve(dir, name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}

// ValidateConfig reads and checks identity.mtls's files, reporting a
// problem at the key that names the file.
func ValidateConfig(cfg *config.Config) error {
	m := cfg.Identity.MTLS
	if m == nil {
		return nil
	}
	dir := filepath.Dir(cfg.File)
	fail := func(path string, err error) error {
		p := cfg.PosOf(path)
		return config.Errors{{File: cfg.File, Line: p.Line, Column: p.Column, Path: path, Msg: err.Error()}}
	}
	bundle, err := os.ReadFile(resolve(dir, m.TrustBundle))
	if err != nil {
		return fail("identity.mtls.trust_bundle", err)
	}
	if _, err := parseBundle(bundle); err != nil {
		return fail("identity.mtls.trust_bundle", err)
	}
	if m.CRLFile == "" {
		return nil
	}
	crls, err := os.ReadFile(resolve(dir, m.CRLFile))
	if err != nil {
		return fail("identity.mtls.crl_file", err)
	}
	if _, err := NewMTLS(MTLSOptions{TrustBundle: bundle, CRLs: crls, CacheSize: -1}); err != nil {
		return fail("identity.mtls.crl_file", err)
	}
	return nil
}

func certFail(reason, desc string, err error) *Failure {
	return &Failure{Status: http.StatusUnauthorized, Reason: reason, Description: desc, Err: err}
}

// Verify verifies a client's certificate chain (leaf first, as the TLS
// handshake received it) and returns the workload it proves.
func (m *MTLS) Verify(chain []*x509.Certificate) (*identity.Identity, *Failure) {
	if len(chain) == 0 {
		return nil, certFail(ReasonCertMissing, "no client certificate", nil)
	}
	if len(chain) > maxPeerChain {
		return nil, certFail(ReasonCertUntrusted, "the client certificate chain is too long", fmt.Errorf("%d certificates", len(chain)))
	}
	now := m.now()
	var k [32]byte
	if m.cache != nil {
		k = chainKey(chain)
		if id, ok := m.cache.get(k, now); ok {
			return id, nil
		}
	}
	id, until, f := m.verify(chain, now)
	if f == nil && m.cache != nil {
		m.cache.put(k, cacheEntry{id: id, exp: until}, now)
	}
	return id, f
}

// chainKey hashes the chain's certificates, each with its length.
func chainKey(chain []*x509.Certificate) [32]byte {
	h := sha256.New()
	var n [4]byte
	for _, c := range chain {
		binary.BigEndian.PutUint32(n[:], uint32(len(c.Raw)))
		h.Write(n[:])
		h.Write(c.Raw)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// verify checks the chain at now. until is how long a success holds: the
// earliest expiry in the chain or nextUpdate of a CRL consulted.
func (m *MTLS) verify(chain []*x509.Certificate, now time.Time) (id *identity.Identity, until time.Time, f *Failure) {
	leaf := chain[0]
	opts := x509.VerifyOptions{
		Roots:       m.roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(chain) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range chain[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return nil, time.Time{}, m.verifyFailure(leaf, opts, err)
	}
	// Go accepts a leaf without an extended key usage for any purpose;
	// a workload certificate must say it is for client authentication.
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return nil, time.Time{}, certFail(ReasonCertUntrusted, "the client certificate is not for client authentication (extended key usage clientAuth)", fmt.Errorf("leaf %s: extended key usages %v", leaf.Subject, leaf.ExtKeyUsage))
	}
	if leaf.IsCA || leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return nil, time.Time{}, certFail(ReasonCertUntrusted, "a CA certificate cannot identify a workload", fmt.Errorf("leaf %s is a CA certificate", leaf.Subject))
	}
	until = leaf.NotAfter
	for _, c := range chains {
		for i := 0; i+1 < len(c); i++ {
			if c[i].NotAfter.Before(until) {
				until = c[i].NotAfter
			}
			if c[i+1].NotAfter.Before(until) {
				until = c[i+1].NotAfter
			}
			rl, ok := m.crls[caKey(c[i+1])]
			if !ok {
				continue
			}
			if !rl.nextUpdate.IsZero() {
				if !now.Before(rl.nextUpdate) {
					return nil, time.Time{}, &Failure{Status: http.StatusServiceUnavailable, Reason: ReasonCRLStale,
						Description: "revocation cannot be checked right now", Err: fmt.Errorf("the CRL of %s is past its nextUpdate %s", rl.issuer, rl.nextUpdate.UTC().Format(time.RFC3339))}
				}
				if rl.nextUpdate.Before(until) {
					until = rl.nextUpdate
				}
			}
			if rl.revoked[serialKey(c[i].SerialNumber)] {
				f := certFail(ReasonCertRevoked, "the client certificate has been revoked", fmt.Errorf("serial %s (certificate %d of the chain) is on the CRL of %s", serialKey(c[i].SerialNumber), i+1, rl.issuer))
				f.Identity, _ = m.workload(leaf, c) // genuine but revoked: named in the audit event
				return nil, time.Time{}, f
			}
		}
	}
	if id, f = m.workload(leaf, chains[0]); f != nil {
		return nil, time.Time{}, f
	}
	return id, until, nil
}

// verifyFailure explains a failed chain verification. An expired (or not
// yet valid) certificate is told apart from an untrusted one by verifying
// again at a time within the leaf's validity: only a certificate that
// would then be trusted is reported as expired.
func (m *MTLS) verifyFailure(leaf *x509.Certificate, opts x509.VerifyOptions, err error) *Failure {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) {
		switch inv.Reason {
		case x509.Expired:
			now := opts.CurrentTime
			var reason, desc string
			switch {
			case now.After(leaf.NotAfter):
				opts.CurrentTime = leaf.NotAfter
				reason, desc = ReasonCertExpired, "the client certificate has expired"
			case now.Before(leaf.NotBefore):
				opts.CurrentTime = leaf.NotBefore
				reason, desc = ReasonCertNotYetValid, "the client certificate is not valid yet"
			default:
				return certFail(ReasonCertUntrusted, "the client certificate's chain has an expired CA certificate", err)
			}
			if chains, err2 := leaf.Verify(opts); err2 == nil {
				f := certFail(reason, desc, err)
				if slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !leaf.IsCA {
					f.Identity, _ = m.workload(leaf, chains[0])
				}
				return f
			}
			return certFail(ReasonCertUntrusted, "the client certificate is not issued by a trusted CA", err)
		case x509.IncompatibleUsage:
			return certFail(ReasonCertUntrusted, "the client certificate is not for client authentication (extended key usage clientAuth)", err)
		}
	}
	return certFail(ReasonCertUntrusted, "the client certificate is not issued by a trusted CA", err)
}

var dnsNameRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// workload reads the workload identity of a verified leaf from the
// configured sources, in order. The returned identity is set even with a
// trust_domain_not_allowed failure (for the audit event).
func (m *MTLS) workload(leaf *x509.Certificate, chain []*x509.Certificate) (*identity.Identity, *Failure) {
	cc := &identity.ClientCert{
		Serial:   serialKey(leaf.SerialNumber),
		Issuer:   leaf.Issuer.String(),
		NotAfter: leaf.NotAfter,
	}
	sum := sha256.Sum256(leaf.Raw)
	cc.Fingerprint = hex.EncodeToString(sum[:])
	for _, c := range chain {
		if c.NotAfter.Before(cc.NotAfter) {
			cc.NotAfter = c.NotAfter
		}
	}
	found := false
	for _, src := range m.from {
		var f *Failure
		if found, f = readSource(src, leaf, cc); f != nil {
			return nil, f
		}
		if found {
			break
		}
	}
	if !found {
		return nil, certFail(ReasonNoWorkloadID, "the client certificate names no workload (identity_from: "+strings.Join(m.from, ", ")+")", nil)
	}
	id := &identity.Identity{
		Type: identity.Workload, Provider: ProviderMTLS, Issuer: cc.Issuer, Subject: cc.ID,
		Name: leaf.Subject.CommonName, ExpiresAt: cc.NotAfter, ClientCert: cc,
	}
	if cc.Source == "spiffe" && !slices.Contains(m.trustDomains, cc.TrustDomain) {
		f := certFail(ReasonTrustDomainNotAllowed, "the workload's trust domain is not accepted", fmt.Errorf("trust domain %q", cc.TrustDomain))
		f.Identity = id
		return id, f
	}
	return id, nil
}

// readSource fills cc's identity from one source; found is false when the
// certificate has nothing of that source.
func readSource(src string, leaf *x509.Certificate, cc *identity.ClientCert) (found bool, f *Failure) {
	switch src {
	case "spiffe":
		uris, err := uriSANs(leaf)
		if err != nil {
			return false, certFail(ReasonBadSPIFFEID, "the client certificate's subject alternative names cannot be read", err)
		}
		spiffe := false
		for _, u := range uris {
			if len(u) >= len("spiffe:") && strings.EqualFold(u[:len("spiffe:")], "spiffe:") {
				spiffe = true
			}
		}
		if !spiffe {
			return false, nil
		}
		if len(uris) != 1 {
			return false, certFail(ReasonBadSPIFFEID, "a workload certificate carries exactly one URI SAN", fmt.Errorf("%d URI SANs", len(uris)))
		}
		sid, err := spiffeid.ParseWorkload(uris[0])
		if err != nil {
			return false, certFail(ReasonBadSPIFFEID, "the client certificate's SPIFFE ID is not valid", err)
		}
		cc.ID, cc.Source, cc.TrustDomain, cc.Path = sid.String(), "spiffe", sid.TrustDomain, sid.Path
	case "dns":
		if len(leaf.DNSNames) == 0 {
			return false, nil
		}
		name := strings.ToLower(leaf.DNSNames[0])
		if len(name) > 253 || !dnsNameRE.MatchString(name) {
			return false, certFail(ReasonNoWorkloadID, "the client certificate's DNS name is not a valid host name", fmt.Errorf("DNS SAN %q", leaf.DNSNames[0]))
		}
		cc.ID, cc.Source = "dns:"+name, "dns"
	case "subject":
		cn := leaf.Subject.CommonName
		if cn == "" {
			return false, nil
		}
		if !config.ValidCommonName(cn) {
			return false, certFail(ReasonNoWorkloadID, "the client certificate's common name cannot name a workload", fmt.Errorf("CN %q", cn))
		}
		cc.ID, cc.Source = "cn:"+cn, "subject"
	default:
		return false, nil
	}
	return true, nil
}

// WorkloadFromID is the identity a verified certificate naming the
// workload id would give under m (a SPIFFE ID, dns:NAME or cn:NAME), for
// tools that explain or test policy without a certificate. The chain,
// expiry and revocation are not checked; the source and trust domain are.
func WorkloadFromID(m *config.MTLS, id string) (*identity.Identity, *Failure) {
	if m == nil {
		return nil, certFail(ReasonCertUntrusted, "identity.mtls is not configured: no certificate names a workload", nil)
	}
	cc := &identity.ClientCert{ID: id}
	switch {
	case strings.HasPrefix(id, "spiffe:"):
		sid, err := spiffeid.ParseWorkload(id)
		if err != nil {
			return nil, certFail(ReasonBadSPIFFEID, "the SPIFFE ID is not valid", err)
		}
		cc.Source, cc.TrustDomain, cc.Path = "spiffe", sid.TrustDomain, sid.Path
	case strings.HasPrefix(id, "dns:"):
		if name := id[len("dns:"):]; len(name) > 253 || !dnsNameRE.MatchString(name) {
			return nil, certFail(ReasonNoWorkloadID, "not a valid host name", fmt.Errorf("%q", id))
		}
		cc.Source = "dns"
	case strings.HasPrefix(id, "cn:"):
		if !config.ValidCommonName(id[len("cn:"):]) {
			return nil, certFail(ReasonNoWorkloadID, "not a valid common name", fmt.Errorf("%q", id))
		}
		cc.Source = "subject"
	default:
		return nil, certFail(ReasonNoWorkloadID, "want spiffe://trust-domain/path, dns:NAME or cn:NAME", fmt.Errorf("%q", id))
	}
	if !slices.Contains(m.IdentityFrom, cc.Source) {
		return nil, certFail(ReasonNoWorkloadID, "identity.mtls.identity_from does not include "+cc.Source, nil)
	}
	wid := &identity.Identity{Type: identity.Workload, Provider: ProviderMTLS, Subject: id, ClientCert: cc}
	if cc.Source == "spiffe" && !slices.Contains(m.TrustDomains, cc.TrustDomain) {
		return nil, certFail(ReasonTrustDomainNotAllowed, "the workload's trust domain is not accepted", fmt.Errorf("trust domain %q", cc.TrustDomain))
	}
	return wid, nil
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// uriSANs returns the URI subject alternative names exactly as encoded;
// crypto/x509's parsed url.URLs would hide what the certificate says.
func uriSANs(c *x509.Certificate) ([]string, error) {
	var out []string
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		rest, err := asn1.Unmarshal(ext.Value, &seq)
		if err != nil || len(rest) > 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
			return nil, errors.New("malformed subject alternative name extension")
		}
		for in := seq.Bytes; len(in) > 0; {
			var name asn1.RawValue
			if in, err = asn1.Unmarshal(in, &name); err != nil {
				return nil, errors.New("malformed subject alternative name")
			}
			if name.Class == asn1.ClassContextSpecific && name.Tag == 6 { // uniformResourceIdentifier
				out = append(out, string(name.Bytes))
			}
		}
	}
	return out, nil
}
