// Package admin serves the control plane's HTTP API on its own listener:
// liveness, readiness with details, Prometheus metrics and explanations of
// policy decisions. API routes take JSON only.
package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ztgate/ztgate/internal/alert"
	"github.com/ztgate/ztgate/internal/detect"
	"github.com/ztgate/ztgate/internal/explain"
)

// Readiness is the detail behind /readyz.
type Readiness struct {
	Ready      bool              `json:"ready"`
	ConfigHash string            `json:"config_hash"`
	ConfigFile string            `json:"config_file"`
	LoadedAt   string            `json:"loaded_at"`
	LastReload *ReloadResult     `json:"last_reload,omitempty"`
	Providers  []ProviderStatus  `json:"providers"`
	Problems   []string          `json:"problems,omitempty"`
	Extra      map[string]string `json:"extra,omitempty"`
}

// ReloadResult describes the last reload attempt.
type ReloadResult struct {
	At    string `json:"at"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// ProviderStatus is the state of one identity provider's keys.
type ProviderStatus struct {
	Name       string `json:"name"`
	KeysLoaded bool   `json:"keys_loaded"`
	Error      string `json:"error,omitempty"`
}

// StatusFunc reports the node's readiness.
type StatusFunc func() Readiness

// ExplainFunc explains a request against the configuration in force.
type ExplainFunc func(ctx context.Context, req explain.Request) (*explain.Result, error)

// maxBodyBytes bounds an admin API request body.
const maxBodyBytes = 64 << 10

// AlertsFunc lists alerts raised since a time.
type AlertsFunc func(ctx context.Context, since time.Time) ([]alert.Alert, error)

// AuditQuery is one page of audit events.
type AuditQuery struct {
	Since    time.Time
	Decision string
	Identity string
	Route    string
	After    string
	Limit    int
}

// AuditFunc returns a page of audit events (their JSON bodies, newest
// first) and the cursor of the next page ("" at the end).
type AuditFunc func(ctx context.Context, q AuditQuery) ([]json.RawMessage, string, error)

// Deps is what the admin API serves from.
type Deps struct {
	Gatherer prometheus.Gatherer
	Status   StatusFunc
	Explain  ExplainFunc
	Alerts   AlertsFunc
	Audit    AuditFunc // nil: no store
	Blocks   Blocks    // nil: no detection state
}

// Blocks are the detector's blocks in force.
type Blocks interface {
	List() []detect.Block
	// Lift removes a block; it reports whether there was one.
	Lift(ctx context.Context, kind, key, by string) (bool, error)
}

// Handler returns the admin API.
func Handler(d Deps) http.Handler {
	gatherer, status, explainer, alerts := d.Gatherer, d.Status, d.Explain, d.Alerts
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		s := status()
		code := http.StatusOK
		if !s.Ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, s)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	// POST /v1/explain {"method","url","token"|"claims","ip","headers"}: the
	// decision trace for a described request. A token is verified.
	mux.HandleFunc("POST /v1/explain", func(w http.ResponseWriter, r *http.Request) {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			writeJSON(w, http.StatusUnsupportedMediaType, apiError{Error: "send JSON (Content-Type: application/json)", Reason: "unsupported_media_type"})
			return
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		dec.DisallowUnknownFields()
		var req explain.Request
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "bad request body: " + err.Error(), Reason: "bad_request"})
			return
		}
		res, err := explainer(r.Context(), req)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Reason: "bad_request"})
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	// GET /v1/alerts?since=24h
	mux.HandleFunc("GET /v1/alerts", func(w http.ResponseWriter, r *http.Request) {
		since := 24 * time.Hour
		if v := r.URL.Query().Get("since"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				writeJSON(w, http.StatusBadRequest, apiError{Error: "bad since: want a duration such as 24h", Reason: "bad_request"})
				return
			}
			since = d
		}
		as, err := alerts(r.Context(), time.Now().Add(-since))
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error(), Reason: "alerts_unavailable"})
			return
		}
		if as == nil {
			as = []alert.Alert{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"alerts": as})
	})
	// GET /v1/audit/events?since=1h&decision=deny&identity=X&route=svc/route&limit=100&after=CURSOR
	mux.HandleFunc("GET /v1/audit/events", func(w http.ResponseWriter, r *http.Request) {
		if d.Audit == nil {
			writeJSON(w, http.StatusNotFound, apiError{Error: "no store configured: there is no audit trail", Reason: "no_store"})
			return
		}
		q, err := auditQuery(r.URL.Query())
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Reason: "bad_request"})
			return
		}
		evs, next, err := d.Audit(r.Context(), q)
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error(), Reason: "audit_unavailable"})
			return
		}
		if evs == nil {
			evs = []json.RawMessage{}
		}
		out := map[string]any{"events": evs}
		if next != "" {
			out["next"] = next
		}
		writeJSON(w, http.StatusOK, out)
	})
	// GET /v1/blocks: the blocks in force. DELETE /v1/blocks/{kind}/{key}
	// lifts one (audited).
	mux.HandleFunc("GET /v1/blocks", func(w http.ResponseWriter, r *http.Request) {
		if d.Blocks == nil {
			writeJSON(w, http.StatusNotFound, apiError{Error: "no detection state", Reason: "no_blocks"})
			return
		}
		bs := d.Blocks.List()
		if bs == nil {
			bs = []detect.Block{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"blocks": bs})
	})
	mux.HandleFunc("DELETE /v1/blocks/{kind}/{key}", func(w http.ResponseWriter, r *http.Request) {
		if d.Blocks == nil {
			writeJSON(w, http.StatusNotFound, apiError{Error: "no detection state", Reason: "no_blocks"})
			return
		}
		kind, key := r.PathValue("kind"), r.PathValue("key")
		if kind != "ip" && kind != "identity" && kind != "api_key" {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "kind must be ip, identity or api_key", Reason: "bad_request"})
			return
		}
		had, err := d.Blocks.Lift(r.Context(), kind, key, "admin-api@"+r.RemoteAddr)
		switch {
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error(), Reason: "blocks_unavailable"})
		case !had:
			writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("no block on %s %s", kind, key), Reason: "not_blocked"})
		default:
			writeJSON(w, http.StatusOK, map[string]any{"lifted": map[string]string{"kind": kind, "key": key}})
		}
	})
	return withRequestID(mux)
}

// withRequestID gives every admin response an X-Request-Id, which error
// bodies repeat.
func withRequestID(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [8]byte
		_, _ = rand.Read(b[:])
		w.Header().Set("X-Request-Id", "adm-"+hex.EncodeToString(b[:]))
		h.ServeHTTP(w, r)
	})
}

var auditParams = map[string]bool{"since": true, "decision": true, "identity": true, "route": true, "limit": true, "after": true}

var decisions = map[string]bool{"allow": true, "deny": true, "would_deny": true, "error": true, "preflight": true}

// auditQuery reads and checks the audit query parameters; an unknown one
// is an error rather than a filter silently not applied.
func auditQuery(v url.Values) (AuditQuery, error) {
	for k := range v {
		if !auditParams[k] {
			return AuditQuery{}, fmt.Errorf("unknown parameter %q (since, decision, identity, route, limit, after)", k)
		}
	}
	q := AuditQuery{Decision: v.Get("decision"), Identity: v.Get("identity"), Route: v.Get("route"), After: v.Get("after"), Limit: 100}
	since := time.Hour
	if s := v.Get("since"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return q, errors.New("bad since: want a duration such as 1h")
		}
		since = d
	}
	q.Since = time.Now().Add(-since)
	if q.After != "" {
		i := strings.LastIndexByte(q.After, ':')
		if _, err := strconv.ParseInt(q.After[i+1:], 10, 64); i <= 0 || err != nil {
			return q, errors.New("bad after: pass the next value of the previous page")
		}
	}
	if q.Decision != "" && !decisions[q.Decision] {
		return q, fmt.Errorf("bad decision %q: allow, deny, would_deny, error or preflight", q.Decision)
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return q, errors.New("bad limit: 1 to 1000")
		}
		q.Limit = n
	}
	return q, nil
}

type apiError struct {
	Error     string `json:"error"`
	Reason    string `json:"reason"`
	RequestID string `json:"request_id,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	if e, ok := v.(apiError); ok {
		e.RequestID = w.Header().Get("X-Request-Id")
		v = e
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
