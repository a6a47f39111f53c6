package gateway

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/dlp"
)

// Reason codes of DLP refusals. The status is 502: the upstream's answer
// is one the gateway will not deliver, which is no fault of the client's
// request (a 4xx would tell it to change the request) and no outage of the
// gateway (5xx other than 502 would invite retries of a different kind).
const (
	ReasonDLPBlocked  = "dlp_blocked"
	ReasonDLPTooLarge = "dlp_too_large"
	// ReasonDLPUnreadable: the response is encoded in a way the gateway
	// cannot decode, so it cannot be inspected.
	ReasonDLPUnreadable = "dlp_unreadable"
)

// routeDLP is a route's compiled DLP.
type routeDLP struct {
	policy   *dlp.Policy
	maxBytes int64
	failOver bool // over_limit: block
}

func compileDLP(c *config.DLP) (*routeDLP, error) {
	custom := make([]dlp.Rule, len(c.Custom))
	for i, r := range c.Custom {
		custom[i] = dlp.Rule{Name: r.Name, Regex: r.Regex}
	}
	p, err := dlp.Compile(dlp.Config{Mask: c.Mask, Block: c.Block, Custom: custom, JSONPaths: c.JSONPaths, CardLast4: c.CardLast4})
	if err != nil {
		return nil, err
	}
	return &routeDLP{policy: p, maxBytes: c.MaxBytes, failOver: c.OverLimit == "block"}, nil
}

// dlpState is one request's DLP: the route's, and what it found.
type dlpState struct {
	rule           *routeDLP
	service, route string
	// found and over go into the request's audit event: the counts of a
	// response held and scanned before it started.
	found  map[string]int
	over   bool
	status int // the upstream's
	// streamed records the result of a response scanned as it streamed,
	// once it has ended.
	streamed func(status int, res dlp.Result, unscanned int64, over bool)
	metrics  *Metrics
}

// prepareUpstream asks the upstream for a response the gateway can read
// whole: no Range (a part could hide half a card number) and no encoding
// the client chose. With no Accept-Encoding the transport asks for gzip and
// decodes it itself.
func (d *dlpState) prepareUpstream(h http.Header) {
	h.Del("Accept-Encoding")
	h.Del("Range")
	h.Del("If-Range")
}

func dlpRefusal(code int, reason, public string, err error) *httpError {
	return &httpError{Code: code, Reason: reason, Public: public, Err: err}
}

// filter inspects an upstream response before it starts. A response held
// whole (block detectors, or a length known to be within max_bytes) is
// scanned here and its counts go into the request's audit event; a block
// or an oversize body is refused. Any other response is masked as it
// streams and its counts recorded once it ends.
func (d *dlpState) filter(resp *http.Response, st *reqState) error {
	if resp.Request.Method == http.MethodHead || resp.StatusCode < 200 || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified || resp.Body == nil || resp.Body == http.NoBody {
		return nil
	}
	kind, ok := dlp.KindOf(resp.Header.Get("Content-Type"))
	if !ok {
		return nil // images, archives and other binary types pass unscanned
	}
	r := d.rule
	d.status = resp.StatusCode
	body, err := decodeBody(resp)
	if err != nil {
		st.denied()
		return dlpRefusal(http.StatusBadGateway, ReasonDLPUnreadable, "the upstream's response is encoded in a way the gateway cannot inspect", err)
	}
	dropRepresentationHeaders(resp.Header)
	switch {
	case r.policy.Blocks() || resp.ContentLength >= 0 && resp.ContentLength <= r.maxBytes:
		return d.hold(resp, st, kind, body)
	case r.failOver && resp.ContentLength > r.maxBytes:
		_ = resp.Body.Close()
		d.over = true
		st.denied()
		return dlpRefusal(http.StatusBadGateway, ReasonDLPTooLarge, "the upstream's response is too large to be inspected", fmt.Errorf("dlp: Content-Length %d past max_bytes %d", resp.ContentLength, r.maxBytes))
	}
	sb := &streamBody{Reader: r.policy.NewReader(body, kind, r.maxBytes, r.failOver), closer: resp.Body, d: d, st: st}
	resp.Body = sb
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	return nil
}

// hold reads the body up to max_bytes, scans it whole and replaces it.
func (d *dlpState) hold(resp *http.Response, st *reqState, kind dlp.Kind, body io.Reader) error {
	r := d.rule
	raw, err := io.ReadAll(io.LimitReader(body, r.maxBytes+1))
	if err != nil {
		_ = resp.Body.Close()
		return err // the upstream failed mid-body: the error handler says how
	}
	over := int64(len(raw)) > r.maxBytes
	if over && r.failOver {
		_ = resp.Body.Close()
		d.over = true
		st.denied()
		return dlpRefusal(http.StatusBadGateway, ReasonDLPTooLarge, "the upstream's response is too large to be inspected", fmt.Errorf("dlp: response past max_bytes %d", r.maxBytes))
	}
	scanned := raw[:min(int64(len(raw)), r.maxBytes)]
	out, res := r.policy.Mask(kind, scanned)
	d.found, d.over = res.Counts, over
	d.metrics.dlpMatches(r.policy, res)
	if res.Blocked != "" {
		_ = resp.Body.Close()
		st.denied()
		return dlpRefusal(http.StatusBadGateway, ReasonDLPBlocked, "the upstream's response holds data this route may not return", fmt.Errorf("dlp: %s matched", res.Blocked))
	}
	if !over {
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(out))
		resp.ContentLength = int64(len(out))
		resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
		return nil
	}
	// over_limit pass: the scanned part masked, the rest as it comes.
	rest := &countingReader{r: io.MultiReader(bytes.NewReader(raw[len(scanned):]), body)}
	orig := resp.Body
	resp.Body = &readCloser{Reader: io.MultiReader(bytes.NewReader(out), rest), close: func() error {
		d.metrics.dlpUnscanned(d.service, d.route, rest.n)
		return orig.Close()
	}}
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	return nil
}

// decodeBody returns the response body decoded: the transport has already
// decoded a gzip body it asked for, but an upstream may send gzip or
// deflate unasked. Other encodings cannot be inspected.
func decodeBody(resp *http.Response) (io.Reader, error) {
	enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	var r io.Reader
	var err error
	switch enc {
	case "", "identity":
		return resp.Body, nil
	case "gzip", "x-gzip":
		r, err = gzip.NewReader(resp.Body)
	case "deflate":
		r, err = zlib.NewReader(resp.Body)
	default:
		return nil, fmt.Errorf("dlp: Content-Encoding %q", enc)
	}
	if err != nil {
		return nil, fmt.Errorf("dlp: Content-Encoding %s: %w", enc, err)
	}
	resp.Header.Del("Content-Encoding")
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	return r, nil
}

// dropRepresentationHeaders removes what describes the upstream's bytes
// rather than the masked ones; a strong ETag becomes weak (the masked body
// is the same for the same upstream body, but not byte for byte the
// upstream's).
func dropRepresentationHeaders(h http.Header) {
	for _, k := range []string{"Content-Md5", "Digest", "Content-Digest", "Repr-Digest", "Accept-Ranges"} {
		h.Del(k)
	}
	if et := h.Get("Etag"); strings.HasPrefix(et, `"`) {
		h.Set("Etag", "W/"+et)
	}
}

// streamBody masks a response as the proxy copies it to the client, and
// records what it found when the proxy closes it.
type streamBody struct {
	*dlp.Reader
	closer io.Closer
	d      *dlpState
	st     *reqState
	once   sync.Once
	over   bool
}

func (b *streamBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if errors.Is(err, dlp.ErrOverLimit) {
		// Past max_bytes with over_limit block, and the response has
		// started: the stream is aborted, so the client sees it cut short.
		b.over = true
		b.st.denied()
		b.st.err = dlpRefusal(http.StatusBadGateway, ReasonDLPTooLarge, "", fmt.Errorf("dlp: response past max_bytes %d after it started: aborted", b.d.rule.maxBytes))
	}
	return n, err
}

func (b *streamBody) Close() error {
	err := b.closer.Close()
	b.once.Do(func() {
		res := b.Result()
		b.d.metrics.dlpMatches(b.d.rule.policy, res)
		b.d.metrics.dlpUnscanned(b.d.service, b.d.route, b.Unscanned())
		over := b.over || b.Unscanned() > 0
		if len(res.Counts) > 0 || over {
			b.d.streamed(b.d.status, res, b.Unscanned(), over)
		}
	})
	return err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r *readCloser) Close() error { return r.close() }

// recordDLP writes the DlpResult event of a response scanned as it
// streamed: after the response, so it cannot hold the response back, and a
// failure to write it is logged and counted, never answered.
func (g *Gateway) recordDLP(r *http.Request, st *reqState, ev *event, status int, res dlp.Result, unscanned int64, over bool) {
	g.logger.LogAttrs(r.Context(), slog.LevelInfo, "dlp result", slog.String("request_id", st.requestID),
		slog.String("service", ev.service), slog.String("route", ev.route), slog.Any("dlp", res.Counts),
		slog.Bool("dlp_over_limit", over), slog.Int64("dlp_unscanned_bytes", unscanned))
	if g.audit == nil {
		return
	}
	e := audit.Event{
		Time: time.Now().UTC(), EventType: "DlpResult", RequestID: st.requestID,
		Decision: ev.decision, PolicyVersion: g.Runtime().cfg.Hash, Service: ev.service, Route: ev.route,
		SrcIP: clientIP(r).String(), UserAgent: r.UserAgent(), Method: r.Method,
		URL: st.path + redactQuery(r.URL.RawQuery), Status: status,
		DLP: res.Counts, DLPOverLimit: over, DLPUnscannedBytes: unscanned,
		DurationMS: float64(time.Since(ev.start).Microseconds()) / 1000,
		Result:     "Success",
	}
	if st.err != nil {
		e.ResultDetails, e.Result = st.err.Reason, "Failure"
	}
	if id := ev.id; id != nil {
		e.IdentityType, e.Tenant, e.ObjectID, e.Subject, e.AppID, e.Identity = string(id.Type), id.Tenant, id.ObjectID, id.Subject, id.AppID, id.Key()
	}
	if err := g.audit.Record(context.WithoutCancel(r.Context()), e, g.auditWait); err != nil {
		g.metrics.auditFailure()
		g.logger.Warn("dlp result not audited", "request_id", st.requestID, "error", err)
	}
}
