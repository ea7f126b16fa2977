//go:build record

package workflows

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.temporal.io/server/temporaltest"
)

// TestRecord runs approvals down every path of the current flow on an in-process Temporal
// server and writes each history to testdata/, where TestReplay replays it against the
// current code:
//
//   - approval_two_level.json: approve level 1, a rejected attempt by the same person at
//     level 2, approve level 2 by someone else (escalation, mint);
//   - approval_deny_l1.json, approval_deny_l2.json: deny at level 1; approve level 1 and
//     deny level 2;
//   - approval_expired_l1.json, approval_expired_l2.json: the deadline at level 1; and at
//     level 2 after an escalation;
//   - approval_cancelled.json: an operator cancels a pending approval.
//
// Re-record after a versioned workflow change (see doc.go) with
//
//	go test -tags record -run TestRecord -timeout 10m ./workflows/
//
// It links the whole Temporal server, so the first build takes minutes; the level-2
// expiry waits out a real minimum level timeout (60 s).
func TestRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	srv := temporaltest.NewServer(temporaltest.WithT(t))
	c := srv.GetDefaultClient()
	_, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        srv.GetDefaultNamespace(),
		SearchAttributes: SearchAttributeTypes(),
	})
	require.NoError(t, err)

	acts := &fakeActivities{}
	srv.NewWorker(TaskQueue, func(r worker.Registry) {
		r.RegisterWorkflowWithOptions(ApprovalWorkflow, workflow.RegisterOptions{Name: ApprovalWorkflowName})
		r.RegisterActivityWithOptions(acts.ProjectApproval, activity.RegisterOptions{Name: ActivityProjectApproval})
		r.RegisterActivityWithOptions(acts.EnqueueNotifications, activity.RegisterOptions{Name: ActivityEnqueueNotifications})
		r.RegisterActivityWithOptions(acts.MintApprovalToken, activity.RegisterOptions{Name: ActivityMintApprovalToken})
	})

	scenarios := []struct {
		file      string
		twoLevels bool
		// deadlineIn, when set, makes level 1 expire that long after the start.
		deadlineIn time.Duration
		drive      func(t *testing.T, r *recording)
		want       Status
	}{
		{file: "approval_two_level.json", twoLevels: true, want: StatusApproved, drive: func(t *testing.T, r *recording) {
			r.waitForTimers(1)
			res := r.decide(decideReq(1, Approve, alice, "r1"))
			require.Equal(t, StatusPending, res.State.Status)
			require.Equal(t, 2, res.State.Level)
			r.waitForTimers(2)
			_, err := r.tryDecide(decideReq(2, Approve, alice, "r2"))
			reason, ok := RejectionReason(err)
			require.True(t, ok, "got %v", err)
			require.Equal(t, RejectSameApprover, reason)
			res = r.decide(decideReq(2, Approve, bob, "r3"))
			require.Equal(t, StatusApproved, res.State.Status)
			require.Equal(t, "tok_apr_01", res.State.TokenID)
		}},
		{file: "approval_deny_l1.json", twoLevels: true, want: StatusDenied, drive: func(t *testing.T, r *recording) {
			r.waitForTimers(1)
			require.Equal(t, StatusDenied, r.decide(decideReq(1, Deny, alice, "r1")).State.Status)
		}},
		{file: "approval_deny_l2.json", twoLevels: true, want: StatusDenied, drive: func(t *testing.T, r *recording) {
			r.waitForTimers(1)
			require.Equal(t, StatusPending, r.decide(decideReq(1, Approve, alice, "r1")).State.Status)
			r.waitForTimers(2)
			require.Equal(t, StatusDenied, r.decide(decideReq(2, Deny, bob, "r2")).State.Status)
		}},
		{file: "approval_expired_l1.json", twoLevels: true, deadlineIn: 2 * time.Second, want: StatusExpired, drive: func(t *testing.T, r *recording) {}},
		{file: "approval_expired_l2.json", twoLevels: true, want: StatusExpired, drive: func(t *testing.T, r *recording) {
			r.waitForTimers(1)
			require.Equal(t, StatusPending, r.decide(decideReq(1, Approve, alice, "r1")).State.Status)
		}},
		{file: "approval_cancelled.json", want: StatusExpired, drive: func(t *testing.T, r *recording) {
			r.waitForTimers(1)
			require.NoError(t, r.c.CancelWorkflow(r.ctx, r.run.GetID(), r.run.GetRunID()))
		}},
	}
	for i, sc := range scenarios {
		t.Run(sc.file, func(t *testing.T) {
			in := testInput(sc.twoLevels)
			in.ApprovalID = fmt.Sprintf("apr_%02d", i+1)
			in.Reference = fmt.Sprintf("REF-ABCDEFGH-%04d", i)
			now := time.Now().UTC().Truncate(time.Millisecond)
			in.CreatedAt = now
			if sc.deadlineIn > 0 {
				in.LevelTimeout = MinLevelTimeout
				in.CreatedAt = now.Add(sc.deadlineIn - MinLevelTimeout)
			} else if sc.file == "approval_expired_l2.json" {
				in.LevelTimeout = MinLevelTimeout
			}
			run, err := c.ExecuteWorkflow(ctx, StartWorkflowOptions(in), ApprovalWorkflowName, in)
			require.NoError(t, err)
			r := &recording{t: t, ctx: ctx, c: c, run: run}
			sc.drive(t, r)

			var final State
			err = run.Get(ctx, &final)
			if sc.file == "approval_cancelled.json" {
				require.Error(t, err, "a cancelled run closes as cancelled")
				desc, derr := c.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
				require.NoError(t, derr)
				require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED, desc.GetWorkflowExecutionInfo().GetStatus())
			} else {
				require.NoError(t, err)
				require.Equal(t, sc.want, final.Status)
			}
			r.write(sc.file)
		})
	}
}

// recording drives one approval run on the recording server.
type recording struct {
	t   *testing.T
	ctx context.Context
	c   client.Client
	run client.WorkflowRun
}

func (r *recording) tryDecide(req DecideRequest) (DecideResult, error) {
	h, err := r.c.UpdateWorkflow(r.ctx, client.UpdateWorkflowOptions{
		WorkflowID:   r.run.GetID(),
		RunID:        r.run.GetRunID(),
		UpdateID:     req.RequestID,
		UpdateName:   UpdateDecide,
		Args:         []any{req},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return DecideResult{}, err
	}
	var res DecideResult
	err = h.Get(r.ctx, &res)
	return res, err
}

func (r *recording) decide(req DecideRequest) DecideResult {
	res, err := r.tryDecide(req)
	require.NoError(r.t, err)
	return res
}

// waitForTimers waits until the run has started n deadline timers, so decisions arrive
// the way a real approval's do (timer started, then a decision) rather than overtaking
// the creation projection.
func (r *recording) waitForTimers(n int) {
	require.Eventually(r.t, func() bool {
		found := 0
		for _, ev := range r.events() {
			if ev.GetEventType() == enumspb.EVENT_TYPE_TIMER_STARTED {
				found++
			}
		}
		return found >= n
	}, 30*time.Second, 50*time.Millisecond)
}

func (r *recording) events() []*historypb.HistoryEvent {
	var out []*historypb.HistoryEvent
	iter := r.c.GetWorkflowHistory(r.ctx, r.run.GetID(), r.run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(r.t, err)
		out = append(out, ev)
	}
	return out
}

// write stores the run's history as testdata/file.
func (r *recording) write(file string) {
	hist := &historypb.History{Events: r.events()}
	out, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
	require.NoError(r.t, err)
	path := filepath.Join("testdata", file)
	require.NoError(r.t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(r.t, os.WriteFile(path, append(out, '\n'), 0o644))
	r.t.Logf("wrote %s: %d events", path, len(hist.Events))
}

// TestRecordAccountDeletion runs one account deletion on an in-process Temporal server
// and writes its history to testdata/account_deletion.json, which TestReplay replays:
// the durable timer until the purge time, then PurgeAccount, whose first attempt fails
// (the database was down) and whose second purges. The purge is due two seconds after
// the start instead of 30 days: the commands are the same. Re-record after a versioned
// change to AccountDeletionWorkflow with
//
//	go test -tags record -run TestRecordAccountDeletion ./workflows/
func TestRecordAccountDeletion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	srv := temporaltest.NewServer(temporaltest.WithT(t))
	c := srv.GetDefaultClient()
	purge := &fakePurge{now: time.Now, failures: 1}
	srv.NewWorker(TaskQueue, func(r worker.Registry) {
		r.RegisterWorkflowWithOptions(AccountDeletionWorkflow, workflow.RegisterOptions{Name: AccountDeletionWorkflowName})
		r.RegisterActivityWithOptions(purge.PurgeAccount, activity.RegisterOptions{Name: ActivityPurgeAccount})
	})

	in := AccountDeletionInput{UserID: "usr_01", PurgeAt: time.Now().UTC().Truncate(time.Millisecond).Add(2 * time.Second)}
	run, err := c.ExecuteWorkflow(ctx, AccountDeletionStartWorkflowOptions(in.UserID), AccountDeletionWorkflowName, in)
	require.NoError(t, err)
	var res PurgeAccountResult
	require.NoError(t, run.Get(ctx, &res))
	require.True(t, res.Purged)
	require.Len(t, purge.calls, 2, "one failed attempt, then the purge")
	require.False(t, purge.calls[0].Before(in.PurgeAt), "purged before the timer fired")
	(&recording{t: t, ctx: ctx, c: c, run: run}).write("account_deletion.json")
}
