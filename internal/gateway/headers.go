package gateway

import (
	"net/http"
	"strings"
)

const (
	headerRequestID       = "X-Request-Id"
	headerClientRequestID = "X-Client-Request-Id"
)

// spoofableHeaders carry identity or origin claims that only the gateway may
// make. A client's copies are deleted before the request goes upstream, so an
// upstream that trusts them (Azure App Service authentication, oauth2-proxy
// style auth headers, client-certificate forwarding) cannot be fooled.
var spoofableHeaders = []string{
	// Origin of the request: set by the gateway from the connection.
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server", "X-Real-Ip",
	"X-Client-Ip", "X-Original-Forwarded-For", "True-Client-Ip", "Cf-Connecting-Ip",
	"X-Cluster-Client-Ip", "X-Original-Url", "X-Rewrite-Url", "X-Original-Host",
	"X-Http-Method-Override", "X-Http-Method", "X-Method-Override",
	// Request correlation: the gateway's own id.
	"X-Request-Id", "X-Client-Request-Id", "X-Correlation-Id",
	// Identity asserted by a front end.
	"X-Remote-User", "Remote-User", "X-User", "X-User-Id", "X-Userid", "X-Email",
	"X-Auth-User", "X-Authenticated-User", "X-Authenticated-Userid", "X-Consumer-Id",
	"X-Consumer-Username", "X-Credential-Identifier", "X-Forwarded-User",
	"X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username",
	"X-Forwarded-Access-Token", "X-Auth-Request-User", "X-Auth-Request-Email",
	"X-Auth-Request-Groups", "X-Auth-Request-Preferred-Username",
	"X-Auth-Request-Access-Token", "X-Identity-Assertion", "X-Jwt-Assertion",
	"X-Ms-Client-Principal", "X-Ms-Client-Principal-Id", "X-Ms-Client-Principal-Name",
	"X-Ms-Client-Principal-Idp", "X-Ms-Token-Aad-Access-Token", "X-Ms-Token-Aad-Id-Token",
	// Client certificates forwarded by a TLS terminator.
	"X-Client-Cert", "X-Client-Certificate", "X-Ssl-Client-Cert", "X-Ssl-Client-Verify",
	"X-Ssl-Client-S-Dn", "X-Ssl-Client-Dn", "X-Arr-Clientcert", "X-Forwarded-Client-Cert",
	"Ssl-Client-Cert", "Ssl-Client-Verify",
}

// spoofablePrefixes are header name prefixes reserved the same way.
var spoofablePrefixes = []string{"X-Ztgate-", "X-Ms-Client-Principal", "X-Ms-Token-", "X-Auth-Request-", "X-Forwarded-"}

var spoofableSet = func() map[string]bool {
	m := make(map[string]bool, len(spoofableHeaders))
	for _, k := range spoofableHeaders {
		m[http.CanonicalHeaderKey(k)] = true
	}
	return m
}()

// isSpoofable reports whether a header name is reserved to the gateway. Names
// are compared after mapping '_' to '-', because CGI-style servers
// (X_Forwarded_For becomes HTTP_X_FORWARDED_FOR) treat the two alike.
func isSpoofable(name string) bool {
	if strings.IndexByte(name, '_') >= 0 {
		name = strings.ReplaceAll(name, "_", "-")
	}
	name = http.CanonicalHeaderKey(name)
	if spoofableSet[name] {
		return true
	}
	for _, p := range spoofablePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// stripSpoofable deletes every client-supplied header that claims identity or
// origin. It runs before the gateway sets its own.
func stripSpoofable(h http.Header) {
	for k := range h {
		if isSpoofable(k) {
			delete(h, k)
		}
	}
}

// validClientRequestID accepts a client's correlation id that is safe to log
// and forward: short, printable, no separators that could forge log fields.
func validClientRequestID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}
