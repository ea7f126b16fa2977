package workflows

import (
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Names of the delivery workflow and its activities. Like the approval names they are
// part of every recorded history: renaming one breaks running deliveries.
const (
	// DeliveryWorkflowName is the workflow type of [DeliveryWorkflow]. Register it with
	// workflow.RegisterOptions{Name: DeliveryWorkflowName}; it runs on [TaskQueue].
	DeliveryWorkflowName = "DeliveryWorkflow"

	// ActivityDeliverNotification performs one attempt of a recorded delivery (org webhook
	// or notification channel) and records the attempt. Signature:
	//
	//	func(ctx context.Context, in DeliverNotificationInput) error
	//
	// It returns nil once the receiver accepted the delivery (or when an earlier attempt
	// already did), a retryable application error of type [ErrorTypeDeliveryRetryable] when
	// a later attempt can succeed (network error, 408, 429, 5xx), and a non-retryable one of
	// type [ErrorTypeDeliveryRejected] otherwise.
	ActivityDeliverNotification = "DeliverNotification"

	// ActivityMarkDeliveryFailed marks a delivery that will not be attempted again as
	// failed. Signature:
	//
	//	func(ctx context.Context, in MarkDeliveryFailedInput) error
	//
	// Idempotent: a delivery that is no longer pending is left as it is.
	ActivityMarkDeliveryFailed = "MarkDeliveryFailed"
)

// Error types of [ActivityDeliverNotification] failures.
const (
	// ErrorTypeDeliveryRetryable: the attempt failed in a way a later attempt can fix.
	ErrorTypeDeliveryRetryable = "OakallowDeliveryRetryable"
	// ErrorTypeDeliveryRejected: the attempt failed for good (a 4xx answer, a URL the
	// network policy refuses, a channel that was deleted or cannot be decrypted).
	ErrorTypeDeliveryRejected = "OakallowDeliveryRejected"
	// ErrorTypeDeliveryFailed is the type of the error a [DeliveryWorkflow] ends with
	// when the delivery failed for good.
	ErrorTypeDeliveryFailed = "OakallowDeliveryFailed"
)

// Delivery retry schedule (SPEC §4: "retries and backoff for up to 24 h"). With these
// values the attempts are spaced 5 s, 10 s, 20 s … 1 h apart, about 30 attempts in all.
const (
	// DeliveryInitialInterval is the wait before the second attempt.
	DeliveryInitialInterval = 5 * time.Second
	// DeliveryBackoffCoefficient multiplies the wait after every failed attempt.
	DeliveryBackoffCoefficient = 2.0
	// DeliveryMaximumInterval caps the wait between attempts.
	DeliveryMaximumInterval = time.Hour
	// DeliveryScheduleToClose bounds all attempts of one delivery.
	DeliveryScheduleToClose = 24 * time.Hour
	// DeliveryAttemptTimeout bounds one attempt: the HTTP client gives up after 10 s per
	// request and a PagerDuty resolution makes two requests.
	DeliveryAttemptTimeout = time.Minute
	// MarkFailedStartToClose bounds one attempt of MarkDeliveryFailed.
	MarkFailedStartToClose = 30 * time.Second
	// MarkFailedScheduleToClose bounds all attempts of MarkDeliveryFailed.
	MarkFailedScheduleToClose = time.Hour
)

// DeliveryInput starts a [DeliveryWorkflow]. It carries the delivery's id only; the
// payload, the target and its secrets stay in PostgreSQL. The interval fields exist for
// tests and operators; zero means the Delivery* default.
type DeliveryInput struct {
	// DeliveryID is the webhook_deliveries row to deliver.
	DeliveryID string `json:"delivery_id"`
	// OrgID is the org the delivery belongs to (for logs).
	OrgID string `json:"org_id"`
	// InitialInterval overrides DeliveryInitialInterval.
	InitialInterval time.Duration `json:"initial_interval,omitempty"`
	// MaximumInterval overrides DeliveryMaximumInterval.
	MaximumInterval time.Duration `json:"maximum_interval,omitempty"`
	// ScheduleToClose overrides DeliveryScheduleToClose; at most DeliveryScheduleToClose.
	ScheduleToClose time.Duration `json:"schedule_to_close,omitempty"`
}

// Validate reports the first problem with in, or nil.
func (in DeliveryInput) Validate() error {
	if in.DeliveryID == "" {
		return errors.New("delivery id is required")
	}
	if err := checkText("delivery id", in.DeliveryID, MaxIDRunes); err != nil {
		return err
	}
	if err := checkText("org id", in.OrgID, MaxIDRunes); err != nil {
		return err
	}
	if in.InitialInterval < 0 || in.MaximumInterval < 0 {
		return errors.New("retry intervals must not be negative")
	}
	if in.InitialInterval > 0 && in.MaximumInterval > 0 && in.InitialInterval > in.MaximumInterval {
		return fmt.Errorf("initial interval %s exceeds maximum interval %s", in.InitialInterval, in.MaximumInterval)
	}
	if in.ScheduleToClose < 0 || in.ScheduleToClose > DeliveryScheduleToClose {
		return fmt.Errorf("schedule-to-close %s outside 0 … %s", in.ScheduleToClose, DeliveryScheduleToClose)
	}
	if in.ScheduleToClose > 0 && in.ScheduleToClose < time.Second {
		return fmt.Errorf("schedule-to-close %s is shorter than a second", in.ScheduleToClose)
	}
	return nil
}

// Schedule is the delivery's retry schedule with in's overrides applied: the wait
// before the second attempt, the longest wait between attempts (never below the
// first), and the bound on all attempts.
func (in DeliveryInput) Schedule() (initial, maximum, total time.Duration) {
	initial, maximum, total = DeliveryInitialInterval, DeliveryMaximumInterval, DeliveryScheduleToClose
	if in.InitialInterval > 0 {
		initial = in.InitialInterval
	}
	if in.MaximumInterval > 0 {
		maximum = in.MaximumInterval
	}
	maximum = max(maximum, initial)
	if in.ScheduleToClose > 0 {
		total = in.ScheduleToClose
	}
	return initial, maximum, total
}

// retryPolicy is the delivery's schedule as the activity's retry policy, and its bound.
func (in DeliveryInput) retryPolicy() (*temporal.RetryPolicy, time.Duration) {
	initial, maximum, total := in.Schedule()
	return &temporal.RetryPolicy{
		InitialInterval:        initial,
		BackoffCoefficient:     DeliveryBackoffCoefficient,
		MaximumInterval:        maximum,
		MaximumAttempts:        0, // bounded by ScheduleToClose instead
		NonRetryableErrorTypes: append([]string{ErrorTypeDeliveryRejected}, nonRetryable...),
	}, total
}

// DeliverNotificationInput is the input of [ActivityDeliverNotification].
type DeliverNotificationInput struct {
	// DeliveryID is the webhook_deliveries row to attempt.
	DeliveryID string `json:"delivery_id"`
}

// MarkDeliveryFailedInput is the input of [ActivityMarkDeliveryFailed].
type MarkDeliveryFailedInput struct {
	// DeliveryID is the webhook_deliveries row that failed for good.
	DeliveryID string `json:"delivery_id"`
}

// DeliveryStartWorkflowOptions returns the options to start the [DeliveryWorkflow] whose
// workflow id is workflowID (the delivery id for the first delivery, the delivery id plus
// a suffix for a redelivery): starting it again while it runs attaches to the running
// workflow, and an id whose workflow already closed is never run again, so a retried
// enqueue cannot deliver twice.
func DeliveryStartWorkflowOptions(workflowID string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       workflowID,
		TaskQueue:                TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}
}

// DeliveryWorkflow retries one recorded notification (an org webhook event or a channel
// alert): it runs [ActivityDeliverNotification] with exponential backoff (5 s doubling up
// to 1 h between attempts, for at most 24 h) and, once no attempt is left or the failure
// is final, [ActivityMarkDeliveryFailed]. The first attempt of a delivery is normally
// made outside Temporal by the worker process that recorded it (see
// [ActivityEnqueueNotifications]); this workflow is started only when that attempt failed
// in a way worth retrying — then with its first task delayed and its input's intervals
// shifted so the receiver still sees 5 s, 10 s, 20 s … within 24 h of the first attempt
// — or when no direct attempt could be made (the process was at its bound or shutting
// down, or the delivery was stranded and swept), or for a redelivery. It is never started
// by the approval workflow itself, so a receiver that is down never blocks or fails an
// approval.
func DeliveryWorkflow(ctx workflow.Context, in DeliveryInput) error {
	if err := in.Validate(); err != nil {
		return temporal.NewNonRetryableApplicationError(
			"invalid delivery input: "+err.Error(), ErrorTypeValidation, nil)
	}
	logger := workflow.GetLogger(ctx)
	policy, total := in.retryPolicy()
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		ActivityID:             "deliver",
		Summary:                "deliver " + in.DeliveryID,
		StartToCloseTimeout:    DeliveryAttemptTimeout,
		ScheduleToCloseTimeout: total,
		RetryPolicy:            policy,
	})
	err := workflow.ExecuteActivity(actx, ActivityDeliverNotification,
		DeliverNotificationInput{DeliveryID: in.DeliveryID}).Get(actx, nil)
	if err == nil {
		logger.Info("Delivery delivered", "delivery_id", in.DeliveryID, "org_id", in.OrgID)
		return nil
	}

	// Also when the run was cancelled: the row must not stay pending forever.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	mctx := workflow.WithActivityOptions(dctx, workflow.ActivityOptions{
		ActivityID:             "mark-failed",
		Summary:                "mark " + in.DeliveryID + " failed",
		StartToCloseTimeout:    MarkFailedStartToClose,
		ScheduleToCloseTimeout: MarkFailedScheduleToClose,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			NonRetryableErrorTypes: nonRetryable,
		},
	})
	if merr := workflow.ExecuteActivity(mctx, ActivityMarkDeliveryFailed,
		MarkDeliveryFailedInput{DeliveryID: in.DeliveryID}).Get(mctx, nil); merr != nil {
		logger.Error("Failed delivery could not be marked failed", "delivery_id", in.DeliveryID, "error", merr)
	}
	logger.Warn("Delivery failed for good", "delivery_id", in.DeliveryID, "org_id", in.OrgID, "error", err)
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("delivery %s failed", in.DeliveryID), ErrorTypeDeliveryFailed, err)
}
