package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
	"oakallow/store"
)

// TestMigrationBackfillsDecidedAtOfExpiredApprovals: approvals that expired before the
// projection set decided_at get it from the migration — the time they expired — and no
// other approval changes.
func TestMigrationBackfillsDecidedAtOfExpiredApprovals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := devtest.EmptyDatabase(t)
	require.NoError(t, store.MigrateBefore(ctx, url, "011_expired_decided_at.sql"))

	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := conn.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
	created := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	expiredAt := created.Add(time.Hour)
	decidedAt := created.Add(10 * time.Minute)
	exec(`INSERT INTO teams (id, name, created_at) VALUES ('team_1', 'Team', $1)`, created)
	exec(`INSERT INTO orgs (id, team_id, name, created_at, updated_at) VALUES ('org_1', 'team_1', 'Org', $1, $1)`, created)
	exec(`INSERT INTO tools (id, org_id, name, created_at, updated_at) VALUES ('tool_1', 'org_1', 'deploy', $1, $1)`, created)
	approval := func(id, status string, updated time.Time, decided *time.Time) {
		t.Helper()
		exec(`INSERT INTO approvals (id, org_id, reference, tool_id, tool_name, reasoning, status, level, two_levels,
			level_timeout_seconds, expires_at, created_at, updated_at, decided_at, workflow_id, created_by_kind, created_by_id)
			VALUES ($1, 'org_1', $1, 'tool_1', 'deploy', 'r', $2, 1, false, 3600, $3, $4, $5, $6, $1, 'api_key', 'key_1')`,
			id, status, expiredAt, created, updated, decided)
	}
	approval("REF-EXPIRED", "expired", expiredAt, nil)
	approval("REF-PENDING", "pending", created, nil)
	approval("REF-APPROVED", "approved", decidedAt, &decidedAt)
	approval("REF-EXPIRED-SET", "expired", expiredAt, &decidedAt) // already had one: kept

	_, err = store.Migrate(ctx, url)
	require.NoError(t, err)
	for id, want := range map[string]*time.Time{
		"REF-EXPIRED": &expiredAt, "REF-PENDING": nil, "REF-APPROVED": &decidedAt, "REF-EXPIRED-SET": &decidedAt,
	} {
		var got *time.Time
		require.NoError(t, conn.QueryRow(ctx, `SELECT decided_at FROM approvals WHERE id = $1`, id).Scan(&got))
		if want == nil {
			require.Nil(t, got, id)
			continue
		}
		require.NotNil(t, got, id)
		require.True(t, want.Equal(*got), "%s: decided_at %s, want %s", id, got, want)
	}
}
