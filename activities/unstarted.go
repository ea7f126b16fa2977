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

	"oakallow/store"
	"oakallow/workflows"
)

// Audit kinds written by the start reconciler (RecoverUnstartedApprovals).
const (
	// AuditApprovalStartRecovered: the reconciler started the workflow of an approval
	// whose row was committed but whose workflow never started.
	AuditApprovalStartRecovered = "approval.start_recovered"
	// AuditApprovalEndedUnstarted: the reconciler ended, as expired, an approval whose
	// workflow closed (terminated, failed) before it ever projected the approval.
	AuditApprovalEndedUnstarted = "approval.ended_unstarted"
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
//     clock — and audits approval.start_recovered;
//   - a running workflow: left alone; its first projection moves the row on;
//   - a closed workflow (terminated or failed before its first projection): nothing
//     will ever decide the approval, so the row ends expired (the tool must not run),
//     audited as approval.ended_unstarted. Nothing was ever announced for it, so
//     nothing is notified.
//
// olderThan must exceed the longest the API can still be starting or withdrawing the
// approval after its commit, so a start under way is never raced; were it raced, both
// starts name the same workflow id and input, and exactly one creates the run.
// Several reconcilers at once are harmless: claiming is exclusive (see store
// ClaimUnstartedApprovals), and a start that finds the id taken (another reconciler,
// or the API's late start) leaves it to that run and audits nothing.
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
	return a.endUnstarted(ctx, r, info.GetStatus(), info.GetType().GetName())
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

// startUnstarted starts the workflow of an approval that has none and audits it.
func (a *Activities) startUnstarted(ctx context.Context, r store.Approval) error {
	in := unstartedInput(r)
	if err := in.Validate(); err != nil {
		return fmt.Errorf("rebuild workflow input: %w", err)
	}
	opts := workflows.StartWorkflowOptions(in)
	opts.TaskQueue = a.taskQueue
	// Exactly one starter creates the run: a start that finds the id running (another
	// reconciler, or the API's own start arriving very late) fails here instead of
	// attaching to that run, so only the creator audits.
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
		"approval_id", r.ID, "reference", r.Reference, "org_id", r.OrgID)
	details := map[string]any{
		"reference": r.Reference, "workflow_run_id": run.GetRunID(),
		"created_at": r.CreatedAt, "expires_at": r.ExpiresAt,
	}
	return a.auditUnstarted(ctx, a.st.Queries, r, AuditApprovalStartRecovered, string(workflows.StatusPending), details)
}

// endUnstarted ends, as expired, an approval whose workflow closed before projecting
// it, unless a projection got there first.
func (a *Activities) endUnstarted(ctx context.Context, r store.Approval, status enumspb.WorkflowExecutionStatus, workflowType string) error {
	now := a.now()
	seq, _ := projectionSeq(workflows.EventExpired)
	return a.st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		n, err := q.EndUnstartedApproval(ctx, store.EndUnstartedApprovalParams{EndedAt: now, Seq: seq, OrgID: r.OrgID, ID: r.ID})
		if err != nil || n == 0 {
			return err
		}
		a.logger.WarnContext(ctx, "Ended an approval whose workflow closed before projecting it",
			"approval_id", r.ID, "reference", r.Reference, "org_id", r.OrgID, "workflow_status", status.String())
		return a.auditUnstarted(ctx, q, r, AuditApprovalEndedUnstarted, string(workflows.StatusExpired), map[string]any{
			"reference": r.Reference, "workflow_status": status.String(), "workflow_type": workflowType,
		})
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
