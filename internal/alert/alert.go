// Package alert raises alerts: things an operator must look at now (a
// dependency down, requests refused). Alerts are logged, counted, and kept
// in the store when there is one.
package alert

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Alert is one raised alert.
type Alert struct {
	ID       int64     `json:"id"`
	Time     time.Time `json:"time"`
	Severity string    `json:"severity"` // low | medium | high
	Rule     string    `json:"rule"`
	Summary  string    `json:"summary"`
	Identity string    `json:"identity,omitempty"`
	Evidence []string  `json:"evidence,omitempty"` // audit request ids
	Node     string    `json:"node"`
}

// Store keeps alerts.
type Store interface {
	AddAlert(ctx context.Context, a Alert) error
}

// Raiser raises alerts, at most one per rule per Throttle, so a flapping
// dependency does not flood the operator.
type Raiser struct {
	store    Store // nil: log and count only
	node     string
	logger   *slog.Logger
	counter  *prometheus.CounterVec
	Throttle time.Duration

	mu   sync.Mutex
	last map[string]time.Time
}

// NewRaiser returns a raiser; store may be nil.
func NewRaiser(store Store, node string, logger *slog.Logger, reg prometheus.Registerer) *Raiser {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ztgate_alerts_total", Help: "Alerts raised, by rule and severity."}, []string{"rule", "severity"})
	reg.MustRegister(c)
	return &Raiser{store: store, node: node, logger: logger, counter: c, Throttle: time.Minute, last: map[string]time.Time{}}
}

// Raise raises an alert unless one for the same rule was raised within
// Throttle. It never blocks the caller for long.
func (r *Raiser) Raise(severity, rule, summary string) {
	now := time.Now()
	r.mu.Lock()
	if t, ok := r.last[rule]; ok && now.Sub(t) < r.Throttle {
		r.mu.Unlock()
		return
	}
	r.last[rule] = now
	r.mu.Unlock()
	r.counter.WithLabelValues(rule, severity).Inc()
	r.logger.Error("ALERT "+summary, "alert", rule, "severity", severity)
	if r.store == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.store.AddAlert(ctx, Alert{Time: now.UTC(), Severity: severity, Rule: rule, Summary: summary, Node: r.node}); err != nil {
			r.logger.Error("alert not stored", "alert", rule, "error", err)
		}
	}()
}
