package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
	"oakallow/store"
)

func TestMain(m *testing.M) { devtest.Main(m) }

func tableCount(t *testing.T, url string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var n int
	require.NoError(t, conn.QueryRow(context.Background(),
		"SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&n))
	return n
}

func TestMigrateAppliesOnceAndIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := devtest.EmptyDatabase(t)

	before, err := store.Status(ctx, url)
	require.NoError(t, err)
	require.Equal(t, int32(0), before.Current)
	require.True(t, before.Pending())

	st, err := store.Migrate(ctx, url)
	require.NoError(t, err)
	require.Equal(t, st.Latest, st.Current)
	require.False(t, st.Pending())
	tables := tableCount(t, url)
	require.Greater(t, tables, 15)

	again, err := store.Migrate(ctx, url)
	require.NoError(t, err)
	require.Equal(t, st, again)
	require.Equal(t, tables, tableCount(t, url))
}

func TestConcurrentMigratorsDoNotCollide(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := devtest.EmptyDatabase(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = store.Migrate(ctx, url) })
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "migrator %d", i)
	}
	st, err := store.Status(ctx, url)
	require.NoError(t, err)
	require.False(t, st.Pending())
}

func TestErrorsAreTranslated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	require.NoError(t, s.CreateTeam(ctx, store.CreateTeamParams{ID: "team_1", Name: "t", CreatedAt: now}))
	require.NoError(t, s.CreateOrg(ctx, store.CreateOrgParams{ID: "org_1", TeamID: "team_1", Name: "o", CreatedAt: now}))

	_, err := s.CreateTenant(ctx, store.CreateTenantParams{ID: "ten_1", OrgID: "org_1", Name: "acme", CreatedAt: now})
	require.NoError(t, err)

	t.Run("unique violation is ErrConflict", func(t *testing.T) {
		_, err := s.CreateTenant(ctx, store.CreateTenantParams{ID: "ten_2", OrgID: "org_1", Name: "acme", CreatedAt: now})
		require.ErrorIs(t, err, store.ErrConflict)
		var dbErr *store.DBError
		require.True(t, errors.As(err, &dbErr))
		require.Equal(t, "tenants_org_id_name_key", dbErr.Constraint)
	})
	t.Run("no rows is ErrNotFound", func(t *testing.T) {
		_, err := s.GetTenant(ctx, store.GetTenantParams{OrgID: "org_1", Ref: "nope"})
		require.ErrorIs(t, err, store.ErrNotFound)
	})
	t.Run("missing reference is ErrReferenced", func(t *testing.T) {
		_, err := s.CreateTenant(ctx, store.CreateTenantParams{ID: "ten_3", OrgID: "org_missing", Name: "x", CreatedAt: now})
		require.ErrorIs(t, err, store.ErrReferenced)
	})
	t.Run("rules with null key parts still collide", func(t *testing.T) {
		method := "read"
		_, err := s.CreateRule(ctx, store.CreateRuleParams{ID: "rule_1", OrgID: "org_1", Method: &method, Permission: "allowed", CreatedAt: now})
		require.NoError(t, err)
		_, err = s.CreateRule(ctx, store.CreateRuleParams{ID: "rule_2", OrgID: "org_1", Method: &method, Permission: "disabled", CreatedAt: now})
		require.ErrorIs(t, err, store.ErrConflict)
	})
	t.Run("check violation is ErrInvalid", func(t *testing.T) {
		_, err := s.CreateRule(ctx, store.CreateRuleParams{ID: "rule_3", OrgID: "org_1", Permission: "maybe", CreatedAt: now})
		require.ErrorIs(t, err, store.ErrInvalid)
	})
	t.Run("audit log is append-only", func(t *testing.T) {
		require.NoError(t, s.InsertAuditEvent(ctx, store.InsertAuditEventParams{
			ID: "evt_1", OrgID: "org_1", TeamID: "team_1", OccurredAt: now, ActorKind: "system", ActorID: "test", Kind: "test", Details: []byte("{}"),
		}))
		_, err := s.Pool.Exec(ctx, "UPDATE audit_events SET outcome = 'x'")
		require.Error(t, err)
		_, err = s.Pool.Exec(ctx, "DELETE FROM audit_events")
		require.Error(t, err)
	})
}

// TestUnreachableDatabaseIsErrUnavailable: a database that cannot be reached, or that
// drops its connections, is ErrUnavailable (callers answer "retry later"), not an
// unclassified error; the caller's own cancellation stays a context error; and the
// pool recovers when the database is back.
func TestUnreachableDatabaseIsErrUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, proxy := devtest.ProxiedDatabase(t)
	s, err := store.Open(ctx, store.Config{URL: url, ConnectTimeout: time.Second})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	require.NoError(t, s.CreateTeam(ctx, store.CreateTeamParams{ID: "team_1", Name: "t", CreatedAt: now}))
	require.NoError(t, s.CreateOrg(ctx, store.CreateOrgParams{ID: "org_1", TeamID: "team_1", Name: "o", CreatedAt: now}))

	// Hold a connection open across the cut, so a statement on a reset connection is
	// exercised as well as a refused dial.
	conn, err := s.Pool.Acquire(ctx)
	require.NoError(t, err)
	proxy.Cut()
	_, err = store.New(store.DB(conn)).GetOrg(ctx, "org_1")
	require.ErrorIs(t, err, store.ErrUnavailable, "statement on a reset connection: %v", err)
	conn.Release()
	_, err = s.GetOrg(ctx, "org_1")
	require.ErrorIs(t, err, store.ErrUnavailable, "refused dial: %v", err)
	err = s.InTx(ctx, func(pgx.Tx, *store.Queries) error { return nil })
	require.ErrorIs(t, err, store.ErrUnavailable, "begin: %v", err)

	// A connection the driver closed earlier (after a reset, or a statement
	// cancelled mid-flight) fails with "conn closed" before anything is
	// sent: the same outage, not an unexpected error.
	_, err = store.New(store.DB(closedConn{})).GetOrg(ctx, "org_1")
	require.ErrorIs(t, err, store.ErrUnavailable, "statement on a closed connection: %v", err)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.GetOrg(cctx, "org_1")
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, store.ErrUnavailable)

	proxy.Restore()
	require.Eventually(t, func() bool {
		_, err := s.GetOrg(ctx, "org_1")
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
}

// closedConn is a connection the driver has already closed.
type closedConn struct{}

func (closedConn) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, fmt.Errorf("exec: %w", pgconn.ErrConnClosed)
}

func (closedConn) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return nil, fmt.Errorf("query: %w", pgconn.ErrConnClosed)
}

func (c closedConn) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	_, err := c.Query(ctx, sql, args...)
	return errRow{err}
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
