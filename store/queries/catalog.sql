-- The org's catalog: tenants, categories, resources, tools and rules.
-- Lists are cursor-paginated by id (ids are random, so the order is stable
-- but not chronological).

-- name: CreateTenant :one
INSERT INTO tenants (id, org_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING *;

-- name: GetTenant :one
SELECT * FROM tenants WHERE org_id = $1 AND (id = @ref OR name = @ref);

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
SELECT * FROM categories WHERE org_id = $1 AND (id = @ref OR name = @ref);

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
SELECT * FROM resources WHERE org_id = $1 AND (id = @ref OR name = @ref);

-- name: ListResources :many
SELECT * FROM resources WHERE org_id = $1 AND id > @after ORDER BY id LIMIT @row_limit;

-- name: UpdateResource :one
UPDATE resources SET name = $3, description = $4, updated_at = $5
WHERE org_id = $1 AND id = $2 RETURNING *;

-- name: DeleteResource :one
DELETE FROM resources WHERE org_id = $1 AND id = $2 RETURNING id;

-- name: CreateTool :one
INSERT INTO tools (id, org_id, name, description, category_id, risk_level, parameter_schema,
    read_only, destructive, idempotent, open_world, annotations_acknowledged,
    default_permission, approved, enabled, status, requires_second_approval,
    approval_timeout_seconds, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $19)
RETURNING *;

-- name: GetTool :one
SELECT * FROM tools WHERE org_id = $1 AND (id = @ref OR name = @ref);

-- name: ListTools :many
SELECT * FROM tools
WHERE org_id = $1 AND id > @after AND (@status::text = '' OR status = @status)
ORDER BY id LIMIT @row_limit;

-- name: UpdateTool :one
UPDATE tools SET
    name = $3, description = $4, category_id = $5, risk_level = $6, parameter_schema = $7,
    read_only = $8, destructive = $9, idempotent = $10, open_world = $11,
    annotations_acknowledged = $12, default_permission = $13, approved = $14, enabled = $15,
    status = $16, requires_second_approval = $17, approval_timeout_seconds = $18, updated_at = $19
WHERE org_id = $1 AND id = $2
RETURNING *;

-- name: SetToolTimeout :exec
UPDATE tools SET approval_timeout_seconds = $3, updated_at = $4 WHERE org_id = $1 AND id = $2;

-- name: DeleteTool :one
DELETE FROM tools WHERE org_id = $1 AND id = $2 RETURNING id;

-- name: CreateRule :one
INSERT INTO rules (id, org_id, tenant_id, resource_id, tool_id, method, permission, description, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING *;

-- name: GetRule :one
SELECT * FROM rules WHERE org_id = $1 AND id = $2;

-- name: ListRules :many
SELECT * FROM rules WHERE org_id = $1 AND id > @after ORDER BY id LIMIT @row_limit;

-- name: UpdateRule :one
UPDATE rules SET permission = $3, description = $4, updated_at = $5
WHERE org_id = $1 AND id = $2 RETURNING *;

-- name: DeleteRule :one
DELETE FROM rules WHERE org_id = $1 AND id = $2 RETURNING id;

-- name: PolicyTools :many
-- The org's tools with their category names, for compiling the resolver index.
SELECT t.id, t.name, coalesce(c.name, '')::text AS category, t.default_permission, t.approved,
       t.enabled, t.status, t.parameter_schema, t.requires_second_approval, t.approval_timeout_seconds
FROM tools t LEFT JOIN categories c ON c.id = t.category_id
WHERE t.org_id = $1;

-- name: PolicyCategories :many
SELECT name, default_permission FROM categories WHERE org_id = $1;

-- name: PolicyRules :many
-- The org's rules keyed by names, for compiling the resolver index.
SELECT r.id, coalesce(te.name, '')::text AS tenant, coalesce(re.name, '')::text AS resource,
       coalesce(t.name, '')::text AS tool, coalesce(r.method, '')::text AS method, r.permission
FROM rules r
LEFT JOIN tenants te ON te.id = r.tenant_id
LEFT JOIN resources re ON re.id = r.resource_id
LEFT JOIN tools t ON t.id = r.tool_id
WHERE r.org_id = $1;

-- name: ListOrgIDs :many
SELECT id FROM orgs ORDER BY id;
