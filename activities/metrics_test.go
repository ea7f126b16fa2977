package activities_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/activities/pii"
	"oakallow/workflows"
)

// TestTimeToDecisionIsObservedOncePerApproval: a final transition is
// observed when it is applied, not again when the activity is retried.
func TestTimeToDecisionIsObservedOncePerApproval(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	reg := prometheus.NewRegistry()
	m, err := activities.NewMetrics(reg)
	require.NoError(t, err)
	hc := loopbackClient(t)
	n, err := notify.New(notify.Config{HTTPClient: hc, Scrub: pii.Scrub})
	require.NoError(t, err)
	acts, err := activities.New(activities.Deps{Store: e.st, Keyring: e.kr, Temporal: unreachableClient{}, Notifier: n,
		HTTPClient: hc, SecretBox: e.box, Metrics: m, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return time.Now().UTC() }})
	require.NoError(t, err)

	ctx := context.Background()
	a := e.insertApproval(false)
	require.NoError(t, acts.ProjectApproval(ctx, e.projection(a, "run-1", workflows.EventCreated, workflows.StatusPending, 1, nil)))
	decided := e.projection(a, "run-1", workflows.EventDecided, workflows.StatusApproved, 1, decision(1, workflows.Approve, alice, e.now))
	require.NoError(t, acts.ProjectApproval(ctx, decided))
	require.NoError(t, acts.ProjectApproval(ctx, decided), "a retried attempt")

	families, err := reg.Gather()
	require.NoError(t, err)
	var count uint64
	var sum float64
	for _, f := range families {
		if f.GetName() != "oakallow_approval_time_to_decision_seconds" {
			continue
		}
		for _, mt := range f.GetMetric() {
			require.Equal(t, "approved", mt.GetLabel()[0].GetValue())
			count += mt.GetHistogram().GetSampleCount()
			sum += mt.GetHistogram().GetSampleSum()
		}
	}
	require.Equal(t, uint64(1), count, "observed once despite the retry")
	require.Greater(t, sum, 0.0)
}
