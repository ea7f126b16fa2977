package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

func keysFor(event Event, level int) []string {
	return []string{
		fmt.Sprintf("project:%s:L%d", event, level),
		fmt.Sprintf("notify:%s:L%d", event, level),
	}
}

// decisionKeys are the keys of a transition caused by decision d at level dl, leaving the
// approval at level: from flowV3 on they name the decision.
func decisionKeys(event Event, level int, d DecisionValue, dl int) []string {
	return []string{
		fmt.Sprintf("project:%s:L%d:%s:L%d", event, level, d, dl),
		fmt.Sprintf("notify:%s:L%d:%s:L%d", event, level, d, dl),
	}
}

// approvedKeys are the keys of the final approval at level and its token.
func approvedKeys(level int) []string {
	return concat(decisionKeys(EventDecided, level, Approve, level), mintKeys(level))
}

// deniedKeys are the keys of a deny at level.
func deniedKeys(level int) []string { return decisionKeys(EventDecided, level, Deny, level) }

func mintKeys(level int) []string {
	return []string{fmt.Sprintf("mint:L%d", level), fmt.Sprintf("project:%s:L%d", EventTokenMinted, level)}
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// step is one decide call: when it is sent, and what its caller must see.
type step struct {
	at       time.Duration
	req      DecideRequest
	updateID string // defaults to req.RequestID
	// wantReject is the Reject* reason; "" means accepted, and then the Update's result
	// must carry wantStatus and wantLevel.
	wantReject string
	wantStatus Status
	wantLevel  int
}

func TestApprovalFlows(t *testing.T) {
	t.Parallel()
	created := keysFor(EventCreated, 1)
	escalated := decisionKeys(EventEscalated, 2, Approve, 1)

	tests := []struct {
		name       string
		twoLevels  bool
		createdAgo time.Duration // CreatedAt = t0 - createdAgo
		steps      []step
		wantStatus Status
		wantLevel  int
		wantKeys   []string
	}{
		{
			name: "approve at level 1 of a single-level approval mints a token",
			steps: []step{
				{at: 10 * time.Minute, req: decideReq(1, Approve, alice, "r1"), wantStatus: StatusApproved, wantLevel: 1},
			},
			wantStatus: StatusApproved, wantLevel: 1,
			wantKeys: concat(created, approvedKeys(1)),
		},
		{
			name:      "approve level 1 then level 2",
			twoLevels: true,
			steps: []step{
				{at: 10 * time.Minute, req: decideReq(1, Approve, alice, "r1"), wantStatus: StatusPending, wantLevel: 2},
				{at: 20 * time.Minute, req: decideReq(2, Approve, bob, "r2"), wantStatus: StatusApproved, wantLevel: 2},
			},
			wantStatus: StatusApproved, wantLevel: 2,
			wantKeys: concat(created, escalated, approvedKeys(2)),
		},
		{
			name:      "deny at level 1 ends a two-level approval without a token",
			twoLevels: true,
			steps: []step{
				{at: 10 * time.Minute, req: decideReq(1, Deny, alice, "r1"), wantStatus: StatusDenied, wantLevel: 1},
			},
			wantStatus: StatusDenied, wantLevel: 1,
			wantKeys: concat(created, deniedKeys(1)),
		},
		{
			name:      "deny at level 2",
			twoLevels: true,
			steps: []step{
				{at: 10 * time.Minute, req: decideReq(1, Approve, alice, "r1"), wantStatus: StatusPending, wantLevel: 2},
				{at: 20 * time.Minute, req: decideReq(2, Deny, bob, "r2"), wantStatus: StatusDenied, wantLevel: 2},
			},
			wantStatus: StatusDenied, wantLevel: 2,
			wantKeys: concat(created, escalated, deniedKeys(2)),
		},
		{
			name:       "expire at level 1",
			twoLevels:  true,
			wantStatus: StatusExpired, wantLevel: 1,
			wantKeys: concat(created, keysFor(EventExpired, 1)),
		},
		{
			name:      "expire at level 2",
			twoLevels: true,
			steps: []step{
				{at: 10 * time.Minute, req: decideReq(1, Approve, alice, "r1"), wantStatus: StatusPending, wantLevel: 2},
			},
			wantStatus: StatusExpired, wantLevel: 2,
			wantKeys: concat(created, escalated, keysFor(EventExpired, 2)),
		},
		{
			name: "a decision arriving with the level 1 deadline is rejected as expired",
			steps: []step{
				{at: time.Hour, req: decideReq(1, Approve, alice, "r1"), wantReject: RejectExpired},
			},
			wantStatus: StatusExpired, wantLevel: 1,
			wantKeys: concat(created, keysFor(EventExpired, 1)),
		},
		{
			name: "a decision a millisecond before the deadline wins",
			steps: []step{
				{at: time.Hour - time.Millisecond, req: decideReq(1, Approve, alice, "r1"), wantStatus: StatusApproved, wantLevel: 1},
			},
			wantStatus: StatusApproved, wantLevel: 1,
			wantKeys: concat(created, approvedKeys(1)),
		},
		{
			name:      "a decision arriving with the level 2 deadline is rejected as expired",
			twoLevels: true,
			steps: []step{
				{at: 10 * time.Minute, req: decideReq(1, Approve, alice, "r1"), wantStatus: StatusPending, wantLevel: 2},
				{at: 70 * time.Minute, req: decideReq(2, Approve, bob, "r2"), wantReject: RejectExpired},
			},
			wantStatus: StatusExpired, wantLevel: 2,
			wantKeys: concat(created, escalated, keysFor(EventExpired, 2)),
		},
		{
			name:      "the level 1 approver cannot approve level 2; another reviewer can",
			twoLevels: true,
			steps: []step{
				{at: 10 * time.Minute, req: decideReq(1, Approve, alice, "r1"), wantStatus: StatusPending, wantLevel: 2},
				{at: 20 * time.Minute, req: decideReq(2, Approve, alice, "r2"), wantReject: RejectSameApprover},
				{at: 30 * time.Minute, req: decideReq(2, Approve, bob, "r3"), wantStatus: StatusApproved, wantLevel: 2},
			},
			wantStatus: StatusApproved, wantLevel: 2,
			wantKeys: concat(created, escalated, approvedKeys(2)),
		},
		{
			name:      "the level 1 approver cannot deny level 2 either; another reviewer can",
			twoLevels: true,
			steps: []step{
				{at: 10 * time.Minute, req: decideReq(1, Approve, alice, "r1"), wantStatus: StatusPending, wantLevel: 2},
				{at: 20 * time.Minute, req: decideReq(2, Deny, alice, "r2"), wantReject: RejectSameApprover},
				{at: 30 * time.Minute, req: decideReq(2, Deny, bob, "r3"), wantStatus: StatusDenied, wantLevel: 2},
			},
			wantStatus: StatusDenied, wantLevel: 2,
			wantKeys: concat(created, escalated, deniedKeys(2)),
		},
		{
			name:      "a management key approving level 2 after a user approved level 1",
			twoLevels: true,
			steps: []step{
				{at: 10 * time.Minute, req: decideReq(1, Approve, alice, "r1"), wantStatus: StatusPending, wantLevel: 2},
				{at: 20 * time.Minute, req: decideReq(2, Approve, aliceKey, "r2"), wantStatus: StatusApproved, wantLevel: 2},
			},
			wantStatus: StatusApproved, wantLevel: 2,
			wantKeys: concat(created, escalated, approvedKeys(2)),
		},
		{
			name: "a level 2 decision on a single-level approval is the wrong level",
			steps: []step{
				{at: 10 * time.Minute, req: decideReq(2, Approve, alice, "r1"), wantReject: RejectWrongLevel},
				{at: 20 * time.Minute, req: decideReq(1, Deny, mgmtKey, "r2"), wantStatus: StatusDenied, wantLevel: 1},
			},
			wantStatus: StatusDenied, wantLevel: 1,
			wantKeys: concat(created, deniedKeys(1)),
		},
		{
			name:      "a level 1 decision after escalation is the wrong level",
			twoLevels: true,
			steps: []step{
				{at: 10 * time.Minute, req: decideReq(1, Approve, alice, "r1"), wantStatus: StatusPending, wantLevel: 2},
				{at: 20 * time.Minute, req: decideReq(1, Deny, bob, "r2"), wantReject: RejectWrongLevel},
			},
			wantStatus: StatusExpired, wantLevel: 2,
			wantKeys: concat(created, escalated, keysFor(EventExpired, 2)),
		},
		{
			name:      "a repeated request is answered with the original result and decided once",
			twoLevels: true,
			steps: []step{
				{at: 10 * time.Minute, req: decideReq(1, Approve, alice, "r1"), wantStatus: StatusPending, wantLevel: 2},
				{at: 15 * time.Minute, req: decideReq(1, Approve, alice, "r1"), updateID: "retry-with-new-update-id", wantStatus: StatusPending, wantLevel: 2},
				{at: 20 * time.Minute, req: decideReq(2, Approve, bob, "r2"), wantStatus: StatusApproved, wantLevel: 2},
			},
			wantStatus: StatusApproved, wantLevel: 2,
			wantKeys: concat(created, escalated, approvedKeys(2)),
		},
		{
			name:      "a request id reused for another decision is rejected",
			twoLevels: true,
			steps: []step{
				{at: 10 * time.Minute, req: decideReq(1, Approve, alice, "r1"), wantStatus: StatusPending, wantLevel: 2},
				{at: 15 * time.Minute, req: decideReq(2, Approve, bob, "r1"), updateID: "u2", wantReject: RejectRequestIDReused},
			},
			wantStatus: StatusExpired, wantLevel: 2,
			wantKeys: concat(created, escalated, keysFor(EventExpired, 2)),
		},
		{
			name: "a malformed request is rejected and changes nothing",
			steps: []step{
				{at: 10 * time.Minute, req: DecideRequest{Level: 1, Decision: "maybe", Decider: alice, RequestID: "r1"}, wantReject: RejectInvalidRequest},
				{at: 20 * time.Minute, req: decideReq(1, Approve, bob, "r2"), wantStatus: StatusApproved, wantLevel: 1},
			},
			wantStatus: StatusApproved, wantLevel: 1,
			wantKeys: concat(created, approvedKeys(1)),
		},
		{
			name: "a decision sent with the start is projected after the creation",
			steps: []step{
				{at: 0, req: decideReq(1, Approve, alice, "r1"), wantStatus: StatusApproved, wantLevel: 1},
			},
			wantStatus: StatusApproved, wantLevel: 1,
			wantKeys: concat(created, approvedKeys(1)),
		},
		{
			name:       "an approval whose deadline passed before the workflow ran expires at once",
			twoLevels:  true,
			createdAgo: 2 * time.Hour,
			steps: []step{
				{at: 0, req: decideReq(1, Approve, alice, "r1"), wantReject: RejectExpired},
			},
			wantStatus: StatusExpired, wantLevel: 1,
			wantKeys: concat(created, keysFor(EventExpired, 1)),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			outcomes := make([]*updateOutcome, len(tc.steps))
			for i, s := range tc.steps {
				id := s.updateID
				if id == "" {
					id = s.req.RequestID
				}
				outcomes[i] = h.decideWithUpdateID(s.at, id, s.req)
			}
			in := testInput(tc.twoLevels)
			in.CreatedAt = t0.Add(-tc.createdAgo)

			final, err := h.run(in)
			require.NoError(t, err)

			for i, s := range tc.steps {
				o := outcomes[i]
				require.Equal(t, s.wantReject, o.rejection(t), "step %d", i)
				if s.wantReject != "" {
					require.False(t, o.accepted, "step %d: a rejected update must not be accepted", i)
					continue
				}
				require.True(t, o.accepted, "step %d", i)
				require.True(t, o.completed, "step %d: accepted update must complete before the run closes", i)
				require.NoError(t, o.err, "step %d", i)
				require.Equal(t, s.wantStatus, o.result.State.Status, "step %d", i)
				require.Equal(t, s.wantLevel, o.result.State.Level, "step %d", i)
			}

			require.Equal(t, tc.wantStatus, final.Status)
			require.Equal(t, tc.wantLevel, final.Level)
			require.Equal(t, tc.wantKeys, h.acts.keys())

			// A token exists exactly when the approval ended approved, and only once.
			if tc.wantStatus == StatusApproved {
				require.Equal(t, 1, h.acts.mints())
				require.Equal(t, "tok_apr_01", final.TokenID)
				require.NotEmpty(t, final.TokenHash)
			} else {
				require.Zero(t, h.acts.mints())
				require.Empty(t, final.TokenID)
				require.Empty(t, final.TokenHash)
			}
			accepted := 0
			for i, s := range tc.steps {
				if s.wantReject == "" && s.updateID == "" {
					accepted++
					require.Equal(t, s.req.RequestID, final.Decisions[accepted-1].RequestID, "step %d", i)
				}
			}
			require.Len(t, final.Decisions, accepted)
		})
	}
}

// TestTwoLevelActivityInputs pins every activity input of an approve-then-approve run: the
// right ids, keys, states, deadlines and decisions, and nothing else.
func TestTwoLevelActivityInputs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.decideAt(10*time.Minute, decideReq(1, Approve, alice, "r1"))
	last := h.decideAt(25*time.Minute, decideReq(2, Approve, bob, "r2"))
	final, err := h.run(testInput(true))
	require.NoError(t, err)

	d1 := Decision{Level: 1, Decision: Approve, Decider: alice, Note: "looked at it", At: t0.Add(10 * time.Minute), RequestID: "r1"}
	d2 := Decision{Level: 2, Decision: Approve, Decider: bob, Note: "looked at it", At: t0.Add(25 * time.Minute), RequestID: "r2"}
	l1Deadline, l2Deadline := t0.Add(time.Hour), t0.Add(70*time.Minute)
	sCreated := State{Status: StatusPending, Level: 1, ExpiresAt: l1Deadline, Decisions: []Decision{}}
	sEscalated := State{Status: StatusPending, Level: 2, ExpiresAt: l2Deadline, Decisions: []Decision{d1}}
	sApproved := State{Status: StatusApproved, Level: 2, ExpiresAt: l2Deadline, Decisions: []Decision{d1, d2}}
	sToken := sApproved
	sToken.TokenID, sToken.TokenHash = "tok_apr_01", "9f86d081884c7d65"

	h.acts.mu.Lock()
	calls := append([]any{}, h.acts.calls...)
	h.acts.mu.Unlock()
	require.NotEmpty(t, calls)
	runID := calls[0].(ProjectApprovalInput).RunID
	require.NotEmpty(t, runID)

	const org, apr, ref = "org_01", "apr_01", "REF-ABCDEFGH-JKMN"
	want := []any{
		ProjectApprovalInput{RunID: runID, Key: "project:approval.created:L1", OrgID: org, ApprovalID: apr, Reference: ref,
			Event: EventCreated, State: sCreated, At: t0},
		EnqueueNotificationsInput{RunID: runID, Key: "notify:approval.created:L1", OrgID: org, ApprovalID: apr, Reference: ref,
			Event: EventCreated, Level: 1, Status: StatusPending, ExpiresAt: l1Deadline, At: t0},
		ProjectApprovalInput{RunID: runID, Key: "project:approval.escalated:L2:approve:L1", OrgID: org, ApprovalID: apr, Reference: ref,
			Event: EventEscalated, Decision: &d1, State: sEscalated, At: d1.At},
		EnqueueNotificationsInput{RunID: runID, Key: "notify:approval.escalated:L2:approve:L1", OrgID: org, ApprovalID: apr, Reference: ref,
			Event: EventEscalated, Level: 2, Status: StatusPending, ExpiresAt: l2Deadline, Decision: &d1, At: d1.At},
		ProjectApprovalInput{RunID: runID, Key: "project:approval.decided:L2:approve:L2", OrgID: org, ApprovalID: apr, Reference: ref,
			Event: EventDecided, Decision: &d2, State: sApproved, At: d2.At},
		EnqueueNotificationsInput{RunID: runID, Key: "notify:approval.decided:L2:approve:L2", OrgID: org, ApprovalID: apr, Reference: ref,
			Event: EventDecided, Level: 2, Status: StatusApproved, ExpiresAt: l2Deadline, Decision: &d2, At: d2.At},
		MintApprovalTokenInput{RunID: runID, Key: "mint:L2", OrgID: org, ApprovalID: apr, Reference: ref},
		ProjectApprovalInput{RunID: runID, Key: "project:approval.token_minted:L2", OrgID: org, ApprovalID: apr, Reference: ref,
			Event: EventTokenMinted, State: sToken, At: d2.At},
	}
	require.Len(t, calls, len(want))
	for i := range want {
		require.Equal(t, normalize(want[i]), normalize(calls[i]), "activity call %d", i)
	}
	require.Equal(t, normalize(sToken), normalize(final))
	require.Equal(t, normalize(sToken), normalize(last.result.State), "the final decision's caller gets the token id")

	// Search attributes follow the state, and only what changed is upserted: everything at
	// creation (this run was started without any), then the level, then the status.
	require.Equal(t, []saUpsert{
		{status: "pending", level: 1, org: "org_01"},
		{level: 2},
		{status: "approved"},
	}, h.saUpserts())
}

// TestStartSearchAttributesNotUpsertedAgain: a run started with StartSearchAttributes
// (as the API starts every approval) upserts nothing at creation, and afterwards only what
// a transition changed. Every upsert is a history event and a visibility write.
func TestStartSearchAttributesNotUpsertedAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	in := testInput(false)
	require.NoError(t, h.env.SetTypedSearchAttributesOnStart(StartSearchAttributes(in)))
	h.decideAt(10*time.Minute, decideReq(1, Deny, alice, "r1"))
	final, err := h.run(in)
	require.NoError(t, err)
	require.Equal(t, StatusDenied, final.Status)
	require.Equal(t, []saUpsert{{status: "denied"}}, h.saUpserts())
}

// TestDecisionSearchAttributesFollowItsEffects: from flowV4 on, a decision's search
// attributes are upserted after its effects, in the workflow task after the decision
// boundary; for a final decision that is the task that completes the run, and the server
// writes no visibility record for an upsert of a run that has closed. flowV3 runs upserted
// them with the acceptance, while the run was still open: one visibility write more per
// approval.
func TestDecisionSearchAttributesFollowItsEffects(t *testing.T) {
	t.Parallel()
	created := keysFor(EventCreated, 1)
	tests := []struct {
		name string
		flow workflow.Version
		want []string
	}{
		{name: "flowV5", flow: flowV5, want: concat(created, approvedKeys(1), []string{"upsert status=approved level=0"})},
		{name: "flowV4", flow: flowV4, want: concat(created, approvedKeys(1), []string{"upsert status=approved level=0"})},
		{name: "flowV3", flow: flowV3, want: concat(created, []string{"upsert status=approved level=0"}, approvedKeys(1))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newFlowHarness(t, tc.flow)
			in := testInput(false)
			require.NoError(t, h.env.SetTypedSearchAttributesOnStart(StartSearchAttributes(in)))
			h.decideAt(10*time.Minute, decideReq(1, Approve, alice, "r1"))
			final, err := h.run(in)
			require.NoError(t, err)
			require.Equal(t, StatusApproved, final.Status)
			require.Equal(t, tc.want, h.acts.sequence())
		})
	}
}

// normalize renders v as JSON, the form activities and callers receive it in: pointers
// become their values and times lose monotonic readings and zone pointers.
func normalize(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// hasErrorType reports whether an *temporal.ApplicationError of type typ is anywhere in
// err's chain (a workflow's own wrapping adds ApplicationErrors of type "wrapError").
func hasErrorType(err error, typ string) bool {
	for err != nil {
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) {
			return false
		}
		if appErr.Type() == typ {
			return true
		}
		err = appErr.Unwrap()
	}
	return false
}

func TestQueryState(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	before := h.queryAt(5 * time.Minute)
	h.decideAt(10*time.Minute, decideReq(1, Approve, alice, "r1"))
	escalated := h.queryAt(15 * time.Minute)
	h.decideAt(20*time.Minute, decideReq(2, Deny, bob, "r2"))
	final, err := h.run(testInput(true))
	require.NoError(t, err)

	require.Equal(t, StatusPending, before.Status)
	require.Equal(t, 1, before.Level)
	require.True(t, before.ExpiresAt.Equal(t0.Add(time.Hour)))
	require.Empty(t, before.Decisions)

	require.Equal(t, StatusPending, escalated.Status)
	require.Equal(t, 2, escalated.Level)
	require.True(t, escalated.ExpiresAt.Equal(t0.Add(70*time.Minute)), "level 2 gets a fresh deadline")
	require.Len(t, escalated.Decisions, 1)
	require.Equal(t, alice, escalated.Decisions[0].Decider)

	v, err := h.env.QueryWorkflow(QueryState)
	require.NoError(t, err)
	var after State
	require.NoError(t, v.Get(&after))
	require.Equal(t, StatusDenied, after.Status)
	require.Equal(t, normalize(final), normalize(after))
	require.Len(t, after.Decisions, 2)
	require.Equal(t, Deny, after.Decisions[1].Decision)
}

// TestSimultaneousDecisions sends two decisions at the same instant: the handler of the
// first one applies it before the second is validated, so the second is refused and
// exactly one is decided.
func TestSimultaneousDecisions(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.decideAt(10*time.Minute, decideReq(1, Approve, alice, "r1"))
	b := h.decideAt(10*time.Minute, decideReq(1, Deny, bob, "r2"))
	final, err := h.run(testInput(false))
	require.NoError(t, err)

	require.NotEqual(t, a.accepted, b.accepted, "exactly one decision is accepted")
	winner, loser := a, b
	if b.accepted {
		winner, loser = b, a
	}
	require.Equal(t, RejectAlreadyDecided, loser.rejection(t))
	require.Equal(t, winner.result.State.Status, final.Status)
	require.Len(t, final.Decisions, 1)
	require.LessOrEqual(t, h.acts.mints(), 1)
}

func TestNoteLengthBoundary(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		note       string
		wantReject string
	}{
		{name: "1000 characters", note: strings.Repeat("é", MaxNoteRunes)},
		{name: "1001 characters", note: strings.Repeat("é", MaxNoteRunes+1), wantReject: RejectInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			req := decideReq(1, Deny, alice, "r1")
			req.Note = tc.note
			o := h.decideAt(time.Minute, req)
			final, err := h.run(testInput(false))
			require.NoError(t, err)
			require.Equal(t, tc.wantReject, o.rejection(t))
			if tc.wantReject == "" {
				require.Equal(t, StatusDenied, final.Status)
				require.Equal(t, tc.note, final.Decisions[0].Note)
			} else {
				require.Equal(t, StatusExpired, final.Status)
			}
		})
	}
}

// TestNotificationFailureDoesNotFailApproval: a broken notification path is logged and
// skipped; the approval is still decided, projected and its token minted.
func TestNotificationFailureDoesNotFailApproval(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
	}{
		{name: "non-retryable", err: temporal.NewNonRetryableApplicationError("org has no such channel", ErrorTypeValidation, nil)},
		{name: "retryable until the schedule-to-close timeout", err: errors.New("database unavailable")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.acts.notifyErr = tc.err
			o := h.decideAt(10*time.Minute, decideReq(1, Approve, alice, "r1"))
			final, err := h.run(testInput(false))
			require.NoError(t, err)
			require.NoError(t, o.err)
			require.Equal(t, StatusApproved, final.Status)
			require.Equal(t, 1, h.acts.mints())
			require.Equal(t, "tok_apr_01", o.result.State.TokenID)
		})
	}
}

// TestProjectionFailureFailsWorkflow: a non-retryable projection error fails the run
// visibly, and the waiting decide call is released with an error rather than hanging.
func TestProjectionFailureFailsWorkflow(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.acts.projectFn = func(in ProjectApprovalInput) error {
		if in.Event == EventDecided {
			return temporal.NewNonRetryableApplicationError("approval row is not pending", ErrorTypePermission, nil)
		}
		return nil
	}
	o := h.decideAt(10*time.Minute, decideReq(1, Approve, alice, "r1"))
	_, err := h.run(testInput(false))
	require.Error(t, err)
	require.True(t, hasErrorType(err, ErrorTypePermission), "got %v", err)
	require.True(t, o.accepted)
	require.True(t, o.completed)
	require.Error(t, o.err)
	require.Zero(t, h.acts.mints(), "no token after a failed projection")
}

// TestCancelEndsApprovalAsExpired: an operator cancelling the run must not leave the
// approval pending in PostgreSQL, and must not let the tool run.
func TestCancelEndsApprovalAsExpired(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.decideAt(10*time.Minute, decideReq(1, Approve, alice, "r1"))
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 20*time.Minute)
	_, err := h.run(testInput(true))
	require.Error(t, err)
	require.True(t, temporal.IsCanceledError(err), "got %v", err)
	require.Equal(t, concat(keysFor(EventCreated, 1), decisionKeys(EventEscalated, 2, Approve, 1), keysFor(EventExpired, 2)), h.acts.keys())
	require.Zero(t, h.acts.mints())
	ups := h.saUpserts()
	require.Equal(t, "expired", ups[len(ups)-1].status)
}

func TestInvalidInputFailsWithoutSideEffects(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	in := testInput(false)
	in.LevelTimeout = 10 * time.Second
	_, err := h.run(in)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, ErrorTypeValidation, appErr.Type())
	require.True(t, appErr.NonRetryable())
	require.Empty(t, h.acts.keys())
}
