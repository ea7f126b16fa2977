-- The append-only audit log.

-- name: InsertAuditEvent :exec
INSERT INTO audit_events (id, org_id, team_id, occurred_at, actor_kind, actor_id, kind, subject, outcome, tool, tenant, billable, cost_micros, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (id) DO NOTHING;

-- name: GetAuditEvent :one
SELECT * FROM audit_events WHERE org_id = $1 AND id = $2;

-- name: ListAuditEvents :many
-- Newest first; cursor is the seq of the last row of the previous page (0 for
-- the first page; the CASE keeps the bound an index condition). The org's
-- entries and, when @with_team is set (owner and admin sessions only), the
-- team-level entries of @team_id: those that belong to no org (about its
-- people, memberships and invitations). Each branch walks its own index newest
-- first (audit_events_org_seq_idx, audit_events_team_level_seq_idx) and
-- stops at @row_limit rows, so a page costs the same on any size of log.
(SELECT o.* FROM audit_events o
   WHERE o.org_id = @org_id AND @org_id::text <> ''
    AND o.seq < CASE WHEN @before_seq::bigint = 0 THEN 9223372036854775807 ELSE @before_seq::bigint END
    AND (@kind::text = '' OR o.kind = @kind)
    AND (@tool::text = '' OR o.tool = @tool)
    AND (@tenant::text = '' OR o.tenant = @tenant)
    AND (@outcome::text = '' OR o.outcome = @outcome)
    AND (sqlc.narg('since')::timestamptz IS NULL OR o.occurred_at >= sqlc.narg('since'))
    AND (sqlc.narg('until')::timestamptz IS NULL OR o.occurred_at < sqlc.narg('until'))
   ORDER BY o.seq DESC
   LIMIT @row_limit)
UNION ALL
(SELECT t.* FROM audit_events t
   WHERE @with_team::boolean AND t.team_id = @team_id AND @team_id::text <> '' AND t.org_id = ''
    AND -t.seq > -CASE WHEN @before_seq::bigint = 0 THEN 9223372036854775807 ELSE @before_seq::bigint END
    AND (@kind::text = '' OR t.kind = @kind)
    AND (@tool::text = '' OR t.tool = @tool)
    AND (@tenant::text = '' OR t.tenant = @tenant)
    AND (@outcome::text = '' OR t.outcome = @outcome)
    AND (sqlc.narg('since')::timestamptz IS NULL OR t.occurred_at >= sqlc.narg('since'))
    AND (sqlc.narg('until')::timestamptz IS NULL OR t.occurred_at < sqlc.narg('until'))
   ORDER BY -t.seq
   LIMIT @row_limit)
ORDER BY seq DESC
LIMIT @row_limit;

-- name: ListUserTeamIDs :many
-- The teams a person belongs to now: where an entry about them is audited.
SELECT team_id FROM memberships WHERE user_id = $1 ORDER BY team_id;

-- name: BillingTotals :one
-- Billable audit rows not refunded, and their cost, for a team: must equal
-- the billed totals and the drop in balance.
SELECT count(*)::bigint AS calls, coalesce(sum(cost_micros), 0)::bigint AS cost_micros
FROM audit_events a WHERE a.team_id = $1 AND a.billable
  AND NOT EXISTS (SELECT 1 FROM call_refunds r WHERE r.audit_id = a.id);

-- name: RecordAuditBatch :one
-- One group commit: see migrations/003_record_audit_batch.sql, fenced first
-- as migrations/010_fence_audit_batches.sql explains (a CTE calling a volatile
-- function is evaluated once, before the outer query reads its row); each
-- team's calls charged by migrations/031_charge_calls.sql.
WITH opened AS (SELECT oakallow_open_audit_batch((@ids::text[])[1]))
SELECT oakallow_record_audit_batch(
    @ids::text[], @org_ids::text[], @team_ids::text[], @occurred_at::timestamptz[],
    @actor_kinds::text[], @actor_ids::text[], @kinds::text[], @subjects::text[],
    @outcomes::text[], @tools::text[], @tenants::text[], @billable::boolean[],
    @details::jsonb[], @cost::bigint, @now::timestamptz, @enforce::boolean, @low_threshold::bigint
)::boolean[] AS charged FROM opened;

-- name: RecordAuditOne :one
-- A group commit of one entry (every commit at concurrency 1): see
-- migrations/029_record_audit_one.sql, which fences it as well; charged by
-- migrations/031_charge_calls.sql, as a batch's calls are.
SELECT oakallow_record_audit_one(
    @id::text, @org_id::text, @team_id::text, @occurred_at::timestamptz,
    @actor_kind::text, @actor_id::text, @kind::text, @subject::text,
    @outcome::text, @tool::text, @tenant::text, @billable::boolean,
    @details::jsonb, @cost::bigint, @now::timestamptz, @enforce::boolean, @low_threshold::bigint
)::boolean AS charged;

-- name: AuditBillableByIDs :many
-- Which of @ids are in the audit log, and whether each was charged: how the
-- recorder learns the outcome of a group commit whose reply was lost.
SELECT id, billable FROM audit_events WHERE id = ANY(@ids::text[]);

-- name: FenceAuditBatch :exec
-- Makes the outcome of the batch whose first audit id is @id final (waiting
-- while it runs): see migrations/010_fence_audit_batches.sql.
SELECT oakallow_fence_audit_batch(@id::text);
