package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/temporal"

	"oakallow/store"
	"oakallow/workflows"
)

// DefaultMaxDirectAttempts is how many first delivery attempts one process runs at once
// unless Deps.MaxDirectAttempts says otherwise. Each holds a goroutine and at most one
// outbound request for up to workflows.DeliveryAttemptTimeout.
const DefaultMaxDirectAttempts = 256

// MaxMaxDirectAttempts bounds Deps.MaxDirectAttempts.
const MaxMaxDirectAttempts = 10000

// handOffTimeout bounds recording the outcome of a direct attempt: marking the delivery
// failed, or starting its DeliveryWorkflow and marking it handed off.
const handOffTimeout = 30 * time.Second

// errDispatcherClosed is returned by [dispatcher.acquire] once Close was called.
var errDispatcherClosed = errors.New("dispatcher closed")

// errDispatcherFull is returned by [dispatcher.acquire] when every slot is taken.
var errDispatcherFull = errors.New("dispatcher full")

// dispatcher bounds and tracks the first attempts made outside Temporal. Close stops it
// taking work and waits for what is in flight; when the wait is given up, abandon
// cancels the attempts still running.
type dispatcher struct {
	limit int

	mu       sync.Mutex
	closed   bool
	inflight map[string]struct{} // delivery ids
	idle     chan struct{}       // closed when inflight becomes empty after Close; nil before

	stopped context.Context // done once Close gave up waiting
	abandon context.CancelFunc
}

func newDispatcher(limit int) *dispatcher {
	stopped, abandon := context.WithCancel(context.Background())
	return &dispatcher{limit: limit, inflight: make(map[string]struct{}), stopped: stopped, abandon: abandon}
}

// acquire reserves a slot for delivery id. It reports dup when id is already in flight
// here (a retried EnqueueNotifications): the attempt under way covers it.
func (d *dispatcher) acquire(id string) (dup bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.inflight[id]; ok {
		return true, nil
	}
	if d.closed {
		return false, errDispatcherClosed
	}
	if len(d.inflight) >= d.limit {
		return false, errDispatcherFull
	}
	d.inflight[id] = struct{}{}
	return false, nil
}

// release frees id's slot.
func (d *dispatcher) release(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.inflight, id)
	if d.idle != nil && len(d.inflight) == 0 {
		close(d.idle)
		d.idle = nil
	}
}

// attemptContext is the context of one direct attempt, ended by timeout or by Close
// giving up. It owes nothing to the activity that recorded the delivery, which returns at
// once: derived from that activity's context, the attempt would read its activity info —
// the retry policy and attempt number of a finished local activity — as its own.
func (d *dispatcher) attemptContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(d.stopped, timeout)
}

// close stops taking work and waits until nothing is in flight or ctx ends; in the
// latter case it cancels what is still running and returns how many were abandoned.
func (d *dispatcher) close(ctx context.Context) (int, error) {
	d.mu.Lock()
	d.closed = true
	if len(d.inflight) == 0 {
		d.mu.Unlock()
		return 0, nil
	}
	if d.idle == nil {
		d.idle = make(chan struct{})
	}
	idle := d.idle
	d.mu.Unlock()
	select {
	case <-idle:
		return 0, nil
	case <-ctx.Done():
		d.abandon()
		d.mu.Lock()
		n := len(d.inflight)
		d.mu.Unlock()
		return n, ctx.Err()
	}
}

// Close stops the direct delivery attempts: EnqueueNotifications no longer attempts
// deliveries itself but starts a DeliveryWorkflow for each, and Close waits until the
// attempts already under way have finished and recorded their outcome, or ctx ends.
// Attempts still running when ctx ends are cancelled and Close returns ctx's error; their
// deliveries stay pending without a workflow, and the sweep (SweepStrandedDeliveries)
// starts their workflows. Calling Close again waits again.
func (a *Activities) Close(ctx context.Context) error {
	n, err := a.direct.close(ctx)
	if err != nil {
		return fmt.Errorf("activities: %d direct delivery attempts abandoned: %w", n, err)
	}
	return nil
}

// dispatch makes the first attempt of delivery row in a goroutine and reports whether it
// took the delivery; it does not when the dispatcher is full or closed, and the caller
// then starts the delivery's workflow itself. It never waits for the receiver.
func (a *Activities) dispatch(row store.WebhookDelivery) bool {
	dup, err := a.direct.acquire(row.ID)
	if err != nil {
		return false
	}
	if !dup {
		go a.attemptDirect(row.ID, row.OrgID)
	}
	return true
}

// attemptDirect is the first attempt of a delivery, through DeliverNotification exactly
// as the DeliveryWorkflow makes it (recorded in webhook_attempts, counted in the
// metrics), followed by what the workflow would do next: nothing once delivered, mark it
// failed after a final failure, and for a retryable one start the DeliveryWorkflow,
// delayed so the receiver sees the usual schedule. Whatever it cannot record leaves the
// delivery pending and not handed off, for the sweep.
func (a *Activities) attemptDirect(deliveryID, orgID string) {
	defer a.direct.release(deliveryID)
	ctx, cancel := a.direct.attemptContext(workflows.DeliveryAttemptTimeout)
	defer cancel()
	began := a.now()
	err := a.DeliverNotification(ctx, workflows.DeliverNotificationInput{DeliveryID: deliveryID})
	if err == nil {
		return
	}
	if a.direct.stopped.Err() != nil {
		a.logger.WarnContext(ctx, "Direct delivery attempt abandoned at shutdown; the sweep will start its workflow",
			"delivery_id", deliveryID)
		return
	}
	hctx, hcancel := a.direct.attemptContext(handOffTimeout)
	defer hcancel()
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.NonRetryable() {
		// Final: a 4xx, an unusable target, a delivery gone or failed already.
		if merr := a.MarkDeliveryFailed(hctx, workflows.MarkDeliveryFailedInput{DeliveryID: deliveryID}); merr != nil {
			a.logger.WarnContext(ctx, "Failed delivery not marked failed; the sweep will retry it",
				"delivery_id", deliveryID, "error", merr)
		}
		return
	}
	var retryAfter time.Duration
	if errors.As(err, &appErr) {
		retryAfter = appErr.NextRetryDelay() // the receiver's Retry-After, if it sent one
	}
	in, delay := a.retryInput(deliveryID, orgID, a.now().Sub(began), retryAfter)
	if herr := a.handOff(hctx, in, delay); herr != nil {
		a.logger.WarnContext(ctx, "Delivery retry not started; the sweep will start it",
			"delivery_id", deliveryID, "error", herr)
	}
}

// handOff starts the DeliveryWorkflow of in (workflow id = the delivery id) with its
// first task delayed by delay, and marks the delivery handed off. When that workflow id
// has closed already, nothing would retry the delivery: it is left to the sweep, which
// starts it under a fresh id.
func (a *Activities) handOff(ctx context.Context, in workflows.DeliveryInput, delay time.Duration) error {
	if err := a.startDelivery(ctx, in.DeliveryID, in, delay); err != nil {
		return err
	}
	return a.markHandedOff(ctx, []string{in.DeliveryID})
}

// markHandedOff records that ids have a DeliveryWorkflow.
func (a *Activities) markHandedOff(ctx context.Context, ids []string) error {
	if err := a.st.MarkWebhookDeliveriesHandedOff(ctx, store.MarkWebhookDeliveriesHandedOffParams{
		HandedOffAt: a.now(), Ids: ids,
	}); err != nil {
		return fmt.Errorf("mark deliveries handed off: %w", err)
	}
	return nil
}

// deliveryInput is the input of a DeliveryWorkflow running the configured schedule.
func (a *Activities) deliveryInput(deliveryID, orgID string) workflows.DeliveryInput {
	in := a.retry
	in.DeliveryID, in.OrgID = deliveryID, orgID
	return in
}

// retryInput is the DeliveryWorkflow input and start delay that continue, after a direct
// attempt that took the given time, the schedule a DeliveryWorkflow started at the first attempt
// would have run: the next attempt one initial interval later (the start delay; longer
// when the receiver asked for a longer retryAfter), the one after twice that (the
// workflow's own initial interval), doubling from there, and all of them within the same
// total from the first attempt.
func (a *Activities) retryInput(deliveryID, orgID string, took, retryAfter time.Duration) (workflows.DeliveryInput, time.Duration) {
	in := a.deliveryInput(deliveryID, orgID)
	initial, maximum, total := in.Schedule()
	delay := max(initial, retryAfter)
	in.InitialInterval = min(time.Duration(float64(initial)*workflows.DeliveryBackoffCoefficient), maximum)
	in.ScheduleToClose = max(total-max(took, 0)-delay, time.Second)
	return in, delay
}
