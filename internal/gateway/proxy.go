package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ztgate/ztgate/internal/authn"
	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/inject"
	"github.com/ztgate/ztgate/internal/secrets"
)

// upstream is one service's connection to its backend.
type upstream struct {
	service   string
	target    *url.URL
	basePath  string // upstream path prefix without a trailing slash
	transport *http.Transport
	proxy     *httputil.ReverseProxy
	overall   time.Duration
	maxBody   int64
	fwdAuthz  bool
	cert      *clientCert // from a secret; nil: none, or cert_file
	// assertHeader is the identity assertion header: a client's copies
	// are removed on every service, asserting or not.
	assertHeader string
	keyHeader    string // "" without API keys
}

// clientCert is the gateway's client certificate for an upstream, read
// from the secret cache and parsed once per read.
type clientCert struct {
	e        *secrets.Entry
	cur      atomic.Pointer[parsedCert]
	onRotate func() // drops idle connections made with the old certificate
}

type parsedCert struct {
	v    secrets.Value
	cert *tls.Certificate
}

// current returns the certificate to present, or why there is none.
func (c *clientCert) current() (*tls.Certificate, error) {
	sec, err := c.e.Secret()
	if err != nil {
		return nil, err
	}
	if p := c.cur.Load(); p != nil && p.v.Same(sec.Value) {
		return p.cert, nil
	}
	cert, err := secrets.Certificate(sec)
	if err != nil {
		return nil, fmt.Errorf("upstream_tls.client_certificate %s: %w", c.e.Ref(), err)
	}
	if old := c.cur.Swap(&parsedCert{v: sec.Value, cert: cert}); old != nil && !old.v.Equal(sec.Value) && c.onRotate != nil {
		c.onRotate()
	}
	return cert, nil
}

func newUpstream(s *config.Service, assertHeader, keyHeader string, logger *slog.Logger, track inject.Tracker) (*upstream, error) {
	target, err := url.Parse(s.Upstream)
	if err != nil {
		return nil, fmt.Errorf("service %s: upstream: %w", s.Name, err)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if t := s.UpstreamTLS; t != nil {
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return nil, fmt.Errorf("service %s: upstream_tls.ca_file: %w", s.Name, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("service %s: upstream_tls.ca_file %s: no PEM certificates", s.Name, t.CAFile)
			}
			tlsConf.RootCAs = pool
		}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("service %s: upstream_tls client certificate: %w", s.Name, err)
			}
			tlsConf.Certificates = []tls.Certificate{cert}
		}
		tlsConf.ServerName = t.ServerName
	}
	var cc *clientCert
	if t := s.UpstreamTLS; t != nil && !t.ClientCertificate.IsZero() {
		refs := t.ClientCertificate.Refs()
		if len(refs) != 1 {
			return nil, fmt.Errorf("service %s: upstream_tls.client_certificate: want one ${secret:...} reference", s.Name)
		}
		e, err := track(refs[0])
		if err != nil {
			return nil, fmt.Errorf("service %s: upstream_tls.client_certificate: %w", s.Name, err)
		}
		cc = &clientCert{e: e}
		tlsConf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cc.current()
		}
	}
	dialer := &net.Dialer{Timeout: s.Timeouts.Dial.D(), KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		// Proxy is nil on purpose: a service reaches its upstream directly,
		// never through an environment-chosen proxy.
		DialContext:            dialer.DialContext,
		TLSClientConfig:        tlsConf,
		TLSHandshakeTimeout:    s.Timeouts.Dial.D(),
		ResponseHeaderTimeout:  s.Timeouts.ResponseHeader.D(),
		IdleConnTimeout:        s.Timeouts.Idle.D(),
		MaxIdleConns:           s.MaxIdleConns,
		MaxIdleConnsPerHost:    s.MaxIdleConns,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		ForceAttemptHTTP2:      target.Scheme == "https",
	}
	u := &upstream{
		service:      s.Name,
		target:       target,
		basePath:     strings.TrimSuffix(target.EscapedPath(), "/"),
		transport:    tr,
		overall:      s.Timeouts.Overall.D(),
		maxBody:      s.MaxBodyBytes,
		fwdAuthz:     s.ForwardAuthorization,
		cert:         cc,
		assertHeader: assertHeader,
		keyHeader:    keyHeader,
	}
	if cc != nil {
		cc.onRotate = tr.CloseIdleConnections
	}
	cors := s.CORS != nil
	u.proxy = &httputil.ReverseProxy{
		ModifyResponse: func(resp *http.Response) error {
			if cors {
				// The gateway answers for CORS; an upstream's own headers
				// (perhaps reflecting any origin) would contradict it.
				for k := range resp.Header {
					if strings.HasPrefix(k, "Access-Control-") {
						delete(resp.Header, k)
					}
				}
			}
			st := stateFrom(resp.Request.Context())
			if st.dlp != nil {
				if err := st.dlp.filter(resp, st); err != nil {
					return err
				}
			}
			// The response starts only once its audit event is durable.
			return st.commitStatus(resp.StatusCode, "")
		},
		Rewrite:    u.rewrite,
		BufferPool: copyBuffers,
		Transport:  tr,
		// FlushInterval 0: a response of known length goes out in one
		// write; ReverseProxy flushes every write of a response of unknown
		// length or of text/event-stream, so streams still stream.
		ErrorHandler: u.errorHandler,
		ErrorLog:     slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return u, nil
}

// copyBuffers recycles the 32 KiB buffers that copy response bodies, one
// per response otherwise.
var copyBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// rewrite builds the upstream request. ReverseProxy has already removed
// hop-by-hop headers, those named in Connection, and X-Forwarded-For/Host/Proto.
func (u *upstream) rewrite(pr *httputil.ProxyRequest) {
	st := stateFrom(pr.In.Context())
	out := pr.Out
	out.URL.Scheme = u.target.Scheme
	out.URL.Host = u.target.Host
	out.URL.User = nil
	escaped := u.basePath + st.path
	p, err := url.PathUnescape(escaped)
	if err != nil {
		p = escaped // unreachable: the path was normalised
	}
	out.URL.Path, out.URL.RawPath = p, escaped
	out.URL.RawQuery = pr.In.URL.RawQuery
	out.Host = u.target.Host // the client's Host never picks the upstream
	stripSpoofable(out.Header)
	inject.StripHeader(out.Header, u.assertHeader)
	if st.dlp != nil {
		st.dlp.prepareUpstream(out.Header)
	}
	if !u.fwdAuthz || slices.ContainsFunc(out.Header.Values("Authorization"), authn.IsAPIKeyAuthorization) {
		// forward_authorization passes on a caller's token, never an API
		// key: the key is the gateway's to check, and the upstream's to
		// never see.
		out.Header.Del("Authorization")
	}
	if u.keyHeader != "" {
		out.Header.Del(u.keyHeader)
	}
	pr.SetXForwarded()
	out.Header.Set(headerRequestID, st.requestID)
	if st.clientRequestID != "" {
		out.Header.Set(headerClientRequestID, st.clientRequestID)
	}
	st.creds.Apply(out.Header)
	// Injected credentials last: they replace any client copy.
	st.inject.Apply(out.Header, out.URL)
}

func (u *upstream) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := stateFrom(r.Context())
	var he *httpError
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &he):
		// A refusal already decided (DLP).
	case errors.As(err, &mbe):
		he = &httpError{Code: http.StatusRequestEntityTooLarge, Reason: ReasonBodyTooLarge, Public: fmt.Sprintf("request body larger than %d bytes", mbe.Limit), Err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		he = &httpError{Code: http.StatusGatewayTimeout, Reason: ReasonUpstreamTimeout, Public: "the upstream did not answer in time", Err: err}
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads this response.
		he = &httpError{Code: 499, Reason: "client_closed_request", Err: err}
	default:
		he = &httpError{Code: http.StatusBadGateway, Reason: ReasonUpstreamUnavailable, Public: "the upstream is unavailable", Err: err}
	}
	if errors.Is(err, errAuditUnavailable) {
		he = auditError(err)
	} else if cerr := st.commitStatus(he.Code, he.Reason); cerr != nil {
		he = auditError(cerr)
	}
	st.err = he
	writeError(w, st.requestID, he)
}

// commitStatus audits the request with its final status.
func (st *reqState) commitStatus(status int, reason string) error {
	if st.commit == nil {
		return nil
	}
	return st.commit(status, reason)
}
