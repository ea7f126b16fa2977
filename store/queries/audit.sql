-- The append-only audit log.

-- name: InsertAuditEvent :exec
INSERT INTO audit_events (id, org_id, team_id, occurred_at, actor_kind, actor_id, kind, subject, outcome, tool, tenant, billable, cost_micros, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (id) DO NOTHING;

-- name: GetAuditEvent :one
SELECT * FROM audit_events WHERE org_id = $1 AND id = $2;

-- name: ListAuditEvents :many
-- Newest first; cursor is the seq of the last row of the previous page.
SELECT * FROM audit_events
WHERE org_id = @org_id
  AND (@before_seq::bigint = 0 OR seq < @before_seq)
  AND (@kind::text = '' OR kind = @kind)
  AND (@tool::text = '' OR tool = @tool)
  AND (@tenant::text = '' OR tenant = @tenant)
  AND (@outcome::text = '' OR outcome = @outcome)
  AND (sqlc.narg('since')::timestamptz IS NULL OR occurred_at >= sqlc.narg('since'))
  AND (sqlc.narg('until')::timestamptz IS NULL OR occurred_at < sqlc.narg('until'))
ORDER BY seq DESC
LIMIT @row_limit;

-- name: BillingTotals :one
-- Billable audit rows not refunded, and their cost, for a team: must equal
-- the billed totals and the drop in balance.
SELECT count(*)::bigint AS calls, coalesce(sum(cost_micros), 0)::bigint AS cost_micros
FROM audit_events a WHERE a.team_id = $1 AND a.billable
  AND NOT EXISTS (SELECT 1 FROM call_refunds r WHERE r.audit_id = a.id);

-- name: RecordAuditBatch :one
-- One group commit: see migrations/003_record_audit_batch.sql, fenced first
-- as migrations/010_fence_audit_batches.sql explains (a CTE calling a volatile
-- function is evaluated once, before the outer query reads its row).
WITH opened AS (SELECT oakallow_open_audit_batch((@ids::text[])[1]))
SELECT oakallow_record_audit_batch(
    @ids::text[], @org_ids::text[], @team_ids::text[], @occurred_at::timestamptz[],
    @actor_kinds::text[], @actor_ids::text[], @kinds::text[], @subjects::text[],
    @outcomes::text[], @tools::text[], @tenants::text[], @billable::boolean[],
    @details::jsonb[], @cost::bigint, @now::timestamptz, @enforce::boolean, @low_threshold::bigint
)::boolean[] AS charged FROM opened;

-- name: AuditBillableByIDs :many
-- Which of @ids are in the audit log, and whether each was charged: how the
-- recorder learns the outcome of a group commit whose reply was lost.
SELECT id, billable FROM audit_events WHERE id = ANY(@ids::text[]);

-- name: FenceAuditBatch :exec
-- Makes the outcome of the batch whose first audit id is @id final (waiting
-- while it runs): see migrations/010_fence_audit_batches.sql.
SELECT oakallow_fence_audit_batch(@id::text);
