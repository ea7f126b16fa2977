package devenv

import (
	"context"
	stdsql "database/sql"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSlimVisibilityIndexes: on a database with Temporal's visibility schema, only the
// listing index, the Web UI's filters and the custom Keyword and Int slots keep their
// indexes, unchanged; a filter on a search attribute still uses its index, and a second
// pass changes nothing.
func TestSlimVisibilityIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), temporalDBFile)
	require.NoError(t, setUpTemporalSchema(temporalSQLConfig(path)))

	db, err := stdsql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath())
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	before := visibilityIndexes(t, db)
	require.Len(t, before, 58, "Temporal's schema")

	require.NoError(t, slimVisibilityIndexes(ctx, path))
	after := visibilityIndexes(t, db)
	kept := []string{"default_idx", "by_workflow_id", "by_workflow_type", "by_status", "by_execution_time",
		"by_keyword_01", "by_keyword_10", "by_int_01", "by_int_03"}
	for _, name := range kept {
		require.Equal(t, before[name], after[name], "%s is kept as it was", name)
	}
	require.Len(t, after, 5+10+3, "the listing and the Web UI's four, ten Keyword and three Int slots")
	for _, name := range []string{"by_history_length", "by_task_queue", "by_root_run_id", "by_parent_workflow_id",
		"by_batcher_user", "by_temporal_keyword_01", "by_bool_01", "by_datetime_03", "by_double_02"} {
		require.Contains(t, before, name)
		require.NotContains(t, after, name)
	}

	// A filter on a custom search attribute still uses its index; one on a dropped index's
	// column still works.
	require.Contains(t, queryPlan(t, db, "SELECT run_id FROM executions_visibility WHERE namespace_id = ? AND Keyword01 = ?"),
		"USING INDEX by_keyword_01")
	var n int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM executions_visibility WHERE namespace_id = ? AND task_queue = ?", "ns", "q").Scan(&n))

	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	again, err := visibilityIndexChanges(ctx, tx)
	require.NoError(t, err)
	require.Empty(t, again, "a second pass changes nothing")
}

func queryPlan(t *testing.T, db *stdsql.DB, query string) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+query, "ns", "acme")
	require.NoError(t, err)
	defer func() { _ = rows.Close() }()
	var plan strings.Builder
	for rows.Next() {
		var id, parent, unused int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
		plan.WriteString(detail + "\n")
	}
	require.NoError(t, rows.Err())
	return plan.String()
}

func visibilityIndexes(t *testing.T, db *stdsql.DB) map[string]string {
	t.Helper()
	rows, err := db.Query("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'executions_visibility' AND sql IS NOT NULL")
	require.NoError(t, err)
	defer func() { _ = rows.Close() }()
	out := map[string]string{}
	for rows.Next() {
		var name, def string
		require.NoError(t, rows.Scan(&name, &def))
		out[name] = def
	}
	require.NoError(t, rows.Err())
	return out
}
