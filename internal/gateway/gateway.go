// Package gateway is the data plane: it matches each request to a route,
// authenticates the caller, applies the route's policy and proxies what is
// allowed to the service's upstream. Everything else is refused with a JSON
// error carrying a stable reason and the request id.
package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/authn"
	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/detect"
	"github.com/ztgate/ztgate/internal/dlp"
	"github.com/ztgate/ztgate/internal/geo"
	"github.com/ztgate/ztgate/internal/guard"
	"github.com/ztgate/ztgate/internal/identity"
	"github.com/ztgate/ztgate/internal/inject"
	"github.com/ztgate/ztgate/internal/limits"
	"github.com/ztgate/ztgate/internal/policy"
	"github.com/ztgate/ztgate/internal/route"
	"github.com/ztgate/ztgate/internal/secrets"
)

// Runtime is one immutable, fully built configuration. A reload builds a new
// Runtime and swaps it in whole; requests in flight finish on the old one.
type Runtime struct {
	cfg       *config.Config
	table     *route.Table
	entries   []*entry // by route spec index
	authn     *authn.Authenticator
	upstreams []*upstream
	geo       *geo.DB // nil without policy.geoip_database
	limits    limits.Store
	quotas    limits.QuotaStore
	detect    *detect.State
	inject    *inject.Set
	secrets   *secrets.Cache
	tracked   []*secrets.Entry // secrets the runtime's injections read
}

type entry struct {
	service string
	route   string
	up      *upstream
	policy  *policy.Policy
	limits  []*limit // gateway, service, route
	quotas  []*quota // service, route
	guard   *guard.Guard
	cors    *corsPolicy
	// requireCert: the request needs a verified client certificate even
	// when a bearer token is the caller (require_client_cert).
	requireCert bool
	inject      *inject.Service // minted tokens, assertions; nil: none
	secrets     *inject.Secrets // headers, query, basic auth from secrets; nil: none
	dlp         *routeDLP
}

// State is what outlives runtimes, so a reload keeps the counts and the
// secrets stay warm.
type State struct {
	Limits limits.Store
	Quotas limits.QuotaStore
	// Detect holds the blocks and raised risk the detector sets (nil:
	// no detection).
	Detect *detect.State
	// Inject keeps the published assertion keys and the upstream token
	// caches; nil: a manager of the runtime's own.
	Inject *inject.Manager
	// Secrets caches the secrets injected credentials read; needed only
	// by configurations that inject them.
	Secrets *secrets.Cache
}

// Build compiles cfg into a Runtime. It does no network I/O.
func Build(cfg *config.Config, an *authn.Authenticator, state State, logger *slog.Logger) (*Runtime, error) {
	rt := &Runtime{cfg: cfg, authn: an, limits: state.Limits, quotas: state.Quotas, detect: state.Detect, secrets: state.Secrets}
	if state.Inject == nil {
		state.Inject = inject.NewManager(logger)
	}
	set, err := state.Inject.Build(cfg)
	if err != nil {
		return nil, err
	}
	rt.inject = set
	track := rt.secretTracker(cfg)
	if path := cfg.Policy.GeoIPDatabase; path != "" {
		db, err := geo.Open(path)
		if err != nil {
			return nil, err
		}
		rt.geo = db
	}
	keyHeader := "" // the header API keys come in, never forwarded
	if k := cfg.Identity.APIKeys; k != nil && k.Enabled {
		keyHeader = k.Header
	}
	policies := make([][]*entry, len(cfg.Services))
	for i := range cfg.Services {
		s := &cfg.Services[i]
		up, err := newUpstream(s, set.Header(), keyHeader, logger, track)
		if err != nil {
			rt.Close()
			return nil, err
		}
		rt.upstreams = append(rt.upstreams, up)
		for j := range s.Routes {
			r := &s.Routes[j]
			p, err := policy.Compile(policy.SpecFor(cfg, s, r))
			if err != nil {
				rt.Close()
				return nil, err
			}
			e := &entry{service: s.Name, route: r.Name, up: up, policy: p, cors: newCORS(s.CORS), requireCert: s.RequireClientCert || r.RequireClientCert, inject: set.Service(s.Name)}
			if e.secrets, err = inject.Compile(s.Inject, r.Inject, track, nil); err != nil {
				rt.Close()
				return nil, fmt.Errorf("service %s route %s: %w", s.Name, r.Name, err)
			}
			for _, q := range []*quota{compileQuota("qs:"+s.Name, s.Quota), compileQuota("qr:"+s.Name+"/"+r.Name, r.Quota)} {
				if q != nil {
					e.quotas = append(e.quotas, q)
				}
			}
			if r.Guard != nil {
				gd, err := guard.Compile(r.Guard, filepath.Dir(cfg.File), s.MaxBodyBytes)
				if err != nil {
					rt.Close()
					return nil, fmt.Errorf("service %s route %s: guard: %w", s.Name, r.Name, err)
				}
				e.guard = gd
			}
			if r.DLP != nil {
				d, err := compileDLP(r.DLP)
				if err != nil {
					rt.Close()
					return nil, fmt.Errorf("service %s route %s: dlp: %w", s.Name, r.Name, err)
				}
				e.dlp = d
			}
			for _, l := range []*limit{compileLimit("g", cfg.Limits.RateLimit), compileLimit("s:"+s.Name, s.RateLimit), compileLimit("r:"+s.Name+"/"+r.Name, r.RateLimit)} {
				if l != nil {
					e.limits = append(e.limits, l)
				}
			}
			policies[i] = append(policies[i], e)
		}
	}
	var specs []route.Spec
	for _, ref := range cfg.RouteTable() {
		m := cfg.Services[ref.Service].Routes[ref.Route].Match
		specs = append(specs, route.Spec{Host: ref.Host, Methods: m.Methods, Path: m.Path})
		rt.entries = append(rt.entries, policies[ref.Service][ref.Route])
	}
	t, err := route.Compile(specs)
	if err != nil {
		rt.Close()
		return nil, fmt.Errorf("routes: %w", err)
	}
	rt.table = t
	return rt, nil
}

// secretTracker returns how injections get their cache entries; the
// configuration's secret providers are opened (no network I/O) on first use.
func (rt *Runtime) secretTracker(cfg *config.Config) inject.Tracker {
	var sources map[string]*secrets.Source
	return func(ref config.SecretRef) (*secrets.Entry, error) {
		if rt.secrets == nil {
			return nil, fmt.Errorf("${secret:%s}: no secret cache", ref)
		}
		if sources == nil {
			var err error
			if sources, err = secrets.Open(cfg.Secrets, secrets.Options{}); err != nil {
				return nil, err
			}
		}
		src, ok := sources[ref.Provider]
		if !ok {
			return nil, fmt.Errorf("${secret:%s}: no secret provider named %q", ref, ref.Provider)
		}
		e := rt.secrets.Track(src, ref)
		rt.tracked = append(rt.tracked, e)
		return e, nil
	}
}

// SecretEntries are the cached secrets the runtime's injections read (to
// wait for their first read before serving).
func (rt *Runtime) SecretEntries() []*secrets.Entry { return rt.tracked }

// Close releases the runtime's idle upstream connections, its GeoIP
// database and its secrets. Requests still in flight on it must have
// finished.
func (rt *Runtime) Close() {
	for _, u := range rt.upstreams {
		u.transport.CloseIdleConnections()
	}
	_ = rt.geo.Close()
	for _, e := range rt.tracked {
		rt.secrets.Release(e)
	}
	rt.tracked = nil
}

// Authenticator returns the runtime's token verification.
func (rt *Runtime) Authenticator() *authn.Authenticator { return rt.authn }

// Config returns the configuration the runtime was built from.
func (rt *Runtime) Config() *config.Config { return rt.cfg }

// Gateway is the data plane handler.
type Gateway struct {
	rt        atomic.Pointer[Runtime]
	logger    *slog.Logger
	metrics   *Metrics
	audit     *audit.Pipeline // nil: decisions are only logged
	auditWait time.Duration
}

// New returns a gateway serving rt. With a pipeline, every request's audit
// event is durable before its response starts, or the request is refused.
func New(rt *Runtime, logger *slog.Logger, m *Metrics, p *audit.Pipeline, wait time.Duration) *Gateway {
	g := &Gateway{logger: logger, metrics: m, audit: p, auditWait: wait}
	rt.inject.Activate()
	g.rt.Store(rt)
	return g
}

// Swap installs rt and returns the runtime it replaces. The runtime's
// assertion keys are published before it serves.
func (g *Gateway) Swap(rt *Runtime) *Runtime {
	rt.inject.Activate()
	return g.rt.Swap(rt)
}

// Runtime returns the runtime now serving.
func (g *Gateway) Runtime() *Runtime { return g.rt.Load() }

// reqState travels with a request through the proxy.
type reqState struct {
	requestID       string
	clientRequestID string
	path            string // normalised, escaped
	err             *httpError
	decision        policy.Decision
	creds           inject.Credentials // set on the upstream request
	audited         bool
	commit          func(status int, reason string) error // audit before answering
	inject          *inject.Values                        // credentials for the upstream request
	ev              *event
	dlp             *dlpState // nil: the route has no DLP
}

// denied marks the request refused by policy after it was allowed (DLP).
func (st *reqState) denied() {
	if st.ev != nil {
		st.ev.decision = "deny"
	}
}

type stateKey struct{}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	if st == nil {
		return &reqState{}
	}
	return st
}

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// newRequestID returns 80 random bits, 16 characters.
func newRequestID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}

// recorder remembers the status and size of a response. Unwrap keeps
// http.ResponseController (flush, hijack for WebSocket) working.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// ServeHTTP handles one data plane request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rt := g.rt.Load()
	if isJWKSRequest(r) && rt.inject.Keys().JWKS() != nil {
		// The assertion keys: public, for upstreams; never routed.
		rt.inject.Keys().ServeHTTP(w, r)
		return
	}
	st := &reqState{requestID: newRequestID()}
	if c := r.Header.Get(headerRequestID); validClientRequestID(c) {
		st.clientRequestID = c
	}
	rec := &recorder{ResponseWriter: w}
	rec.Header().Set(headerRequestID, st.requestID)
	ev := event{start: start, method: r.Method}
	st.ev = &ev

	st.commit = func(status int, reason string) error { return g.commit(r, st, &ev, status, reason) }
	defer func() {
		// A response cut short on purpose (DLP over_limit block after it
		// started) aborts the handler; it is still logged and counted.
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler && st.err != nil {
				ev.status, ev.reason = rec.status, st.err.Reason
				g.record(r, st, &ev, nil)
			}
			panic(v)
		}
	}()
	herr := g.serve(rec, r, rt, st, &ev, start)
	if herr != nil {
		if ev.decision == "" {
			ev.decision = "deny"
		}
		if err := st.commit(herr.Code, herr.Reason); err != nil {
			herr = auditError(err)
			ev.decision = "error"
		}
		if herr.Code == http.StatusNoContent { // an answered CORS preflight
			rec.WriteHeader(http.StatusNoContent)
		} else {
			writeError(rec, st.requestID, herr)
		}
		ev.reason = herr.Reason
		if ev.decision == "" {
			ev.decision = "deny"
		}
	} else if st.err != nil {
		ev.reason = st.err.Reason
		if ev.decision != "deny" {
			ev.decision = "error"
		}
	}
	ev.status = rec.status
	g.record(r, st, &ev, herr)
}

// event is what the gateway records of one request.
type event struct {
	start    time.Time
	method   string
	service  string
	route    string
	decision string // allow | deny | would_deny | error
	reason   string
	reasons  []string
	id       *identity.Identity
	status   int
	geo      geo.Location
}

func (g *Gateway) record(r *http.Request, st *reqState, ev *event, herr *httpError) {
	dur := time.Since(ev.start)
	g.metrics.observe(ev, dur)
	// Room for every attribute below, so that the appends stay on the
	// stack: this line is written for every request.
	attrs := make([]slog.Attr, 0, 18)
	attrs = append(attrs,
		slog.String("request_id", st.requestID),
		slog.String("method", ev.method),
		slog.String("path", st.path),
		slog.String("service", ev.service),
		slog.String("route", ev.route),
		slog.String("decision", ev.decision),
		slog.Int("status", ev.status),
		slog.String("remote", r.RemoteAddr),
		slog.Duration("duration", dur),
	)
	if ev.reason != "" {
		attrs = append(attrs, slog.String("reason", ev.reason))
	}
	if len(ev.reasons) > 0 {
		attrs = append(attrs, slog.Any("reasons", ev.reasons))
	}
	if ev.id != nil {
		attrs = append(attrs, slog.String("identity", ev.id.Key()), slog.String("identity_type", string(ev.id.Type)))
		if cc := ev.id.ClientCert; cc != nil && ev.id.Type != identity.Workload {
			attrs = append(attrs, slog.String("workload", cc.ID))
		}
	}
	if st.clientRequestID != "" {
		attrs = append(attrs, slog.String("client_request_id", st.clientRequestID))
	}
	if st.dlp != nil && (len(st.dlp.found) > 0 || st.dlp.over) {
		attrs = append(attrs, slog.Any("dlp", st.dlp.found), slog.Bool("dlp_over_limit", st.dlp.over))
	}
	if herr != nil && herr.Err != nil {
		attrs = append(attrs, slog.String("error", herr.Err.Error()))
	} else if st.err != nil && st.err.Err != nil {
		attrs = append(attrs, slog.String("error", st.err.Err.Error()))
	}
	g.logger.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, rt *Runtime, st *reqState, ev *event, start time.Time) *httpError {
	if r.Method == http.MethodConnect {
		return &httpError{Code: http.StatusMethodNotAllowed, Reason: ReasonConnectRefused, Public: "CONNECT is not supported: the gateway does not tunnel"}
	}
	// Only origin-form targets: absolute-form (http://other/...) and
	// asterisk-form could otherwise choose a host the routes did not.
	raw := r.RequestURI
	if !strings.HasPrefix(raw, "/") {
		return &httpError{Code: http.StatusBadRequest, Reason: ReasonBadRequestTarget, Public: "the request target must be a path (origin-form)"}
	}
	// net/http allows 4 KiB of slack over MaxHeaderBytes; hold the limit exactly.
	if n := headerBytes(r); n > rt.cfg.Listen.MaxHeaderBytes {
		return &httpError{Code: http.StatusRequestHeaderFieldsTooLarge, Reason: ReasonHeadersTooLarge, Public: fmt.Sprintf("request headers larger than %d bytes", rt.cfg.Listen.MaxHeaderBytes)}
	}
	rawPath, _, _ := strings.Cut(raw, "?")
	path, err := route.NormalizePath(rawPath)
	if err != nil {
		reason := "bad_path"
		if pe, ok := err.(*route.PathError); ok {
			reason = pe.Reason
		}
		return &httpError{Code: http.StatusBadRequest, Reason: reason, Public: "the request path is not acceptable", Err: err}
	}
	st.path = path
	host, ok := requestHost(r.Host)
	if !ok {
		return &httpError{Code: http.StatusBadRequest, Reason: ReasonBadHost, Public: "bad Host header"}
	}

	ip := clientIP(r)
	if b, ok := rt.detect.BlockedIP(ip); ok {
		return blockedError(b)
	}
	ev.geo = rt.geo.Lookup(ip)

	var params route.Params
	matchMethod := r.Method
	if acrm := r.Header.Get("Access-Control-Request-Method"); r.Method == http.MethodOptions && acrm != "" {
		// A CORS preflight asks about the method it names.
		matchMethod = acrm
	}
	idx, ok := rt.table.Match(host, matchMethod, path, &params)
	if ok && matchMethod != r.Method && rt.entries[idx].cors == nil {
		// Preflights are answered only for services with cors.
		ok = false
	}
	if !ok {
		return &httpError{Code: http.StatusNotFound, Reason: ReasonNoRoute, Public: "no route matches this request"}
	}
	e := rt.entries[idx]
	ev.service, ev.route = e.service, e.route

	maxBody := e.up.maxBody
	if e.guard != nil {
		maxBody = e.guard.MaxBody()
	}
	if r.ContentLength > maxBody {
		return &httpError{Code: http.StatusRequestEntityTooLarge, Reason: ReasonBodyTooLarge, Public: fmt.Sprintf("request body larger than %d bytes", maxBody)}
	}
	if e.cors != nil {
		if done, he := e.cors.handle(w, r); he != nil || done {
			if he != nil {
				return he
			}
			ev.decision = "preflight"
			return &httpError{Code: http.StatusNoContent, Reason: "preflight"}
		}
	}

	if e.requireCert && (r.TLS == nil || len(r.TLS.PeerCertificates) == 0) {
		return authnError(errCertRequired)
	}
	id, f := rt.authn.Authenticate(r, e.service)
	if f != nil {
		ev.id = f.Identity // a genuine credential refused (a revoked API key or certificate): who it was
		return authnError(f)
	}
	ev.id = id
	if e.requireCert && id.ClientCert == nil {
		return authnError(errCertRequired)
	}
	if id.GroupsUnknown && e.policy.UsesGroups() {
		// Group overage: looked up only for routes that test groups; on
		// failure they stay unknown and such rules deny (groups_unknown).
		id = rt.authn.ResolveGroups(r.Context(), id)
		ev.id = id
	}

	// The caller's key is built only when blocks or raised risk exist.
	active := rt.detect.Active()
	if active {
		if b, ok := rt.detect.Blocked("identity", id.Key()); ok {
			return blockedError(b)
		}
		if id.Type == identity.APIKey {
			if b, ok := rt.detect.Blocked("api_key", id.Subject); ok {
				return blockedError(b)
			}
		}
	}

	d := &st.decision
	in := policy.Input{
		Identity: id,
		IP:       ip,
		Country:  ev.geo.Country,
		Time:     start,
		Request: policy.Request{
			Method: r.Method, Host: host, Path: path, RawQuery: r.URL.RawQuery,
			Headers: r.Header,
		},
	}
	if active {
		if r := rt.detect.RiskOf(id.Key()); r.Level != "" {
			in.Risk = policy.Risk{Level: r.Level, Alerts: r.Alerts}
		}
	}
	if params.Len() > 0 {
		in.Request.Params = make(map[string]string, params.Len())
		for i := range params.Len() {
			k, v := params.At(i)
			in.Request.Params[k] = v
		}
	}
	e.policy.EvaluateInto(&in, d)
	ev.reasons = d.Reasons
	if !d.Allow {
		reason := d.DenyReason()
		if c := e.policy.ClaimsChallenge(d); c != "" && id.ClientCapable("cp1") {
			// Continuous access evaluation: a capable client can get a token
			// that satisfies the route (MFA, an authentication context).
			return &httpError{Code: http.StatusUnauthorized, Reason: reason, Public: "step-up authentication required", Header: http.Header{
				"Www-Authenticate": {`Bearer realm="ztgate", error="insufficient_claims", error_description="step-up authentication required", claims="` + c + `"`},
			}}
		}
		return &httpError{Code: http.StatusForbidden, Reason: reason, Public: "the caller is not allowed to make this request"}
	}
	if he := g.checkLimits(w, r, rt.limits, e.limits, id, ip); he != nil {
		return he
	}
	quotaKeys, he := g.checkQuotas(w, r, rt.quotas, e.quotas, id, ip)
	if he != nil {
		return he
	}
	var body []byte // a body the guard has read and checked
	if e.guard != nil {
		if f := e.guard.CheckHead(r); f != nil {
			return &httpError{Code: f.Status, Reason: f.Reason, Public: f.Public}
		}
		if e.guard.NeedsBody() && r.Body != nil && r.Body != http.NoBody {
			b, f := e.guard.CheckBody(r.Body)
			if f != nil {
				return &httpError{Code: f.Status, Reason: f.Reason, Public: f.Public}
			}
			body = b
		}
	}
	if g.audit != nil && g.audit.Failing() {
		// The store is failing: this request's event would not be durable,
		// and the upstream must not act on a request with no record.
		return auditError(errors.New("the audit store is failing; refused before the upstream"))
	}
	// Credentials from the secret cache (no I/O); a secret that cannot be
	// served refuses the request before anything reaches the upstream.
	vals, fail := e.secrets.Resolve()
	if fail != nil {
		ev.decision = "error"
		return &httpError{Code: fail.Status, Reason: fail.Reason, Public: fail.Public, Err: fail.Err}
	}
	st.inject = vals
	if c := e.up.cert; c != nil {
		if _, err := c.current(); err != nil {
			ev.decision = "error"
			return &httpError{Code: http.StatusServiceUnavailable, Reason: ReasonSecretUnavailable, Public: "a credential this service needs is unavailable", Err: err}
		}
	}
	if e.inject != nil {
		call := inject.Call{Identity: id, Route: e.route, RequestID: st.requestID, Now: start}
		if e.inject.NeedsCallerToken() {
			call.Subject, _ = authn.BearerToken(r) // verified above
		}
		creds, err := e.inject.Credentials(r.Context(), call)
		if err != nil {
			ev.decision = "error"
			var te *inject.TokenError
			if errors.As(err, &te) {
				return &httpError{Code: http.StatusServiceUnavailable, Reason: inject.ReasonTokenUnavailable, Public: "the gateway could not get a credential for the upstream", Err: err}
			}
			return &httpError{Code: http.StatusInternalServerError, Reason: ReasonInternal, Public: "internal error", Err: err}
		}
		st.creds = creds
	}
	ev.decision = "allow"
	if d.WouldDeny {
		ev.decision = "would_deny"
	}

	if e.dlp != nil {
		st.dlp = &dlpState{rule: e.dlp, service: e.service, route: e.route, metrics: g.metrics,
			streamed: func(status int, res dlp.Result, unscanned int64, over bool) {
				g.recordDLP(r, st, ev, status, res, unscanned, over)
			}}
	}
	ctx := context.WithValue(r.Context(), stateKey{}, st)
	ctx = identity.NewContext(ctx, id)
	if !isUpgrade(r) && e.up.overall > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.up.overall)
		defer cancel()
	}
	if body == nil && r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody && !isUpgrade(r) {
		// A body of unknown length is read whole (up to the limit) before
		// the upstream sees the request, so an oversized one is refused
		// without the upstream receiving a truncated request.
		b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			return &httpError{Code: http.StatusBadRequest, Reason: "body_unreadable", Public: "the request body could not be read", Err: err}
		}
		if int64(len(b)) > maxBody {
			return &httpError{Code: http.StatusRequestEntityTooLarge, Reason: ReasonBodyTooLarge, Public: fmt.Sprintf("request body larger than %d bytes", maxBody)}
		}
		body = b
	}
	out := r.WithContext(ctx)
	switch {
	case body != nil:
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		out.Header.Del("Transfer-Encoding")
	case r.Body != nil && r.Body != http.NoBody:
		out.Body = http.MaxBytesReader(w, r.Body, maxBody)
	}
	e.up.proxy.ServeHTTP(w, out)
	if rec, ok := w.(*recorder); ok {
		for i, q := range e.quotas {
			if q.q.Bytes > 0 && quotaKeys != nil {
				if err := rt.quotas.AddBytes(context.WithoutCancel(r.Context()), quotaKeys[i], q.q, rec.bytes); err != nil {
					g.logger.Warn("quota bytes not counted", "route", e.service+"/"+e.route, "error", err)
				}
			}
		}
	}
	return nil
}

// errCertRequired refuses a request on a route with require_client_cert
// that came without a verified client certificate.
var errCertRequired = &authn.Failure{Status: http.StatusUnauthorized, Reason: authn.ReasonCertMissing, Description: "this route needs a client certificate"}

// ReasonBlocked refuses a source the detector blocked.
const ReasonBlocked = "blocked"

func blockedError(b detect.Block) *httpError {
	return &httpError{Code: http.StatusForbidden, Reason: ReasonBlocked, Public: "refused: this caller is blocked after suspicious activity (until " + b.Until.UTC().Format(time.RFC3339) + ")"}
}

func authnError(f *authn.Failure) *httpError {
	he := &httpError{Code: f.Status, Reason: f.Reason, Public: f.Description, Err: f.Err, Header: http.Header{}}
	if f.Status == http.StatusUnauthorized && f.Scheme == authn.SchemeAPIKey {
		he.Header.Set("WWW-Authenticate", authn.SchemeAPIKey+` realm="ztgate"`)
	} else if f.Status == http.StatusUnauthorized {
		// RFC 6750 §3: no error attribute when no credentials were sent,
		// nor when the client certificate, not a token, was refused.
		v := `Bearer realm="ztgate"`
		if f.Reason != authn.ReasonMissingCredentials && !authn.IsCertReason(f.Reason) {
			v += fmt.Sprintf(`, error="invalid_token", error_description=%q`, f.Description)
		}
		he.Header.Set("WWW-Authenticate", v)
	}
	return he
}

// headerBytes is the size of the request line and headers as sent.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 + len(r.Host) + 8
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// isJWKSRequest reports whether r asks for the assertion keys.
func isJWKSRequest(r *http.Request) bool {
	p, _, _ := strings.Cut(r.RequestURI, "?")
	return p == inject.JWKSPath
}

func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

// requestHost returns the lower-case host without port.
func requestHost(h string) (string, bool) {
	if h == "" {
		return "", true
	}
	if host, port, err := net.SplitHostPort(h); err == nil {
		if _, err := strconv.Atoi(port); err != nil {
			return "", false
		}
		h = host
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':' || c == '[' || c == ']') {
			return "", false
		}
	}
	return h, true
}

func clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
