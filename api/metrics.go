package api

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the API process's Prometheus series, on a registry of its own
// (never the global one) served at /metrics.
type metrics struct {
	reg          *prometheus.Registry
	checkLatency prometheus.Histogram
	verdicts     *prometheus.CounterVec
	requests     *prometheus.CounterVec
	policyLoad   *prometheus.HistogramVec
	// rateLimited counts requests refused with 429, limitCrossings the
	// limits crossed (each audited once), by limit (see limits.go).
	rateLimited    *prometheus.CounterVec
	limitCrossings *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		reg: reg,
		checkLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "oakallow_check_duration_seconds",
			Help:    "Time to answer POST /v1/permissions/check, audit commit included.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1},
		}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oakallow_check_verdicts_total",
			Help: "Permission check verdicts by permission and scope.",
		}, []string{"permission", "scope"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oakallow_http_requests_total",
			Help: "HTTP requests by operation and status class.",
		}, []string{"operation", "class"}),
		policyLoad: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "oakallow_policy_load_duration_seconds",
			Help:    "Time to load and compile one org's policy (queries, schemas, index), by result (ok, error).",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"result"}),
	}
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oakallow_rate_limited_total",
		Help: "Requests refused with 429 rate_limited, by limit.",
	}, []string{"limit"})
	m.limitCrossings = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oakallow_rate_limit_crossings_total",
		Help: "Rate limits crossed (the first refusal since a client's budget was last full; each is audited once), by limit.",
	}, []string{"limit"})
	for _, l := range limitNames {
		m.rateLimited.WithLabelValues(l)
		m.limitCrossings.WithLabelValues(l)
	}
	m.reg.MustRegister(m.checkLatency, m.verdicts, m.requests, m.policyLoad, m.rateLimited, m.limitCrossings,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry exposes the registry so other components in the process (the
// worker in `go run ./dev`) can add their series.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// observePolicyLoad records one policy load.
func (m *metrics) observePolicyLoad(d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.policyLoad.WithLabelValues(result).Observe(d.Seconds())
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func statusClass(code int) string {
	switch {
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	case code >= 300:
		return "3xx"
	default:
		return "2xx"
	}
}
