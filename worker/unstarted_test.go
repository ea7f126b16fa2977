package worker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"oakallow/activities"
	"oakallow/dev/approvalcheck"
	"oakallow/store"
	"oakallow/worker"
	"oakallow/workflows"
)

// These tests lose an approval between the commit of its row and the start of its
// workflow — the API's process died, or the start failed and so did the withdrawal —
// and require the worker's start reconciler to bring it back under exactly one
// workflow that runs it as the API's start would have, so that the approval invariant
// holds again: PostgreSQL, the history, webhooks and the token agree.

// backdate makes an approval look untouched for an hour, past StartRecoveryAfter.
func (w *world) backdate(approvalID string) {
	w.t.Helper()
	w.exec(`UPDATE approvals SET updated_at = updated_at - interval '1 hour' WHERE id = $1`, approvalID)
}

// startedInput is the input the workflow ref was started with.
func (w *world) startedInput(ref string) workflows.ApprovalInput {
	w.t.Helper()
	it := w.tc.GetWorkflowHistory(context.Background(), ref, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	require.True(w.t, it.HasNext())
	ev, err := it.Next()
	require.NoError(w.t, err)
	var in workflows.ApprovalInput
	require.NoError(w.t, converter.GetDefaultDataConverter().FromPayloads(ev.GetWorkflowExecutionStartedEventAttributes().GetInput(), &in))
	return in
}

// requireStartedAsTheAPIWould requires that ref's workflow got exactly want, the
// input the API builds — the same ids, level plan and creation time — marked as
// started by the reconciler.
func (w *world) requireStartedAsTheAPIWould(want workflows.ApprovalInput) {
	w.t.Helper()
	got := w.startedInput(want.Reference)
	require.True(w.t, want.CreatedAt.Equal(got.CreatedAt), "created at %s, want %s", got.CreatedAt, want.CreatedAt)
	require.True(w.t, got.StartRecovered, "marked as the reconciler's start")
	got.CreatedAt, got.StartRecovered = want.CreatedAt, want.StartRecovered
	require.Equal(w.t, want, got)
}

// runs is how many workflow runs projected approvalID (each writes its own effects).
func (w *world) runs(approvalID string) int {
	w.t.Helper()
	return w.count(`SELECT count(DISTINCT run_id) FROM workflow_effects WHERE approval_id = $1`, approvalID)
}

func (w *world) audits(approvalID, kind string) int {
	w.t.Helper()
	return w.count(`SELECT count(*) FROM audit_events WHERE subject = $1 AND kind = $2`, approvalID, kind)
}

// TestWorkerStartsUnstartedApproval: an approval committed ten minutes ago whose
// workflow never started is started by the worker's sweep with the API's input; it is
// announced once, decided like any other, gets its token, and PostgreSQL agrees with
// the history.
func TestWorkerStartsUnstartedApproval(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	in := w.insertApproval(time.Now().Add(-10*time.Minute), time.Hour)
	w.requireNoWorkflow(in.Reference)
	// The cross-check reports it at once: there is no workflow to wait for.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	rep, err := approvalcheck.Check(cctx, w.st.Pool, w.tc, in.Reference)
	require.NoError(t, err)
	require.True(t, rep.Unstarted)
	require.Error(t, rep.Err())

	w.startWorker(nil, worker.WithSweepInterval(100*time.Millisecond))
	w.waitProjected(in.ApprovalID, 1)
	w.requireStartedAsTheAPIWould(in)
	require.Equal(t, 1, w.audits(in.ApprovalID, activities.AuditApprovalStartRecovered))
	created := w.rcv.WaitForDeliveries(t, 1, 20*time.Second)
	require.Equal(t, "approval.created", created[0].Event)

	res := w.decide(in.Reference, approve("alice"))
	require.Equal(t, workflows.StatusApproved, res.State.Status)
	require.NotEmpty(t, res.State.TokenID)
	rep, err = approvalcheck.Check(cctx, w.st.Pool, w.tc, in.Reference)
	require.NoError(t, err)
	require.NoError(t, rep.Err())
	require.False(t, rep.Unstarted)
	require.Equal(t, res.State.TokenID, rep.State.TokenID)

	w.waitDeliveriesSettled()
	got := w.rcv.Deliveries()
	require.Len(t, got, 2, "announced once, decided once")
	require.Equal(t, []string{"approval.created", "approval.decided"}, []string{got[0].Event, got[1].Event})
	require.Equal(t, 1, w.runs(in.ApprovalID))
	require.Equal(t, 1, w.audits(in.ApprovalID, activities.AuditApprovalStartRecovered), "recovered once")
}

// gatedStarts holds every workflow start until released: a reconciler that claimed
// its rows and then stalled for longer than its claim lasts.
type gatedStarts struct {
	client.Client
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gatedStarts) ExecuteWorkflow(ctx context.Context, o client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	g.once.Do(func() { close(g.reached) })
	<-g.release
	return g.Client.ExecuteWorkflow(ctx, o, wf, args...)
}

// TestUnstartedApprovalIsStartedOnce: reconcilers of several worker replicas racing on
// the same unstarted approvals start each exactly once — also when one of them stalled
// between its claim and its start until another claimed the row again and started it.
func TestUnstartedApprovalIsStartedOnce(t *testing.T) {
	t.Parallel()
	t.Run("concurrent passes", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t)
		w.startWorker(nil, worker.WithSweepInterval(0))
		var ins []workflows.ApprovalInput
		for range 6 {
			ins = append(ins, w.insertApproval(time.Now().Add(-10*time.Minute), time.Hour))
		}
		replicas := []*activities.Activities{w.acts, w.newActivities(), w.newActivities()}
		claimed := make([]int, len(replicas))
		errs := make([]error, len(replicas))
		var wg sync.WaitGroup
		for i, acts := range replicas {
			wg.Go(func() {
				claimed[i], errs[i] = acts.RecoverUnstartedApprovals(context.Background(), worker.StartRecoveryAfter, 100)
			})
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		require.Equal(t, len(ins), claimed[0]+claimed[1]+claimed[2], "each row claimed by one replica")
		for _, in := range ins {
			w.waitProjected(in.ApprovalID, 1)
			w.requireStartedAsTheAPIWould(in)
			require.Equal(t, 1, w.audits(in.ApprovalID, activities.AuditApprovalStartRecovered))
		}
		w.rcv.WaitForDeliveries(t, len(ins), 20*time.Second)
		w.waitDeliveriesSettled()
		for _, in := range ins {
			require.Equal(t, 1, w.runs(in.ApprovalID))
		}
		require.Len(t, w.rcv.Deliveries(), len(ins), "one approval.created each")
	})
	t.Run("a stalled reconciler whose claim ran out", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t)
		w.startWorker(nil, worker.WithSweepInterval(0))
		in := w.insertApproval(time.Now().Add(-10*time.Minute), time.Hour)
		gate := &gatedStarts{Client: w.tc, reached: make(chan struct{}), release: make(chan struct{})}
		stalled := w.newActivitiesOn(gate)
		done := make(chan error, 1)
		go func() {
			_, err := stalled.RecoverUnstartedApprovals(context.Background(), worker.StartRecoveryAfter, 100)
			done <- err
		}()
		select {
		case <-gate.reached:
		case <-time.After(20 * time.Second):
			t.Fatal("the stalled reconciler never got to its start")
		}

		// Its claim runs out; another replica claims the row and starts the workflow.
		w.backdate(in.ApprovalID)
		n, err := w.acts.RecoverUnstartedApprovals(context.Background(), worker.StartRecoveryAfter, 100)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		w.waitProjected(in.ApprovalID, 1)
		desc, err := w.tc.DescribeWorkflowExecution(context.Background(), in.Reference, "")
		require.NoError(t, err)
		runID := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()

		// The stalled one wakes up: its start finds the run and leaves it.
		close(gate.release)
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Fatal("the stalled reconciler never finished")
		}
		desc, err = w.tc.DescribeWorkflowExecution(context.Background(), in.Reference, "")
		require.NoError(t, err)
		require.Equal(t, runID, desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(), "the run was not replaced")
		require.Equal(t, 1, w.audits(in.ApprovalID, activities.AuditApprovalStartRecovered))
		w.rcv.WaitForDeliveries(t, 1, 20*time.Second)
		w.waitDeliveriesSettled()
		require.Equal(t, 1, w.runs(in.ApprovalID))
		require.Len(t, w.rcv.Deliveries(), 1, "announced once")
	})
}

// TestUnstartedApprovalPastItsDeadlineExpires: an approval orphaned for longer than its
// timeout is started with its original creation time, so it expires at once at its
// original deadline — no new clock, no decision, no token — and PostgreSQL agrees with
// the history.
func TestUnstartedApprovalPastItsDeadlineExpires(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.startWorker(nil, worker.WithSweepInterval(0))
	ctx := context.Background()
	in := w.insertApproval(time.Now().Add(-2*time.Hour), time.Hour)

	n, err := w.acts.RecoverUnstartedApprovals(ctx, worker.StartRecoveryAfter, 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	w.requireStartedAsTheAPIWould(in)
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rep, err := approvalcheck.Check(cctx, w.st.Pool, w.tc, in.Reference)
	require.NoError(t, err)
	require.NoError(t, rep.Err())
	require.Equal(t, workflows.StatusExpired, rep.State.Status)
	require.Empty(t, rep.State.Decisions)
	require.True(t, in.CreatedAt.Add(time.Hour).Equal(rep.State.ExpiresAt), "the deadline counts from the creation: %s", rep.State.ExpiresAt)

	var status string
	var expires time.Time
	require.NoError(t, w.st.Pool.QueryRow(ctx, `SELECT status, expires_at FROM approvals WHERE id = $1`, in.ApprovalID).Scan(&status, &expires))
	require.Equal(t, "expired", status)
	require.True(t, in.CreatedAt.Add(time.Hour).Equal(expires), "PostgreSQL keeps the original deadline: %s", expires)
	require.Zero(t, w.count(`SELECT count(*) FROM execution_tokens WHERE source_kind = 'approval' AND source_id = $1`, in.ApprovalID))
	_, err = w.tryDecide(in.Reference, approve("alice"))
	require.Error(t, err, "an expired approval takes no decision")

	w.waitDeliveriesSettled()
	got := w.rcv.Deliveries()
	require.Len(t, got, 2)
	require.Equal(t, []string{"approval.created", "approval.expired"}, []string{got[0].Event, got[1].Event})
}

// TestReconcilerLeavesStartedApprovals: the reconciler starts nothing for an approval
// that is younger than StartRecoveryAfter, already projected, or whose workflow runs
// but has not projected it yet; an approval whose workflow closed before projecting it
// (an operator terminated it) ends expired, without a token, instead of pending forever.
func TestReconcilerLeavesStartedApprovals(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.startWorker(nil, worker.WithSweepInterval(0))
	ctx := context.Background()
	sweep := func() int {
		t.Helper()
		n, err := w.acts.RecoverUnstartedApprovals(ctx, worker.StartRecoveryAfter, 100)
		require.NoError(t, err)
		return n
	}

	fresh := w.insertApproval(time.Now(), time.Hour)
	projected, _ := w.startApproval()
	w.waitProjected(projected.ApprovalID, 1)
	w.backdate(projected.ApprovalID)
	// A workflow on a queue no worker polls: it runs, and will not project for now.
	waiting := w.insertApproval(time.Now().Add(-10*time.Minute), time.Hour)
	opts := workflows.StartWorkflowOptions(waiting)
	opts.TaskQueue = "idle-" + store.NewID("q")
	run, err := w.tc.ExecuteWorkflow(ctx, opts, workflows.ApprovalWorkflowName, waiting)
	require.NoError(t, err)

	require.Equal(t, 1, sweep(), "only the running, unprojected one is old enough and unprojected")
	w.requireNoWorkflow(fresh.Reference)
	desc, err := w.tc.DescribeWorkflowExecution(ctx, waiting.Reference, "")
	require.NoError(t, err)
	require.Equal(t, run.GetRunID(), desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(), "the running workflow is left alone")
	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.GetWorkflowExecutionInfo().GetStatus())
	require.Equal(t, 1, w.count(`SELECT count(*) FROM approvals WHERE id = $1 AND status = 'pending' AND projection_seq = 0`, waiting.ApprovalID))
	require.Zero(t, w.count(`SELECT count(*) FROM audit_events WHERE kind LIKE 'approval.%' AND kind <> 'approval.created'`))
	require.Zero(t, sweep(), "a claim lasts StartRecoveryAfter")

	// Terminated before it ever projected: nothing will decide it.
	require.NoError(t, w.tc.TerminateWorkflow(ctx, waiting.Reference, "", "operator"))
	w.backdate(waiting.ApprovalID)
	require.Equal(t, 1, sweep())
	var status string
	var decided bool
	require.NoError(t, w.st.Pool.QueryRow(ctx, `SELECT status, decided_at IS NOT NULL FROM approvals WHERE id = $1`, waiting.ApprovalID).Scan(&status, &decided))
	require.Equal(t, "expired", status)
	require.True(t, decided)
	require.Equal(t, 1, w.audits(waiting.ApprovalID, activities.AuditApprovalEndedUnstarted))
	require.Zero(t, w.audits(waiting.ApprovalID, activities.AuditApprovalStartRecovered))
	require.Zero(t, w.count(`SELECT count(*) FROM execution_tokens WHERE source_kind = 'approval' AND source_id = $1`, waiting.ApprovalID))
	desc, err = w.tc.DescribeWorkflowExecution(ctx, waiting.Reference, "")
	require.NoError(t, err)
	require.Equal(t, run.GetRunID(), desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(), "no new run under a closed id")
	w.backdate(waiting.ApprovalID)
	require.Zero(t, sweep(), "an ended approval is not claimed again")
}

// lostAfterStart is a Temporal client whose workflow starts reach the server, after
// which the caller hears nothing: the reconciler's process was lost right after its
// start, before it could write anything else.
type lostAfterStart struct {
	client.Client
	mu      sync.Mutex
	started int
}

func (l *lostAfterStart) ExecuteWorkflow(ctx context.Context, o client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	if _, err := l.Client.ExecuteWorkflow(ctx, o, wf, args...); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.started++
	l.mu.Unlock()
	return nil, errors.New("the reconciler's process was lost after its start")
}

// TestRecoveryIsAuditedOnceAlthoughTheReconcilerIsLost: a reconciler lost right after
// starting the workflow of an unstarted approval still leaves exactly one
// approval.start_recovered — written with the recovered run's first projection — and
// later passes of several replicas add none.
func TestRecoveryIsAuditedOnceAlthoughTheReconcilerIsLost(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.startWorker(nil, worker.WithSweepInterval(0))
	ctx := context.Background()
	in := w.insertApproval(time.Now().Add(-10*time.Minute), time.Hour)

	lost := &lostAfterStart{Client: w.tc}
	_, err := w.newActivitiesOn(lost).RecoverUnstartedApprovals(ctx, worker.StartRecoveryAfter, 100)
	require.Error(t, err, "the lost reconciler never heard back")
	require.Equal(t, 1, lost.started)
	w.waitProjected(in.ApprovalID, 1)
	w.requireStartedAsTheAPIWould(in)
	require.Equal(t, 1, w.audits(in.ApprovalID, activities.AuditApprovalStartRecovered))
	var actorKind, actorID, outcome, runID string
	require.NoError(t, w.st.Pool.QueryRow(ctx, `SELECT actor_kind, actor_id, outcome, details->>'workflow_run_id'
		FROM audit_events WHERE subject = $1 AND kind = $2`, in.ApprovalID, activities.AuditApprovalStartRecovered).
		Scan(&actorKind, &actorID, &outcome, &runID))
	desc, err := w.tc.DescribeWorkflowExecution(ctx, in.Reference, "")
	require.NoError(t, err)
	require.Equal(t, []string{activities.ActorSystem, "start_reconciler", "pending", desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()},
		[]string{actorKind, actorID, outcome, runID})

	// Passes of three replicas after the claim ran out: nothing more to do or to audit.
	w.backdate(in.ApprovalID)
	var wg sync.WaitGroup
	for _, acts := range []*activities.Activities{w.acts, w.newActivities(), w.newActivities()} {
		wg.Go(func() {
			_, err := acts.RecoverUnstartedApprovals(ctx, worker.StartRecoveryAfter, 100)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	require.Equal(t, 1, w.audits(in.ApprovalID, activities.AuditApprovalStartRecovered), "audited once")

	res := w.decide(in.Reference, approve("alice"))
	require.Equal(t, workflows.StatusApproved, res.State.Status)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	rep, err := approvalcheck.Check(cctx, w.st.Pool, w.tc, in.Reference)
	require.NoError(t, err)
	require.NoError(t, rep.Err())
	require.Equal(t, 1, w.runs(in.ApprovalID))
	require.Equal(t, 1, w.audits(in.ApprovalID, activities.AuditApprovalStartRecovered))
}

// TestRecoveredRunClosedBeforeProjecting: a run the reconciler started that was
// terminated before it ever projected the approval never wrote approval.start_recovered;
// the pass that ends the approval writes it, with approval.ended_unstarted, once.
func TestRecoveredRunClosedBeforeProjecting(t *testing.T) {
	t.Parallel()
	w := newWorld(t) // no worker polls the queue: the recovered run will not project
	ctx := context.Background()
	in := w.insertApproval(time.Now().Add(-10*time.Minute), time.Hour)
	n, err := w.acts.RecoverUnstartedApprovals(ctx, worker.StartRecoveryAfter, 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	w.requireStartedAsTheAPIWould(in)
	require.Zero(t, w.audits(in.ApprovalID, activities.AuditApprovalStartRecovered), "nothing projected yet")

	require.NoError(t, w.tc.TerminateWorkflow(ctx, in.Reference, "", "operator"))
	for range 2 {
		w.backdate(in.ApprovalID)
		_, err := w.acts.RecoverUnstartedApprovals(ctx, worker.StartRecoveryAfter, 100)
		require.NoError(t, err)
	}
	require.Equal(t, 1, w.count(`SELECT count(*) FROM approvals WHERE id = $1 AND status = 'expired' AND decided_at IS NOT NULL`, in.ApprovalID))
	require.Equal(t, 1, w.audits(in.ApprovalID, activities.AuditApprovalStartRecovered))
	require.Equal(t, 1, w.audits(in.ApprovalID, activities.AuditApprovalEndedUnstarted))
	require.Equal(t, 1, w.count(`SELECT count(*) FROM audit_events WHERE subject = $1 AND kind = $2 AND details->>'reason' = 'workflow_closed'`,
		in.ApprovalID, activities.AuditApprovalEndedUnstarted))
	require.Zero(t, w.count(`SELECT count(*) FROM execution_tokens WHERE source_kind = 'approval' AND source_id = $1`, in.ApprovalID))
}

// TestUnstartedApprovalOfADeletedOrgEnds: an unstarted approval whose org was deleted
// gets no workflow — nobody could decide it, and starting it would only announce it —
// but ends expired, with no token, no webhook and no new charge, audited
// approval.ended_unstarted with the reason; the cross-check agrees.
func TestUnstartedApprovalOfADeletedOrgEnds(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.startWorker(nil, worker.WithSweepInterval(0))
	ctx := context.Background()
	in := w.insertApproval(time.Now().Add(-10*time.Minute), time.Hour)
	w.exec(`UPDATE orgs SET deleted_at = now() WHERE id = $1`, w.orgID)
	billable := func() int {
		return w.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND billable`, w.orgID)
	}
	billed := billable()

	for range 2 {
		w.backdate(in.ApprovalID)
		_, err := w.acts.RecoverUnstartedApprovals(ctx, worker.StartRecoveryAfter, 100)
		require.NoError(t, err)
	}
	w.requireNoWorkflow(in.Reference)
	require.Equal(t, 1, w.count(`SELECT count(*) FROM approvals WHERE id = $1 AND status = 'expired' AND decided_at IS NOT NULL AND token_id IS NULL`, in.ApprovalID))
	require.Equal(t, 1, w.count(`SELECT count(*) FROM audit_events WHERE subject = $1 AND kind = $2 AND details->>'reason' = 'org_deleted'
		AND actor_kind = 'system' AND outcome = 'expired' AND NOT billable`, in.ApprovalID, activities.AuditApprovalEndedUnstarted))
	require.Zero(t, w.audits(in.ApprovalID, activities.AuditApprovalStartRecovered))
	require.Equal(t, billed, billable(), "not billed again")
	require.Zero(t, w.count(`SELECT count(*) FROM webhook_deliveries WHERE org_id = $1`, w.orgID))

	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	rep, err := approvalcheck.Check(cctx, w.st.Pool, w.tc, in.Reference)
	require.NoError(t, err)
	require.NoError(t, rep.Err())
	require.True(t, rep.EndedUnstarted)
	require.False(t, rep.Unstarted)
}
