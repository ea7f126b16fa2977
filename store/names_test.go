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

// Migration 009 brings names stored before normalisation into their normal
// form, and refuses, changing nothing, where it would have to choose.
func TestNormalizeStoredNames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	// seed returns a migrated database holding one org with the rows add
	// writes, as an older binary stored them (names as sent).
	seed := func(t *testing.T, add func(s *store.Store)) (string, *store.Store) {
		url := devtest.Database(t)
		s, err := store.Open(ctx, store.Config{URL: url})
		require.NoError(t, err)
		t.Cleanup(s.Close)
		require.NoError(t, s.CreateTeam(ctx, store.CreateTeamParams{ID: "team_1", Name: "t", CreatedAt: now}))
		require.NoError(t, s.CreateOrg(ctx, store.CreateOrgParams{ID: "org_1", TeamID: "team_1", Name: "o", CreatedAt: now}))
		add(s)
		return url, s
	}
	tenant := func(s *store.Store, id, name string) {
		_, err := s.CreateTenant(ctx, store.CreateTenantParams{ID: id, OrgID: "org_1", Name: name, CreatedAt: now})
		require.NoError(t, err)
	}
	resource := func(s *store.Store, id, name string) {
		_, err := s.CreateResource(ctx, store.CreateResourceParams{ID: id, OrgID: "org_1", Name: name, CreatedAt: now})
		require.NoError(t, err)
	}
	rule := func(s *store.Store, id, method, perm string, at time.Time) {
		_, err := s.CreateRule(ctx, store.CreateRuleParams{ID: id, OrgID: "org_1", Method: &method, Permission: perm, CreatedAt: at})
		require.NoError(t, err)
	}
	// run runs the migration body in a transaction, as the migrator does.
	run := func(t *testing.T, url string) error {
		conn, err := pgx.Connect(ctx, url)
		require.NoError(t, err)
		defer conn.Close(ctx)
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		if err := store.NormalizeStoredNames(ctx, conn); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	names := func(s *store.Store, query string) []string {
		rows, err := s.Pool.Query(ctx, query)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return out
	}

	t.Run("normalises names and merges equal rules", func(t *testing.T) {
		t.Parallel()
		url, s := seed(t, func(s *store.Store) {
			tenant(s, "ten_1", "Acme Corp ")
			tenant(s, "ten_2", "globex")
			resource(s, "res_1", "DB\u00a0Main")
			rule(s, "rule_1", "DELETE", "disabled", now)
			rule(s, "rule_2", "delete", "disabled", now.Add(time.Second))
			rule(s, "rule_3", "Send", "requires_approval", now)
			rule(s, "rule_4", "read", "allowed", now)
		})
		require.NoError(t, run(t, url))
		require.Equal(t, []string{"acme corp", "globex"}, names(s, "SELECT name FROM tenants ORDER BY id"))
		require.Equal(t, []string{"db main"}, names(s, "SELECT name FROM resources ORDER BY id"))
		require.Equal(t, []string{"rule_1 delete disabled", "rule_3 send requires_approval", "rule_4 read allowed"},
			names(s, "SELECT id || ' ' || method || ' ' || permission FROM rules ORDER BY id"))
		// The older of two equal rules is kept; the newer's deletion is audited.
		require.Equal(t, []string{"rule_2"}, names(s,
			"SELECT subject FROM audit_events WHERE kind = 'rule.deleted' AND actor_id = 'migration:009_normalize_names.sql'"))
		// Normal names are a fixed point: a second run changes nothing.
		require.NoError(t, run(t, url))
		require.Len(t, names(s, "SELECT id FROM audit_events"), 1)
	})

	for _, tc := range []struct {
		name string
		add  func(s *store.Store)
		says []string
	}{
		{"two tenants become one", func(s *store.Store) {
			tenant(s, "ten_1", "Acme")
			tenant(s, "ten_2", "ACME ")
		}, []string{`tenants ten_1 "Acme" and ten_2 "ACME " (org org_1) would both be named "acme"`}},
		{"two resources become one", func(s *store.Store) {
			resource(s, "res_1", "db")
			resource(s, "res_2", "DB")
		}, []string{`resources res_1 "db" and res_2 "DB"`}},
		{"two rules with different permissions", func(s *store.Store) {
			rule(s, "rule_1", "DELETE", "disabled", now)
			rule(s, "rule_2", "delete", "allowed", now.Add(time.Second))
		}, []string{`rules rule_1 (method "DELETE", disabled) and rule_2 (method "delete", allowed)`}},
		{"an invisible character", func(s *store.Store) {
			tenant(s, "ten_1", "acme\u200b")
			rule(s, "rule_1", "DELETE\u202e", "disabled", now)
		}, []string{`tenant ten_1 (org org_1) "acme\u200b"`, "U+200B", `rule rule_1 (org org_1) method`, "U+202E"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url, s := seed(t, func(s *store.Store) {
				tc.add(s)
				tenant(s, "ten_9", "Untouched")
			})
			before := names(s, "SELECT name FROM tenants UNION ALL SELECT name FROM resources UNION ALL SELECT method FROM rules ORDER BY 1")
			err := run(t, url)
			require.Error(t, err)
			for _, say := range tc.says {
				require.Contains(t, err.Error(), say)
			}
			require.Equal(t, before, names(s, "SELECT name FROM tenants UNION ALL SELECT name FROM resources UNION ALL SELECT method FROM rules ORDER BY 1"),
				"a refused migration changes nothing")
		})
	}
}
