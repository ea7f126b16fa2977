//go:build record

package workflows

import (
	"context"
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

// TestRecord runs a two-level approval (approve level 1, a rejected attempt by the same
// person at level 2, approve level 2 by someone else) on an in-process Temporal server and
// writes its history to testdata/approval_two_level.json, which TestReplay replays against
// the current code. Re-record after a versioned workflow change (see doc.go) with:
//
//	go test -tags record -run TestRecord ./workflows/
//
// It links the whole Temporal server, so the first build takes minutes.
func TestRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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

	in := testInput(true)
	in.CreatedAt = time.Now().UTC().Truncate(time.Millisecond)
	run, err := c.ExecuteWorkflow(ctx, StartWorkflowOptions(in), ApprovalWorkflowName, in)
	require.NoError(t, err)

	decide := func(req DecideRequest) (DecideResult, error) {
		h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID:   run.GetID(),
			RunID:        run.GetRunID(),
			UpdateID:     req.RequestID,
			UpdateName:   UpdateDecide,
			Args:         []any{req},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		if err != nil {
			return DecideResult{}, err
		}
		var res DecideResult
		err = h.Get(ctx, &res)
		return res, err
	}

	// Decide only once the workflow waits on each level's deadline, so the history has the
	// shape of a real approval (timer started, then a decision) rather than a decision
	// that overtook the creation projection.
	waitForTimers := func(n int) {
		require.Eventually(t, func() bool {
			found := 0
			iter := c.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			for iter.HasNext() {
				ev, err := iter.Next()
				require.NoError(t, err)
				if ev.GetEventType() == enumspb.EVENT_TYPE_TIMER_STARTED {
					found++
				}
			}
			return found >= n
		}, 30*time.Second, 50*time.Millisecond)
	}

	waitForTimers(1)
	res, err := decide(decideReq(1, Approve, alice, "r1"))
	require.NoError(t, err)
	require.Equal(t, StatusPending, res.State.Status)
	require.Equal(t, 2, res.State.Level)

	waitForTimers(2)
	_, err = decide(decideReq(2, Approve, alice, "r2"))
	reason, ok := RejectionReason(err)
	require.True(t, ok, "got %v", err)
	require.Equal(t, RejectSameApprover, reason)

	res, err = decide(decideReq(2, Approve, bob, "r3"))
	require.NoError(t, err)
	require.Equal(t, StatusApproved, res.State.Status)
	require.Equal(t, "tok_apr_01", res.State.TokenID)

	var final State
	require.NoError(t, run.Get(ctx, &final))
	require.Equal(t, StatusApproved, final.Status)
	require.Equal(t, 1, acts.mints())

	hist := &historypb.History{}
	iter := c.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		hist.Events = append(hist.Events, ev)
	}
	out, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
	require.NoError(t, err)
	path := filepath.Join("testdata", "approval_two_level.json")
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, append(out, '\n'), 0o644))
	t.Logf("wrote %s: %d events", path, len(hist.Events))
}
