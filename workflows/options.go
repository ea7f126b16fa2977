package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Activity timeouts. Each activity is one short PostgreSQL transaction, so StartToClose is
// generous; retries are what carries an approval through a database outage.
const (
	// ProjectStartToClose bounds one attempt of ProjectApproval.
	ProjectStartToClose = 10 * time.Second
	// MintStartToClose bounds one attempt of MintApprovalToken.
	MintStartToClose = 30 * time.Second
	// NotifyStartToClose bounds one attempt of EnqueueNotifications.
	NotifyStartToClose = 10 * time.Second
	// NotifyScheduleToClose bounds all attempts of EnqueueNotifications; after it the
	// workflow logs the failure and carries on.
	NotifyScheduleToClose = 2 * time.Minute
)

// nonRetryable are the error types no retry can fix.
var nonRetryable = []string{ErrorTypeValidation, ErrorTypePermission, ErrorTypeNotFound, ErrorTypeConflict}

// callOptions are the timeouts and retry policy of one activity call, whether it runs as
// a regular activity (flowV1) or a local one (flowV2 on).
type callOptions struct {
	id              string // activity id of a regular activity; local activities have none
	summary         string
	startToClose    time.Duration
	scheduleToClose time.Duration
	retry           *temporal.RetryPolicy
	// regular runs the call as a regular activity even on flows that run calls locally
	// (a decision's projection: see approval.decisionBoundary).
	regular bool
}

// durableOptions are for writes the approval cannot go on without (projection, mint):
// retried without an attempt limit, backing off to one attempt a minute.
func durableOptions(id, summary string, startToClose time.Duration) callOptions {
	return callOptions{
		id:           id,
		summary:      summary,
		startToClose: startToClose,
		retry: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			MaximumAttempts:        0, // unlimited: an outage delays the approval, never loses it
			NonRetryableErrorTypes: nonRetryable,
		},
	}
}

// notifyOptions are for EnqueueNotifications: a few quick attempts, then give up.
func notifyOptions(id, summary string) callOptions {
	return callOptions{
		id:              id,
		summary:         summary,
		startToClose:    NotifyStartToClose,
		scheduleToClose: NotifyScheduleToClose,
		retry: &temporal.RetryPolicy{
			InitialInterval:        500 * time.Millisecond,
			BackoffCoefficient:     2,
			MaximumInterval:        15 * time.Second,
			NonRetryableErrorTypes: nonRetryable,
		},
	}
}

// activityContext applies o to ctx for workflow.ExecuteActivity.
func (o callOptions) activityContext(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		ActivityID:             o.id,
		Summary:                o.summary,
		StartToCloseTimeout:    o.startToClose,
		ScheduleToCloseTimeout: o.scheduleToClose,
		RetryPolicy:            o.retry,
	})
}

// localActivityContext applies o to ctx for workflow.ExecuteLocalActivity.
func (o callOptions) localActivityContext(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		Summary:                o.summary,
		StartToCloseTimeout:    o.startToClose,
		ScheduleToCloseTimeout: o.scheduleToClose,
		RetryPolicy:            o.retry,
	})
}
