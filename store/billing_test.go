package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
	"oakallow/store"
)

// A refund can leave purchased credit below zero; such a balance pays for
// nothing (before migration 014 the count of affordable calls went negative
// and the "charge" added credit), and free credit first covers the debt.
func TestRecorderNegativeBalanceCoversNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	now := time.Now()
	seedTeam(t, s, now)
	future := now.Add(time.Hour)
	grant(t, s, "grant_free", "free", 3*5000, &future, now)
	_, err := s.TakeBackCredit(ctx, store.TakeBackCreditParams{TeamID: "team_1", AmountMicros: 2*5000 - 1})
	require.NoError(t, err)

	rec, err := store.NewRecorder(s, store.RecorderConfig{})
	require.NoError(t, err)
	defer rec.Stop()
	require.NoError(t, rec.Record(ctx, checkEntry(store.NewID("chk"), true)), "15000 free - 9999 owed leaves one call's worth")
	require.ErrorIs(t, rec.Record(ctx, checkEntry(store.NewID("chk"), true)), store.ErrInsufficientCredits)
	bal, err := s.GetTeamBalance(ctx, "team_1")
	require.NoError(t, err)
	require.Equal(t, int64(10000), bal.FreeMicros, "free credit is spent first")
	require.Equal(t, int64(-9999), bal.PurchasedMicros)
	require.Equal(t, int64(1), bal.BilledCalls)

	// Only free credit below the debt: nothing is affordable, nothing changes.
	_, err = s.TakeBackCredit(ctx, store.TakeBackCreditParams{TeamID: "team_1", AmountMicros: 100000})
	require.NoError(t, err)
	require.ErrorIs(t, rec.Record(ctx, checkEntry(store.NewID("chk"), true)), store.ErrInsufficientCredits)
	after, err := s.GetTeamBalance(ctx, "team_1")
	require.NoError(t, err)
	require.Equal(t, int64(10000), after.FreeMicros)
	require.Equal(t, int64(-109999), after.PurchasedMicros)
	require.Equal(t, int64(1), after.BilledCalls)
}

// Billing mode off: calls are metered (billable rows, billed totals) and
// never refused, and the balance is not touched, even for a team with none.
func TestRecorderMeterOnlyNeverRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	seedTeam(t, s, time.Now()) // no credit at all, no balance row

	rec, err := store.NewRecorder(s, store.RecorderConfig{MeterOnly: true, LowBalanceMicros: 1_000_000})
	require.NoError(t, err)
	defer rec.Stop()
	for range 5 {
		require.NoError(t, rec.Record(ctx, checkEntry(store.NewID("chk"), true)))
	}
	totals, err := s.BillingTotals(ctx, "team_1")
	require.NoError(t, err)
	require.Equal(t, int64(5), totals.Calls)
	bal, err := s.GetTeamBalance(ctx, "team_1")
	require.NoError(t, err)
	require.Equal(t, int64(5), bal.BilledCalls)
	require.Equal(t, totals.CostMicros, bal.BilledMicros)
	require.Zero(t, bal.PurchasedMicros)
	require.Zero(t, bal.FreeMicros)
	var alerts int
	require.NoError(t, s.Pool.QueryRow(ctx, "SELECT count(*) FROM credit_alerts").Scan(&alerts))
	require.Zero(t, alerts, "nothing to alert about when nothing is charged")
}

// The credits.low alert is recorded once per crossing: not again while the
// balance stays below the threshold, again after credit lifted it above.
func TestRecorderLowBalanceAlertOncePerCrossing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	now := time.Now()
	seedTeam(t, s, now)
	grant(t, s, "grant_1", "purchased", 5*5000, nil, now)

	rec, err := store.NewRecorder(s, store.RecorderConfig{LowBalanceMicros: 3 * 5000})
	require.NoError(t, err)
	defer rec.Stop()
	alerts := func() int {
		var n int
		require.NoError(t, s.Pool.QueryRow(ctx, "SELECT count(*) FROM credit_alerts WHERE team_id = 'team_1'").Scan(&n))
		return n
	}
	record := func() error { return rec.Record(ctx, checkEntry(store.NewID("chk"), true)) }
	require.NoError(t, record()) // 4 calls left: at or above 3
	require.NoError(t, record()) // 3 left
	require.Zero(t, alerts())
	require.NoError(t, record()) // 2 left: crossed
	require.Equal(t, 1, alerts())
	require.NoError(t, record())
	require.NoError(t, record())
	require.ErrorIs(t, record(), store.ErrInsufficientCredits)
	require.Equal(t, 1, alerts(), "still below: no second alert")

	// A grant that leaves the balance below the threshold does not re-arm it.
	grant(t, s, "grant_2", "purchased", 5000, nil, now)
	require.NoError(t, s.ClearLowBalanceAlert(ctx, store.ClearLowBalanceAlertParams{TeamID: "team_1", Now: now, Threshold: 3 * 5000}))
	require.NoError(t, record())
	require.Equal(t, 1, alerts())
	// One that lifts it above does: the next crossing alerts again.
	grant(t, s, "grant_3", "purchased", 4*5000, nil, now)
	require.NoError(t, s.ClearLowBalanceAlert(ctx, store.ClearLowBalanceAlertParams{TeamID: "team_1", Now: now, Threshold: 3 * 5000}))
	require.NoError(t, record()) // 3 left
	require.Equal(t, 1, alerts())
	require.NoError(t, record()) // 2 left: crossed again
	require.Equal(t, 2, alerts())
	var balance, threshold int64
	require.NoError(t, s.Pool.QueryRow(ctx, "SELECT balance_micros, threshold_micros FROM credit_alerts WHERE team_id = 'team_1' ORDER BY created_at DESC, id LIMIT 1").Scan(&balance, &threshold))
	require.Equal(t, int64(2*5000), balance)
	require.Equal(t, int64(3*5000), threshold)
}

// A batch of one entry takes its own path in oakallow_record_audit_batch
// (migration 024: no grouping by team). For every state a balance can be in,
// one billable call committed alone must be charged, refused, metered and
// alerted exactly as the same call in a batch of two, which takes the
// general path (the second entry, another team's and not billable, changes
// no charge) — and as RecordAuditOne (migration 029), the recorder's
// statement for every one-entry commit, charges it.
func TestOneEntryBatchChargesAsTheGeneralPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	require.NoError(t, s.CreateTeam(ctx, store.CreateTeamParams{ID: "team_other", Name: "o", CreatedAt: now}))
	type balance struct {
		free, purchased int64
		expires         time.Time
		alerted         bool
	}
	var balances []*balance // nil: no balance row
	balances = append(balances, nil)
	for _, free := range []int64{0, 4999, 5000, 12000} {
		for _, expires := range []time.Time{now.Add(-time.Second), now, now.Add(time.Hour)} {
			for _, purchased := range []int64{-7000, 0, 4999, 5000, 9000} {
				for _, alerted := range []bool{false, true} {
					balances = append(balances, &balance{free, purchased, expires, alerted})
				}
			}
		}
	}
	type outcome struct {
		Charged                       bool
		Free, Purchased, Calls, Spent int64
		Alerted                       bool
		Outcome                       string
		Billable                      bool
		Cost                          int64
		Alerts                        []string
	}
	commit := func(team string, b *balance, cost int64, enforce bool, threshold int64, others int) outcome {
		require.NoError(t, s.CreateTeam(ctx, store.CreateTeamParams{ID: team, Name: "t", CreatedAt: now}))
		if b != nil {
			_, err := s.Pool.Exec(ctx, `INSERT INTO team_balances (team_id, free_micros, free_expires_at, purchased_micros, low_balance_alerted)
VALUES ($1, $2, $3, $4, $5)`, team, b.free, b.expires, b.purchased, b.alerted)
			require.NoError(t, err)
		}
		id := store.NewID("chk")
		p := store.RecordAuditBatchParams{Cost: cost, Now: now, Enforce: enforce, LowThreshold: threshold}
		add := func(id, team string, billable bool) {
			p.Ids, p.OrgIds, p.TeamIds = append(p.Ids, id), append(p.OrgIds, "org_x"), append(p.TeamIds, team)
			p.OccurredAt, p.ActorKinds, p.ActorIds = append(p.OccurredAt, now), append(p.ActorKinds, "api_key"), append(p.ActorIds, "key_1")
			p.Kinds, p.Subjects, p.Outcomes = append(p.Kinds, "permission.check"), append(p.Subjects, "s"), append(p.Outcomes, "allowed")
			p.Tools, p.Tenants, p.Billable = append(p.Tools, "t"), append(p.Tenants, "acme"), append(p.Billable, billable)
			p.Details = append(p.Details, []byte(`{"n":1}`))
		}
		add(id, team, true)
		for range others {
			add(store.NewID("chk"), "team_other", false)
		}
		var o outcome
		if others < 0 { // the one-entry statement
			var err error
			o.Charged, err = s.RecordAuditOne(ctx, store.RecordAuditOneParams{ID: id, OrgID: p.OrgIds[0], TeamID: team,
				OccurredAt: now, ActorKind: p.ActorKinds[0], ActorID: p.ActorIds[0], Kind: p.Kinds[0], Subject: p.Subjects[0],
				Outcome: p.Outcomes[0], Tool: p.Tools[0], Tenant: p.Tenants[0], Billable: true, Details: p.Details[0],
				Cost: cost, Now: now, Enforce: enforce, LowThreshold: threshold})
			require.NoError(t, err)
		} else {
			charged, err := s.RecordAuditBatch(ctx, p)
			require.NoError(t, err)
			require.Len(t, charged, 1+others)
			o.Charged = charged[0]
		}
		err := s.Pool.QueryRow(ctx, `SELECT free_micros, purchased_micros, billed_calls, billed_micros, low_balance_alerted
FROM team_balances WHERE team_id = $1`, team).Scan(&o.Free, &o.Purchased, &o.Calls, &o.Spent, &o.Alerted)
		if b == nil && enforce {
			require.ErrorIs(t, err, pgx.ErrNoRows)
		} else {
			require.NoError(t, err)
		}
		require.NoError(t, s.Pool.QueryRow(ctx, `SELECT outcome, billable, cost_micros FROM audit_events WHERE id = $1`, id).
			Scan(&o.Outcome, &o.Billable, &o.Cost))
		rows, err := s.Pool.Query(ctx, `SELECT id = 'cal_' || md5($2) || '', balance_micros, threshold_micros, created_at = $3
FROM credit_alerts WHERE team_id = $1`, team, id, now)
		require.NoError(t, err)
		for rows.Next() {
			var sameID, sameTime bool
			var bal, thr int64
			require.NoError(t, rows.Scan(&sameID, &bal, &thr, &sameTime))
			o.Alerts = append(o.Alerts, fmt.Sprint(sameID, bal, thr, sameTime))
		}
		require.NoError(t, rows.Err())
		return o
	}
	n := 0
	for _, b := range balances {
		for _, cost := range []int64{0, 5000} {
			for _, enforce := range []bool{true, false} {
				for _, threshold := range []int64{0, 5000, 10000} {
					n++
					alone := commit(fmt.Sprintf("team_a%d", n), b, cost, enforce, threshold, 0)
					inBatch := commit(fmt.Sprintf("team_b%d", n), b, cost, enforce, threshold, 1)
					one := commit(fmt.Sprintf("team_c%d", n), b, cost, enforce, threshold, -1)
					require.Equal(t, inBatch, alone, "balance %+v, cost %d, enforce %v, threshold %d", b, cost, enforce, threshold)
					require.Equal(t, inBatch, one, "RecordAuditOne: balance %+v, cost %d, enforce %v, threshold %d", b, cost, enforce, threshold)
				}
			}
		}
	}
}
