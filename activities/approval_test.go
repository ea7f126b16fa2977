package activities_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"oakallow/activities"
	"oakallow/activities/tokens"
	"oakallow/store"
	"oakallow/workflows"
)

func quietTemporalLogger() log.Logger {
	return log.NewStructuredLogger(nopSlog())
}

// requireAppErr asserts err is a non-retryable application error of type errType.
func requireAppErr(t *testing.T, err error, errType string) {
	t.Helper()
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, errType, appErr.Type())
	require.True(t, appErr.NonRetryable(), "%s must not be retried", errType)
}

func TestProjectApprovalIsIdempotentAndNeverMovesBackwards(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	a := e.insertApproval(true)
	l1 := decision(1, workflows.Approve, alice, e.now)
	l2 := decision(2, workflows.Approve, bob, e.now.Add(time.Minute))

	steps := []struct {
		name       string
		in         workflows.ProjectApprovalInput
		wantStatus string
		wantLevel  int
		wantSeq    int
		wantAudits map[string]int
	}{
		{
			name:       "created",
			in:         e.projection(a, "run-1", workflows.EventCreated, workflows.StatusPending, 1, nil),
			wantStatus: "pending", wantLevel: 1, wantSeq: 1,
			wantAudits: map[string]int{activities.AuditApprovalCreated: 1},
		},
		{
			name:       "created again (a retried attempt)",
			in:         e.projection(a, "run-1", workflows.EventCreated, workflows.StatusPending, 1, nil),
			wantStatus: "pending", wantLevel: 1, wantSeq: 1,
			wantAudits: map[string]int{activities.AuditApprovalCreated: 1},
		},
		{
			name:       "escalated to level 2",
			in:         e.projection(a, "run-1", workflows.EventEscalated, workflows.StatusPending, 2, l1),
			wantStatus: "pending", wantLevel: 2, wantSeq: 2,
			wantAudits: map[string]int{activities.AuditApprovalCreated: 1, activities.AuditApprovalEscalated: 1},
		},
		{
			name:       "approved at level 2",
			in:         e.projection(a, "run-1", workflows.EventDecided, workflows.StatusApproved, 2, l2),
			wantStatus: "approved", wantLevel: 2, wantSeq: 3,
			wantAudits: map[string]int{activities.AuditApprovalEscalated: 1, activities.AuditApprovalDecided: 1},
		},
		{
			name:       "approved again (a retried attempt)",
			in:         e.projection(a, "run-1", workflows.EventDecided, workflows.StatusApproved, 2, l2),
			wantStatus: "approved", wantLevel: 2, wantSeq: 3,
			wantAudits: map[string]int{activities.AuditApprovalDecided: 1},
		},
		{
			name:       "a late creation from a reset run does not reopen it",
			in:         e.projection(a, "run-2", workflows.EventCreated, workflows.StatusPending, 1, nil),
			wantStatus: "approved", wantLevel: 2, wantSeq: 3,
			wantAudits: map[string]int{activities.AuditApprovalCreated: 1},
		},
	}
	for _, s := range steps {
		require.NoError(t, e.acts.ProjectApproval(ctx, s.in), s.name)
		status, level, seq := e.status(a.id)
		require.Equal(t, s.wantStatus, status, s.name)
		require.Equal(t, s.wantLevel, level, s.name)
		require.Equal(t, s.wantSeq, seq, s.name)
		for kind, n := range s.wantAudits {
			require.Equal(t, n, e.audits(kind), "%s: %s audit events", s.name, kind)
		}
	}

	// One decision row per level, with the decider.
	require.Equal(t, 2, e.count(`SELECT count(*) FROM approval_decisions WHERE approval_id = $1`, a.id))
	var decider string
	require.NoError(t, e.st.Pool.QueryRow(ctx, `SELECT decider_id FROM approval_decisions WHERE approval_id = $1 AND level = 2`, a.id).Scan(&decider))
	require.Equal(t, bob.ID, decider)
	// Decisions are audited as their decider; creation as the workflow (by REF).
	var actorKind, actorID string
	require.NoError(t, e.st.Pool.QueryRow(ctx, `SELECT actor_kind, actor_id FROM audit_events WHERE kind = 'approval.decided'`).Scan(&actorKind, &actorID))
	require.Equal(t, []string{"user", bob.ID}, []string{actorKind, actorID})
	require.NoError(t, e.st.Pool.QueryRow(ctx, `SELECT actor_kind, actor_id FROM audit_events WHERE kind = 'approval.created'`).Scan(&actorKind, &actorID))
	require.Equal(t, []string{activities.ActorWorkflow, a.ref}, []string{actorKind, actorID})
	var decidedAt *time.Time
	require.NoError(t, e.st.Pool.QueryRow(ctx, `SELECT decided_at FROM approvals WHERE id = $1`, a.id).Scan(&decidedAt))
	require.NotNil(t, decidedAt)
}

// TestProjectedExpiryHasDecidedAt: decided_at is when the approval reached its final
// status, and expiring is reaching one.
func TestProjectedExpiryHasDecidedAt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	a := e.insertApproval(false)
	require.NoError(t, e.acts.ProjectApproval(ctx, e.projection(a, "run-1", workflows.EventCreated, workflows.StatusPending, 1, nil)))
	expired := e.projection(a, "run-1", workflows.EventExpired, workflows.StatusExpired, 1, nil)
	expired.At = e.now.Add(time.Hour)
	require.NoError(t, e.acts.ProjectApproval(ctx, expired))
	var decidedAt *time.Time
	require.NoError(t, e.st.Pool.QueryRow(ctx, `SELECT decided_at FROM approvals WHERE id = $1`, a.id).Scan(&decidedAt))
	require.NotNil(t, decidedAt, "an expired approval has reached its final status")
	require.True(t, expired.At.Equal(*decidedAt), "decided_at %s, expired at %s", decidedAt, expired.At)
}

func TestProjectApprovalRefusesWhatRetryingCannotFix(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	oneLevel := e.insertApproval(false)
	tests := []struct {
		name    string
		mutate  func(*workflows.ProjectApprovalInput)
		errType string
	}{
		{name: "unknown approval", mutate: func(in *workflows.ProjectApprovalInput) { in.ApprovalID = "apr_missing" }, errType: workflows.ErrorTypeNotFound},
		{name: "approval of another org", mutate: func(in *workflows.ProjectApprovalInput) { in.OrgID = "org_other" }, errType: workflows.ErrorTypeNotFound},
		{name: "reference mismatch", mutate: func(in *workflows.ProjectApprovalInput) { in.Reference = "REF-00000000-0000" }, errType: workflows.ErrorTypeValidation},
		{name: "level 2 of a one-level approval", mutate: func(in *workflows.ProjectApprovalInput) { in.State.Level = 2 }, errType: workflows.ErrorTypeValidation},
		{name: "unknown event", mutate: func(in *workflows.ProjectApprovalInput) { in.Event = "approval.reopened" }, errType: workflows.ErrorTypeValidation},
		{name: "created with a final status", mutate: func(in *workflows.ProjectApprovalInput) { in.State.Status = workflows.StatusApproved }, errType: workflows.ErrorTypeValidation},
		{name: "missing run id", mutate: func(in *workflows.ProjectApprovalInput) { in.RunID = "" }, errType: workflows.ErrorTypeValidation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := e.projection(oneLevel, "run-"+tc.name, workflows.EventCreated, workflows.StatusPending, 1, nil)
			tc.mutate(&in)
			requireAppErr(t, e.acts.ProjectApproval(context.Background(), in), tc.errType)
		})
	}
	status, _, seq := e.status(oneLevel.id)
	require.Equal(t, "pending", status)
	require.Zero(t, seq, "nothing was projected")
}

func TestMintApprovalToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()

	pending := e.insertApproval(false)
	_, err := e.acts.MintApprovalToken(ctx, workflows.MintApprovalTokenInput{RunID: "r", Key: "mint:L1", OrgID: e.orgID, ApprovalID: pending.id, Reference: pending.ref})
	requireAppErr(t, err, workflows.ErrorTypePermission)

	denied := e.insertApproval(false)
	require.NoError(t, e.acts.ProjectApproval(ctx, e.projection(denied, "run-d", workflows.EventDecided, workflows.StatusDenied, 1,
		decision(1, workflows.Deny, alice, e.now))))
	_, err = e.acts.MintApprovalToken(ctx, workflows.MintApprovalTokenInput{RunID: "r", Key: "mint:L1", OrgID: e.orgID, ApprovalID: denied.id})
	requireAppErr(t, err, workflows.ErrorTypePermission)
	_, err = e.acts.MintApprovalToken(ctx, workflows.MintApprovalTokenInput{RunID: "r", Key: "mint:L1", OrgID: e.orgID, ApprovalID: "apr_missing"})
	requireAppErr(t, err, workflows.ErrorTypeNotFound)
	require.Zero(t, e.count(`SELECT count(*) FROM execution_tokens`), "nothing minted for unapproved approvals")

	approved := e.insertApproval(false)
	e.approve(approved)
	in := workflows.MintApprovalTokenInput{RunID: "run-1", Key: "mint:L1", OrgID: e.orgID, ApprovalID: approved.id, Reference: approved.ref}
	first, err := e.acts.MintApprovalToken(ctx, in)
	require.NoError(t, err)
	in.RunID = "run-2" // a reset run mints again: still the same token
	second, err := e.acts.MintApprovalToken(ctx, in)
	require.NoError(t, err)
	require.Equal(t, first, second)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM execution_tokens WHERE source_kind = 'approval' AND source_id = $1`, approved.id))

	// The stored token is bound to the approval row and hashes to what history got.
	m, err := activities.MintToken(ctx, e.st, e.kr, e.box, activities.TokenSource{
		Kind: activities.SourceApproval, ID: approved.id, OrgID: e.orgID, Tool: "refund_payment",
	}, time.Now(), time.Minute)
	require.NoError(t, err)
	require.Equal(t, first.TokenID, m.ID)
	require.Equal(t, first.TokenHash, m.Hash)
	require.True(t, strings.HasPrefix(m.Token, "oak_tok_"))
	claims, err := e.kr.Verify(m.Token, time.Now())
	require.NoError(t, err)
	require.Equal(t, tokens.Claims{
		TokenID: first.TokenID, Org: e.orgID, Tool: "refund_payment", Tenant: tenantName, Resource: "payments-db",
		Method: "write", ParamsHash: approved.paramsHash, Source: "approval:" + approved.id,
		IssuedAt: claims.IssuedAt, ExpiresAt: claims.IssuedAt.Add(activities.DefaultTokenTTL), Nonce: claims.Nonce, KeyID: "k1",
	}, claims)

	// Projecting the mint puts the token id on the row and audits token.minted once.
	tm := e.projection(approved, "run-1", workflows.EventTokenMinted, workflows.StatusApproved, 1, nil)
	tm.State.TokenID, tm.State.TokenHash = first.TokenID, first.TokenHash
	require.NoError(t, e.acts.ProjectApproval(ctx, tm))
	require.NoError(t, e.acts.ProjectApproval(ctx, tm))
	var tokenID string
	require.NoError(t, e.st.Pool.QueryRow(ctx, `SELECT token_id FROM approvals WHERE id = $1`, approved.id).Scan(&tokenID))
	require.Equal(t, first.TokenID, tokenID)
	require.Equal(t, 1, e.audits(activities.AuditTokenMinted))
}

func TestMintTokenIsIdempotentUnderConcurrency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	src := activities.TokenSource{Kind: activities.SourceCheck, ID: "chk_race", OrgID: e.orgID, Tool: "refund_payment"}
	const n = 20
	got := make([]activities.MintedToken, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i], errs[i] = activities.MintToken(context.Background(), e.st, e.kr, e.box, src, time.Now(), time.Minute)
		})
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, got[0], got[i], "every concurrent mint returns the winner's token")
	}
	require.Equal(t, 1, e.count(`SELECT count(*) FROM execution_tokens WHERE source_id = 'chk_race'`))

	other := src
	other.OrgID = "org_other"
	_, err := activities.MintToken(context.Background(), e.st, e.kr, e.box, other, time.Now(), time.Minute)
	require.ErrorIs(t, err, activities.ErrTokenSourceConflict)
}

// An execution token is stored sealed, bound to its row: the table never
// holds it in clear, a mint from the same source opens it again, and
// neither another key nor another row opens it.
func TestMintedTokenIsStoredSealed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	src := activities.TokenSource{Kind: activities.SourceCheck, ID: "chk_sealed", OrgID: e.orgID, Tool: "refund_payment"}
	m, err := activities.MintToken(ctx, e.st, e.kr, e.box, src, time.Now(), time.Minute)
	require.NoError(t, err)
	var row string
	require.NoError(t, e.st.Pool.QueryRow(ctx, `SELECT t::text FROM execution_tokens t WHERE id = $1`, m.ID).Scan(&row))
	require.NotContains(t, row, m.Token)
	require.NotContains(t, row, strings.TrimPrefix(m.Token, "oak_tok_")[:16])

	again, err := activities.MintToken(ctx, e.st, e.kr, e.box, src, time.Now(), time.Minute)
	require.NoError(t, err)
	require.Equal(t, m, again)
	_, err = activities.MintToken(ctx, e.st, e.kr, newBox(t), src, time.Now(), time.Minute)
	require.Error(t, err, "another key does not open the stored token")
	require.NotContains(t, err.Error(), m.Token)

	other, err := activities.MintToken(ctx, e.st, e.kr, e.box, activities.TokenSource{Kind: activities.SourceCheck,
		ID: "chk_other", OrgID: e.orgID, Tool: "refund_payment"}, time.Now(), time.Minute)
	require.NoError(t, err)
	e.exec(`UPDATE execution_tokens SET token_sealed = (SELECT token_sealed FROM execution_tokens WHERE id = $1) WHERE id = $2`, m.ID, other.ID)
	_, err = activities.MintToken(ctx, e.st, e.kr, e.box, activities.TokenSource{Kind: activities.SourceCheck,
		ID: "chk_other", OrgID: e.orgID, Tool: "refund_payment"}, time.Now(), time.Minute)
	require.Error(t, err, "a sealed token copied into another row does not open there")

	// Verification needs only the token's signature and nonce.
	_, err = activities.VerifyAndConsume(ctx, e.st, e.kr, m.Token, nil, e.orgID, time.Now())
	require.NoError(t, err)
}

func TestVerifyAndConsume(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	params := json.RawMessage(`{"amount":125,"customer":"c_1"}`)
	hash, err := tokens.HashParameters(params)
	require.NoError(t, err)
	mint := func(t *testing.T, id string, now time.Time, ttl time.Duration) string {
		m, err := activities.MintToken(ctx, e.st, e.kr, e.box, activities.TokenSource{
			Kind: activities.SourceCheck, ID: id, OrgID: e.orgID, Tool: "refund_payment", ParamsHash: hash,
		}, now, ttl)
		require.NoError(t, err)
		return m.Token
	}
	tests := []struct {
		name string
		// steps are verifications of one token, in order, and their expected errors.
		steps []verifyStep
		mint  func(t *testing.T, id string) string
	}{
		{
			name:  "first verify succeeds, the second is a replay",
			steps: []verifyStep{{params: params}, {params: params, want: activities.ErrTokenReplayed}},
		},
		{
			name:  "without presented parameters the binding is not checked",
			steps: []verifyStep{{}, {want: activities.ErrTokenReplayed}},
		},
		{
			name:  "reordered keys and equal numbers match the canonical hash",
			steps: []verifyStep{{params: json.RawMessage(`{"customer":"c_1","amount":125.0}`)}},
		},
		{
			name: "mismatched parameters fail and do not use the token up",
			steps: []verifyStep{
				{params: json.RawMessage(`{"amount":9999,"customer":"c_1"}`), want: activities.ErrParamsMismatch},
				{params: params},
			},
		},
		{
			name:  "another org's token is refused and not used up",
			steps: []verifyStep{{org: "org_other", want: activities.ErrTokenWrongOrg}, {params: params}},
		},
		{
			name:  "expired",
			mint:  func(t *testing.T, id string) string { return mint(t, id, time.Now().Add(-time.Hour), time.Minute) },
			steps: []verifyStep{{params: params, want: activities.ErrTokenExpired}},
		},
		{
			name: "tampered",
			mint: func(t *testing.T, id string) string {
				tok := mint(t, id, time.Now(), time.Minute)
				return tok[:len(tok)-2] + flip(tok[len(tok)-2:])
			},
			steps: []verifyStep{{params: params, want: activities.ErrTokenInvalid}},
		},
		{
			name:  "not a token",
			mint:  func(*testing.T, string) string { return "oak_live_0123456789abcdef0123456789abcdef" },
			steps: []verifyStep{{want: activities.ErrTokenInvalid}},
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := "chk_verify_" + string(rune('a'+i))
			var tok string
			if tc.mint != nil {
				tok = tc.mint(t, id)
			} else {
				tok = mint(t, id, time.Now(), time.Minute)
			}
			for j, s := range tc.steps {
				org := e.orgID
				if s.org != "" {
					org = s.org
				}
				claims, err := activities.VerifyAndConsume(ctx, e.st, e.kr, tok, s.params, org, time.Now())
				if s.want != nil {
					require.ErrorIs(t, err, s.want, "step %d", j+1)
					continue
				}
				require.NoError(t, err, "step %d", j+1)
				require.Equal(t, "refund_payment", claims.Tool)
				require.Equal(t, "check:"+id, claims.Source)
			}
		})
	}
}

type verifyStep struct {
	params json.RawMessage
	org    string
	want   error
}

// flip changes a base64url string without changing its length.
func flip(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
	}
	return string(b)
}

func TestVerifyAndConsumeConcurrentlyUsesATokenOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	m, err := activities.MintToken(ctx, e.st, e.kr, e.box, activities.TokenSource{
		Kind: activities.SourceCheck, ID: "chk_race", OrgID: e.orgID, Tool: "refund_payment",
	}, time.Now(), time.Minute)
	require.NoError(t, err)

	// A second pool stands in for a second API replica.
	replica, err := store.Open(ctx, store.Config{URL: e.st.Pool.Config().ConnString()})
	require.NoError(t, err)
	t.Cleanup(replica.Close)

	const n = 100
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		st := e.st
		if i%2 == 1 {
			st = replica
		}
		wg.Go(func() {
			<-start
			_, errs[i] = activities.VerifyAndConsume(ctx, st, e.kr, m.Token, nil, e.orgID, time.Now())
		})
	}
	close(start)
	wg.Wait()
	ok, replayed := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, activities.ErrTokenReplayed):
			replayed++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	require.Equal(t, 1, ok, "exactly one verification succeeds")
	require.Equal(t, n-1, replayed)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE kind = 'token.verified' AND outcome = 'ok'`))
	require.Equal(t, n-1, e.count(`SELECT count(*) FROM audit_events WHERE kind = 'token.verified' AND outcome = 'replayed'`))
}
