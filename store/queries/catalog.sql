-- The org's catalog: tenants, categories, resources, tools and rules.
-- Lists are cursor-paginated by id (ids are random, so the order is stable
-- but not chronological). Lookups by "ref" accept an id or a name; an id
-- match wins, since a name may happen to look like another row's id.
-- Lock* variants take the row lock a read-modify-write update needs.

-- name: CreateTenant :one
INSERT INTO tenants (id, org_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING *;

-- name: GetTenant :one
SELECT * FROM tenants WHERE org_id = $1 AND (id = @ref OR name = @ref)
ORDER BY id = @ref DESC LIMIT 1;

-- name: ListTenants :many
SELECT * FROM tenants WHERE org_id = $1 AND id > @after ORDER BY id LIMIT @row_limit;

-- name: UpdateTenant :one
UPDATE tenants SET name = $3, updated_at = $4 WHERE org_id = $1 AND id = $2 RETURNING *;

-- name: DeleteTenant :one
DELETE FROM tenants WHERE org_id = $1 AND id = $2 RETURNING id;

-- name: CreateCategory :one
INSERT INTO categories (id, org_id, name, default_permission, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $5) RETURNING *;

-- name: GetCategory :one
SELECT * FROM categories WHERE org_id = $1 AND (id = @ref OR name = @ref)
ORDER BY id = @ref DESC LIMIT 1;

-- name: ListCategories :many
SELECT * FROM categories WHERE org_id = $1 AND id > @after ORDER BY id LIMIT @row_limit;

-- name: UpdateCategory :one
UPDATE categories SET name = $3, default_permission = $4, updated_at = $5
WHERE org_id = $1 AND id = $2 RETURNING *;

-- name: DeleteCategory :one
DELETE FROM categories WHERE org_id = $1 AND id = $2 RETURNING id;

-- name: CreateResource :one
INSERT INTO resources (id, org_id, name, description, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $5) RETURNING *;

-- name: GetResource :one
SELECT * FROM resources WHERE org_id = $1 AND (id = @ref OR name = @ref)
ORDER BY id = @ref DESC LIMIT 1;

-- name: ListResources :many
SELECT * FROM resources WHERE org_id = $1 AND id > @after ORDER BY id LIMIT @row_limit;

-- name: UpdateResource :one
UPDATE resources SET name = $3, description = $4, updated_at = $5
WHERE org_id = $1 AND id = $2 RETURNING *;

-- name: DeleteResource :one
DELETE FROM resources WHERE org_id = $1 AND id = $2 RETURNING id;

-- name: CreateTool :one
-- A JSON null parameter schema (what a nil json.RawMessage encodes to) is
-- stored as SQL NULL: no schema.
INSERT INTO tools (id, org_id, name, description, category_id, risk_level, parameter_schema,
    read_only, destructive, idempotent, open_world, annotations_acknowledged,
    default_permission, approved, enabled, status, requires_second_approval,
    approval_timeout_seconds, created_at, updated_at)
VALUES (@id, @org_id, @name, @description, @category_id, @risk_level,
    NULLIF(sqlc.narg(parameter_schema)::jsonb, 'null'::jsonb),
    @read_only, @destructive, @idempotent, @open_world, @annotations_acknowledged,
    @default_permission, @approved, @enabled, @status, @requires_second_approval,
    @approval_timeout_seconds, @created_at, @created_at)
RETURNING *;

-- name: GetTool :one
SELECT * FROM tools WHERE org_id = $1 AND (id = @ref OR name = @ref)
ORDER BY id = @ref DESC LIMIT 1;

-- name: UpdateTool :one
UPDATE tools SET
    name = @name, description = @description, category_id = @category_id, risk_level = @risk_level,
    parameter_schema = NULLIF(sqlc.narg(parameter_schema)::jsonb, 'null'::jsonb),
    read_only = @read_only, destructive = @destructive, idempotent = @idempotent, open_world = @open_world,
    annotations_acknowledged = @annotations_acknowledged, default_permission = @default_permission,
    approved = @approved, enabled = @enabled, status = @status,
    requires_second_approval = @requires_second_approval,
    approval_timeout_seconds = @approval_timeout_seconds, updated_at = @updated_at
WHERE org_id = @org_id AND id = @id
RETURNING *;

-- name: SetToolTimeout :exec
UPDATE tools SET approval_timeout_seconds = $3, updated_at = $4 WHERE org_id = $1 AND id = $2;

-- name: DeleteTool :one
DELETE FROM tools WHERE org_id = $1 AND id = $2 RETURNING id;

-- name: CreateRule :one
INSERT INTO rules (id, org_id, tenant_id, resource_id, tool_id, method, permission, description, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING *;

-- name: UpdateRule :one
UPDATE rules SET tenant_id = $3, resource_id = $4, tool_id = $5, method = $6,
    permission = $7, description = $8, updated_at = $9
WHERE org_id = $1 AND id = $2 RETURNING *;

-- name: DeleteRule :one
DELETE FROM rules WHERE org_id = $1 AND id = $2 RETURNING id;

-- name: LockTenant :one
SELECT * FROM tenants WHERE org_id = $1 AND (id = @ref OR name = @ref)
ORDER BY id = @ref DESC LIMIT 1 FOR UPDATE;

-- name: LockCategory :one
SELECT * FROM categories WHERE org_id = $1 AND (id = @ref OR name = @ref)
ORDER BY id = @ref DESC LIMIT 1 FOR UPDATE;

-- name: LockResource :one
SELECT * FROM resources WHERE org_id = $1 AND (id = @ref OR name = @ref)
ORDER BY id = @ref DESC LIMIT 1 FOR UPDATE;

-- name: LockTool :one
SELECT * FROM tools WHERE org_id = $1 AND (id = @ref OR name = @ref)
ORDER BY id = @ref DESC LIMIT 1 FOR UPDATE;

-- name: LockRule :one
SELECT * FROM rules WHERE org_id = $1 AND id = $2 FOR UPDATE;

-- name: GetToolView :one
-- A tool with its category's name, for API answers.
SELECT sqlc.embed(t), c.name AS category_name
FROM tools t LEFT JOIN categories c ON c.id = t.category_id
WHERE t.org_id = $1 AND (t.id = @ref OR t.name = @ref)
ORDER BY t.id = @ref DESC LIMIT 1;

-- name: ListToolViews :many
SELECT sqlc.embed(t), c.name AS category_name
FROM tools t LEFT JOIN categories c ON c.id = t.category_id
WHERE t.org_id = $1 AND t.id > @after AND (@status::text = '' OR t.status = @status)
ORDER BY t.id LIMIT @row_limit;

-- name: GetRuleView :one
-- A rule with the names of the tenant, resource and tool in its key.
SELECT sqlc.embed(r), te.name AS tenant_name, re.name AS resource_name, t.name AS tool_name
FROM rules r
LEFT JOIN tenants te ON te.id = r.tenant_id
LEFT JOIN resources re ON re.id = r.resource_id
LEFT JOIN tools t ON t.id = r.tool_id
WHERE r.org_id = $1 AND r.id = $2;

-- name: ListRuleViews :many
SELECT sqlc.embed(r), te.name AS tenant_name, re.name AS resource_name, t.name AS tool_name
FROM rules r
LEFT JOIN tenants te ON te.id = r.tenant_id
LEFT JOIN resources re ON re.id = r.resource_id
LEFT JOIN tools t ON t.id = r.tool_id
WHERE r.org_id = $1 AND r.id > @after
ORDER BY r.id LIMIT @row_limit;

-- name: FindRuleByKey :one
-- The rule holding an exact key (NULL matches NULL, as in the unique constraint).
SELECT id FROM rules
WHERE org_id = $1
  AND tenant_id IS NOT DISTINCT FROM sqlc.narg('tenant_id')::text
  AND resource_id IS NOT DISTINCT FROM sqlc.narg('resource_id')::text
  AND tool_id IS NOT DISTINCT FROM sqlc.narg('tool_id')::text
  AND method IS NOT DISTINCT FROM sqlc.narg('method')::text;

-- name: CountRulesReferencing :one
-- Rules that name a tenant, resource or tool (they go with it on delete).
SELECT count(*)::bigint FROM rules
WHERE org_id = $1 AND (tenant_id = @ref::text OR resource_id = @ref::text OR tool_id = @ref::text);

-- name: PolicyTools :many
-- The org's tools with their category names, for compiling the resolver index:
-- all of them, or (whole false) those with an id in ids or a category in
-- category_ids (what a change touched, see PolicyChangesSince).
-- Instead of the parameter schema, the SHA-256 of its text (NULL for none):
-- the compiler fetches only the schemas it has not compiled yet
-- (PolicySchemas), so a change does not move every schema of the org.
SELECT t.id, t.name, t.category_id, coalesce(c.name, '')::text AS category, t.default_permission, t.approved,
       t.enabled, t.status, sha256(convert_to(nullif(t.parameter_schema, 'null'::jsonb)::text, 'UTF8')) AS schema_sha256,
       t.requires_second_approval, t.approval_timeout_seconds
FROM tools t LEFT JOIN categories c ON c.id = t.category_id
WHERE t.org_id = @org_id
  AND (@whole::boolean OR t.id = ANY(@ids::text[]) OR t.category_id = ANY(@category_ids::text[]));

-- name: PolicySchemas :many
-- The org's parameter schemas whose SHA-256 (as PolicyTools computes it) is
-- in hashes, each once.
SELECT DISTINCT ON (s.schema_sha256) s.schema_sha256::bytea AS schema_sha256, s.parameter_schema::jsonb AS parameter_schema
FROM (SELECT sha256(convert_to(t.parameter_schema::text, 'UTF8')) AS schema_sha256, t.parameter_schema
      FROM tools t WHERE t.org_id = @org_id AND t.parameter_schema IS NOT NULL) s
WHERE s.schema_sha256 = ANY(@hashes::bytea[]);

-- name: CurrentSnapshot :one
-- The transaction's snapshot ("xmin:xmax:xip,…"); as the first statement
-- of a REPEATABLE READ transaction, the snapshot all its statements see.
SELECT pg_current_snapshot()::text AS snapshot;

-- name: PolicyCategories :many
-- The org's categories: all, or (whole false) those with an id in ids.
SELECT id, name, default_permission FROM categories
WHERE org_id = @org_id AND (@whole::boolean OR id = ANY(@ids::text[]));

-- name: PolicyRules :many
-- The org's rules keyed by names, for compiling the resolver index: all, or
-- (whole false) those with an id in ids or naming a tool, tenant or resource
-- in tool_ids, tenant_ids, resource_ids (whose names a change may have moved).
SELECT r.id, r.tenant_id, r.resource_id, r.tool_id,
       coalesce(te.name, '')::text AS tenant, coalesce(re.name, '')::text AS resource,
       coalesce(t.name, '')::text AS tool, coalesce(r.method, '')::text AS method, r.permission
FROM rules r
LEFT JOIN tenants te ON te.id = r.tenant_id
LEFT JOIN resources re ON re.id = r.resource_id
LEFT JOIN tools t ON t.id = r.tool_id
WHERE r.org_id = @org_id
  AND (@whole::boolean OR r.id = ANY(@ids::text[]) OR r.tool_id = ANY(@tool_ids::text[])
       OR r.tenant_id = ANY(@tenant_ids::text[]) OR r.resource_id = ANY(@resource_ids::text[]));

-- name: PolicyChangesSince :many
-- The rows of the org's policy changed (migration 026) by transactions a
-- snapshot (xmin @since, xmax @until, still running @running) did not see,
-- as far as this transaction's snapshot sees them; at most @max_rows. The
-- seen ones are left out here, not after the limit: a transaction that
-- stays open anywhere in the cluster holds every snapshot's xmin back, and
-- a bulk change the snapshot already saw must not count against the limit.
SELECT xid, kind, row_id FROM policy_changes
WHERE org_id = @org_id AND xid >= @since::bigint
  AND (xid >= @until::bigint OR xid = ANY(@running::bigint[]))
LIMIT @max_rows::int;

-- name: PolicyChangeHorizon :one
-- Every pruned policy_changes row's xid is below this.
SELECT xid FROM policy_change_horizon;

-- name: PrunePolicyChanges :one
-- Deletes the policy_changes rows written before @before (by committed
-- transactions: no other row is visible here), and raises the horizon above
-- them. Returns how many.
WITH gone AS (
    DELETE FROM policy_changes WHERE at < @before::timestamptz
    RETURNING xid
), raised AS (
    UPDATE policy_change_horizon SET xid = greatest(xid, (SELECT max(xid) + 1 FROM gone))
    WHERE EXISTS (SELECT FROM gone)
)
SELECT count(*)::int AS pruned FROM gone;

-- name: LockOrgSettings :one
-- The org row, locked for a read-modify-write of its settings.
SELECT * FROM orgs WHERE id = $1 FOR UPDATE;

-- name: CountDiscoveredTools :one
-- What the auto-discovery caps count (SPEC §7): tools discovered since
-- @since (the hourly cap), and discovered tools still in draft (the total
-- cap; triaging or deleting a draft frees its place).
SELECT (count(*) FILTER (WHERE discovered_at > @since::timestamptz))::int AS recent,
       (count(*) FILTER (WHERE status = 'draft'))::int AS drafts
FROM tools WHERE org_id = @org_id AND discovered_at IS NOT NULL;

-- name: CreateDiscoveredTool :one
-- A discovered tool: a draft with conservative annotations (destructive, not
-- idempotent, open-world, not read-only, unacknowledged), high risk, and
-- default_permission requires_approval. A tool of that name that exists
-- already (another check took it) is left alone: no row.
INSERT INTO tools (id, org_id, name, risk_level, read_only, destructive, idempotent, open_world,
    annotations_acknowledged, default_permission, approved, enabled, status,
    created_at, updated_at, discovered_at)
VALUES (@id, @org_id, @name, 'high', false, true, false, true,
    false, 'requires_approval', false, true, 'draft', @created_at, @created_at, @created_at)
ON CONFLICT (org_id, name) DO NOTHING
RETURNING *;
