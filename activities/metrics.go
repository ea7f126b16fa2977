package activities

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"oakallow/activities/notify"
)

// Metrics are the approval side's Prometheus series (SPEC §11): time to a
// final answer per outcome, and every webhook or channel delivery attempt.
// They are observed only when a write was actually applied, so activity
// retries and replays never count twice.
type Metrics struct {
	timeToDecision   *prometheus.HistogramVec
	deliveryAttempts *prometheus.CounterVec
	deliveryLatency  prometheus.Histogram
}

// NewMetrics creates the series and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		timeToDecision: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "oakallow_approval_time_to_decision_seconds",
			Help:    "From an approval's creation to its final status (approved, denied or expired).",
			Buckets: []float64{1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600, 3 * 24 * 3600, 7 * 24 * 3600},
		}, []string{"outcome"}),
		deliveryAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oakallow_webhook_delivery_attempts_total",
			Help: "Webhook and notification-channel delivery attempts by target and result (ok, retryable, failed).",
		}, []string{"target", "result"}),
		deliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "oakallow_webhook_delivery_duration_seconds",
			Help:    "Duration of delivery attempts that reached the receiver.",
			Buckets: prometheus.DefBuckets,
		}),
	}
	for _, c := range []prometheus.Collector{m.timeToDecision, m.deliveryAttempts, m.deliveryLatency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) observeFinal(outcome string, took time.Duration) {
	if m == nil {
		return
	}
	m.timeToDecision.WithLabelValues(outcome).Observe(max(took, 0).Seconds())
}

func (m *Metrics) observeAttempt(target string, att notify.Attempt) {
	if m == nil {
		return
	}
	result := "failed"
	switch {
	case att.OK():
		result = "ok"
	case att.Retryable:
		result = "retryable"
	}
	m.deliveryAttempts.WithLabelValues(target, result).Inc()
	if att.StatusCode != 0 {
		m.deliveryLatency.Observe(att.Latency.Seconds())
	}
}
