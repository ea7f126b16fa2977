package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"oakallow/activities/pii"
	"oakallow/store"
	"oakallow/workflows"
)

// Audit event kinds written by the approval activities (SPEC §6).
const (
	AuditApprovalCreated   = "approval.created"
	AuditApprovalEscalated = "approval.escalated"
	AuditApprovalDecided   = "approval.decided"
	AuditApprovalExpired   = "approval.expired"
	AuditTokenMinted       = "token.minted"
	AuditTokenVerified     = "token.verified"
)

// Audit actor kinds used here besides the deciders' (user, management_key).
const (
	// ActorWorkflow is the approval workflow; its actor id is the workflow id (the REF).
	ActorWorkflow = "workflow"
	// ActorSystem is oakallow itself acting for a caller the activity does not know.
	ActorSystem = "system"
)

// projectionSeq orders the transitions of one approval. The approval row records the
// highest one applied and a projection never moves it backwards, so a late attempt of an
// older transition (from a reset or a timed-out attempt of an earlier run) cannot undo a
// newer state.
func projectionSeq(ev workflows.Event) (int32, bool) {
	switch ev {
	case workflows.EventCreated:
		return 1, true
	case workflows.EventEscalated:
		return 2, true
	case workflows.EventDecided, workflows.EventExpired:
		return 3, true
	case workflows.EventTokenMinted:
		return 4, true
	}
	return 0, false
}

func validStatus(s workflows.Status) bool {
	switch s {
	case workflows.StatusPending, workflows.StatusApproved, workflows.StatusDenied, workflows.StatusExpired:
		return true
	}
	return false
}

// checkProjection refuses input the workflow can never legitimately send.
func checkProjection(in workflows.ProjectApprovalInput) error {
	switch {
	case in.RunID == "" || in.Key == "":
		return errors.New("run id and key are required")
	case in.OrgID == "" || in.ApprovalID == "":
		return errors.New("org id and approval id are required")
	case !validStatus(in.State.Status):
		return fmt.Errorf("status %q is not an approval status", in.State.Status)
	case in.State.Level != 1 && in.State.Level != 2:
		return fmt.Errorf("level %d is not 1 or 2", in.State.Level)
	case in.At.IsZero():
		return errors.New("transition time is required")
	case in.StartRecovered && in.Event != workflows.EventCreated:
		return fmt.Errorf("only the creation of a recovered start is audited as one, not %s", in.Event)
	}
	want := map[workflows.Event]func() bool{
		workflows.EventCreated:   func() bool { return in.State.Status == workflows.StatusPending && in.Decision == nil },
		workflows.EventEscalated: func() bool { return in.State.Status == workflows.StatusPending && in.Decision != nil },
		workflows.EventDecided: func() bool {
			return (in.State.Status == workflows.StatusApproved || in.State.Status == workflows.StatusDenied) && in.Decision != nil
		},
		workflows.EventExpired:     func() bool { return in.State.Status == workflows.StatusExpired && in.Decision == nil },
		workflows.EventTokenMinted: func() bool { return in.State.Status == workflows.StatusApproved && in.State.TokenID != "" },
	}
	ok, known := want[in.Event]
	if !known {
		return fmt.Errorf("unknown event %q", in.Event)
	}
	if !ok() {
		return fmt.Errorf("event %s does not fit status %s", in.Event, in.State.Status)
	}
	if d := in.Decision; d != nil {
		if err := (workflows.DecideRequest{
			Level: d.Level, Decision: d.Decision, Decider: d.Decider, Note: d.Note, RequestID: d.RequestID,
		}).Validate(); err != nil {
			return fmt.Errorf("decision: %w", err)
		}
	}
	return nil
}

// ProjectApproval implements workflows.ActivityProjectApproval: it writes one transition
// of an approval — the approval row, the decision row when there is one, and the audit
// event (for the creation of a run the start reconciler started, approval.start_recovered
// too) — in one transaction, together with a workflow_effects row keyed by (RunID, Key).
// A retry finds that row and writes nothing; a transition older than the one the row
// already shows (projection_seq) is recorded as applied but changes nothing.
func (a *Activities) ProjectApproval(ctx context.Context, in workflows.ProjectApprovalInput) error {
	if err := checkProjection(in); err != nil {
		return nonRetryable(workflows.ErrorTypeValidation, "project approval: %v", err)
	}
	seq, _ := projectionSeq(in.Event)
	var final *store.Approval // set when this call applied a final status
	err := a.st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		final = nil
		var err error
		if in.Decision, err = withStoredNote(ctx, q, in.Decision); err != nil {
			return err
		}
		apr, err := q.LockApprovalForProjection(ctx, store.LockApprovalForProjectionParams{OrgID: in.OrgID, ID: in.ApprovalID})
		if err != nil {
			return lookupErr(err, "approval "+in.ApprovalID)
		}
		if in.Reference != "" && apr.Reference != in.Reference {
			return nonRetryable(workflows.ErrorTypeValidation, "approval %s has reference %s, not %s", apr.ID, apr.Reference, in.Reference)
		}
		if in.State.Level == 2 && !apr.TwoLevels {
			return nonRetryable(workflows.ErrorTypeValidation, "approval %s has one level, not two", apr.ID)
		}
		claimed, err := q.ClaimWorkflowEffect(ctx, store.ClaimWorkflowEffectParams{
			RunID: in.RunID, Key: in.Key, ApprovalID: apr.ID, AppliedAt: a.now(),
		})
		if err != nil {
			return fmt.Errorf("claim effect: %w", err)
		}
		if claimed == 0 {
			return nil // an earlier attempt applied this transition
		}
		if err := checkNoConflict(ctx, q, apr, in); err != nil {
			return err
		}
		params := store.ApplyApprovalProjectionParams{
			Status:        string(in.State.Status),
			Level:         int16(in.State.Level),
			ExpiresAt:     in.State.ExpiresAt,
			WorkflowRunID: in.RunID,
			Seq:           seq,
			UpdatedAt:     in.At,
			OrgID:         apr.OrgID,
			ID:            apr.ID,
		}
		if in.Event == workflows.EventDecided || in.Event == workflows.EventExpired {
			// decided_at is when the approval reached its final status, expiry included.
			params.DecidedAt = &in.At
		}
		if in.Event == workflows.EventTokenMinted {
			params.TokenID = &in.State.TokenID
		}
		if in.State.ExpiresAt.IsZero() {
			params.ExpiresAt = apr.ExpiresAt
		}
		applied, err := q.ApplyApprovalProjection(ctx, params)
		if err != nil {
			return fmt.Errorf("update approval: %w", err)
		}
		if applied == 0 {
			a.logger.InfoContext(ctx, "Stale approval transition ignored",
				"approval_id", apr.ID, "event", in.Event, "seq", seq, "current_seq", apr.ProjectionSeq)
			return nil
		}
		if d := in.Decision; d != nil {
			if _, err := q.InsertApprovalDecision(ctx, store.InsertApprovalDecisionParams{
				ApprovalID:     apr.ID,
				Level:          int16(d.Level),
				Decision:       string(d.Decision),
				DeciderKind:    string(d.Decider.Kind),
				DeciderID:      d.Decider.ID,
				DeciderDisplay: d.Decider.Display,
				Note:           d.Note,
				DecidedAt:      d.At,
				RequestID:      d.RequestID,
			}); err != nil {
				return fmt.Errorf("insert decision: %w", err)
			}
		}
		if in.Event == workflows.EventDecided || in.Event == workflows.EventExpired {
			final = &apr
		}
		if in.StartRecovered {
			// Once per approval: only the run that first projects the creation gets here.
			if err := a.auditStartRecovered(ctx, q, apr, in.RunID); err != nil {
				return err
			}
		}
		return a.auditTransition(ctx, q, apr, in)
	})
	if err != nil {
		return fmt.Errorf("project %s of approval %s: %w", in.Event, in.ApprovalID, err)
	}
	if final != nil {
		a.metrics.observeFinal(string(in.State.Status), in.At.Sub(final.CreatedAt))
	}
	return nil
}

// withStoredNote is d with its reviewer note, read from decision_notes by the decision's
// request id. Notes are customer data and never enter workflow history (SPEC §4): the API
// stores them before sending the decide Update. A decision of a run started before that
// carries its note itself and is returned as it is.
func withStoredNote(ctx context.Context, q *store.Queries, d *workflows.Decision) (*workflows.Decision, error) {
	if d == nil || d.Note != "" {
		return d, nil
	}
	n, err := q.GetDecisionNote(ctx, d.RequestID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return d, nil // decided without a note
	case err != nil:
		return nil, fmt.Errorf("load decision note: %w", err)
	}
	c := *d
	c.Note = n.Note
	return &c, nil
}

// checkNoConflict refuses a transition that contradicts what PostgreSQL already holds for
// the same workflow run: a different decision at a level that was decided, or a different
// final status. The workflow guarantees this never happens (a decision's effects run only
// after its acceptance is in history); if it ever did, silently keeping the first write
// would let PostgreSQL, webhooks and tokens disagree with the workflow, so the projection
// fails instead — non-retryable, which fails the workflow where an operator sees it.
func checkNoConflict(ctx context.Context, q *store.Queries, apr store.Approval, in workflows.ProjectApprovalInput) error {
	if apr.WorkflowRunID != "" && apr.WorkflowRunID != in.RunID {
		return nil // another run (a reset): the projection sequence orders the runs
	}
	if d := in.Decision; d != nil {
		ds, err := q.ListDecisionsOfApproval(ctx, apr.ID)
		if err != nil {
			return fmt.Errorf("load decisions: %w", err)
		}
		for _, have := range ds {
			if int(have.Level) == d.Level && (have.Decision != string(d.Decision) || have.DeciderID != d.Decider.ID) {
				return nonRetryable(workflows.ErrorTypeConflict,
					"approval %s: level %d is already decided %s by another decider; refusing %s", apr.ID, d.Level, have.Decision, d.Decision)
			}
		}
	}
	final := func(s string) bool { return s != string(workflows.StatusPending) }
	if (in.Event == workflows.EventDecided || in.Event == workflows.EventExpired) &&
		final(apr.Status) && apr.Status != string(in.State.Status) {
		return nonRetryable(workflows.ErrorTypeConflict,
			"approval %s is already %s; refusing %s", apr.ID, apr.Status, in.State.Status)
	}
	return nil
}

// transitionDetails are the audit details of an approval transition.
type transitionDetails struct {
	Reference string             `json:"reference"`
	Status    workflows.Status   `json:"status"`
	Level     int                `json:"level"`
	ExpiresAt time.Time          `json:"expires_at"`
	Decision  *decisionDetails   `json:"decision,omitempty"`
	TokenID   string             `json:"token_id,omitempty"`
	RunID     string             `json:"workflow_run_id"`
	Event     workflows.Event    `json:"event"`
	Decider   *workflows.Decider `json:"decider,omitempty"`
}

type decisionDetails struct {
	Level    int                     `json:"level"`
	Decision workflows.DecisionValue `json:"decision"`
	Note     string                  `json:"note,omitempty"`
}

func (a *Activities) auditTransition(ctx context.Context, q *store.Queries, apr store.Approval, in workflows.ProjectApprovalInput) error {
	org, err := q.GetOrg(ctx, apr.OrgID)
	if err != nil {
		return fmt.Errorf("load org: %w", err)
	}
	actorKind, actorID := ActorWorkflow, apr.WorkflowID
	details := transitionDetails{
		Reference: apr.Reference, Status: in.State.Status, Level: in.State.Level,
		ExpiresAt: in.State.ExpiresAt, RunID: in.RunID, Event: in.Event,
	}
	if d := in.Decision; d != nil {
		actorKind, actorID = string(d.Decider.Kind), d.Decider.ID
		details.Decider = &d.Decider
		details.Decision = &decisionDetails{Level: d.Level, Decision: d.Decision, Note: pii.Scrub(d.Note)}
	}
	// Each transition's kind is named here, not derived from the event's name,
	// so every kind written is one of the constants docs/AUDIT.md is checked
	// against (cmd/oakallow TestAuditKindsMatchDocs).
	var kind string
	outcome := string(in.State.Status)
	switch in.Event {
	case workflows.EventCreated:
		kind = AuditApprovalCreated
	case workflows.EventEscalated:
		kind, outcome = AuditApprovalEscalated, "escalated"
	case workflows.EventDecided:
		kind = AuditApprovalDecided
	case workflows.EventExpired:
		kind = AuditApprovalExpired
	case workflows.EventTokenMinted:
		kind, outcome = AuditTokenMinted, "minted"
		details.TokenID = in.State.TokenID
	default:
		return fmt.Errorf("event %q has no audit kind", in.Event)
	}
	raw, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("encode audit details: %w", err)
	}
	return q.InsertAuditEvent(ctx, store.InsertAuditEventParams{
		ID: store.NewID("evt"), OrgID: apr.OrgID, TeamID: org.TeamID, OccurredAt: in.At,
		ActorKind: actorKind, ActorID: actorID, Kind: kind, Subject: apr.ID, Outcome: outcome,
		Tool: apr.ToolName, Tenant: apr.TenantName, Details: raw,
	})
}
