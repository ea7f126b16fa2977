package worker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdkworker "go.temporal.io/sdk/worker"

	"oakallow/dev/approvalcheck"
	"oakallow/worker"
	"oakallow/workflows"
)

// These tests try to break the approval invariant (SPEC §4) where the workflow's history
// and PostgreSQL can part: decisions racing the deadline, and a worker lost between
// accepting a decision and projecting it. approvalcheck compares the two afterwards.

// TestDecidesRacingTheDeadline sends 20 decides spread across a level's deadline, for
// several approvals, and requires that at most one is accepted, that the approval ends
// with that decision or expired when none was, and that PostgreSQL, webhooks, alerts,
// audit and token agree with the history.
func TestDecidesRacingTheDeadline(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.startWorker(nil)
	const rounds, racers = 6, 20
	for round := range rounds {
		// The level's deadline falls in the middle of the racers' burst.
		deadline := time.Now().Add(1500 * time.Millisecond)
		in, run := w.startApprovalExpiring(deadline)
		w.waitProjected(in.ApprovalID, 1)
		time.Sleep(time.Until(deadline.Add(-150 * time.Millisecond)))

		type outcome struct {
			req workflows.DecideRequest
			res workflows.DecideResult
			err error
		}
		outcomes := make([]outcome, racers)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * 15 * time.Millisecond)
				req := approve(fmt.Sprintf("racer%d", i))
				if i%2 == 1 {
					req.Decision = workflows.Deny
				}
				res, err := w.tryDecide(in.Reference, req)
				outcomes[i] = outcome{req, res, err}
			}()
		}
		wg.Wait()

		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var final workflows.State
		require.NoError(t, run.Get(ctx, &final))
		rep, err := approvalcheck.Check(ctx, w.st.Pool, w.tc, in.Reference)
		cancel()
		require.NoError(t, err)
		w.waitDeliveriesSettled()
		require.NoError(t, rep.Err(), "round %d", round)

		var won []workflows.DecideRequest
		for _, o := range outcomes {
			if o.err == nil {
				won = append(won, o.req)
				continue
			}
			// A decide that reached the workflow after it decided to end is aborted
			// with NotFound ("aborted by closing workflow"); the API answers it from
			// the stored final status.
			var ended *serviceerror.NotFound
			if errors.As(o.err, &ended) {
				continue
			}
			reason, ok := workflows.RejectionReason(o.err)
			require.True(t, ok, "round %d: a decide failed without a rejection: %v", round, o.err)
			require.Contains(t, []string{workflows.RejectExpired, workflows.RejectAlreadyDecided}, reason)
		}
		require.LessOrEqual(t, len(won), 1, "round %d: more than one decide won", round)
		if len(won) == 0 {
			require.Equal(t, workflows.StatusExpired, final.Status, "round %d", round)
			continue
		}
		want := workflows.StatusApproved
		if won[0].Decision == workflows.Deny {
			want = workflows.StatusDenied
		}
		require.Equal(t, want, final.Status, "round %d", round)
		require.Equal(t, won[0].RequestID, final.Decisions[0].RequestID)
	}
}

// TestWorkerLostBetweenAcceptingAndProjecting loses the worker after the workflow accepted
// a decision and before its projection reached PostgreSQL, then sends a contrary decision
// to the new worker. The first decision must stand everywhere: the contrary one is refused
// with the winning decision, PostgreSQL shows the first, exactly one token exists, and
// the history agrees.
func TestWorkerLostBetweenAcceptingAndProjecting(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	lose := &loseDecidedProjection{reached: make(chan struct{})}
	first := w.startWorker(w.newActivities(), worker.WithSDKOptions(sdkworker.Options{
		Interceptors:      []interceptor.WorkerInterceptor{lose},
		WorkerStopTimeout: time.Second,
	}))
	in, run := w.startApproval()
	w.waitProjected(in.ApprovalID, 1)

	// Alice's client gives up once her decision is being projected, so nothing sends it
	// again: if her acceptance were not yet in history, the server would drop it with the
	// lost workflow task, and only Bob's contrary decision would remain to be accepted.
	aliceCtx, aliceGone := context.WithCancel(context.Background())
	go func() { _, _ = w.tryDecideCtx(aliceCtx, in.Reference, approve("alice")) }()
	select {
	case <-lose.reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the decision's projection never ran")
	}
	aliceGone()
	first.Stop() // the worker is gone after writing the projection, before reporting it

	w.startWorker(w.newActivities())
	deny := approve("bob")
	deny.Decision = workflows.Deny
	_, err := w.tryDecide(in.Reference, deny)
	reason, ok := workflows.RejectionReason(err)
	require.True(t, ok, "the contrary decision must be refused, got %v", err)
	require.Equal(t, workflows.RejectAlreadyDecided, reason)
	st, ok := workflows.RejectionState(err)
	require.True(t, ok, "the refusal carries the approval's standing")
	require.Equal(t, workflows.Approve, st.Decisions[0].Decision)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var final workflows.State
	require.NoError(t, run.Get(ctx, &final))
	require.Equal(t, workflows.StatusApproved, final.Status)
	rep, err := approvalcheck.Check(ctx, w.st.Pool, w.tc, in.Reference)
	require.NoError(t, err)
	w.waitDeliveriesSettled()
	require.NoError(t, rep.Err())
}

// loseDecidedProjection stands for a worker that dies while projecting a decision: the
// first ProjectApproval of an approval.decided event writes its projection, signals
// reached and then never reports back, blocking until its worker stops.
type loseDecidedProjection struct {
	interceptor.WorkerInterceptorBase
	reached chan struct{}
	once    sync.Once
}

func (l *loseDecidedProjection) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &loseDecidedActivity{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, l: l}
}

type loseDecidedActivity struct {
	interceptor.ActivityInboundInterceptorBase
	l *loseDecidedProjection
}

func (a *loseDecidedActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	if activity.GetInfo(ctx).ActivityType.Name == workflows.ActivityProjectApproval && len(in.Args) == 1 {
		if p, ok := in.Args[0].(workflows.ProjectApprovalInput); ok && p.Event == workflows.EventDecided {
			first := false
			a.l.once.Do(func() { first = true })
			if first {
				if _, err := a.Next.ExecuteActivity(ctx, in); err != nil {
					return nil, err
				}
				close(a.l.reached)
				<-ctx.Done()
				return nil, errors.New("worker lost")
			}
		}
	}
	return a.Next.ExecuteActivity(ctx, in)
}

// tryDecide sends a decide Update and returns its outcome, rejections included.
func (w *world) tryDecide(ref string, req workflows.DecideRequest) (workflows.DecideResult, error) {
	return w.tryDecideCtx(context.Background(), ref, req)
}

// tryDecideCtx is tryDecide within ctx.
func (w *world) tryDecideCtx(ctx context.Context, ref string, req workflows.DecideRequest) (workflows.DecideResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	h, err := w.tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: ref, UpdateID: req.RequestID, UpdateName: workflows.UpdateDecide,
		Args: []any{req}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var res workflows.DecideResult
	if err == nil {
		err = h.Get(ctx, &res)
	}
	return res, err
}

// decideUntilAnswered sends a decide Update as the API's sendDecision does: an Update
// the server aborted with a discarded workflow task, refused for too many in flight, or
// whose wait ran out is sent again with the same Update id (deduplicated by Temporal and
// the workflow) until it is answered or ends in a rejection. Twenty raw concurrent
// Updates can stall a workflow past one wait (the API takes turns per approval to avoid
// exactly that), and under the race detector a first wait of 45 s was seen to expire for
// every racer although the run decided; what the test judges is the answers, not how
// soon they come.
func (w *world) decideUntilAnswered(ref string, req workflows.DecideRequest) (workflows.DecideResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	for {
		res, err := w.tryDecideCtx(ctx, ref, req)
		var unavailable *serviceerror.Unavailable
		var exhausted *serviceerror.ResourceExhausted
		var waitEnded *client.WorkflowUpdateServiceTimeoutOrCanceledError
		resend := errors.As(err, &unavailable) || errors.As(err, &exhausted) || errors.As(err, &waitEnded) ||
			errors.Is(err, context.DeadlineExceeded)
		if err == nil || !resend || ctx.Err() != nil {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestConcurrentDecideUpdates sends 20 decide Updates at once, alternating approve and
// deny, straight to each of several approvals' workflows — more than Temporal admits in
// flight per workflow, so some are refused and retried and workflow tasks are discarded
// while they arrive — and requires exactly one accepted decision per approval and
// PostgreSQL, webhooks, alerts, audit and token agreeing with the history. (Before the
// decision boundary of flowV3 this split PostgreSQL from history in about one round in
// four.)
func TestConcurrentDecideUpdates(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.startWorker(nil)
	const rounds, racers = 12, 20
	for round := range rounds {
		in, run := w.startApproval()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []workflows.DecideRequest
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := approve(fmt.Sprintf("r%d-%d", round, i))
				if i%2 == 1 {
					req.Decision = workflows.Deny
				}
				_, err := w.decideUntilAnswered(in.Reference, req)
				if err == nil {
					mu.Lock()
					won = append(won, req)
					mu.Unlock()
					return
				}
				var ended *serviceerror.NotFound
				if reason, ok := workflows.RejectionReason(err); !errors.As(err, &ended) && (!ok || reason != workflows.RejectAlreadyDecided) {
					t.Errorf("round %d: decide %d: %v", round, i, err)
				}
			}()
		}
		wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		var final workflows.State
		require.NoError(t, run.Get(ctx, &final))
		rep, err := approvalcheck.Check(ctx, w.st.Pool, w.tc, in.Reference)
		cancel()
		require.NoError(t, err)
		w.waitDeliveriesSettled()
		require.NoError(t, rep.Err(), "round %d", round)
		require.Len(t, won, 1, "round %d: exactly one decide wins", round)
		require.Equal(t, won[0].RequestID, final.Decisions[0].RequestID, "round %d", round)
	}
}
