-- Prepaid credit: credit_grants records every credit added (free or
-- purchased); team_balances holds what is spendable now and what has been
-- billed. Charging happens in oakallow_record_audit_batch.

-- name: CreateCreditGrant :exec
-- Records a grant (deduplicated by source, e.g. a Stripe event id) and adds
-- it to the team's balance, in one statement. Free credit: the bucket keeps
-- the unexpired amount plus the new one, and the later expiry.
WITH grant_row AS (
    INSERT INTO credit_grants (id, team_id, kind, amount_micros, expires_at, source, created_at)
    VALUES (@id, @team_id, @kind, @amount_micros, sqlc.narg('expires_at'), @source, @created_at)
    ON CONFLICT (source) DO NOTHING
    RETURNING team_id, kind, amount_micros, expires_at, created_at
)
INSERT INTO team_balances (team_id, free_micros, free_expires_at, purchased_micros)
SELECT team_id,
       CASE WHEN kind = 'free' THEN amount_micros ELSE 0 END,
       CASE WHEN kind = 'free' THEN expires_at END,
       CASE WHEN kind = 'purchased' THEN amount_micros ELSE 0 END
FROM grant_row
ON CONFLICT (team_id) DO UPDATE SET
    free_micros = CASE
        WHEN EXCLUDED.free_expires_at IS NULL THEN team_balances.free_micros
        WHEN team_balances.free_expires_at > @created_at::timestamptz THEN team_balances.free_micros + EXCLUDED.free_micros
        ELSE EXCLUDED.free_micros END,
    free_expires_at = CASE
        WHEN EXCLUDED.free_expires_at IS NULL THEN team_balances.free_expires_at
        WHEN team_balances.free_expires_at > @created_at::timestamptz THEN greatest(team_balances.free_expires_at, EXCLUDED.free_expires_at)
        ELSE EXCLUDED.free_expires_at END,
    purchased_micros = team_balances.purchased_micros + EXCLUDED.purchased_micros;

-- name: GetTeamBalance :one
SELECT * FROM team_balances WHERE team_id = $1;
