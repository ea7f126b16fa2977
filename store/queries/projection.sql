-- The approval workflow's projection into PostgreSQL (package activities).

-- name: LockApprovalForProjection :one
-- The approval row, locked until the projecting transaction ends so that
-- concurrent projections of one approval apply in turn.
SELECT * FROM approvals WHERE org_id = $1 AND id = $2 FOR UPDATE;

-- name: GetApprovalForActivity :one
SELECT * FROM approvals WHERE org_id = $1 AND id = $2;

-- name: ClaimWorkflowEffect :execrows
-- Records that the write keyed (run_id, key) is being applied; 0 rows means
-- an earlier attempt already applied it and committed.
INSERT INTO workflow_effects (run_id, key, approval_id, applied_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (run_id, key) DO NOTHING;

-- name: ApplyApprovalProjection :execrows
-- Moves the approval forward to projection_seq @seq; a transition that is not
-- newer than the one already applied changes nothing (0 rows).
UPDATE approvals SET
    status = @status,
    level = @level,
    expires_at = @expires_at,
    decided_at = coalesce(sqlc.narg('decided_at'), decided_at),
    token_id = coalesce(sqlc.narg('token_id'), token_id),
    workflow_run_id = @workflow_run_id,
    projection_seq = @seq,
    updated_at = @updated_at
WHERE org_id = @org_id AND id = @id AND projection_seq < @seq;

-- name: InsertApprovalDecision :execrows
INSERT INTO approval_decisions (approval_id, level, decision, decider_kind, decider_id, decider_display, note, decided_at, request_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (approval_id, level) DO NOTHING;

-- name: InsertDecisionNote :execrows
-- Stores a decide's note before its Update is sent; 0 rows when the request id
-- already has one (a retry), which GetDecisionNote then reads back.
INSERT INTO decision_notes (request_id, approval_id, note, created_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (request_id) DO NOTHING;

-- name: GetDecisionNote :one
SELECT * FROM decision_notes WHERE request_id = $1;
