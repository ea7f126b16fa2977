package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"oakallow/activities"
	"oakallow/workflows"
)

// Option adjusts a Worker.
type Option func(*options)

type options struct {
	taskQueue string
	sdk       sdkworker.Options
	sweep     *time.Duration
	drain     time.Duration
}

// WithTaskQueue polls queue instead of workflows.TaskQueue. Only for isolating tests that
// share one Temporal namespace: the API starts approvals on workflows.TaskQueue, and the
// activities must be given the same queue (activities.Deps.TaskQueue).
func WithTaskQueue(queue string) Option {
	return func(o *options) { o.taskQueue = queue }
}

// WithSDKOptions passes Temporal worker options (concurrency limits, pollers) through.
func WithSDKOptions(opts sdkworker.Options) Option {
	return func(o *options) { o.sdk = opts }
}

// Worker is a Temporal worker with oakallow's workflows and activities registered.
type Worker struct {
	w         sdkworker.Worker
	acts      *activities.Activities
	taskQueue string
	logger    *slog.Logger
	stopOnce  sync.Once
	sweep     time.Duration
	drain     time.Duration
	cancel    context.CancelFunc
	swept     chan struct{}
}

// Sweeper settings: every SweepInterval the worker starts the workflows of
// pending deliveries that have none and were not touched for SweepAfter
// (activities.SweepStrandedDeliveries). SweepAfter is well above a direct
// attempt (workflows.DeliveryAttemptTimeout plus its hand-off), so an attempt
// under way is never swept.
const (
	SweepInterval = time.Minute
	SweepAfter    = 5 * time.Minute
	sweepBatch    = 500
)

// Start reconciler settings: on the same ticks the worker starts the workflows of
// approvals that were committed but never started and that nothing touched for
// StartRecoveryAfter (activities.RecoverUnstartedApprovals). StartRecoveryAfter is
// well above the longest the API may still be starting or withdrawing an approval
// after committing it (runtime: the start, a describe and the withdrawal, each on its
// own deadline, about 40 s in all), so a start under way is never raced.
const (
	StartRecoveryAfter = 2 * time.Minute
	recoverBatch       = 100
)

// DrainTimeout bounds how long Stop waits for the direct delivery attempts under
// way (activities.Activities.Close); those still running are left to the sweep.
const DrainTimeout = 10 * time.Second

// WithSweepInterval changes how often the worker sweeps stranded
// deliveries and unstarted approvals (tests); 0 turns the sweeper off.
func WithSweepInterval(d time.Duration) Option {
	return func(o *options) { o.sweep = &d }
}

// WithDrainTimeout changes how long Stop waits for direct delivery attempts under
// way (default DrainTimeout).
func WithDrainTimeout(d time.Duration) Option {
	return func(o *options) { o.drain = d }
}

// New creates a worker on c that runs the approval and delivery workflows and the
// activities of acts. It does not poll until Start.
func New(c client.Client, acts *activities.Activities, logger *slog.Logger, opts ...Option) (*Worker, error) {
	if c == nil {
		return nil, errors.New("worker: temporal client is required")
	}
	if acts == nil {
		return nil, errors.New("worker: activities are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := options{taskQueue: workflows.TaskQueue, drain: DrainTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if o.taskQueue == "" {
		return nil, errors.New("worker: task queue is empty")
	}
	if o.drain <= 0 {
		return nil, errors.New("worker: drain timeout must be positive")
	}
	w := sdkworker.New(c, o.taskQueue, o.sdk)
	register(w, acts)
	sweep := SweepInterval
	if o.sweep != nil {
		sweep = *o.sweep
	}
	return &Worker{w: w, acts: acts, taskQueue: o.taskQueue, logger: logger, sweep: sweep, drain: o.drain}, nil
}

// register registers every workflow and activity by its contract name. Activities are
// registered one by one, not as a struct, so that methods of Activities meant for the
// API (Redeliver, TestChannel) never become activities.
func register(r sdkworker.Registry, acts *activities.Activities) {
	r.RegisterWorkflowWithOptions(workflows.ApprovalWorkflow, workflow.RegisterOptions{Name: workflows.ApprovalWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.DeliveryWorkflow, workflow.RegisterOptions{Name: workflows.DeliveryWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.AccountDeletionWorkflow, workflow.RegisterOptions{Name: workflows.AccountDeletionWorkflowName})
	for name, fn := range map[string]any{
		workflows.ActivityProjectApproval:      acts.ProjectApproval,
		workflows.ActivityEnqueueNotifications: acts.EnqueueNotifications,
		workflows.ActivityMintApprovalToken:    acts.MintApprovalToken,
		workflows.ActivityDeliverNotification:  acts.DeliverNotification,
		workflows.ActivityMarkDeliveryFailed:   acts.MarkDeliveryFailed,
		workflows.ActivityPurgeAccount:         acts.PurgeAccount,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// Start starts polling; it returns once the worker is running.
func (w *Worker) Start() error {
	if err := w.w.Start(); err != nil {
		return fmt.Errorf("worker: start on %s: %w", w.taskQueue, err)
	}
	w.logger.Info("Temporal worker started", "task_queue", w.taskQueue)
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.swept = make(chan struct{})
	go w.sweepLoop(ctx)
	return nil
}

// sweepLoop periodically starts the delivery workflows of stranded
// deliveries (see activities.SweepStrandedDeliveries) and the approval
// workflows of approvals committed but never started (see
// activities.RecoverUnstartedApprovals). Several workers sweeping at once is
// harmless: each claims its rows exclusively, starting a delivery workflow is
// idempotent, and an approval's workflow is created by one start only.
func (w *Worker) sweepLoop(ctx context.Context) {
	defer close(w.swept)
	if w.sweep <= 0 {
		return
	}
	t := time.NewTicker(w.sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := w.acts.SweepStrandedDeliveries(ctx, SweepAfter, sweepBatch)
			if err != nil && ctx.Err() == nil {
				w.logger.Warn("Delivery sweep", "looked_at", n, "error", err)
			}
			n, err = w.acts.RecoverUnstartedApprovals(ctx, StartRecoveryAfter, recoverBatch)
			if err != nil && ctx.Err() == nil {
				w.logger.Warn("Unstarted approval sweep", "looked_at", n, "error", err)
			}
		}
	}
}

// Stop stops polling and waits for running tasks to finish (up to the SDK's
// WorkerStopTimeout); tasks not finished by then are retried by another worker. It then
// closes the activities' direct delivery attempts, waiting up to DrainTimeout for those
// under way (deliveries abandoned then are swept by another worker). The activities
// cannot make direct attempts afterwards. Calling it again does nothing.
func (w *Worker) Stop() {
	w.stopOnce.Do(func() {
		if w.cancel != nil {
			w.cancel()
			<-w.swept
		}
		w.w.Stop()
		// After the SDK worker: an EnqueueNotifications finishing during its stop
		// still hands its deliveries to the direct attempts this drains.
		ctx, cancel := context.WithTimeout(context.Background(), w.drain)
		defer cancel()
		if err := w.acts.Close(ctx); err != nil {
			w.logger.Warn("Direct delivery attempts abandoned; the sweep will start their workflows", "error", err)
		}
		w.logger.Info("Temporal worker stopped", "task_queue", w.taskQueue)
	})
}
