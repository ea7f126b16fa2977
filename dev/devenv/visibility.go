package devenv

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
)

// Temporal's SQLite visibility schema indexes executions_visibility by 58 indexes: one for
// each search attribute slot (ten Keyword, three each of Int, Double, Bool and Datetime, the
// CHASM slots, Temporal's own attributes) and for most system columns. Visibility writes a
// run's row when it starts, when an open run upserts search attributes and when it closes,
// each time as a REPLACE: a delete and an insert in every index, although in most of them
// the row's value is NULL, and a statement compiled anew each time (the sqlite plugin
// prepares no statements), with code for every index. On the dev stack that was the largest
// single cost of an approval (the visibility queue 18 % of the process's CPU at 25
// approvals/s, docs/PERFORMANCE.md).
//
// slimVisibilityIndexes therefore drops, in the dev server's own database file, every
// visibility index except the listing index (default_idx), those on the workflow id, type,
// status and execution time (the Web UI's filters) and those on the custom Keyword and Int
// slots, where oakallow's search attributes live. A query on another column still works,
// by scanning the rows, which a development server has few of. Partial indexes (WHERE col
// IS NOT NULL) were tried instead: they cost nothing for a NULL but their conditions made
// every statement's compilation dearer by about as much. It is idempotent, so it runs at
// every start and also brings a data directory made before it up to date.
func slimVisibilityIndexes(ctx context.Context, dbPath string) (err error) {
	// The "sqlite" driver (modernc.org/sqlite) is registered by Temporal's sqlite plugin.
	// busy_timeout: an outside reader (a sqlite3 shell) may hold a lock for a moment.
	db, err := stdsql.Open("sqlite", "file:"+(&url.URL{Path: dbPath}).EscapedPath()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer func() { err = errors.Join(err, db.Close()) }()

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op once committed
	stmts, err := visibilityIndexChanges(ctx, tx)
	if err != nil {
		return err
	}
	for _, stmt := range stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// visibilityIndexesKept are the visibility indexes slimVisibilityIndexes keeps besides the
// custom Keyword and Int slots' (visibilityCustomSlotRE).
var visibilityIndexesKept = []string{"default_idx", "by_workflow_id", "by_workflow_type", "by_status", "by_execution_time"}

// visibilityCustomSlotRE matches the indexes of the custom Keyword and Int slots.
var visibilityCustomSlotRE = regexp.MustCompile(`^by_(keyword|int)_[0-9]+$`)

// visibilityIndexChanges returns the statements that drop the visibility indexes
// slimVisibilityIndexes does not keep; none once they are gone.
func visibilityIndexChanges(ctx context.Context, tx *stdsql.Tx) ([]string, error) {
	// sql IS NOT NULL leaves out the primary key's automatic index, which cannot be dropped.
	rows, err := tx.QueryContext(ctx,
		`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'executions_visibility' AND sql IS NOT NULL ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("indexes of executions_visibility: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var stmts []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("indexes of executions_visibility: %w", err)
		}
		if !slices.Contains(visibilityIndexesKept, name) && !visibilityCustomSlotRE.MatchString(name) {
			stmts = append(stmts, fmt.Sprintf("DROP INDEX %q", name))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("indexes of executions_visibility: %w", err)
	}
	return stmts, nil
}
