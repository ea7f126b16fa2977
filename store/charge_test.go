package store_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
	"oakallow/store"
)

// chargeState is a team's balance row; nil: the team has none.
type chargeState struct {
	Free, Purchased int64
	Expires         time.Time
	Calls, Spent    int64 // billed_calls, billed_micros
	Alerted         bool
}

// creditAlert is a credit_alerts row as a test compares it.
type creditAlert struct {
	ID                 string
	Balance, Threshold int64
}

// chargeResult is what a charge did to a team: which of its calls were
// paid for, its balance row afterwards, the alerts it raised, and each
// call's audit row (outcome, billable, cost).
type chargeResult struct {
	Paid    []bool
	Balance *chargeState
	Alerts  []creditAlert
	Rows    []string
}

// wantCharge is SPEC §9's charge of calls billable calls (the first one's
// audit id firstID) to a team in state b, written out case by case: what
// oakallow_charge_calls must do.
func wantCharge(b *chargeState, calls int, firstID string, cost int64, now time.Time, enforce bool, threshold int64) chargeResult {
	var r chargeResult
	paid := 0
	switch {
	case !enforce: // billing mode off: metered, never refused, balance untouched
		paid = calls
		after := chargeState{}
		if b != nil {
			after = *b
		}
		after.Calls += int64(calls)
		after.Spent += int64(calls) * cost
		r.Balance = &after
	case b == nil: // no balance row: nothing is affordable
	default:
		freeOK := int64(0)
		if b.Expires.After(now) {
			freeOK = b.Free
		}
		available := freeOK + b.Purchased
		paid = calls
		if cost > 0 {
			paid = int(max(0, min(int64(calls), available/cost))) // below zero covers nothing
		}
		total := int64(paid) * cost
		fromFree := min(freeOK, total) // free credit first
		after := *b
		after.Free -= fromFree
		after.Purchased -= total - fromFree
		after.Calls += int64(paid)
		after.Spent += total
		if threshold > 0 && !b.Alerted && available-total < threshold {
			after.Alerted = true
			sum := md5.Sum([]byte(firstID))
			r.Alerts = []creditAlert{{"cal_" + hex.EncodeToString(sum[:]), available - total, threshold}}
		}
		r.Balance = &after
	}
	for i := range calls {
		r.Paid = append(r.Paid, i < paid)
		if i < paid {
			r.Rows = append(r.Rows, fmt.Sprintf("allowed billable %d", cost))
		} else {
			r.Rows = append(r.Rows, "insufficient_credits not billable 0")
		}
	}
	return r
}

// observeCharge reads what a charge of the calls ids did to team.
func observeCharge(t *testing.T, s *store.Store, team string, ids []string, paid []bool) chargeResult {
	t.Helper()
	ctx := context.Background()
	r := chargeResult{Paid: paid}
	var b chargeState
	var expires *time.Time
	err := s.Pool.QueryRow(ctx, `SELECT free_micros, free_expires_at, purchased_micros, billed_calls, billed_micros, low_balance_alerted
FROM team_balances WHERE team_id = $1`, team).Scan(&b.Free, &expires, &b.Purchased, &b.Calls, &b.Spent, &b.Alerted)
	if !errors.Is(err, pgx.ErrNoRows) {
		require.NoError(t, err)
		if expires != nil {
			b.Expires = *expires
		}
		r.Balance = &b
	}
	rows, err := s.Pool.Query(ctx, `SELECT id, balance_micros, threshold_micros FROM credit_alerts WHERE team_id = $1 ORDER BY id`, team)
	require.NoError(t, err)
	r.Alerts, err = pgx.CollectRows(rows, pgx.RowToStructByPos[creditAlert])
	require.NoError(t, err)
	if len(r.Alerts) == 0 {
		r.Alerts = nil
	}
	for _, id := range ids {
		var outcome string
		var billable bool
		var cost int64
		require.NoError(t, s.Pool.QueryRow(ctx, `SELECT outcome, billable, cost_micros FROM audit_events WHERE id = $1`, id).
			Scan(&outcome, &billable, &cost))
		r.Rows = append(r.Rows, fmt.Sprintf("%s %s %d", outcome, map[bool]string{true: "billable", false: "not billable"}[billable], cost))
	}
	return r
}

// batchOf is RecordAuditBatch's parameters for entries, committed at now.
func batchOf(entries []store.Entry, cost int64, now time.Time, enforce bool, threshold int64) store.RecordAuditBatchParams {
	p := store.RecordAuditBatchParams{Cost: cost, Now: now, Enforce: enforce, LowThreshold: threshold}
	for _, e := range entries {
		ev := e.Event
		p.Ids, p.OrgIds, p.TeamIds = append(p.Ids, ev.ID), append(p.OrgIds, ev.OrgID), append(p.TeamIds, ev.TeamID)
		p.OccurredAt, p.ActorKinds, p.ActorIds = append(p.OccurredAt, ev.OccurredAt), append(p.ActorKinds, ev.ActorKind), append(p.ActorIds, ev.ActorID)
		p.Kinds, p.Subjects, p.Outcomes = append(p.Kinds, ev.Kind), append(p.Subjects, ev.Subject), append(p.Outcomes, ev.Outcome)
		p.Tools, p.Tenants, p.Billable = append(p.Tools, ev.Tool), append(p.Tenants, ev.Tenant), append(p.Billable, e.Billable)
		p.Details = append(p.Details, ev.Details)
	}
	return p
}

// oneOf is RecordAuditOne's parameters for e, committed at now.
func oneOf(e store.Entry, cost int64, now time.Time, enforce bool, threshold int64) store.RecordAuditOneParams {
	ev := e.Event
	return store.RecordAuditOneParams{ID: ev.ID, OrgID: ev.OrgID, TeamID: ev.TeamID, OccurredAt: ev.OccurredAt,
		ActorKind: ev.ActorKind, ActorID: ev.ActorID, Kind: ev.Kind, Subject: ev.Subject, Outcome: ev.Outcome,
		Tool: ev.Tool, Tenant: ev.Tenant, Billable: e.Billable, Details: ev.Details, Cost: cost, Now: now,
		Enforce: enforce, LowThreshold: threshold}
}

// teamCall is a billable check of team's, at now.
func teamCall(team string, now time.Time) store.Entry {
	e := checkEntry(store.NewID("chk"), true)
	e.Event.TeamID, e.Event.OccurredAt = team, now
	return e
}

// The charge is defined once (oakallow_charge_calls, migration 031), and
// both commit statements charge through it. For every state a balance can
// be in — no row, free credit expired, expiring now or not, purchased credit
// below zero after a refund, short of one call, exactly one, more; alerted
// or not — every price, billing mode and alert threshold, it must charge as
// SPEC §9 says, through each way a call is committed: the one-entry
// statement (every commit at concurrency 1), a batch of one entry (how a
// replica older than migration 029 commits one), and a batch in which the
// team's three calls sit among another team's entries (where it may run out
// part-way).
func TestChargeFollowsTheRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	require.NoError(t, s.CreateTeam(ctx, store.CreateTeamParams{ID: "team_other", Name: "o", CreatedAt: now}))
	states := []*chargeState{nil}
	for _, free := range []int64{0, 4999, 5000, 12000} {
		for _, expires := range []time.Time{now.Add(-time.Second), now, now.Add(time.Hour)} {
			for _, purchased := range []int64{-7000, 0, 4999, 5000, 9000} {
				for _, alerted := range []bool{false, true} {
					states = append(states, &chargeState{Free: free, Purchased: purchased, Expires: expires,
						Calls: 3, Spent: 15000, Alerted: alerted})
				}
			}
		}
	}
	type form struct {
		name   string
		calls  int
		commit func(calls []store.Entry, cost int64, enforce bool, threshold int64) []bool
	}
	forms := []form{
		{"RecordAuditOne", 1, func(calls []store.Entry, cost int64, enforce bool, threshold int64) []bool {
			charged, err := s.RecordAuditOne(ctx, oneOf(calls[0], cost, now, enforce, threshold))
			require.NoError(t, err)
			return []bool{charged}
		}},
		{"RecordAuditBatch of one entry", 1, func(calls []store.Entry, cost int64, enforce bool, threshold int64) []bool {
			charged, err := s.RecordAuditBatch(ctx, batchOf(calls, cost, now, enforce, threshold))
			require.NoError(t, err)
			return charged
		}},
		{"RecordAuditBatch, three calls among another team's", 3, func(calls []store.Entry, cost int64, enforce bool, threshold int64) []bool {
			other := func(billable bool) store.Entry {
				e := teamCall("team_other", now)
				e.Billable = billable
				return e
			}
			charged, err := s.RecordAuditBatch(ctx, batchOf([]store.Entry{other(false), calls[0], other(true), calls[1], other(false), calls[2]},
				cost, now, enforce, threshold))
			require.NoError(t, err)
			require.Len(t, charged, 6)
			return []bool{charged[1], charged[3], charged[5]}
		}},
	}
	n := 0
	for _, b := range states {
		for _, cost := range []int64{0, 5000} {
			for _, enforce := range []bool{true, false} {
				for _, threshold := range []int64{0, 5000, 10000} {
					for _, f := range forms {
						n++
						team := fmt.Sprintf("team_%d", n)
						require.NoError(t, s.CreateTeam(ctx, store.CreateTeamParams{ID: team, Name: "t", CreatedAt: now}))
						if b != nil {
							_, err := s.Pool.Exec(ctx, `INSERT INTO team_balances (team_id, free_micros, free_expires_at, purchased_micros,
  billed_calls, billed_micros, low_balance_alerted) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
								team, b.Free, b.Expires, b.Purchased, b.Calls, b.Spent, b.Alerted)
							require.NoError(t, err)
						}
						calls := make([]store.Entry, f.calls)
						ids := make([]string, f.calls)
						for i := range calls {
							calls[i] = teamCall(team, now)
							ids[i] = calls[i].Event.ID
						}
						paid := f.commit(calls, cost, enforce, threshold)
						want := wantCharge(b, f.calls, ids[0], cost, now, enforce, threshold)
						got := observeCharge(t, s, team, ids, paid)
						if got.Balance != nil && want.Balance != nil {
							// The expiry is not the charge's to change; compare it as an instant.
							require.True(t, want.Balance.Expires.Equal(got.Balance.Expires), "%s: expiry", f.name)
							got.Balance.Expires = want.Balance.Expires
						}
						require.Equal(t, want, got, "%s: balance %+v, cost %d, enforce %v, threshold %d", f.name, b, cost, enforce, threshold)
					}
				}
			}
		}
	}
}

// A batch that spans several teams charges each from its own balance and
// answers each entry for its own team: a team that runs out part-way has its
// first calls paid (free credit first, then purchased) and the rest refused,
// whatever the other teams' entries around them; a team without credit is
// refused; a team with enough pays for all. Each team's alert is named by its
// own first call.
func TestBatchAcrossTeamsChargesEachTeamExactly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	future := now.Add(time.Hour)
	for _, team := range []string{"team_short", "team_rich", "team_none"} {
		require.NoError(t, s.CreateTeam(ctx, store.CreateTeamParams{ID: team, Name: team, CreatedAt: now}))
	}
	credit := func(team, kind string, micros int64, expires *time.Time) {
		_, err := s.CreateCreditGrant(ctx, store.CreateCreditGrantParams{ID: store.NewID("grant"), TeamID: team, Kind: kind,
			AmountMicros: micros, ExpiresAt: expires, Source: store.NewID("src"), CreatedAt: now})
		require.NoError(t, err)
	}
	credit("team_short", "free", 5000, &future)
	credit("team_short", "purchased", 9000, nil) // with the free credit: two calls and 4000 over
	credit("team_rich", "purchased", 100*5000, nil)

	// Interleaved, in the order the batch carries them; "free" is a call that
	// is not billable.
	order := []string{"team_rich", "team_short", "team_none", "team_short", "free", "team_rich", "team_short",
		"team_short", "team_none", "team_rich", "team_short"}
	var entries []store.Entry
	for _, team := range order {
		if team == "free" {
			e := teamCall("team_short", now)
			e.Billable = false
			entries = append(entries, e)
			continue
		}
		entries = append(entries, teamCall(team, now))
	}
	charged, err := s.RecordAuditBatch(ctx, batchOf(entries, 5000, now, true, 6000))
	require.NoError(t, err)
	require.Equal(t, []bool{true, true, false, true, false, true, false, false, false, true, false}, charged,
		"team_short: its first two calls; team_none: none; team_rich: all")

	short, err := s.GetTeamBalance(ctx, "team_short")
	require.NoError(t, err)
	require.Equal(t, int64(0), short.FreeMicros, "free credit went first")
	require.Equal(t, int64(4000), short.PurchasedMicros)
	require.Equal(t, []int64{2, 10000}, []int64{short.BilledCalls, short.BilledMicros})
	rich, err := s.GetTeamBalance(ctx, "team_rich")
	require.NoError(t, err)
	require.Equal(t, int64(97*5000), rich.PurchasedMicros)
	require.Equal(t, []int64{3, 15000}, []int64{rich.BilledCalls, rich.BilledMicros})
	_, err = s.GetTeamBalance(ctx, "team_none")
	require.ErrorIs(t, err, store.ErrNotFound, "a refused team gets no balance row")

	for _, team := range []string{"team_short", "team_rich", "team_none"} {
		totals, err := s.BillingTotals(ctx, team)
		require.NoError(t, err)
		bal, err := s.GetTeamBalance(ctx, team)
		if err == nil {
			require.Equal(t, []int64{bal.BilledCalls, bal.BilledMicros}, []int64{totals.Calls, totals.CostMicros}, team)
		} else {
			require.Zero(t, totals.Calls, team)
		}
	}
	var refused []string
	rows, err := s.Pool.Query(ctx, `SELECT team_id FROM audit_events WHERE outcome = 'insufficient_credits' AND NOT billable ORDER BY seq`)
	require.NoError(t, err)
	refused, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"team_none", "team_short", "team_short", "team_none", "team_short"}, refused)

	// Only team_short fell below 6000 (to 4000); its alert is named by its first call.
	got := observeCharge(t, s, "team_short", nil, nil).Alerts
	sum := md5.Sum([]byte(entries[1].Event.ID))
	require.Equal(t, []creditAlert{{"cal_" + hex.EncodeToString(sum[:]), 4000, 6000}}, got)
	require.Nil(t, observeCharge(t, s, "team_rich", nil, nil).Alerts)
}

// Metering is exact whichever statement commits a call (SPEC §9: billed
// calls = billable audit rows = the drop in balance): one-entry commits and
// batches of one team, refunds of calls each of them charged, credit taken
// back below zero (which then pays for nothing), and credit granted again
// that covers part of a batch.
func TestMeteringIsExactAcrossBothStatements(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	seedTeam(t, s, now)
	const cost = 5000
	granted := int64(0)
	credit := func(calls int64) {
		granted += calls * cost
		grant(t, s, store.NewID("grant"), "purchased", calls*cost, nil, now)
	}
	one := func() bool {
		charged, err := s.RecordAuditOne(ctx, oneOf(teamCall("team_1", now), cost, now, true, 0))
		require.NoError(t, err)
		return charged
	}
	var lastBatch []store.Entry
	batch := func(n int) []bool {
		lastBatch = nil
		for range n {
			lastBatch = append(lastBatch, teamCall("team_1", now))
		}
		charged, err := s.RecordAuditBatch(ctx, batchOf(lastBatch, cost, now, true, 0))
		require.NoError(t, err)
		return charged
	}
	refund := func(id string) {
		n, err := s.RefundCall(ctx, store.RefundCallParams{AuditID: id, Reason: "test", CreatedAt: now, Credit: true})
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
	}
	takenBack := int64(0)
	exact := func(step string) {
		t.Helper()
		bal, err := s.GetTeamBalance(ctx, "team_1")
		require.NoError(t, err)
		totals, err := s.BillingTotals(ctx, "team_1")
		require.NoError(t, err)
		require.Equal(t, []int64{totals.Calls, totals.CostMicros}, []int64{bal.BilledCalls, bal.BilledMicros},
			"%s: billed totals = billable rows not refunded", step)
		require.Equal(t, granted-takenBack-bal.BilledMicros, bal.FreeMicros+bal.PurchasedMicros,
			"%s: the drop in balance = what was billed", step)
	}

	credit(10)
	require.True(t, one())
	require.True(t, one())
	require.Equal(t, []bool{true, true, true, true}, batch(4))
	refund(lastBatch[2].Event.ID)
	exact("charged by both, one refunded")

	var firstOne string
	require.NoError(t, s.Pool.QueryRow(ctx, `SELECT id FROM audit_events ORDER BY seq LIMIT 1`).Scan(&firstOne))
	refund(firstOne)
	exact("a one-entry charge refunded") // 6 charged, 2 refunded: 6 calls' worth left

	_, err := s.TakeBackCredit(ctx, store.TakeBackCreditParams{TeamID: "team_1", AmountMicros: 8 * cost})
	require.NoError(t, err)
	takenBack += 8 * cost // 2 calls' worth below zero
	require.False(t, one(), "a balance below zero pays for nothing")
	require.Equal(t, []bool{false, false}, batch(2))
	exact("refused in overdraft")

	credit(3) // 1 call's worth
	require.Equal(t, []bool{true, false, false}, batch(3), "a batch that runs out after its first call")
	require.False(t, one())
	exact("ran out part-way")
	bal, err := s.GetTeamBalance(ctx, "team_1")
	require.NoError(t, err)
	require.Equal(t, []int64{5, 5 * cost, 0}, []int64{bal.BilledCalls, bal.BilledMicros, bal.PurchasedMicros})
	var refused int
	require.NoError(t, s.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE outcome = 'insufficient_credits' AND NOT billable AND cost_micros = 0`).Scan(&refused))
	require.Equal(t, 6, refused)
}

// Both statements charging one team at once, each waiting on the other's
// lock of its balance row, pay for exactly the calls the balance covers: a
// one-entry commit whose covered-charge UPDATE finds the row changed
// re-judges it, and a batch that runs out pays for what is left.
func TestBothStatementsRaceForOneBalanceExactly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	seedTeam(t, s, now)
	const cost, affordable = 5000, 37
	future := now.Add(time.Hour)
	grant(t, s, "grant_free", "free", 10*cost, &future, now)
	grant(t, s, "grant_paid", "purchased", (affordable-10)*cost+cost/2, nil, now)

	var mu sync.Mutex
	paid, refused := 0, 0
	count := func(charged ...bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range charged {
			if c {
				paid++
			} else {
				refused++
			}
		}
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				charged, err := s.RecordAuditOne(ctx, oneOf(teamCall("team_1", now), cost, now, true, 0))
				if !assertNoError(t, err) {
					return
				}
				count(charged)
			}
		})
		wg.Go(func() {
			for range 3 {
				calls := []store.Entry{teamCall("team_1", now), teamCall("team_1", now), teamCall("team_1", now)}
				charged, err := s.RecordAuditBatch(ctx, batchOf(calls, cost, now, true, 0))
				if !assertNoError(t, err) {
					return
				}
				count(charged...)
			}
		})
	}
	wg.Wait()
	require.Equal(t, affordable, paid)
	require.Equal(t, 8*5+8*3*3-affordable, refused)
	bal, err := s.GetTeamBalance(ctx, "team_1")
	require.NoError(t, err)
	require.Equal(t, []int64{0, cost / 2, affordable, affordable * cost},
		[]int64{bal.FreeMicros, bal.PurchasedMicros, bal.BilledCalls, bal.BilledMicros})
	totals, err := s.BillingTotals(ctx, "team_1")
	require.NoError(t, err)
	require.Equal(t, []int64{affordable, affordable * cost}, []int64{totals.Calls, totals.CostMicros})
}

// assertNoError reports err to t from any goroutine (require may only stop
// the test's own).
func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

// Migration 031 rolls back to 029's and 024's statements, each charging as
// it did, and forward again.
func TestMigrationOfTheOneChargeRollsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := devtest.EmptyDatabase(t)
	_, err := store.Migrate(ctx, url)
	require.NoError(t, err)
	require.NoError(t, store.MigrateBefore(ctx, url, chargeMigration))
	before, err := store.Open(ctx, store.Config{URL: url})
	require.NoError(t, err)
	defer before.Close()
	var exists bool
	require.NoError(t, before.Pool.QueryRow(ctx, `SELECT to_regproc('oakallow_charge_calls') IS NOT NULL`).Scan(&exists))
	require.False(t, exists, "rolled back")
	now := time.Now().UTC().Truncate(time.Microsecond)
	seedTeam(t, before, now)
	grant(t, before, "grant_paid", "purchased", 5000, nil, now)
	charged, err := before.RecordAuditOne(ctx, oneOf(teamCall("team_1", now), 5000, now, true, 0))
	require.NoError(t, err)
	require.True(t, charged)
	batch, err := before.RecordAuditBatch(ctx, batchOf([]store.Entry{teamCall("team_1", now)}, 5000, now, true, 0))
	require.NoError(t, err)
	require.Equal(t, []bool{false}, batch)
	before.Close()

	_, err = store.Migrate(ctx, url)
	require.NoError(t, err)
	s, err := store.Open(ctx, store.Config{URL: url})
	require.NoError(t, err)
	defer s.Close()
	grant(t, s, "grant_more", "purchased", 5000, nil, now)
	batch, err = s.RecordAuditBatch(ctx, batchOf([]store.Entry{teamCall("team_1", now), teamCall("team_1", now)}, 5000, now, true, 0))
	require.NoError(t, err)
	require.Equal(t, []bool{true, false}, batch)
	bal, err := s.GetTeamBalance(ctx, "team_1")
	require.NoError(t, err)
	require.Equal(t, []int64{2, 10000, 0}, []int64{bal.BilledCalls, bal.BilledMicros, bal.PurchasedMicros})
}

// chargeMigration is the migration that defines the charge once.
const chargeMigration = "031_charge_calls.sql"
