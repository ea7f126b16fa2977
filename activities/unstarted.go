package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/converter"

	"oakallow/store"
	"oakallow/workflows"
)

// Audit kinds written for the start reconciler (RecoverUnstartedApprovals).
const (
	// AuditApprovalStartRecovered: the reconciler started the workflow of an approval
	// whose row was committed but whose workflow never started. Written once per
	// approval, by the recovered run's creation projection (see
	// workflows.ApprovalInput.StartRecovered), or with the row's end when that run
	// closed before it ever projected.
	AuditApprovalStartRecovered = "approval.start_recovered"
	// AuditApprovalEndedUnstarted: the reconciler ended, as expired and with no token,
	// an approval that no workflow will ever run: its workflow closed (terminated,
	// failed) before it ever projected the approval (details reason "workflow_closed"),
	// or it had no workflow and its org was deleted (reason "org_deleted").
	AuditApprovalEndedUnstarted = "approval.ended_unstarted"
)

// Reasons in the details of an approval.ended_unstarted audit event.
const (
	endedWorkflowClosed = "workflow_closed"
	endedOrgDeleted     = "org_deleted"
)

// RecoverUnstartedApprovals finds approvals whose row was committed but that no
// workflow ever projected, and that nothing touched for olderThan (at most limit per
// call), and brings each back under a workflow. It returns how many it claimed.
//
// The API commits an approval's row and then starts its workflow (runtime
// RequestApproval); a process lost between the two, or a start that failed when the
// withdrawal of the row failed too, leaves a pending row that no workflow will ever
// project, notify, time out or decide. For each such row the reconciler asks Temporal
// about the workflow id (the REF):
//
//   - no workflow: it starts one with the very input the API would have given it,
//     rebuilt from the row — level 1's deadline counts from the row's created_at, so an
//     approval orphaned past its deadline expires at once instead of getting a new
//     clock — marked StartRecovered, so that the run's creation projection audits
//     approval.start_recovered in the same transaction as approval.created. The audit
//     follows from history, not from this process: a reconciler lost right after its
//     start loses nothing, and a start that did not create the run audits nothing;
//   - no workflow, and the org was deleted: nobody can select the org, its keys are
//     revoked, so nobody could decide the approval; starting it would only announce it.
//     The row ends expired with no workflow and no token (approval.ended_unstarted,
//     reason org_deleted). Nothing is billed: the request was billed once, when made;
//   - a running workflow: left alone; its first projection moves the row on;
//   - a closed workflow (terminated or failed before its first projection): nothing
//     will ever decide the approval, so the row ends expired (the tool must not run),
//     audited as approval.ended_unstarted (reason workflow_closed) — and, when that run
//     was the reconciler's, as approval.start_recovered too, which its projection
//     never wrote. Nothing was ever announced for it, so nothing is notified.
//
// olderThan must exceed the longest the API can still be starting or withdrawing the
// approval after its commit, so a start under way is never raced; were it raced, both
// starts name the same workflow id and input, and exactly one creates the run.
// Several reconcilers at once are harmless: claiming is exclusive (see store
// ClaimUnstartedApprovals), and a start that finds the id taken (another reconciler,
// or the API's late start) leaves it to that run.
func (a *Activities) RecoverUnstartedApprovals(ctx context.Context, olderThan time.Duration, limit int32) (int, error) {
	now := a.now()
	rows, err := a.st.ClaimUnstartedApprovals(ctx, store.ClaimUnstartedApprovalsParams{
		ClaimedAt: now, Before: now.Add(-olderThan), RowLimit: limit,
	})
	if err != nil {
		return 0, fmt.Errorf("recover unstarted approvals: %w", err)
	}
	var errs []error
	for _, r := range rows {
		if err := a.recoverApproval(ctx, r); err != nil {
			errs = append(errs, fmt.Errorf("approval %s: %w", r.Reference, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return len(rows), fmt.Errorf("recover unstarted approvals: %w", err)
	}
	return len(rows), nil
}

// recoverApproval brings one claimed, unprojected approval back under a workflow.
func (a *Activities) recoverApproval(ctx context.Context, r store.Approval) error {
	desc, err := a.temporal.DescribeWorkflowExecution(ctx, r.Reference, "")
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return a.startUnstarted(ctx, r)
	case err != nil:
		return fmt.Errorf("describe workflow: %w", err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return nil // its first projection moves the row on
	}
	recovered, err := a.startedByReconciler(ctx, r.Reference, info.GetExecution().GetRunId())
	if err != nil {
		return err
	}
	return a.endUnstarted(ctx, r, recovered, map[string]any{
		"reason": endedWorkflowClosed, "workflow_status": info.GetStatus().String(), "workflow_type": info.GetType().GetName(),
		"workflow_run_id": info.GetExecution().GetRunId(),
	})
}

// startedByReconciler reports whether run runID of workflow ref was started by the
// start reconciler (its input is marked StartRecovered).
func (a *Activities) startedByReconciler(ctx context.Context, ref, runID string) (bool, error) {
	it := a.temporal.GetWorkflowHistory(ctx, ref, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return false, fmt.Errorf("workflow %s has no history", ref)
	}
	ev, err := it.Next()
	if err != nil {
		return false, fmt.Errorf("read the start of workflow %s: %w", ref, err)
	}
	attrs := ev.GetWorkflowExecutionStartedEventAttributes()
	if attrs == nil {
		return false, fmt.Errorf("workflow %s starts with %s", ref, ev.GetEventType())
	}
	var in workflows.ApprovalInput
	if err := converter.GetDefaultDataConverter().FromPayloads(attrs.GetInput(), &in); err != nil {
		// Not an approval's input (another workflow type under the REF): the reconciler
		// starts only approval workflows, so this run is not its.
		return false, nil
	}
	return in.StartRecovered, nil
}

// unstartedInput is the workflow input RequestApproval builds, from the row it stored.
func unstartedInput(r store.Approval) workflows.ApprovalInput {
	in := workflows.ApprovalInput{
		ApprovalID: r.ID, Reference: r.Reference, OrgID: r.OrgID, ToolName: r.ToolName, TwoLevels: r.TwoLevels,
		LevelTimeout: time.Duration(r.LevelTimeoutSeconds) * time.Second, CreatedAt: r.CreatedAt,
	}
	if r.TenantID != nil {
		in.TenantID = *r.TenantID
	}
	return in
}

// startUnstarted starts the workflow of an approval that has none, or ends the
// approval when its org was deleted.
func (a *Activities) startUnstarted(ctx context.Context, r store.Approval) error {
	org, err := a.st.GetOrg(ctx, r.OrgID)
	if err != nil {
		return fmt.Errorf("load org: %w", err)
	}
	if org.DeletedAt != nil {
		return a.endUnstarted(ctx, r, false, map[string]any{"reason": endedOrgDeleted, "org_deleted_at": *org.DeletedAt})
	}
	in := unstartedInput(r)
	in.StartRecovered = true
	if err := in.Validate(); err != nil {
		return fmt.Errorf("rebuild workflow input: %w", err)
	}
	opts := workflows.StartWorkflowOptions(in)
	opts.TaskQueue = a.taskQueue
	// Exactly one starter creates the run: a start that finds the id running (another
	// reconciler, or the API's own start arriving very late) fails here instead of
	// attaching to that run.
	opts.WorkflowIDConflictPolicy = enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL
	opts.WorkflowExecutionErrorWhenAlreadyStarted = true
	run, err := a.temporal.ExecuteWorkflow(ctx, opts, workflows.ApprovalWorkflowName, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case errors.As(err, &started):
		return nil
	case err != nil:
		return fmt.Errorf("start workflow: %w", err)
	}
	a.logger.WarnContext(ctx, "Started the workflow of an approval whose start was lost",
		"approval_id", r.ID, "reference", r.Reference, "org_id", r.OrgID, "workflow_run_id", run.GetRunID())
	return nil
}

// auditStartRecovered records that the start reconciler started run runID of
// approval r's workflow.
func (a *Activities) auditStartRecovered(ctx context.Context, q *store.Queries, r store.Approval, runID string) error {
	return a.auditUnstarted(ctx, q, r, AuditApprovalStartRecovered, string(workflows.StatusPending), map[string]any{
		"reference": r.Reference, "workflow_run_id": runID, "created_at": r.CreatedAt, "expires_at": r.ExpiresAt,
	})
}

// endUnstarted ends, as expired, an approval that no workflow will ever run (details
// say why), unless a projection got there first. recovered says the closed run that
// never projected it was the reconciler's: that recovery is audited here, once.
func (a *Activities) endUnstarted(ctx context.Context, r store.Approval, recovered bool, details map[string]any) error {
	now := a.now()
	seq, _ := projectionSeq(workflows.EventExpired)
	return a.st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		n, err := q.EndUnstartedApproval(ctx, store.EndUnstartedApprovalParams{EndedAt: now, Seq: seq, OrgID: r.OrgID, ID: r.ID})
		if err != nil || n == 0 {
			return err
		}
		a.logger.WarnContext(ctx, "Ended an approval that no workflow will run",
			"approval_id", r.ID, "reference", r.Reference, "org_id", r.OrgID, "reason", details["reason"])
		if recovered {
			if err := a.auditStartRecovered(ctx, q, r, fmt.Sprint(details["workflow_run_id"])); err != nil {
				return err
			}
		}
		details["reference"] = r.Reference
		return a.auditUnstarted(ctx, q, r, AuditApprovalEndedUnstarted, string(workflows.StatusExpired), details)
	})
}

// auditUnstarted records what the reconciler did to approval r.
func (a *Activities) auditUnstarted(ctx context.Context, q *store.Queries, r store.Approval, kind, outcome string, details map[string]any) error {
	org, err := q.GetOrg(ctx, r.OrgID)
	if err != nil {
		return fmt.Errorf("load org: %w", err)
	}
	raw, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("encode audit details: %w", err)
	}
	if err := q.InsertAuditEvent(ctx, store.InsertAuditEventParams{
		ID: store.NewID("evt"), OrgID: r.OrgID, TeamID: org.TeamID, OccurredAt: a.now(),
		ActorKind: ActorSystem, ActorID: "start_reconciler", Kind: kind, Subject: r.ID, Outcome: outcome,
		Tool: r.ToolName, Tenant: r.TenantName, Details: raw,
	}); err != nil {
		return fmt.Errorf("audit %s: %w", kind, err)
	}
	return nil
}
