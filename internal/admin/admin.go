// Package admin serves the control plane's HTTP API on its own listener:
// liveness, readiness with details, and Prometheus metrics.
package admin

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

// Handler returns the admin API.
func Handler(gatherer prometheus.Gatherer, status StatusFunc) http.Handler {
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
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
