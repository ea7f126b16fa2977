// Package approvalcheck compares one approval's state in PostgreSQL with its Temporal
// workflow — the history's accepted decisions and the run's result — and reports every
// way they disagree. It is the approval invariant of SPEC §4 written as a check: the
// decision in PostgreSQL, the workflow's history and result, the audit log, every webhook
// and alert, and the existence of a token agree, and a token exists only when every
// required level approved. Tests and dev/loadapprovals run it after every approval they
// drive, so each run of either proves the invariant for what it did.
package approvalcheck

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/workflows"
)

// Report is what Check found for one approval.
type Report struct {
	// Reference is the approval's REF (its workflow id).
	Reference string
	// State is the workflow's result.
	State workflows.State
	// Problems lists every disagreement; empty when the invariant holds.
	Problems []string
	// Events counts the workflow's history events by type (what the approval cost
	// Temporal; dev/loadapprovals prints the totals).
	Events map[enumspb.EventType]int
	// Unstarted is set when PostgreSQL holds the approval but no workflow ever ran it:
	// its row was committed and its workflow never started (the API's process was lost
	// in between, or the start failed and so did the withdrawal). The worker's start
	// reconciler starts such a workflow once the row is worker.StartRecoveryAfter old;
	// until then it is a problem, reported at once rather than waited for.
	Unstarted bool
	// EndedUnstarted is set when no workflow ever ran the approval and the start
	// reconciler ended it expired instead of starting one (its org was deleted, audited
	// approval.ended_unstarted). There is no history to compare with; the invariant is
	// that nothing a workflow causes exists: no decision, token, webhook or alert, and
	// no audit of a transition.
	EndedUnstarted bool
}

// Err is nil when the invariant holds, else an error listing every problem.
func (r Report) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	return fmt.Errorf("approval %s breaks the approval invariant:\n  %s", r.Reference, strings.Join(r.Problems, "\n  "))
}

func (r *Report) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Check waits (within ctx) for the approval's workflow to close and compares it with
// PostgreSQL. An error is returned only when something could not be read; disagreements
// are in the Report.
func Check(ctx context.Context, db *pgxpool.Pool, tc client.Client, ref string) (Report, error) {
	rep := Report{Reference: ref}
	unstarted, ended, err := withoutWorkflow(ctx, db, tc, ref)
	if err != nil {
		return rep, err
	}
	switch {
	case unstarted:
		// There is no workflow to wait for, and none will close by itself.
		rep.Unstarted = true
		rep.problem("PostgreSQL holds a pending approval that no workflow ever ran: its row was committed and its workflow never started (the worker's start reconciler starts it)")
		return rep, nil
	case ended:
		rep.EndedUnstarted = true
		pg, err := load(ctx, db, ref)
		if err != nil {
			return rep, err
		}
		compareEndedUnstarted(&rep, pg)
		return rep, nil
	}
	if err := tc.GetWorkflow(ctx, ref, "").Get(ctx, &rep.State); err != nil {
		if ctx.Err() != nil {
			return rep, fmt.Errorf("wait for workflow %s: %w", ref, err)
		}
		// A failed approval workflow is itself a broken invariant: PostgreSQL shows the
		// approval as it was when the workflow stopped, and nothing will move it on.
		rep.problem("workflow did not complete: %v", err)
		return rep, nil
	}
	accepted, err := acceptedDecisions(ctx, tc, ref, &rep)
	if err != nil {
		return rep, err
	}
	pg, err := load(ctx, db, ref)
	if err != nil {
		return rep, err
	}
	compare(&rep, accepted, pg)
	return rep, nil
}

// withoutWorkflow reports, for an approval Temporal has no workflow for, whether its
// row is pending and unprojected (unstarted) or was ended by the start reconciler
// (ended). Temporal is asked only about rows in one of those states.
func withoutWorkflow(ctx context.Context, db *pgxpool.Pool, tc client.Client, ref string) (unstarted, ended bool, err error) {
	err = db.QueryRow(ctx, `SELECT a.projection_seq = 0 AND a.status = 'pending',
			EXISTS (SELECT 1 FROM audit_events e WHERE e.org_id = a.org_id AND e.kind = $2 AND e.subject = a.id)
		FROM approvals a WHERE a.reference = $1`, ref, activities.AuditApprovalEndedUnstarted).Scan(&unstarted, &ended)
	if err != nil {
		return false, false, fmt.Errorf("load approval %s: %w", ref, err)
	}
	if !unstarted && !ended {
		return false, false, nil
	}
	_, err = tc.DescribeWorkflowExecution(ctx, ref, "")
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return unstarted, ended, nil
	case err != nil:
		return false, false, fmt.Errorf("describe workflow %s: %w", ref, err)
	}
	return false, false, nil
}

// compareEndedUnstarted states the invariant for an approval that no workflow ever ran
// and that the start reconciler ended: expired, with nothing a workflow would have
// caused.
func compareEndedUnstarted(rep *Report, pg stored) {
	if pg.status != string(workflows.StatusExpired) || !pg.decidedAt {
		rep.problem("ended without a workflow, but PostgreSQL says %s (decided_at set: %t), not expired", pg.status, pg.decidedAt)
	}
	if len(pg.decisions) != 0 || len(pg.tokens) != 0 || pg.tokenID != "" {
		rep.problem("ended without a workflow, but PostgreSQL holds %d decisions and tokens %v (row %q)", len(pg.decisions), pg.tokens, pg.tokenID)
	}
	for _, d := range pg.deliveries {
		rep.problem("ended without a workflow, but a %s delivery of %s exists", d.target, d.eventType)
	}
	want := map[string]int{activities.AuditApprovalEndedUnstarted: 1}
	for _, kind := range []string{activities.AuditApprovalEndedUnstarted, activities.AuditApprovalStartRecovered, activities.AuditApprovalCreated,
		string(workflows.EventEscalated), string(workflows.EventDecided), string(workflows.EventExpired), activities.AuditTokenMinted} {
		if got := len(pg.audit[kind]); got != want[kind] {
			rep.problem("ended without a workflow: %d %s audit events, want %d", got, kind, want[kind])
		}
	}
}

// acceptedDecisions are the decide Updates the workflow's history accepted, in order.
// It counts the history's events into rep.Events.
func acceptedDecisions(ctx context.Context, tc client.Client, ref string, rep *Report) ([]workflows.DecideRequest, error) {
	var out []workflows.DecideRequest
	rep.Events = map[enumspb.EventType]int{}
	dc := converter.GetDefaultDataConverter()
	it := tc.GetWorkflowHistory(ctx, ref, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("read history of %s: %w", ref, err)
		}
		rep.Events[ev.GetEventType()]++
		attrs := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes()
		if attrs == nil {
			continue
		}
		var req workflows.DecideRequest
		if err := dc.FromPayloads(attrs.GetAcceptedRequest().GetInput().GetArgs(), &req); err != nil {
			return nil, fmt.Errorf("decode accepted update of %s: %w", ref, err)
		}
		out = append(out, req)
	}
	return out, nil
}

// stored is everything PostgreSQL holds about one approval.
type stored struct {
	id, status, tokenID string
	level, levels       int
	decidedAt           bool
	decisions           []storedDecision
	tokens              []string // execution_tokens ids for the approval
	tokenHash           string
	audit               map[string][]auditRow // by kind
	deliveries          []delivery
}

type storedDecision struct {
	level               int
	decision, deciderID string
}

type auditRow struct {
	outcome, decision string
}

// delivery is one webhook delivery or channel alert recorded for the approval.
type delivery struct {
	eventType, target string
	// decision as the payload states it: "approve"/"deny" for the org webhook,
	// "approved"/"denied" for channel alerts; "" when the payload carries none.
	decision string
}

func load(ctx context.Context, db *pgxpool.Pool, ref string) (stored, error) {
	var s stored
	var twoLevels bool
	var tokenID *string
	err := db.QueryRow(ctx, `SELECT id, status, level, two_levels, decided_at IS NOT NULL, token_id
		FROM approvals WHERE reference = $1`, ref).Scan(&s.id, &s.status, &s.level, &twoLevels, &s.decidedAt, &tokenID)
	if err != nil {
		return s, fmt.Errorf("load approval %s: %w", ref, err)
	}
	s.levels = 1
	if twoLevels {
		s.levels = 2
	}
	if tokenID != nil {
		s.tokenID = *tokenID
	}
	rows, _ := db.Query(ctx, `SELECT level, decision, decider_id FROM approval_decisions WHERE approval_id = $1 ORDER BY level`, s.id)
	s.decisions, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storedDecision, error) {
		var d storedDecision
		err := r.Scan(&d.level, &d.decision, &d.deciderID)
		return d, err
	})
	if err != nil {
		return s, fmt.Errorf("load decisions of %s: %w", ref, err)
	}
	rows, _ = db.Query(ctx, `SELECT id, token_hash FROM execution_tokens WHERE source_kind = 'approval' AND source_id = $1`, s.id)
	type tok struct{ id, hash string }
	toks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tok, error) {
		var t tok
		err := r.Scan(&t.id, &t.hash)
		return t, err
	})
	if err != nil {
		return s, fmt.Errorf("load tokens of %s: %w", ref, err)
	}
	for _, t := range toks {
		s.tokens = append(s.tokens, t.id)
		s.tokenHash = t.hash
	}
	rows, _ = db.Query(ctx, `SELECT kind, outcome, coalesce(details->'decision'->>'decision', '')
		FROM audit_events WHERE subject = $1 AND kind LIKE 'approval.%' OR subject = $1 AND kind = 'token.minted'
		ORDER BY seq`, s.id)
	s.audit = map[string][]auditRow{}
	var kind string
	var a auditRow
	_, err = pgx.ForEachRow(rows, []any{&kind, &a.outcome, &a.decision}, func() error {
		s.audit[kind] = append(s.audit[kind], a)
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("load audit events of %s: %w", ref, err)
	}
	rows, _ = db.Query(ctx, `SELECT event_type, target_kind,
			coalesce(CASE target_kind WHEN 'org_webhook' THEN payload->'data'->>'decision' ELSE payload->>'decision' END, '')
		FROM webhook_deliveries
		WHERE payload->'data'->>'approval_id' = $1 OR payload->>'reference' = $2`, s.id, ref)
	s.deliveries, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (delivery, error) {
		var d delivery
		err := r.Scan(&d.eventType, &d.target, &d.decision)
		return d, err
	})
	if err != nil {
		return s, fmt.Errorf("load deliveries of %s: %w", ref, err)
	}
	return s, nil
}

// compare states the invariant, one clause at a time.
func compare(rep *Report, accepted []workflows.DecideRequest, pg stored) {
	st := rep.State

	// The decisions: history's accepted Updates = the workflow's result = PostgreSQL.
	if len(accepted) != len(st.Decisions) {
		rep.problem("history accepted %d decisions, the workflow's result has %d", len(accepted), len(st.Decisions))
	}
	for i := range min(len(accepted), len(st.Decisions)) {
		a, d := accepted[i], st.Decisions[i]
		if a.Level != d.Level || a.Decision != d.Decision || a.RequestID != d.RequestID || a.Decider.ID != d.Decider.ID {
			rep.problem("decision %d: history accepted %s at level %d (request %s), the result has %s at level %d (request %s)",
				i, a.Decision, a.Level, a.RequestID, d.Decision, d.Level, d.RequestID)
		}
	}
	if len(pg.decisions) != len(st.Decisions) {
		rep.problem("PostgreSQL has %d decisions, the workflow %d", len(pg.decisions), len(st.Decisions))
	}
	for i := range min(len(pg.decisions), len(st.Decisions)) {
		p, d := pg.decisions[i], st.Decisions[i]
		if p.level != d.Level || p.decision != string(d.Decision) || p.deciderID != d.Decider.ID {
			rep.problem("level %d: PostgreSQL says %s by %s, the workflow %s by %s", d.Level, p.decision, p.deciderID, d.Decision, d.Decider.ID)
		}
	}
	for i, d := range st.Decisions {
		if d.Level != i+1 {
			rep.problem("decision %d is for level %d: exactly one decision per level, in order", i, d.Level)
		}
	}

	// The status, and that it follows from the decisions.
	if pg.status != string(st.Status) {
		rep.problem("PostgreSQL says %s, the workflow %s", pg.status, st.Status)
	}
	if pg.level != st.Level {
		rep.problem("PostgreSQL is at level %d, the workflow at %d", pg.level, st.Level)
	}
	approvals := 0
	denied := false
	for _, d := range st.Decisions {
		if d.Decision == workflows.Approve {
			approvals++
		} else {
			denied = true
		}
	}
	switch st.Status {
	case workflows.StatusApproved:
		if approvals != pg.levels || denied {
			rep.problem("approved with %d approvals of %d levels (denied: %t)", approvals, pg.levels, denied)
		}
	case workflows.StatusDenied:
		if !denied {
			rep.problem("denied without a deny decision")
		}
	case workflows.StatusExpired:
		if denied || approvals >= pg.levels {
			rep.problem("expired after its final decision")
		}
	default:
		rep.problem("the workflow ended %q, not a final status", st.Status)
	}
	if !pg.decidedAt && (st.Status == workflows.StatusApproved || st.Status == workflows.StatusDenied) {
		rep.problem("decided but PostgreSQL has no decided_at")
	}

	// A token exists exactly when every required level approved, and it is the one the
	// workflow minted.
	if st.Status == workflows.StatusApproved {
		if len(pg.tokens) != 1 {
			rep.problem("approved with %d execution tokens, want 1", len(pg.tokens))
		} else if pg.tokens[0] != st.TokenID || pg.tokenID != st.TokenID || pg.tokenHash != st.TokenHash {
			rep.problem("token: workflow minted %s, PostgreSQL holds %s (approval row: %s)", st.TokenID, pg.tokens[0], pg.tokenID)
		}
	} else if len(pg.tokens) != 0 || pg.tokenID != "" || st.TokenID != "" {
		rep.problem("%s but a token exists (PostgreSQL %v, row %q, workflow %q)", st.Status, pg.tokens, pg.tokenID, st.TokenID)
	}

	// The audit log: one event per transition, with the workflow's decisions.
	wantAudit := map[string]int{activities.AuditApprovalCreated: 1}
	var final workflows.Decision
	if n := len(st.Decisions); n > 0 {
		final = st.Decisions[n-1]
	}
	for _, d := range st.Decisions {
		if d.Decision == workflows.Approve && d.Level < pg.levels {
			wantAudit[string(workflows.EventEscalated)]++
		}
	}
	switch st.Status {
	case workflows.StatusApproved, workflows.StatusDenied:
		wantAudit[string(workflows.EventDecided)] = 1
		if rows := pg.audit[string(workflows.EventDecided)]; len(rows) == 1 &&
			(rows[0].outcome != string(st.Status) || rows[0].decision != string(final.Decision)) {
			rep.problem("audit says %s (%s), the workflow %s (%s)", rows[0].outcome, rows[0].decision, st.Status, final.Decision)
		}
	case workflows.StatusExpired:
		wantAudit[string(workflows.EventExpired)] = 1
	}
	if st.Status == workflows.StatusApproved {
		wantAudit[activities.AuditTokenMinted] = 1
	}
	for _, kind := range []string{activities.AuditApprovalCreated, string(workflows.EventEscalated), string(workflows.EventDecided),
		string(workflows.EventExpired), activities.AuditTokenMinted} {
		if got := len(pg.audit[kind]); got != wantAudit[kind] {
			rep.problem("%d %s audit events, want %d", got, kind, wantAudit[kind])
		}
	}

	// Every webhook and alert of a decision states the workflow's decision, and none
	// announces a decision the workflow did not take.
	for _, d := range pg.deliveries {
		switch d.eventType {
		case string(workflows.EventDecided):
			if st.Status != workflows.StatusApproved && st.Status != workflows.StatusDenied {
				rep.problem("%s delivery of approval.decided for a %s approval", d.target, st.Status)
			} else if !sameDecision(d, final.Decision) {
				rep.problem("%s delivery says %q, the workflow %s", d.target, d.decision, final.Decision)
			}
		case string(workflows.EventEscalated):
			if !slices.ContainsFunc(st.Decisions, func(x workflows.Decision) bool { return x.Level == 1 && x.Decision == workflows.Approve }) ||
				pg.levels < 2 {
				rep.problem("%s delivery of approval.escalated without a level-1 approval", d.target)
			}
		case string(workflows.EventExpired):
			if st.Status != workflows.StatusExpired {
				rep.problem("%s delivery of approval.expired for a %s approval", d.target, st.Status)
			}
		}
	}
}

// sameDecision reports whether a delivery's stated decision is d. Channel alerts state
// it as approved/denied; the org webhook as approve/deny.
func sameDecision(dl delivery, d workflows.DecisionValue) bool {
	switch dl.decision {
	case "":
		return dl.target != "org_webhook" // an alert without a decision field states nothing
	case string(d):
		return true
	case notify.DecisionApproved:
		return d == workflows.Approve
	case notify.DecisionDenied:
		return d == workflows.Deny
	}
	return false
}

// ErrBroken is wrapped by CheckAll's error when an approval breaks the invariant.
var ErrBroken = errors.New("approval invariant broken")

// CheckAll checks every approval in refs and returns the reports of those that break
// the invariant, and an error wrapping ErrBroken when any does.
func CheckAll(ctx context.Context, db *pgxpool.Pool, tc client.Client, refs []string) ([]Report, error) {
	var broken []Report
	for _, ref := range refs {
		rep, err := Check(ctx, db, tc, ref)
		if err != nil {
			return broken, err
		}
		if len(rep.Problems) > 0 {
			broken = append(broken, rep)
		}
	}
	if len(broken) > 0 {
		return broken, fmt.Errorf("%w: %d of %d approvals; first: %v", ErrBroken, len(broken), len(refs), broken[0].Err())
	}
	return nil, nil
}
