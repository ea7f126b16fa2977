package api

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"oakallow/activities"
	"oakallow/dev/approvalcheck"
	"oakallow/workflows"
)

// lostStart is a Temporal client on which starting a workflow fails after the API
// committed the approval: the start of a process that died right after its commit. It
// keeps the input the API meant to start the workflow with.
type lostStart struct {
	client.Client
	mu     sync.Mutex
	inputs []workflows.ApprovalInput
}

func (l *lostStart) ExecuteWorkflow(_ context.Context, _ client.StartWorkflowOptions, _ any, args ...any) (client.WorkflowRun, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if in, ok := args[0].(workflows.ApprovalInput); ok {
		l.inputs = append(l.inputs, in)
	}
	return nil, serviceerror.NewUnavailable("temporal is down")
}

// orphanApproval requests an approval of e's org whose start fails and whose
// withdrawal fails too: the caller is answered 503 "it may exist" and the row stays
// pending with no workflow. It returns the input the API meant to start it with.
func orphanApproval(t *testing.T, s *approvalSuite, e *testEnv) workflows.ApprovalInput {
	t.Helper()
	ctx := context.Background()
	// PostgreSQL refuses to withdraw this org's approvals, as when it fails mid-abort.
	fn := pgx.Identifier{"refuse_withdrawal_" + e.boot.OrgID}.Sanitize()
	for _, sql := range []string{
		`CREATE FUNCTION ` + fn + `() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'withdrawal refused by the test'; END $$`,
		`CREATE TRIGGER ` + fn + ` BEFORE DELETE ON approvals FOR EACH ROW WHEN (OLD.org_id = '` + e.boot.OrgID + `') EXECUTE FUNCTION ` + fn + `()`,
	} {
		_, err := s.st.Pool.Exec(ctx, sql)
		require.NoError(t, err)
	}
	dropped := false
	drop := func() {
		if dropped {
			return
		}
		dropped = true
		_, err := s.st.Pool.Exec(context.Background(), `DROP TRIGGER `+fn+` ON approvals; DROP FUNCTION `+fn+`()`)
		require.NoError(t, err)
	}
	t.Cleanup(drop)

	lost := &lostStart{Client: s.tc}
	broken := e.on(s.startServer(t, func(d *Deps) { d.Temporal = lost }))
	broken.waitForKey(e.boot.StandardKey)
	raw := broken.expectProblem(http.StatusServiceUnavailable, CodeUnavailable, http.MethodPost, "/v1/approvals",
		e.boot.StandardKey, map[string]any{"tool": "send_email", "reasoning": "r", "timeout_seconds": 600})
	require.Contains(t, string(raw), "may exist")
	drop()
	lost.mu.Lock()
	defer lost.mu.Unlock()
	require.Len(t, lost.inputs, 1)
	return lost.inputs[0]
}

// backdateApproval makes an approval look untouched for an hour, past
// worker.StartRecoveryAfter. (Rows of other tests are younger, so a pass takes only
// this one, or the suite worker's own sweep takes it first: either way one pass.)
func backdateApproval(t *testing.T, s *approvalSuite, id string) {
	t.Helper()
	_, err := s.st.Pool.Exec(context.Background(), `UPDATE approvals SET updated_at = updated_at - interval '1 hour' WHERE id = $1`, id)
	require.NoError(t, err)
}

// activityOf lists e's org's audit events of kind about subject, through GET /v1/activity.
func activityOf(e *testEnv, kind, subject string) []ActivityEvent {
	page := expect[activityOutputBody](e, http.StatusOK, http.MethodGet, "/v1/activity?kind="+kind, e.boot.ManagementKey, nil)
	var out []ActivityEvent
	for _, ev := range page.Items {
		if ev.Subject == subject {
			out = append(out, ev)
		}
	}
	return out
}

// testApprovalUnstartedIsRecovered: an approval whose start failed and whose
// withdrawal failed too is answered 503 "it may exist" and left pending with no
// workflow; the worker's start reconciler starts its workflow with exactly the input
// the API meant to give it, after which it is announced once, decided like any other,
// gets its token, and PostgreSQL agrees with the workflow's history. The recovery is
// in the activity log, found by its kind.
func testApprovalUnstartedIsRecovered(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	e.seedTool("send_email", "", nil)
	hook, _ := orgHook(e, e.boot.ManagementKey)
	ctx := context.Background()
	want := orphanApproval(t, s, e)

	// Left behind: pending, unprojected, no workflow. The cross-check says so at once.
	require.Equal(t, 1, e.count(`SELECT count(*) FROM approvals WHERE org_id = $1 AND id = $2 AND status = 'pending' AND projection_seq = 0`, want.ApprovalID))
	_, err := s.tc.DescribeWorkflowExecution(ctx, want.Reference, "")
	var notFound *serviceerror.NotFound
	require.ErrorAs(t, err, &notFound)
	cctx, cancel := context.WithTimeout(ctx, hangDeadline)
	defer cancel()
	rep, err := approvalcheck.Check(cctx, s.st.Pool, s.tc, want.Reference)
	require.NoError(t, err)
	require.True(t, rep.Unstarted, "reported as never started")

	// A sweep after StartRecoveryAfter.
	backdateApproval(t, s, want.ApprovalID)
	_, err = s.acts.RecoverUnstartedApprovals(ctx, 30*time.Minute, 100)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return e.count(`SELECT count(*) FROM approvals WHERE org_id = $1 AND id = $2 AND projection_seq >= 1`, want.ApprovalID) == 1
	}, hangDeadline, 20*time.Millisecond, "the recovered workflow never projected the approval")

	// Started with exactly the input the API built.
	it := s.tc.GetWorkflowHistory(ctx, want.Reference, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	require.True(t, it.HasNext())
	first, err := it.Next()
	require.NoError(t, err)
	var got workflows.ApprovalInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(first.GetWorkflowExecutionStartedEventAttributes().GetInput(), &got))
	require.True(t, want.CreatedAt.Equal(got.CreatedAt), "created at %s, want %s", got.CreatedAt, want.CreatedAt)
	require.True(t, got.StartRecovered, "marked as the reconciler's start")
	got.CreatedAt, got.StartRecovered = want.CreatedAt, want.StartRecovered
	require.Equal(t, want, got)
	recovered := activityOf(e, activities.AuditApprovalStartRecovered, want.ApprovalID)
	require.Len(t, recovered, 1, "the recovery is listed under its kind")
	require.Equal(t, []string{activities.ActorSystem, "start_reconciler", "pending", "send_email"},
		[]string{recovered[0].ActorKind, recovered[0].ActorID, recovered[0].Outcome, recovered[0].Tool})
	require.False(t, recovered[0].Billable)

	// The agent's poll shows it pending; a reviewer decides it and the agent gets a token.
	polled := expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+want.Reference, e.boot.StandardKey, nil)
	require.Equal(t, "pending", polled.Status)
	decided := expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+want.ApprovalID+"/decide", e.boot.ManagementKey,
		map[string]any{"decision": "approve"})
	require.Equal(t, "approved", decided.Status)
	require.NotEmpty(t, decided.Token)
	claims := expect[TokenClaims](e, http.StatusOK, http.MethodPost, "/v1/tokens/verify", e.boot.StandardKey,
		map[string]any{"token": decided.Token})
	require.True(t, claims.Valid)
	require.Equal(t, want.ApprovalID, claims.SourceID)

	rep, err = approvalcheck.Check(cctx, s.st.Pool, s.tc, want.Reference)
	require.NoError(t, err)
	require.NoError(t, rep.Err())
	require.Equal(t, workflows.StatusApproved, rep.State.Status)

	events := hook.WaitForDeliveries(t, 2, hangDeadline)
	require.Equal(t, []string{"approval.created", "approval.decided"}, []string{events[0].Event, events[1].Event})
	require.Equal(t, 1, e.count(`SELECT count(*) FROM webhook_deliveries WHERE org_id = $1 AND event_type = 'approval.created'`),
		"announced once")
	require.Equal(t, 1, e.count(`SELECT count(DISTINCT f.run_id) FROM workflow_effects f JOIN approvals a ON a.id = f.approval_id
		WHERE a.org_id = $1 AND a.id = $2`, want.ApprovalID),
		"one workflow run")
}

// testApprovalUnstartedEndedIsListed: an unstarted approval whose workflow closed
// before ever projecting it ends expired, with no token; the end is in the activity
// log, found by its kind, with its reason.
func testApprovalUnstartedEndedIsListed(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.seedTool("send_email", "", nil)
	ctx := context.Background()
	in := orphanApproval(t, s, e)

	// Its workflow starts on a queue no worker polls, and an operator terminates it.
	opts := workflows.StartWorkflowOptions(in)
	opts.TaskQueue = "idle-" + in.Reference
	_, err := s.tc.ExecuteWorkflow(ctx, opts, workflows.ApprovalWorkflowName, in)
	require.NoError(t, err)
	require.NoError(t, s.tc.TerminateWorkflow(ctx, in.Reference, "", "operator"))
	backdateApproval(t, s, in.ApprovalID)
	_, err = s.acts.RecoverUnstartedApprovals(ctx, 30*time.Minute, 100)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return e.count(`SELECT count(*) FROM approvals WHERE org_id = $1 AND id = $2 AND status = 'expired'`, in.ApprovalID) == 1
	}, hangDeadline, 20*time.Millisecond, "the approval never ended")

	polled := expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+in.Reference, e.boot.StandardKey, nil)
	require.Equal(t, "expired", polled.Status)
	require.Empty(t, polled.Token)
	ended := activityOf(e, activities.AuditApprovalEndedUnstarted, in.ApprovalID)
	require.Len(t, ended, 1, "the end is listed under its kind")
	require.Equal(t, []string{activities.ActorSystem, "start_reconciler", "expired"},
		[]string{ended[0].ActorKind, ended[0].ActorID, ended[0].Outcome})
	var details struct {
		Reason string `json:"reason"`
	}
	require.NoError(t, json.Unmarshal(ended[0].Details, &details))
	require.Equal(t, "workflow_closed", details.Reason)
	require.Empty(t, activityOf(e, activities.AuditApprovalStartRecovered, in.ApprovalID), "the reconciler started nothing")
}
