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

// migratedBefore is a new database migrated up to the migration named
// next, its URL, a connection to it, and a function that runs a statement
// on that connection.
func migratedBefore(t *testing.T, next string) (string, *pgx.Conn, func(sql string, args ...any)) {
	t.Helper()
	ctx := context.Background()
	url := devtest.EmptyDatabase(t)
	require.NoError(t, store.MigrateBefore(ctx, url, next))
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return url, conn, func(sql string, args ...any) {
		t.Helper()
		_, err := conn.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
}

// TestMigrationBackfillsDecidedAtOfExpiredApprovals: approvals that expired before the
// projection set decided_at get it from the migration — the time they expired — and no
// other approval changes.
func TestMigrationBackfillsDecidedAtOfExpiredApprovals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, conn, exec := migratedBefore(t, "011_expired_decided_at.sql")
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

	_, err := store.Migrate(ctx, url)
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

// TestMigrationRecordsWhenOAuthGrantsExpire: 036 gives each grant the time
// it stops working — its latest token's or code's expiry — and never an
// earlier one than the upgrade, so the sweep deletes no grant that can
// still be refreshed, and none whose tokens were already swept (when they
// expired is unknown) sooner than 30 days after the upgrade.
func TestMigrationRecordsWhenOAuthGrantsExpire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, conn, exec := migratedBefore(t, "036_oauth_grant_expiry.sql")
	now := time.Now()
	created := now.Add(-100 * 24 * time.Hour)
	exec(`INSERT INTO teams (id, name, created_at) VALUES ('team_1', 'Team', $1)`, created)
	exec(`INSERT INTO orgs (id, team_id, name, created_at, updated_at) VALUES ('org_1', 'team_1', 'Org', $1, $1)`, created)
	exec(`INSERT INTO users (id, email, created_at) VALUES ('usr_1', 'a@example.com', $1)`, created)
	exec(`INSERT INTO oauth_clients (id, redirect_uris, created_at) VALUES ('cli_1', '{http://127.0.0.1/cb}', $1)`, created)
	grant := func(id string) {
		t.Helper()
		exec(`INSERT INTO oauth_grants (id, client_id, user_id, org_id, team_id, scopes, resource, created_at)
			VALUES ($1, 'cli_1', 'usr_1', 'org_1', 'team_1', '{mcp:read}', 'r', $2)`, id, created)
	}
	token := func(grant, kind string, expires time.Time) {
		t.Helper()
		exec(`INSERT INTO oauth_tokens (token_hash, grant_id, kind, scopes, created_at, expires_at)
			VALUES (sha256(($1 || $2 || $5)::bytea), $1, $2, '{mcp:read}', $4, $3)`, grant, kind, expires, created, expires.String())
	}
	refreshable := now.Add(20 * 24 * time.Hour)
	grant("grt_refreshable") // rotated: the used token expires sooner
	token("grt_refreshable", "refresh", now.Add(5*24*time.Hour))
	token("grt_refreshable", "refresh", refreshable)
	token("grt_refreshable", "access", now.Add(time.Hour))
	grant("grt_swept")   // its tokens expired over an hour ago: swept
	grant("grt_expired") // expired half an hour ago, not swept yet
	token("grt_expired", "refresh", now.Add(-30*time.Minute))
	codeExpiry := now.Add(time.Minute)
	grant("grt_code") // consented just now, its code not exchanged yet
	exec(`INSERT INTO oauth_codes (code_hash, grant_id, redirect_uri, code_challenge, created_at, expires_at)
		VALUES (sha256('c'::bytea), 'grt_code', 'http://127.0.0.1/cb', 'x', $1, $2)`, now, codeExpiry)

	before := time.Now()
	_, err := store.Migrate(ctx, url)
	require.NoError(t, err)
	after := time.Now()
	expiry := func(id string) time.Time {
		t.Helper()
		var at time.Time
		require.NoError(t, conn.QueryRow(ctx, `SELECT expires_at FROM oauth_grants WHERE id = $1`, id).Scan(&at))
		return at
	}
	require.WithinDuration(t, refreshable, expiry("grt_refreshable"), time.Millisecond)
	require.WithinDuration(t, codeExpiry, expiry("grt_code"), time.Millisecond)
	for _, id := range []string{"grt_swept", "grt_expired"} {
		at := expiry(id)
		require.False(t, at.Before(before.Add(-time.Second)) || at.After(after.Add(time.Second)), "%s: the upgrade's time, not %s", id, at)
	}
	_, err = conn.Exec(ctx, `INSERT INTO oauth_grants (id, client_id, user_id, org_id, team_id, scopes, resource, created_at)
		VALUES ('grt_new', 'cli_1', 'usr_1', 'org_1', 'team_1', '{mcp:read}', 'r', now())`)
	require.ErrorContains(t, err, "expires_at", "every grant says when it stops working")
}
