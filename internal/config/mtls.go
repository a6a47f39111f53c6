package config

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ztgate/ztgate/internal/spiffeid"
)

// mtls checks identity.mtls and what it needs of the listener.
func (v *validator) mtls() {
	m := v.c.Identity.MTLS
	if m == nil {
		return
	}
	switch t := v.c.Listen.TLS; {
	case t == nil:
		v.errorf("identity.mtls", "client certificates need TLS on the listener: set listen.tls (cert_file, key_file, and client_auth: optional or require)")
	case t.ClientAuth == "none":
		path := "listen.tls.client_auth"
		if _, set := v.c.pos[path]; !set {
			path = "listen.tls"
		}
		v.errorf(path, "identity.mtls needs the listener to ask for client certificates: set client_auth: optional (certificate or token) or require (every connection presents one)")
	}
	if m.TrustBundle == "" {
		v.errorf("identity.mtls.trust_bundle", "empty file name")
	}
	if len(m.IdentityFrom) == 0 {
		v.errorf("identity.mtls.identity_from", "at least one source is needed: spiffe, dns or subject")
	}
	for i, src := range m.IdentityFrom {
		if slices.Contains(m.IdentityFrom[:i], src) {
			v.errorf(fmt.Sprintf("identity.mtls.identity_from[%d]", i), "duplicate source %q", src)
		}
	}
	spiffe := slices.Contains(m.IdentityFrom, "spiffe")
	switch {
	case spiffe && len(m.TrustDomains) == 0:
		v.errorf("identity.mtls", "missing \"trust_domains\": list the SPIFFE trust domains whose workloads are accepted")
	case !spiffe && m.TrustDomains != nil:
		v.errorf("identity.mtls.trust_domains", "trust_domains apply to SPIFFE IDs, and identity_from does not include spiffe")
	}
	for i, td := range m.TrustDomains {
		tp := fmt.Sprintf("identity.mtls.trust_domains[%d]", i)
		if err := spiffeid.CheckTrustDomain(td); err != nil {
			v.errorf(tp, "%v: want a name such as prod.example, without spiffe://", err)
		} else if slices.Contains(m.TrustDomains[:i], td) {
			v.errorf(tp, "duplicate trust domain %q", td)
		}
	}
}

// CheckWorkloadPattern checks one entry of an allow rule's workloads:
// a SPIFFE ID pattern (spiffe://td/path with * and a last **), dns:NAME
// (or dns:*.domain) or cn:NAME.
func CheckWorkloadPattern(s string) error {
	switch {
	case strings.HasPrefix(s, "spiffe://"):
		_, err := spiffeid.ParsePattern(s)
		return err
	case strings.HasPrefix(s, "dns:"):
		if !hostRE.MatchString(s[len("dns:"):]) {
			return fmt.Errorf("bad workload %q: want dns: and a lower-case DNS name or *.domain", s)
		}
		return nil
	case strings.HasPrefix(s, "cn:"):
		if !ValidCommonName(s[len("cn:"):]) {
			return fmt.Errorf("bad workload %q: want cn: and a common name of printable characters", s)
		}
		return nil
	}
	return fmt.Errorf("bad workload %q: want spiffe://trust-domain/path, dns:NAME or cn:NAME", s)
}

// ValidCommonName reports whether a subject common name can stand as a
// workload identity: 1 to 256 bytes of printable UTF-8.
func ValidCommonName(cn string) bool {
	if cn == "" || len(cn) > 256 || !utf8.ValidString(cn) {
		return false
	}
	for _, r := range cn {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
