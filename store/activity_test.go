package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
	"oakallow/store"
)

// seedActivity writes n audit entries of org (team-level when org is "")
// in team, in one statement; ids are prefix and a number.
func seedActivity(t *testing.T, s *store.Store, prefix, org, team, kind string, n int) {
	t.Helper()
	_, err := s.Pool.Exec(context.Background(), `INSERT INTO audit_events (id, org_id, team_id, occurred_at, actor_kind, actor_id, kind)
SELECT $1 || g, $2, $3, now(), 'user', 'usr_1', $4 FROM generate_series(1, $5::int) g`, prefix, org, team, kind, n)
	require.NoError(t, err)
}

// TestListAuditEventsMergesTheTeamLevelEntries: with WithTeam, a page holds
// the org's entries and the team's team-level ones in one newest-first
// order, pages meet without gaps or repeats, and nothing of another team or
// org comes along; without it, the org's alone.
func TestListAuditEventsMergesTheTeamLevelEntries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	seedActivity(t, s, "a", "org_a", "team_a", "permission.check", 3)
	seedActivity(t, s, "t", "", "team_a", "session.started", 2)
	seedActivity(t, s, "x", "", "team_b", "session.started", 2)
	seedActivity(t, s, "b", "org_b", "team_b", "permission.check", 2)
	seedActivity(t, s, "u", "org_a", "team_a", "api_key.created", 1)
	seedActivity(t, s, "v", "", "team_a", "passkey.enrolled", 1)

	list := func(p store.ListAuditEventsParams) []string {
		rows, err := s.ListAuditEvents(ctx, p)
		require.NoError(t, err)
		ids := make([]string, len(rows))
		for i, r := range rows {
			ids[i] = r.ID
		}
		return ids
	}
	tests := []struct {
		name string
		p    store.ListAuditEventsParams
		want []string
	}{
		{name: "owner: org and team-level", p: store.ListAuditEventsParams{OrgID: "org_a", TeamID: "team_a", WithTeam: true, RowLimit: 100},
			want: []string{"v1", "u1", "t2", "t1", "a3", "a2", "a1"}},
		{name: "key: the org alone", p: store.ListAuditEventsParams{OrgID: "org_a", TeamID: "team_a", RowLimit: 100},
			want: []string{"u1", "a3", "a2", "a1"}},
		{name: "filtered by kind", p: store.ListAuditEventsParams{OrgID: "org_a", TeamID: "team_a", WithTeam: true, Kind: "session.started", RowLimit: 100},
			want: []string{"t2", "t1"}},
		{name: "no org selects nothing", p: store.ListAuditEventsParams{TeamID: "team_a", WithTeam: true, RowLimit: 100},
			want: []string{"v1", "t2", "t1"}},
		{name: "no team: no team-level entries", p: store.ListAuditEventsParams{OrgID: "org_a", WithTeam: true, RowLimit: 100},
			want: []string{"u1", "a3", "a2", "a1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, list(tc.p))
		})
	}

	// Pages of 2, each starting below the last seq of the one before.
	var seqOf = map[string]int64{}
	rows, err := s.ListAuditEvents(ctx, store.ListAuditEventsParams{OrgID: "org_a", TeamID: "team_a", WithTeam: true, RowLimit: 100})
	require.NoError(t, err)
	for _, r := range rows {
		seqOf[r.ID] = r.Seq
	}
	var paged []string
	var before int64
	for {
		page := list(store.ListAuditEventsParams{OrgID: "org_a", TeamID: "team_a", WithTeam: true, BeforeSeq: before, RowLimit: 2})
		paged = append(paged, page...)
		if len(page) < 2 {
			break
		}
		before = seqOf[page[len(page)-1]]
	}
	require.Equal(t, tests[0].want, paged)
}

// TestListAuditEventsPlanStaysOnItsIndexes EXPLAINs the owner's activity
// query on logs of 60,000 and more entries: the team-level branch walks
// audit_events_team_level_seq_idx newest first and reads only the rows the
// page returns, and no branch scans the table — on the first page and on a
// deep one, in the plan made for the values and in the generic one. Two
// shapes: a busy installation (the permission checks of ten orgs, 2% of
// entries team-level, interleaved), and 10,000 team-level entries followed
// by 50,000 checks of another org (the team's entries are all old).
func TestListAuditEventsPlanStaysOnItsIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name, org, rows string
	}{
		{name: "interleaved", org: "org_3", rows: `SELECT 'e' || g, CASE WHEN g % 50 = 0 THEN '' ELSE 'org_' || (g % 10) END, 'team_a'
FROM generate_series(1, 100000) g`},
		{name: "team-level entries all old", org: "org_3", rows: `SELECT 'e' || g, CASE WHEN g <= 10000 THEN '' ELSE 'org_9' END, 'team_a'
FROM generate_series(1, 60000) g`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := devtest.Store(t)
			_, err := s.Pool.Exec(ctx, `INSERT INTO audit_events (id, org_id, team_id, occurred_at, actor_kind, actor_id, kind)
SELECT id, org, team, now(), 'user', 'usr_1', 'permission.check' FROM (`+tc.rows+`) AS r (id, org, team)`)
			require.NoError(t, err)
			_, err = s.Pool.Exec(ctx, `ANALYZE audit_events`)
			require.NoError(t, err)
			var middle int64
			require.NoError(t, s.Pool.QueryRow(ctx, `SELECT seq FROM audit_events WHERE id = 'e30000'`).Scan(&middle))

			// Both plans PostgreSQL may run: the one made for the values, and
			// the generic one it switches a cached statement to.
			conn, err := s.Pool.Acquire(ctx)
			require.NoError(t, err)
			defer conn.Release() // the test's own database: its settings go with it
			_, err = conn.Exec(ctx, `PREPARE list_activity AS `+store.ListAuditEventsSQL)
			require.NoError(t, err)
			const limit = 51
			for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
				_, err = conn.Exec(ctx, `SET plan_cache_mode = `+mode)
				require.NoError(t, err)
				for _, before := range []int64{0, middle} {
					// The statement's parameters in sqlc's order: row_limit, org_id,
					// before_seq, kind, tool, tenant, outcome, since, until,
					// with_team, team_id.
					var raw []byte
					require.NoError(t, conn.QueryRow(ctx, fmt.Sprintf(`EXPLAIN (ANALYZE, FORMAT JSON)
EXECUTE list_activity(%d, '%s', %d, '', '', '', '', NULL, NULL, true, 'team_a')`, limit, tc.org, before)).Scan(&raw))
					var plans []struct {
						Plan planNode `json:"Plan"`
					}
					require.NoError(t, json.Unmarshal(raw, &plans))
					read, teamLevel := 0.0, false
					var walk func(n planNode)
					walk = func(n planNode) {
						require.NotEqual(t, "Seq Scan", n.NodeType, "no branch reads the whole log: %s", raw)
						if n.IndexName != "" {
							read += n.ActualRows + n.RowsRemovedByFilter
						}
						if n.IndexName == "audit_events_team_level_seq_idx" {
							teamLevel = true
							require.Zero(t, n.RowsRemovedByFilter, "%s", raw)
							require.LessOrEqual(t, n.ActualRows, float64(limit), "%s", raw)
						}
						for _, c := range n.Plans {
							walk(c)
						}
					}
					walk(plans[0].Plan)
					require.True(t, teamLevel, "the team-level branch uses its index: %s", raw)
					// The org's branch is left to the planner as it was before
					// the team-level entries joined it: its generic plan may
					// walk the primary key past other orgs' entries.
					t.Logf("%s, before %d: %v rows read in all", mode, before, read)
				}
			}
		})
	}
}

type planNode struct {
	NodeType   string  `json:"Node Type"`
	IndexName  string  `json:"Index Name"`
	ActualRows float64 `json:"Actual Rows"`
	// RowsRemovedByFilter are rows the scan read and dropped.
	RowsRemovedByFilter float64    `json:"Rows Removed by Filter"`
	Plans               []planNode `json:"Plans"`
}
