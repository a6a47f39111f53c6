// Package admin serves the control plane's HTTP API on its own listener:
// liveness, readiness with details, Prometheus metrics and explanations of
// policy decisions. API routes take JSON only.
package admin

import (
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ztgate/ztgate/internal/alert"
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

// Handler returns the admin API.
func Handler(gatherer prometheus.Gatherer, status StatusFunc, explainer ExplainFunc, alerts AlertsFunc) http.Handler {
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
	return mux
}

type apiError struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
