-- Prepaid credit grants and the ledger.

-- name: CreateCreditGrant :exec
INSERT INTO credit_grants (id, team_id, kind, amount_micros, remaining_micros, expires_at, source, created_at)
VALUES ($1, $2, $3, $4, $4, $5, $6, $7)
ON CONFLICT (source) DO NOTHING;

-- name: ListCreditGrants :many
SELECT * FROM credit_grants WHERE team_id = $1 ORDER BY created_at, id;

-- name: LedgerDebits :one
SELECT coalesce(-sum(delta_micros), 0)::bigint AS debited_micros, coalesce(sum(calls), 0)::bigint AS calls
FROM credit_ledger WHERE team_id = $1 AND delta_micros < 0;

-- name: TeamBalance :one
-- Spendable balance now: unexpired free credit and purchased credit.
SELECT
    coalesce(sum(remaining_micros) FILTER (WHERE kind = 'free' AND expires_at > @now::timestamptz), 0)::bigint AS free_micros,
    coalesce(sum(remaining_micros) FILTER (WHERE kind = 'purchased'), 0)::bigint AS purchased_micros
FROM credit_grants WHERE team_id = @team_id;

-- name: NextFreeCreditExpiry :one
SELECT expires_at FROM credit_grants
WHERE team_id = @team_id AND kind = 'free' AND remaining_micros > 0 AND expires_at > @now::timestamptz
ORDER BY expires_at LIMIT 1;
