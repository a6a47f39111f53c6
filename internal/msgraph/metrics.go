package msgraph

import "github.com/prometheus/client_golang/prometheus"

// Metrics count group lookups. One set serves every provider (label
// provider); every label value comes from configuration or a fixed set.
type Metrics struct {
	lookups *prometheus.CounterVec
	hits    *prometheus.CounterVec
	unknown *prometheus.CounterVec
}

// NewMetrics registers the group lookup metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztgate_group_overage_lookups_total",
			Help: "Microsoft Graph group lookups (cache misses) by provider and result: ok, throttled, unauthorized, forbidden, not_found, timeout, token_error, error.",
		}, []string{"provider", "result"}),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztgate_group_overage_cache_hits_total",
			Help: "Group overage resolutions answered from the cache, by provider.",
		}, []string{"provider"}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztgate_group_overage_unresolved_total",
			Help: "Group overage resolutions that left the caller's groups unknown (a failed lookup, or one remembered for failure_ttl), by provider.",
		}, []string{"provider"}),
	}
	reg.MustRegister(m.lookups, m.hits, m.unknown)
	return m
}

func (m *Metrics) lookup(provider, result string) {
	if m != nil {
		m.lookups.WithLabelValues(provider, result).Inc()
	}
}

func (m *Metrics) hit(provider string) {
	if m != nil {
		m.hits.WithLabelValues(provider).Inc()
	}
}

func (m *Metrics) unresolved(provider string) {
	if m != nil {
		m.unknown.WithLabelValues(provider).Inc()
	}
}
