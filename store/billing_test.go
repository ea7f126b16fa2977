package store_test

import (
	"context"
	"testing"
	"time"

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
