package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
	"oakallow/store"
)

func seedTeam(t *testing.T, s *store.Store, now time.Time) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, s.CreateTeam(ctx, store.CreateTeamParams{ID: "team_1", Name: "t", CreatedAt: now}))
	require.NoError(t, s.CreateOrg(ctx, store.CreateOrgParams{ID: "org_1", TeamID: "team_1", Name: "o", CreatedAt: now}))
}

func grant(t *testing.T, s *store.Store, id, kind string, micros int64, expires *time.Time, now time.Time) {
	t.Helper()
	_, err := s.CreateCreditGrant(context.Background(), store.CreateCreditGrantParams{
		ID: id, TeamID: "team_1", Kind: kind, AmountMicros: micros, ExpiresAt: expires, Source: id, CreatedAt: now})
	require.NoError(t, err)
}

func checkEntry(id string, billable bool) store.Entry {
	return store.Entry{Billable: billable, Event: store.AuditRecord{
		ID: id, OrgID: "org_1", TeamID: "team_1", OccurredAt: time.Now(), ActorKind: "api_key", ActorID: "key_1",
		Kind: "permission.check", Outcome: "allowed", Details: []byte(`{}`)}}
}

func TestRecorderChargesExactlyUnderConcurrency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	now := time.Now()
	seedTeam(t, s, now)
	future := now.Add(time.Hour)
	grant(t, s, "grant_free", "free", 3*5000, &future, now)
	grant(t, s, "grant_paid", "purchased", 7*5000+2500, nil, now) // 7.5 calls: the half is never spent

	rec, err := store.NewRecorder(s, store.RecorderConfig{MaxBatch: 4})
	require.NoError(t, err)
	defer rec.Stop()

	const calls = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for i := range calls {
		wg.Go(func() {
			err := rec.Record(ctx, checkEntry(store.NewID("chk"), true))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrInsufficientCredits):
				refused++
			default:
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	require.Equal(t, 10, ok)
	require.Equal(t, calls-10, refused)

	totals, err := s.BillingTotals(ctx, "team_1")
	require.NoError(t, err)
	require.Equal(t, int64(10), totals.Calls)
	require.Equal(t, int64(50000), totals.CostMicros)
	bal, err := s.GetTeamBalance(ctx, "team_1")
	require.NoError(t, err)
	require.Equal(t, int64(10), bal.BilledCalls)
	require.Equal(t, int64(50000), bal.BilledMicros)
	require.Zero(t, bal.FreeMicros, "free credit is spent first")
	require.Equal(t, int64(2500), bal.PurchasedMicros, "the half call's worth is never spent")

	var audited, refusedRows int
	require.NoError(t, s.Pool.QueryRow(ctx, "SELECT count(*) FROM audit_events").Scan(&audited))
	require.NoError(t, s.Pool.QueryRow(ctx, "SELECT count(*) FROM audit_events WHERE outcome = 'insufficient_credits' AND NOT billable").Scan(&refusedRows))
	require.Equal(t, calls, audited, "every call is audited, paid or not")
	require.Equal(t, calls-10, refusedRows)
}

func TestRecorderSpendsFreeCreditFirstAndIgnoresExpired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	now := time.Now()
	seedTeam(t, s, now)
	past, future := now.Add(-time.Minute), now.Add(time.Hour)
	grant(t, s, "grant_expired", "free", 100000, &past, now.Add(-time.Hour))
	// Expired free credit is not spendable even before newer credit arrives.
	rec0, err := store.NewRecorder(s, store.RecorderConfig{})
	require.NoError(t, err)
	require.ErrorIs(t, rec0.Record(ctx, checkEntry("chk_0", true)), store.ErrInsufficientCredits)
	rec0.Stop()
	grant(t, s, "grant_paid", "purchased", 100000, nil, now)
	grant(t, s, "grant_free", "free", 5000, &future, now)

	rec, err := store.NewRecorder(s, store.RecorderConfig{})
	require.NoError(t, err)
	defer rec.Stop()
	require.NoError(t, rec.Record(ctx, checkEntry("chk_a", true)))
	require.NoError(t, rec.Record(ctx, checkEntry("chk_b", true)))
	require.NoError(t, rec.Record(ctx, checkEntry("chk_c", false)))

	bal, err := s.GetTeamBalance(ctx, "team_1")
	require.NoError(t, err)
	require.Zero(t, bal.FreeMicros, "the unexpired free credit went first")
	require.Equal(t, int64(95000), bal.PurchasedMicros, "then purchased; the expired free credit was never spendable")
	totals, err := s.BillingTotals(ctx, "team_1")
	require.NoError(t, err)
	require.Equal(t, int64(2), totals.Calls)
}

func TestRecorderStopCommitsQueuedEntries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	seedTeam(t, s, time.Now())
	rec, err := store.NewRecorder(s, store.RecorderConfig{})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { require.NoError(t, rec.Record(ctx, checkEntry(store.NewID("chk"), false))) })
	}
	wg.Wait()
	rec.Stop()
	require.ErrorIs(t, rec.Record(ctx, checkEntry("chk_late", false)), store.ErrRecorderStopped)
	var n int
	require.NoError(t, s.Pool.QueryRow(ctx, "SELECT count(*) FROM audit_events").Scan(&n))
	require.Equal(t, 50, n)
}

func TestRecorderIsolatesAnEntryPostgresRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	seedTeam(t, s, time.Now())
	grant(t, s, "grant_paid", "purchased", 100*5000, nil, time.Now())
	// One committer and a held queue, so the bad entry shares a batch.
	rec, err := store.NewRecorder(s, store.RecorderConfig{Committers: 1})
	require.NoError(t, err)
	defer rec.Stop()
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range 20 {
		wg.Go(func() {
			e := checkEntry(store.NewID("chk"), true)
			if i == 7 {
				e.Event.Tool = "bad\x00tool"
			}
			errs[i] = rec.Record(ctx, e)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i == 7 {
			require.ErrorIs(t, err, store.ErrInvalid)
			continue
		}
		require.NoError(t, err, "entry %d", i)
	}
	totals, err := s.BillingTotals(ctx, "team_1")
	require.NoError(t, err)
	require.Equal(t, int64(19), totals.Calls, "the refused entry is neither recorded nor billed")
}

// TestRecorderResolvesALostCommit: when the connection breaks after a group commit was
// sent, the recorder cannot tell from the error whether it committed. It looks for the
// batch's rows once the database answers again, so a batch that committed is reported
// as committed (its callers get their answers and are billed once), and one that never
// reached the database is reported as failed (nothing billed).
func TestRecorderResolvesALostCommit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// sent: the commit reaches the database but its answer is dropped; otherwise the
		// database is unreachable before the commit is sent.
		sent bool
		// stuck: the commit waits on the team's balance row (held by the test) when its
		// connection breaks, so it could still commit once the row is free.
		stuck bool
		// pooler: the proxy reports another live server process as the
		// connection's, as a pooler does; resolution must not end it.
		pooler      bool
		wantErr     error
		wantRows    int
		wantCharged int64
	}{
		{name: "committed, answer lost: reported committed and billed once", sent: true, wantRows: 1, wantCharged: 1},
		{name: "refused before it was sent: failed, nothing billed", wantErr: store.ErrUnavailable},
		{name: "still running when the connection broke: ended, failed, nothing billed ever",
			sent: true, stuck: true, wantErr: store.ErrUnavailable},
		{name: "behind a pooler, committed, answer lost: reported committed, no other client hurt",
			sent: true, pooler: true, wantRows: 1, wantCharged: 1},
		{name: "behind a pooler, still running: ended, failed, nothing billed ever, no other client hurt",
			sent: true, stuck: true, pooler: true, wantErr: store.ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			url, proxy := devtest.ProxiedDatabase(t)
			// Another client of the database; behind a pooler the id the recorder's
			// connection reports may well be its server process.
			bystander, err := pgx.Connect(ctx, proxy.DirectURL())
			require.NoError(t, err)
			t.Cleanup(func() { bystander.Close(context.Background()) })
			if tc.pooler {
				var pid uint32
				require.NoError(t, bystander.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
				proxy.ReportBackendPID(pid)
			}
			s, err := store.Open(ctx, store.Config{URL: url, MaxConns: 2, ConnectTimeout: time.Second})
			require.NoError(t, err)
			t.Cleanup(s.Close)
			// Prepare the commit statement on both connections, so the commit under test
			// goes out in one write (bind, execute, sync) whichever connection it gets,
			// and runs even though its answer will be dropped.
			var conns []*pgxpool.Conn
			for range 2 {
				c, err := s.Pool.Acquire(ctx)
				require.NoError(t, err)
				conns = append(conns, c)
			}
			for _, c := range conns {
				_, err := store.New(store.DB(c)).RecordAuditBatch(ctx, store.RecordAuditBatchParams{
					Ids: []string{}, OrgIds: []string{}, TeamIds: []string{}, OccurredAt: []time.Time{},
					ActorKinds: []string{}, ActorIds: []string{}, Kinds: []string{}, Subjects: []string{},
					Outcomes: []string{}, Tools: []string{}, Tenants: []string{}, Billable: []bool{},
					Details: []json.RawMessage{}, Cost: 5000, Now: time.Now()})
				require.NoError(t, err)
				c.Release()
			}
			direct, err := store.Open(ctx, store.Config{URL: proxy.DirectURL()})
			require.NoError(t, err)
			t.Cleanup(direct.Close)
			now := time.Now()
			seedTeam(t, s, now)
			grant(t, s, "grant_paid", "purchased", 100*5000, nil, now)
			rec, err := store.NewRecorder(s, store.RecorderConfig{})
			require.NoError(t, err)
			t.Cleanup(rec.Stop)
			require.NoError(t, rec.Record(ctx, checkEntry(store.NewID("chk"), true)), "warm-up")

			id := store.NewID("chk")
			var lock pgx.Tx
			if tc.stuck {
				lock, err = direct.Pool.Begin(ctx)
				require.NoError(t, err)
				_, err = lock.Exec(ctx, `SELECT 1 FROM team_balances WHERE team_id = 'team_1' FOR UPDATE`)
				require.NoError(t, err)
			}
			if tc.sent {
				proxy.DropReplies()
			} else {
				proxy.Cut()
			}
			result := make(chan error, 1)
			go func() { result <- rec.Record(ctx, checkEntry(id, true)) }()
			switch {
			case tc.stuck:
				require.Eventually(t, func() bool {
					var n int
					require.NoError(t, direct.Pool.QueryRow(ctx,
						`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n))
					return n == 1
				}, 10*time.Second, 10*time.Millisecond, "the commit waits on the balance row")
				proxy.Cut()
			case tc.sent:
				require.Eventually(t, func() bool {
					var n int
					require.NoError(t, direct.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE id = $1`, id).Scan(&n))
					return n == 1
				}, 10*time.Second, 10*time.Millisecond, "the batch commits although its answer is dropped")
				proxy.Cut() // the connection breaks with the answer still owed
			}
			time.Sleep(300 * time.Millisecond) // the recorder is looking while the database is away
			proxy.Restore()
			select {
			case err := <-result:
				if tc.wantErr != nil {
					require.ErrorIs(t, err, tc.wantErr)
				} else {
					require.NoError(t, err)
				}
			case <-time.After(store.ResolveTimeout + 5*time.Second):
				t.Fatal("Record did not return")
			}
			if lock != nil {
				// The row is free now: a commit left running would go through here.
				require.NoError(t, lock.Commit(ctx))
				time.Sleep(200 * time.Millisecond)
			}
			_, err = bystander.Exec(ctx, `SELECT 1`)
			require.NoError(t, err, "resolving the lost commit ended another client's server process")
			var rows int
			require.NoError(t, direct.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE id = $1`, id).Scan(&rows))
			require.Equal(t, tc.wantRows, rows)
			bal, err := direct.GetTeamBalance(ctx, "team_1")
			require.NoError(t, err)
			require.Equal(t, 1+tc.wantCharged, bal.BilledCalls, "the warm-up and, if it committed, this call")
		})
	}
}

// TestFencedBatchNeverCommits: once the recorder has fenced a lost batch and
// found it absent, the batch cannot commit later — e.g. a statement a pooler
// still had queued when the client's connection broke.
func TestFencedBatchNeverCommits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		commit func(*store.Store, store.AuditRecord) error
	}{
		{"a batch (RecordAuditBatch)", recordBatchOf},
		{"one entry (RecordAuditOne)", recordOne},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := devtest.Store(t)
			seedTeam(t, s, time.Now())
			e := checkEntry(store.NewID("chk"), false).Event
			require.NoError(t, s.FenceAuditBatch(t.Context(), e.ID))
			require.ErrorIs(t, tc.commit(s, e), store.ErrConflict)
			rows, err := s.AuditBillableByIDs(t.Context(), []string{e.ID})
			require.NoError(t, err)
			require.Empty(t, rows, "the fenced batch left no audit row")
		})
	}
}

// A one-entry commit fences itself with a lock rather than a row, and reads
// the recorder's fence once it holds that lock: one that starts while the
// recorder is fencing its id waits for the fence's transaction, sees the
// fence and fails, and one that runs when the recorder fences makes the
// recorder wait for its end. Either way the recorder's look-up afterwards is
// final.
func TestOneEntryCommitAndFenceOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	seedTeam(t, s, time.Now())
	grant(t, s, "grant_paid", "purchased", 100*5000, nil, time.Now())
	waitingOnLock := func(kind string) bool {
		var n int
		require.NoError(t, s.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = $1`, kind).Scan(&n))
		return n == 1
	}

	t.Run("fence first: the commit waits, then fails", func(t *testing.T) {
		e := checkEntry(store.NewID("chk"), true).Event
		fence, err := s.Pool.Begin(ctx)
		require.NoError(t, err)
		defer fence.Rollback(ctx) //nolint:errcheck
		require.NoError(t, store.New(store.DB(fence)).FenceAuditBatch(ctx, e.ID))
		result := make(chan error, 1)
		go func() { result <- recordOne(s, e) }()
		require.Eventually(t, func() bool { return waitingOnLock("advisory") }, 10*time.Second, 10*time.Millisecond,
			"the commit waits for the fence's transaction")
		require.NoError(t, fence.Commit(ctx))
		select {
		case err := <-result:
			require.ErrorIs(t, err, store.ErrConflict)
		case <-time.After(10 * time.Second):
			t.Fatal("the commit did not return")
		}
		rows, err := s.AuditBillableByIDs(ctx, []string{e.ID})
		require.NoError(t, err)
		require.Empty(t, rows)
	})

	t.Run("commit first: the fence waits for it, then finds it", func(t *testing.T) {
		e := checkEntry(store.NewID("chk"), true).Event
		row, err := s.Pool.Begin(ctx) // holds the balance row: the commit stops there, holding its lock
		require.NoError(t, err)
		defer row.Rollback(ctx) //nolint:errcheck
		_, err = row.Exec(ctx, `SELECT 1 FROM team_balances WHERE team_id = 'team_1' FOR UPDATE`)
		require.NoError(t, err)
		committed := make(chan error, 1)
		go func() { committed <- recordOne(s, e) }()
		require.Eventually(t, func() bool { return waitingOnLock("transactionid") }, 10*time.Second, 10*time.Millisecond,
			"the commit waits on the balance row")
		fenced := make(chan error, 1)
		go func() { fenced <- s.FenceAuditBatch(ctx, e.ID) }()
		require.Eventually(t, func() bool { return waitingOnLock("advisory") }, 10*time.Second, 10*time.Millisecond,
			"the fence waits for the commit")
		select {
		case err := <-fenced:
			t.Fatalf("the fence returned while the commit ran: %v", err)
		default:
		}
		require.NoError(t, row.Commit(ctx))
		require.NoError(t, <-committed)
		require.NoError(t, <-fenced)
		rows, err := s.AuditBillableByIDs(ctx, []string{e.ID})
		require.NoError(t, err)
		require.Len(t, rows, 1)
		require.True(t, rows[0].Billable)
	})
}

// The one-entry commit's fence look-up needs READ COMMITTED's statement
// snapshots; in a transaction that keeps one snapshot it refuses to run.
func TestOneEntryCommitRefusesASingleSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	seedTeam(t, s, time.Now())
	e := checkEntry(store.NewID("chk"), false).Event
	tx, err := s.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	_, err = store.New(store.DB(tx)).RecordAuditOne(ctx, recordOneParams(e))
	require.ErrorContains(t, err, "needs READ COMMITTED")
}

func recordBatchOf(s *store.Store, e store.AuditRecord) error {
	_, err := s.RecordAuditBatch(context.Background(), store.RecordAuditBatchParams{
		Ids: []string{e.ID}, OrgIds: []string{e.OrgID}, TeamIds: []string{e.TeamID}, OccurredAt: []time.Time{e.OccurredAt},
		ActorKinds: []string{e.ActorKind}, ActorIds: []string{e.ActorID}, Kinds: []string{e.Kind}, Subjects: []string{""},
		Outcomes: []string{e.Outcome}, Tools: []string{""}, Tenants: []string{""}, Billable: []bool{false},
		Details: []json.RawMessage{e.Details}, Cost: 5000, Now: e.OccurredAt})
	return err
}

func recordOneParams(e store.AuditRecord) store.RecordAuditOneParams {
	return store.RecordAuditOneParams{ID: e.ID, OrgID: e.OrgID, TeamID: e.TeamID, OccurredAt: e.OccurredAt,
		ActorKind: e.ActorKind, ActorID: e.ActorID, Kind: e.Kind, Outcome: e.Outcome, Billable: true,
		Details: e.Details, Cost: 5000, Now: e.OccurredAt, Enforce: true}
}

func recordOne(s *store.Store, e store.AuditRecord) error {
	_, err := s.RecordAuditOne(context.Background(), recordOneParams(e))
	return err
}

// ObserveRecord sees every Record once, after its commit, with its outcome
// already decided — also a refused one — and a duration covering the commit.
func TestRecorderObserveRecordTimesEveryCall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	seedTeam(t, s, time.Now())
	var mu sync.Mutex
	var took []time.Duration
	rec, err := store.NewRecorder(s, store.RecorderConfig{ObserveRecord: func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		took = append(took, d)
	}})
	require.NoError(t, err)
	defer rec.Stop()
	require.NoError(t, rec.Record(ctx, checkEntry("chk_free", false)))
	require.ErrorIs(t, rec.Record(ctx, checkEntry("chk_unpaid", true)), store.ErrInsufficientCredits)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, took, 2)
	for _, d := range took {
		require.Positive(t, d)
	}
}
