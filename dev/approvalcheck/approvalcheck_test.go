package approvalcheck

import (
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/workflows"
)

// TestCompare proves the check can fail: starting from an approval on which history and
// PostgreSQL agree, each case breaks one clause of the invariant and must be reported.
func TestCompare(t *testing.T) {
	t.Parallel()
	alice := workflows.Decider{Kind: workflows.DeciderUser, ID: "usr_alice"}
	approved := func() (Report, []workflows.DecideRequest, stored) {
		d := workflows.Decision{Level: 1, Decision: workflows.Approve, Decider: alice, RequestID: "r1"}
		rep := Report{Reference: "REF-1", State: workflows.State{
			Status: workflows.StatusApproved, Level: 1, Decisions: []workflows.Decision{d}, TokenID: "tok_1", TokenHash: "h1"}}
		accepted := []workflows.DecideRequest{{Level: 1, Decision: workflows.Approve, Decider: alice, RequestID: "r1"}}
		pg := stored{
			id: "apr_1", status: "approved", tokenID: "tok_1", level: 1, levels: 1, decidedAt: true,
			decisions: []storedDecision{{level: 1, decision: "approve", deciderID: "usr_alice"}},
			tokens:    []string{"tok_1"}, tokenHash: "h1",
			audit: map[string][]auditRow{
				"approval.created": {{outcome: "pending"}},
				"approval.decided": {{outcome: "approved", decision: "approve"}},
				"token.minted":     {{outcome: "minted"}},
			},
			deliveries: []delivery{
				{eventType: "approval.decided", target: "org_webhook", decision: "approve"},
				{eventType: "approval.decided", target: "channel", decision: "approved"},
			},
		}
		return rep, accepted, pg
	}
	tests := []struct {
		name    string
		breakIt func(rep *Report, accepted *[]workflows.DecideRequest, pg *stored)
	}{
		{"PostgreSQL shows another status", func(_ *Report, _ *[]workflows.DecideRequest, pg *stored) { pg.status = "denied" }},
		{"PostgreSQL shows another decision", func(_ *Report, _ *[]workflows.DecideRequest, pg *stored) { pg.decisions[0].decision = "deny" }},
		{"history accepted another decision", func(_ *Report, a *[]workflows.DecideRequest, _ *stored) {
			(*a)[0].Decision = workflows.Deny
			(*a)[0].RequestID = "r2"
		}},
		{"history accepted two decisions", func(_ *Report, a *[]workflows.DecideRequest, _ *stored) {
			*a = append(*a, (*a)[0])
		}},
		{"no token for an approval", func(_ *Report, _ *[]workflows.DecideRequest, pg *stored) { pg.tokens = nil }},
		{"two tokens", func(_ *Report, _ *[]workflows.DecideRequest, pg *stored) { pg.tokens = append(pg.tokens, "tok_2") }},
		{"a token for a denied approval", func(rep *Report, a *[]workflows.DecideRequest, pg *stored) {
			rep.State.Status, rep.State.Decisions[0].Decision = workflows.StatusDenied, workflows.Deny
			(*a)[0].Decision = workflows.Deny
			pg.status, pg.decisions[0].decision = "denied", "deny"
			pg.audit["approval.decided"] = []auditRow{{outcome: "denied", decision: "deny"}}
			delete(pg.audit, "token.minted")
			pg.deliveries = nil
		}},
		{"the audit says denied", func(_ *Report, _ *[]workflows.DecideRequest, pg *stored) {
			pg.audit["approval.decided"] = []auditRow{{outcome: "denied", decision: "deny"}}
		}},
		{"two decided audit events", func(_ *Report, _ *[]workflows.DecideRequest, pg *stored) {
			pg.audit["approval.decided"] = append(pg.audit["approval.decided"], pg.audit["approval.decided"][0])
		}},
		{"a webhook says deny", func(_ *Report, _ *[]workflows.DecideRequest, pg *stored) { pg.deliveries[0].decision = "deny" }},
		{"an alert says denied", func(_ *Report, _ *[]workflows.DecideRequest, pg *stored) { pg.deliveries[1].decision = "denied" }},
		{"an expiry alert for an approved approval", func(_ *Report, _ *[]workflows.DecideRequest, pg *stored) {
			pg.deliveries = append(pg.deliveries, delivery{eventType: "approval.expired", target: "channel"})
		}},
		{"approved with one of two levels", func(_ *Report, _ *[]workflows.DecideRequest, pg *stored) { pg.levels = 2 }},
	}

	rep, accepted, pg := approved()
	compare(&rep, accepted, pg)
	require.Empty(t, rep.Problems, "the baseline agrees")

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep, accepted, pg := approved()
			tc.breakIt(&rep, &accepted, &pg)
			compare(&rep, accepted, pg)
			require.NotEmpty(t, rep.Problems, "the break was not reported")
			require.Error(t, rep.Err())
		})
	}
}
