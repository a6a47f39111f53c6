package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztgate/ztgate/internal/dlp"
)

// Metrics are the data plane's Prometheus metrics. Every label value comes
// from configuration or a fixed set of codes, so cardinality stays bounded.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	denials  *prometheus.CounterVec
	auditErr prometheus.Counter

	dlpFound   *prometheus.CounterVec
	dlpSkipped *prometheus.CounterVec
}

// NewMetrics registers the data plane metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztgate_requests_total",
			Help: "Requests by service, route, decision and status.",
		}, []string{"service", "route", "decision", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ztgate_request_duration_seconds",
			Help:    "Time from request to response, by service, route and decision.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"service", "route", "decision"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztgate_denials_total",
			Help: "Refused requests by service, route and reason code.",
		}, []string{"service", "route", "reason"}),
	}
	m.auditErr = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ztgate_audit_failures_total",
		Help: "Requests refused because their audit event could not be made durable.",
	})
	m.dlpFound = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ztgate_dlp_matches_total",
		Help: "Sensitive values found in responses by DLP, by detector and action (mask or block).",
	}, []string{"detector", "action"})
	m.dlpSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ztgate_dlp_unscanned_bytes_total",
		Help: "Response bytes past dlp.max_bytes passed unscanned (over_limit: pass), by service and route.",
	}, []string{"service", "route"})
	reg.MustRegister(m.requests, m.duration, m.denials, m.auditErr, m.dlpFound, m.dlpSkipped)
	return m
}

func (m *Metrics) dlpMatches(p *dlp.Policy, res dlp.Result) {
	if m == nil {
		return
	}
	for name, n := range res.Counts {
		m.dlpFound.WithLabelValues(name, string(p.Action(name))).Add(float64(n))
	}
}

func (m *Metrics) dlpUnscanned(service, route string, n int64) {
	if m != nil && n > 0 {
		m.dlpSkipped.WithLabelValues(service, route).Add(float64(n))
	}
}

func (m *Metrics) observe(ev *event, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(ev.service, ev.route, ev.decision, strconv.Itoa(ev.status)).Inc()
	m.duration.WithLabelValues(ev.service, ev.route, ev.decision).Observe(d.Seconds())
	if ev.decision == "deny" || ev.decision == "error" {
		m.denials.WithLabelValues(ev.service, ev.route, ev.reason).Inc()
	}
}

func (m *Metrics) auditFailure() {
	if m != nil {
		m.auditErr.Inc()
	}
}
