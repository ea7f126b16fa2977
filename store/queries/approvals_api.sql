-- What the REST API reads and writes around approvals, execution tokens,
-- webhook deliveries, approver groups and Idempotency-Key answers. The
-- approval workflow's projections (status, level, decisions, tokens) are
-- written by the activities; the API inserts the row before the workflow
-- starts and otherwise only reads.

-- name: InsertApprovalRequest :exec
INSERT INTO approvals (id, org_id, reference, tool_id, tool_name, tenant_id, tenant_name, resource, method,
    parameters, params_hash, reasoning, context, reference_id, status, level, two_levels,
    level_timeout_seconds, expires_at, created_at, updated_at, workflow_id, created_by_kind, created_by_id)
VALUES (@id, @org_id, @reference, @tool_id, @tool_name, @tenant_id, @tenant_name, @resource, @method,
    @parameters, @params_hash, @reasoning, @context, @reference_id, 'pending', 1, @two_levels,
    @level_timeout_seconds, @expires_at, @created_at, @created_at, @reference, @created_by_kind, @created_by_id);

-- name: DeleteUnstartedApproval :execrows
-- Compensates an insert whose workflow could not be started. Only a row no
-- workflow has touched (still pending, nothing projected, no decision) goes.
DELETE FROM approvals a
WHERE a.org_id = $1 AND a.id = $2 AND a.status = 'pending' AND a.projection_seq = 0
  AND NOT EXISTS (SELECT 1 FROM approval_decisions d WHERE d.approval_id = a.id)
  AND NOT EXISTS (SELECT 1 FROM workflow_effects e WHERE e.approval_id = a.id);

-- name: GetApprovalByRef :one
-- One approval by id or REF. With requester_kind set, only one that this
-- requester (created_by_kind, created_by_id) made: another's is not found.
-- (The lookup is by id or reference either way; the requester only filters
-- the one row found, so a generic plan costs nothing here.)
SELECT * FROM approvals WHERE org_id = @org_id AND (id = @ref OR reference = @ref)
  AND (sqlc.narg('requester_kind')::text IS NULL
       OR (created_by_kind = sqlc.narg('requester_kind')::text AND created_by_id = @requester_id::text))
ORDER BY id = @ref DESC LIMIT 1;

-- name: ListApprovalsPage :many
-- Newest first, any status; the cursor is (created_at, id) of the previous
-- page's last row ('infinity' on the first page). Written so that even the
-- generic plan a prepared statement settles on starts the index scan at the
-- cursor: an optional "IS NULL OR" condition would make it filter from the
-- top. Each row carries its tool's annotations as they are stored now (a
-- tool cannot be deleted while approvals reference it).
SELECT sqlc.embed(a), t.read_only, t.destructive, t.idempotent, t.open_world,
       t.annotations_acknowledged, t.risk_level
FROM approvals a JOIN tools t ON t.id = a.tool_id
WHERE a.org_id = @org_id
  AND (@tool::text = '' OR a.tool_name = @tool)
  AND (@tenant::text = '' OR a.tenant_name = @tenant)
  AND (a.created_at, a.id) < (coalesce(sqlc.narg('before_created')::timestamptz, 'infinity'), @before_id::text)
ORDER BY a.created_at DESC, a.id DESC
LIMIT @row_limit;

-- name: ListApprovalsPageByStatus :many
-- ListApprovalsPage of one status, its own statement so that its plan (even
-- a generic one) reads approvals_org_status_idx: with an optional status
-- the queue of 200 pending approvals scanned all of an org's approvals to
-- learn that no 201st exists.
SELECT sqlc.embed(a), t.read_only, t.destructive, t.idempotent, t.open_world,
       t.annotations_acknowledged, t.risk_level
FROM approvals a JOIN tools t ON t.id = a.tool_id
WHERE a.org_id = @org_id
  AND a.status = @status
  AND (@tool::text = '' OR a.tool_name = @tool)
  AND (@tenant::text = '' OR a.tenant_name = @tenant)
  AND (a.created_at, a.id) < (coalesce(sqlc.narg('before_created')::timestamptz, 'infinity'), @before_id::text)
ORDER BY a.created_at DESC, a.id DESC
LIMIT @row_limit;

-- name: ListRequesterApprovalsPage :many
-- ListApprovalsPage of one requester (created_by_kind, created_by_id): what
-- a standard key, an agent identity or an OAuth grant reads. Its own
-- statement for the same reason as ByStatus (approvals_requester_idx).
SELECT sqlc.embed(a), t.read_only, t.destructive, t.idempotent, t.open_world,
       t.annotations_acknowledged, t.risk_level
FROM approvals a JOIN tools t ON t.id = a.tool_id
WHERE a.org_id = @org_id
  AND a.created_by_kind = @requester_kind AND a.created_by_id = @requester_id
  AND (@tool::text = '' OR a.tool_name = @tool)
  AND (@tenant::text = '' OR a.tenant_name = @tenant)
  AND (a.created_at, a.id) < (coalesce(sqlc.narg('before_created')::timestamptz, 'infinity'), @before_id::text)
ORDER BY a.created_at DESC, a.id DESC
LIMIT @row_limit;

-- name: ListRequesterApprovalsPageByStatus :many
-- ListRequesterApprovalsPage of one status: an agent's pending approvals
-- over MCP (approvals_requester_status_idx).
SELECT sqlc.embed(a), t.read_only, t.destructive, t.idempotent, t.open_world,
       t.annotations_acknowledged, t.risk_level
FROM approvals a JOIN tools t ON t.id = a.tool_id
WHERE a.org_id = @org_id
  AND a.created_by_kind = @requester_kind AND a.created_by_id = @requester_id
  AND a.status = @status
  AND (@tool::text = '' OR a.tool_name = @tool)
  AND (@tenant::text = '' OR a.tenant_name = @tenant)
  AND (a.created_at, a.id) < (coalesce(sqlc.narg('before_created')::timestamptz, 'infinity'), @before_id::text)
ORDER BY a.created_at DESC, a.id DESC
LIMIT @row_limit;

-- name: GetToolAnnotations :one
-- The annotations stored for one tool, shown with its approvals.
SELECT read_only, destructive, idempotent, open_world, annotations_acknowledged, risk_level
FROM tools WHERE org_id = $1 AND id = $2;

-- name: ListDecisionsOfApproval :many
SELECT * FROM approval_decisions WHERE approval_id = $1 ORDER BY level;

-- name: ListDecisionsOfApprovals :many
SELECT * FROM approval_decisions WHERE approval_id = ANY(@approval_ids::text[]) ORDER BY approval_id, level;

-- name: GetTokenBySource :one
-- The execution token minted from a check or an approval, if any.
SELECT * FROM execution_tokens WHERE org_id = $1 AND source_kind = $2 AND source_id = $3;

-- name: GetAPIKeyDisplay :one
-- A key's display prefix (shown as the decider of a management-key decision).
SELECT id, prefix, tier FROM api_keys WHERE org_id = $1 AND id = $2;

-- name: CountApproverGroup :one
SELECT count(*)::bigint FROM approver_group_members WHERE team_id = $1 AND level = $2;

-- name: CountTeamUsers :one
-- How many of the ids are active users of the team.
SELECT count(*)::bigint FROM users u JOIN memberships m ON m.user_id = u.id
WHERE m.team_id = @team_id AND u.status = 'active' AND u.id = ANY(@user_ids::text[]);

-- name: ListWebhookDeliveriesPage :many
-- Newest first; the cursor is (created_at, id) of the previous page's last row.
SELECT * FROM webhook_deliveries
WHERE org_id = @org_id
  AND (@status::text = '' OR status = @status)
  AND (sqlc.narg('before_created')::timestamptz IS NULL
       OR (created_at, id) < (sqlc.narg('before_created')::timestamptz, @before_id::text))
ORDER BY created_at DESC, id DESC
LIMIT @row_limit;

-- name: GetWebhookDeliveryOfOrg :one
SELECT * FROM webhook_deliveries WHERE org_id = $1 AND id = $2;

-- name: ListAttemptsOfDelivery :many
SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY seq;

-- name: ReserveIdempotencyKey :one
-- Claims (principal, key) for a request in progress (status_code 0). Returns
-- nothing when the key is already claimed or answered.
INSERT INTO idempotency_keys (principal_id, key, request_hash, status_code, response, created_at)
VALUES ($1, $2, $3, 0, '', $4)
ON CONFLICT (principal_id, key) DO NOTHING
RETURNING principal_id;

-- name: GetIdempotencyKey :one
SELECT * FROM idempotency_keys WHERE principal_id = $1 AND key = $2;

-- name: CompleteIdempotencyKey :exec
UPDATE idempotency_keys SET status_code = $3, response = $4
WHERE principal_id = $1 AND key = $2 AND status_code = 0;

-- name: ReleaseIdempotencyKey :exec
-- Forgets a claim whose request did not produce an answer worth replaying
-- (a server-side failure), so the client's retry runs again.
DELETE FROM idempotency_keys WHERE principal_id = $1 AND key = $2 AND status_code = 0;

-- name: DeleteExpiredIdempotencyKey :exec
DELETE FROM idempotency_keys WHERE principal_id = @principal_id AND key = @key AND created_at < @before;

-- name: ReclaimIdempotencyKey :one
-- Takes over a claim left in progress longer than the stale threshold (its
-- process died); returns nothing when it is answered or still fresh.
UPDATE idempotency_keys SET created_at = @now
WHERE principal_id = @principal_id AND key = @key AND request_hash = @request_hash
  AND status_code = 0 AND created_at < @stale_before
RETURNING principal_id;

-- name: GetTokenOfOrg :one
SELECT * FROM execution_tokens WHERE org_id = $1 AND id = $2;

-- name: ClaimUnstartedApprovals :many
-- Claims up to @row_limit approvals that no workflow has projected yet and
-- that nothing touched since @before (oldest first), for the worker's start
-- reconciler: claiming moves updated_at to @claimed_at, so other workers
-- skip them (and SKIP LOCKED skips rows another worker is claiming) until
-- the claim is as old as @before is now. A worker that dies after claiming
-- delays the rows by one pass, and loses none. A projection that commits
-- first takes the row out of the predicate, which FOR UPDATE re-checks.
UPDATE approvals SET updated_at = @claimed_at
WHERE id IN (
    SELECT u.id FROM approvals u
    WHERE u.projection_seq = 0 AND u.status = 'pending' AND u.updated_at < @before
    ORDER BY u.updated_at
    LIMIT @row_limit
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: EndUnstartedApproval :execrows
-- Ends, as expired, an approval whose workflow closed without ever
-- projecting it (terminated or failed before its first projection): no
-- workflow will ever decide it, so the tool must not run. projection_seq
-- moves to the final transitions' sequence, so a late projection of the
-- creation (a reset run) cannot make it pending again. Only a row still
-- unprojected changes.
UPDATE approvals SET status = 'expired', decided_at = @ended_at::timestamptz, updated_at = @ended_at::timestamptz, projection_seq = @seq
WHERE org_id = @org_id AND id = @id AND projection_seq = 0 AND status = 'pending';
