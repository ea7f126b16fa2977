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
	ProjectStartToClose = 30 * time.Second
	// MintStartToClose bounds one attempt of MintApprovalToken.
	MintStartToClose = 30 * time.Second
	// NotifyStartToClose bounds one attempt of EnqueueNotifications.
	NotifyStartToClose = 10 * time.Second
	// NotifyScheduleToClose bounds all attempts of EnqueueNotifications; after it the
	// workflow logs the failure and carries on.
	NotifyScheduleToClose = 2 * time.Minute
)

// nonRetryable are the error types no retry can fix.
var nonRetryable = []string{ErrorTypeValidation, ErrorTypePermission, ErrorTypeNotFound}

// durableOptions are for writes the approval cannot go on without (projection, mint):
// retried without an attempt limit, backing off to one attempt a minute.
func durableOptions(ctx workflow.Context, key, summary string, startToClose time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		ActivityID:          key,
		Summary:             summary,
		StartToCloseTimeout: startToClose,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			MaximumAttempts:        0, // unlimited: an outage delays the approval, never loses it
			NonRetryableErrorTypes: nonRetryable,
		},
	})
}

// notifyOptions are for EnqueueNotifications: a few quick attempts, then give up.
func notifyOptions(ctx workflow.Context, key, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		ActivityID:             key,
		Summary:                summary,
		StartToCloseTimeout:    NotifyStartToClose,
		ScheduleToCloseTimeout: NotifyScheduleToClose,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        500 * time.Millisecond,
			BackoffCoefficient:     2,
			MaximumInterval:        15 * time.Second,
			NonRetryableErrorTypes: nonRetryable,
		},
	})
}
