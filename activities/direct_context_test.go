package activities_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"oakallow/activities"
	"oakallow/activities/notify/notifytest"
	"oakallow/store"
	"oakallow/workflows"
)

// TestDirectAttemptIsNotTheEnqueuingActivity: the direct first attempt outlives the
// local activity that recorded the delivery and must not take that activity's retry
// policy for its own. Here the enqueuing activity's policy would wait an hour before its
// next attempt, which dropped the receiver's Retry-After of two minutes (not longer than
// that hour); the retry must still wait the two minutes the receiver asked for.
func TestDirectAttemptIsNotTheEnqueuingActivity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{temporal: true})
	const secret = "whsec_test_secret_0123456789"
	rcv := notifytest.NewWebhookReceiver(t, secret)
	rcv.SetMode(notifytest.Down503)
	rcv.SetRetryAfter("120")
	e.setWebhook(rcv.URL(), secret, false)
	a := e.insertApproval(false)

	queue := "enqueue-" + strings.ToLower(store.NewID("q"))
	w := worker.New(e.tc, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(func(ctx workflow.Context, in workflows.EnqueueNotificationsInput) error {
		ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
			StartToCloseTimeout: time.Minute,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Hour, MaximumAttempts: 2},
		})
		return workflow.ExecuteLocalActivity(ctx, e.acts.EnqueueNotifications, in).Get(ctx, nil)
	}, workflow.RegisterOptions{Name: "enqueue-as-local-activity"})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := e.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: queue}, "enqueue-as-local-activity",
		workflows.EnqueueNotificationsInput{
			RunID: "run-1", Key: "notify:created", OrgID: e.orgID, ApprovalID: a.id, Reference: a.ref,
			Event: workflows.EventCreated, Level: 1, Status: workflows.StatusPending, ExpiresAt: e.now.Add(time.Hour), At: e.now,
		})
	require.NoError(t, err)
	require.NoError(t, run.Get(ctx, nil))
	require.NoError(t, e.acts.Close(ctx)) // the direct attempt and its hand-off are done
	d := e.deliveryFor(activities.TargetOrgWebhook, "")
	require.True(t, e.handedOff(d.id))
	desc, err := e.tc.DescribeWorkflowExecution(ctx, d.id, "")
	require.NoError(t, err)
	info := desc.GetWorkflowExecutionInfo()
	require.Equal(t, 2*time.Minute, info.GetExecutionTime().AsTime().Sub(info.GetStartTime().AsTime()),
		"the retry waits as long as the receiver asked")
	require.NoError(t, e.tc.TerminateWorkflow(ctx, d.id, "", "test done"))
}
