package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/ztgate/ztgate/internal/audit"
)

// ReasonAuditUnavailable refuses a request whose audit event could not be
// made durable (audit.on_failure: deny).
const ReasonAuditUnavailable = "audit_unavailable"

var errAuditUnavailable = errors.New("audit unavailable")

// redactQuery keeps query parameter names and drops their values.
func redactQuery(raw string) string {
	if raw == "" {
		return ""
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "?(unparsable)"
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, url.QueryEscape(k)+"=REDACTED")
	}
	sort.Strings(keys)
	return "?" + strings.Join(keys, "&")
}

// commit makes the request's audit event durable before the client hears
// the outcome. It runs once per request; a failure means the request must
// be refused.
func (g *Gateway) commit(r *http.Request, st *reqState, ev *event, status int, reason string) error {
	if g.audit == nil || st.audited {
		return nil
	}
	st.audited = true
	e := audit.Event{
		Time: ev.start.UTC(), EventType: "ApiRequest", RequestID: st.requestID,
		Decision: ev.decision, ResultDetails: reason, Reasons: ev.reasons,
		PolicyVersion: g.Runtime().cfg.Hash, Service: ev.service, Route: ev.route,
		SrcIP: clientIP(r).String(), SrcCountry: ev.geo.Country, SrcLat: ev.geo.Lat, SrcLon: ev.geo.Lon, UserAgent: r.UserAgent(), Method: r.Method,
		URL: st.path + redactQuery(r.URL.RawQuery), Status: status,
		RequestBytes: max(r.ContentLength, 0), DurationMS: float64(time.Since(ev.start).Microseconds()) / 1000,
	}
	if e.Decision == "" {
		e.Decision = "deny"
	}
	if d := st.dlp; d != nil {
		e.DLP, e.DLPOverLimit = d.found, d.over
	}
	if e.URL == "" {
		e.URL = r.URL.EscapedPath()
	}
	e.Result = "Success"
	if status >= 400 {
		e.Result = "Failure"
	}
	if id := ev.id; id != nil {
		e.IdentityType, e.Tenant, e.ObjectID, e.Subject, e.AppID, e.Identity = string(id.Type), id.Tenant, id.ObjectID, id.Subject, id.AppID, id.Key()
		if cc := id.ClientCert; cc != nil {
			e.Workload, e.CertSerial, e.CertIssuer = cc.ID, cc.Serial, cc.Issuer
		}
		e.AuthMethods, e.AuthContext = id.AMR, id.ACRS
		if !id.IssuedAt.IsZero() && id.ExpiresAt.After(id.IssuedAt) {
			e.TokenLifetime = int64(id.ExpiresAt.Sub(id.IssuedAt) / time.Second)
		}
	}
	ctx := context.WithoutCancel(r.Context())
	if err := g.audit.Record(ctx, e, g.auditWait); err != nil {
		g.metrics.auditFailure()
		return errors.Join(errAuditUnavailable, err)
	}
	return nil
}

func auditError(err error) *httpError {
	return &httpError{Code: http.StatusServiceUnavailable, Reason: ReasonAuditUnavailable, Public: "the request cannot be recorded right now, so it is refused", Err: err, Header: http.Header{"Retry-After": {"1"}}}
}
