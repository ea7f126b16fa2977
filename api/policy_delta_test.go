package api

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/resolver"
)

// TestPolicyDeltaMatchesWholeLoad: a load that applies only the rows changed
// since the cached policy (policy_changes, migration 026) ends with exactly
// the rows, and the verdicts, that reading the org whole gives — for every
// kind of change: inserts, updates, deletes (cascades included), a rule
// moving to another level, renames of the tenants, resources, tools and
// categories that rules and tools refer to by name. Past the log's horizon,
// or with too many changed rows, the org is read whole.
func TestPolicyDeltaMatchesWholeLoad(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	ctx := context.Background()
	org := e.boot.OrgID
	other := e.secondOrg().OrgID
	c := NewPolicyCache(e.st, slog.New(slog.NewTextHandler(io.Discard, nil)), func(time.Duration, error) {})
	t.Cleanup(c.Stop)

	exec := func(stmts ...string) {
		t.Helper()
		tx, err := e.st.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		for _, s := range stmts {
			var args []any
			if strings.Contains(s, "$1") {
				args = append(args, org)
			}
			_, err := tx.Exec(ctx, s, args...)
			require.NoError(t, err, s)
		}
		require.NoError(t, tx.Commit(ctx))
	}
	// reload loads the org again and checks the result against a whole read;
	// how says whether that load must read only the changed rows (true), the
	// whole org (false), or may do either.
	reload := func(step string, how any) *orgPolicy {
		t.Helper()
		before := c.deltaLoads.Load()
		gen, held := c.Refresh(org)
		require.True(t, held, step)
		p, err := c.await(ctx, org, gen)
		require.NoError(t, err, step)
		switch how {
		case true:
			require.Equal(t, before+1, c.deltaLoads.Load(), "%s: the load read the org whole", step)
		case false:
			require.Equal(t, before, c.deltaLoads.Load(), "%s: the load read only changes", step)
		}
		whole, err := readPolicy(ctx, e.st, org, nil)
		require.NoError(t, err, step)
		require.Equal(t, whole.src.tools, p.src.tools, "%s: tools", step)
		require.Equal(t, whole.src.cats, p.src.cats, "%s: categories", step)
		require.Equal(t, whole.src.rules, p.src.rules, "%s: rules", step)
		require.Len(t, p.tools, len(whole.src.tools), step)
		for _, row := range whole.src.tools {
			require.Equal(t, row.ID, p.tools[row.Name].ID, "%s: tool %s", step, row.Name)
		}
		return p
	}
	decide := func(p *orgPolicy, tool, tenant, method string) resolver.Decision {
		return p.index.Decide(resolver.Input{Tool: tool, Tenant: tenant, Method: method})
	}

	const now = "now(), now()"
	either := "either"
	exec(
		"INSERT INTO tenants (id, org_id, name, created_at, updated_at) VALUES ('tn1', $1, 'east', "+now+"), ('tn2', $1, 'west', "+now+")",
		"INSERT INTO resources (id, org_id, name, created_at, updated_at) VALUES ('rs1', $1, 'db', "+now+")",
		"INSERT INTO categories (id, org_id, name, default_permission, created_at, updated_at) VALUES ('ct1', $1, 'ops', 'allowed', "+now+")",
		"INSERT INTO tools (id, org_id, name, category_id, created_at, updated_at) VALUES ('tl1', $1, 'deploy', 'ct1', "+now+"), ('tl2', $1, 'backup', NULL, "+now+")",
		"INSERT INTO rules (id, org_id, tenant_id, resource_id, tool_id, method, permission, created_at, updated_at) VALUES "+
			"('ru1', $1, NULL, NULL, 'tl1', NULL, 'allowed', "+now+"), "+
			"('ru2', $1, 'tn1', NULL, 'tl2', NULL, 'disabled', "+now+"), "+
			"('ru3', $1, NULL, 'rs1', 'tl2', NULL, 'requires_approval', "+now+"), "+
			"('ru4', $1, 'tn2', NULL, NULL, 'get', 'allowed', "+now+")",
	)
	_, err := c.Get(ctx, org)
	require.NoError(t, err)

	exec("INSERT INTO rules (id, org_id, tool_id, method, permission, created_at, updated_at) VALUES ('ru5', $1, 'tl2', 'put', 'allowed', "+now+")",
		"UPDATE rules SET permission = 'disabled' WHERE id = 'ru1'")
	p := reload("insert and update rules", true)
	require.Equal(t, resolver.Disabled, decide(p, "deploy", "", "").Permission)

	// ru4 moves from (tenant, method) to (tool, method): a level with a tool.
	require.Equal(t, "ru4", decide(p, "backup", "west", "get").RuleID)
	exec("UPDATE rules SET tenant_id = NULL, tool_id = 'tl1', permission = 'requires_approval' WHERE id = 'ru4'")
	p = reload("a rule moves level", true)
	require.Equal(t, "", decide(p, "backup", "west", "get").RuleID, "the rule still decides at its old level")
	moved := decide(p, "deploy", "", "get")
	require.Equal(t, "ru4", moved.RuleID)
	require.Equal(t, resolver.RequiresApproval, moved.Permission)

	exec("UPDATE tenants SET name = 'north' WHERE id = 'tn1'")
	p = reload("tenant renamed", true)
	require.Equal(t, "ru2", decide(p, "backup", "north", "").RuleID)
	require.Equal(t, "", decide(p, "backup", "east", "").RuleID)

	exec("UPDATE resources SET name = 'store' WHERE id = 'rs1'")
	reload("resource renamed", true)
	exec("UPDATE tools SET name = 'snapshot' WHERE id = 'tl2'")
	p = reload("tool renamed", true)
	require.Equal(t, "ru5", decide(p, "snapshot", "", "put").RuleID)
	require.Equal(t, resolver.ReasonToolNotRegistered, decide(p, "backup", "", "put").Reason)

	exec("UPDATE categories SET name = 'ops2', default_permission = 'disabled' WHERE id = 'ct1'")
	reload("category changed", true)
	exec("DELETE FROM categories WHERE id = 'ct1'")
	reload("category deleted (tools lose it)", true)
	exec("DELETE FROM tenants WHERE id = 'tn1'")
	p = reload("tenant deleted (its rules cascade)", true)
	require.NotContains(t, p.src.rules, "ru2")
	exec("DELETE FROM rules WHERE id = 'ru5'", "DELETE FROM tools WHERE id = 'tl1'")
	p = reload("rule and tool deleted (the tool's rules cascade)", true)
	require.Equal(t, resolver.ReasonToolNotRegistered, decide(p, "deploy", "", "").Reason)
	require.NotContains(t, p.src.rules, "ru4")

	// A change that rolled back, and one of another org, change nothing.
	tx, err := e.st.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "UPDATE rules SET permission = 'allowed' WHERE id = 'ru3'")
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	_, err = e.st.Pool.Exec(ctx, "INSERT INTO tools (id, org_id, name, created_at, updated_at) VALUES ('tlx', $1, 'x', "+now+")", other)
	require.NoError(t, err)
	before := p
	p = reload("nothing of the org changed", true)
	require.Same(t, before.src, p.src)
	require.Same(t, before.index, p.index)

	// More changed rows than a delta applies. A transaction left open from
	// before the bulk insert (here, as any session anywhere in the cluster
	// may) holds the snapshots' xmin below it: the next load must still
	// apply only the one later change, not count the bulk rows its
	// previous snapshot saw.
	older, err := e.st.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = older.Rollback(ctx) }()
	_, err = older.Exec(ctx, "SELECT pg_current_xact_id()")
	require.NoError(t, err)
	exec("INSERT INTO rules (id, org_id, tool_id, method, permission, created_at, updated_at) " +
		"SELECT 'bulk' || n, $1, 'tl2', 'm' || n, 'allowed', now(), now() FROM generate_series(1, 1001) n")
	reload("a bulk insert", false)
	exec("UPDATE rules SET permission = 'disabled' WHERE id = 'bulk7'")
	reload("after the bulk insert, an older transaction still open", true)
	require.NoError(t, older.Rollback(ctx))

	// Past the horizon: the pruned changes may be ones the policy does not see.
	exec("UPDATE rules SET permission = 'allowed' WHERE id = 'ru3'")
	pruned, err := c.PruneChanges(ctx, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Positive(t, pruned)
	p = reload("after pruning", false)
	require.Equal(t, "allowed", p.src.rules["ru3"].Permission)
	// A delta follows unless a transaction older than the horizon still
	// ran when that load's snapshot was taken (other tests share the cluster).
	exec("UPDATE rules SET method = 'post' WHERE id = 'ru3'")
	reload("after the reload past the horizon", either)

	// TRUNCATE fires no row trigger; it raises the horizon instead.
	_, err = e.st.Pool.Exec(ctx, "TRUNCATE rules")
	require.NoError(t, err)
	p = reload("rules truncated", false)
	require.Empty(t, p.src.rules)
}
