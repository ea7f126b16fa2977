package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"

	"oakallow/resolver"
)

// normalizeNamesMigration is the migration whose body is normalizeStoredNames.
const normalizeNamesMigration = "009_normalize_names.sql"

// bindGoMigrations gives the migrations that are Go code their function;
// sealer (nil when the key was not given) seals for migration 013.
func bindGoMigrations(m *migrate.Migrator, sealer Sealer) error {
	bind := map[string]func(*migrate.Migration){
		normalizeNamesMigration: func(mig *migrate.Migration) { mig.UpSQL, mig.UpFunc = "", normalizeStoredNames },
		sealSecretsMigration: func(mig *migrate.Migration) {
			mig.UpSQL, mig.UpFunc = "", sealStoredSecrets(mig.UpSQL, sealer)
		},
	}
	for _, mig := range m.Migrations {
		if b, ok := bind[mig.Name]; ok {
			b(mig)
			delete(bind, mig.Name)
		}
	}
	if len(bind) > 0 {
		return fmt.Errorf("migrations %v are missing", slices.Sorted(maps.Keys(bind)))
	}
	return nil
}

// normalizeStoredNames brings tenant and resource names and rule methods
// written before names were normalised into their normal form
// (resolver.NormalizeName), so rules keep matching the checks, which are
// normalised too. It runs inside the migration's transaction.
//
// It never picks between rows silently. Two tenants (or resources) of an
// org whose names become one, two rules whose keys become one with
// different permissions, or a name with no normal form (an invisible
// character, only white space) make it fail with a list of every such
// row, changing nothing: the operator renames or deletes rows with the
// running version's API and migrates again. Two rules whose keys become one
// with the same permission (say "DELETE" and "delete", both disabled) are
// one rule in effect: the older is kept and the newer deleted, with a
// rule.deleted audit event.
func normalizeStoredNames(ctx context.Context, conn *pgx.Conn) error {
	now := time.Now().UTC()
	var problems []string
	changedOrgs := map[string]bool{}

	type rename struct{ table, id, name string }
	var renames []rename
	for _, table := range []string{"tenants", "resources"} {
		what := strings.TrimSuffix(table, "s")
		rows, err := conn.Query(ctx, "SELECT id, org_id, name FROM "+table+" ORDER BY org_id, created_at, id")
		if err != nil {
			return fmt.Errorf("read %s: %w", table, err)
		}
		type row struct{ id, org, name string }
		var all []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.org, &r.name); err != nil {
				return fmt.Errorf("read %s: %w", table, err)
			}
			all = append(all, r)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read %s: %w", table, err)
		}
		first := map[[2]string]row{}
		for _, r := range all {
			n, err := resolver.NormalizeName(r.name)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s %s (org %s) %q: %v", what, r.id, r.org, r.name, err))
				continue
			}
			k := [2]string{r.org, n}
			if o, dup := first[k]; dup {
				problems = append(problems, fmt.Sprintf("%ss %s %q and %s %q (org %s) would both be named %q",
					what, o.id, o.name, r.id, r.name, r.org, n))
				continue
			}
			first[k] = r
			if n != r.name {
				renames = append(renames, rename{table, r.id, n})
				changedOrgs[r.org] = true
			}
		}
	}

	type ruleRow struct {
		id, org, permission                  string
		tenant, resource, tool, method, norm *string
	}
	rows, err := conn.Query(ctx, `SELECT id, org_id, tenant_id, resource_id, tool_id, method, permission
		FROM rules WHERE method IS NOT NULL ORDER BY created_at, id`)
	if err != nil {
		return fmt.Errorf("read rules: %w", err)
	}
	var rules []ruleRow
	for rows.Next() {
		var r ruleRow
		if err := rows.Scan(&r.id, &r.org, &r.tenant, &r.resource, &r.tool, &r.method, &r.permission); err != nil {
			return fmt.Errorf("read rules: %w", err)
		}
		rules = append(rules, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read rules: %w", err)
	}
	deref := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	type ruleKey struct{ org, tenant, resource, tool, method string }
	kept := map[ruleKey]ruleRow{}
	type merge struct{ dropped, kept ruleRow }
	var merges []merge
	var methodChanges []ruleRow
	for _, r := range rules {
		n, err := resolver.NormalizeName(*r.method)
		if err != nil {
			problems = append(problems, fmt.Sprintf("rule %s (org %s) method %q: %v", r.id, r.org, *r.method, err))
			continue
		}
		r.norm = &n
		k := ruleKey{r.org, deref(r.tenant), deref(r.resource), deref(r.tool), n}
		if o, dup := kept[k]; dup {
			if o.permission != r.permission {
				problems = append(problems, fmt.Sprintf("rules %s (method %q, %s) and %s (method %q, %s) of org %s would have the same key",
					o.id, *o.method, o.permission, r.id, *r.method, r.permission, r.org))
				continue
			}
			merges = append(merges, merge{dropped: r, kept: o})
			changedOrgs[r.org] = true
			continue
		}
		kept[k] = r
		if n != *r.method {
			methodChanges = append(methodChanges, r)
			changedOrgs[r.org] = true
		}
	}

	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("names cannot be normalised without choosing between rows; rename or delete one row of each "+
			"(with the API of the version running now), then migrate again:\n  %s", strings.Join(problems, "\n  "))
	}

	for _, m := range merges {
		if _, err := conn.Exec(ctx, "DELETE FROM rules WHERE id = $1", m.dropped.id); err != nil {
			return fmt.Errorf("delete rule %s: %w", m.dropped.id, err)
		}
		details, err := json.Marshal(map[string]any{
			"reason": "name normalisation: the same key and permission as the kept rule", "kept_rule_id": m.kept.id,
			"method": *m.dropped.method, "kept_method": *m.kept.method, "permission": m.dropped.permission,
		})
		if err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, `INSERT INTO audit_events (id, org_id, team_id, occurred_at, actor_kind, actor_id,
			kind, subject, outcome, details) SELECT $1, o.id, o.team_id, $2, 'system', $3, 'rule.deleted', $4, 'ok', $5
			FROM orgs o WHERE o.id = $6`,
			NewID("evt"), now, "migration:"+normalizeNamesMigration, m.dropped.id, details, m.dropped.org); err != nil {
			return fmt.Errorf("audit deleted rule %s: %w", m.dropped.id, err)
		}
	}
	for _, r := range methodChanges {
		if _, err := conn.Exec(ctx, "UPDATE rules SET method = $2, updated_at = $3 WHERE id = $1", r.id, *r.norm, now); err != nil {
			return fmt.Errorf("normalise rule %s: %w", r.id, err)
		}
	}
	for _, r := range renames {
		if _, err := conn.Exec(ctx, "UPDATE "+r.table+" SET name = $2, updated_at = $3 WHERE id = $1", r.id, r.name, now); err != nil {
			return fmt.Errorf("normalise %s %s: %w", strings.TrimSuffix(r.table, "s"), r.id, err)
		}
	}
	// Running servers reload the orgs whose policy changed.
	for org := range changedOrgs {
		if _, err := conn.Exec(ctx, "SELECT pg_notify('oakallow_changes', $1::text)", "policy:"+org); err != nil {
			return fmt.Errorf("announce policy change: %w", err)
		}
	}
	return nil
}
