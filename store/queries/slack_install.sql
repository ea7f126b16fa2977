-- name: CreateSlackOAuthState :exec
-- Records an "Add to Slack" install in progress (migration 005). state_hash
-- is the SHA-256 of the state sent to Slack; the state itself is never stored.
INSERT INTO slack_oauth_states (state_hash, org_id, team_id, key_id, channel_name, scope, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- name: CountPendingSlackOAuthStates :one
-- Unexpired installs the org has in progress.
SELECT count(*) FROM slack_oauth_states WHERE org_id = $1 AND expires_at > @now;

-- name: DeleteExpiredSlackOAuthStates :execrows
-- Purges the states of installs nobody finished in time.
DELETE FROM slack_oauth_states WHERE expires_at <= @now;

-- name: ConsumeSlackOAuthState :one
-- Spends a state: the row is deleted whatever the outcome, so a state works
-- at most once even when two callbacks race. key_active tells whether the
-- key that started the install is still valid.
WITH spent AS (
    DELETE FROM slack_oauth_states WHERE state_hash = $1 RETURNING *
)
SELECT spent.org_id, spent.team_id, spent.key_id, spent.channel_name, spent.scope, spent.created_at, spent.expires_at,
       (k.revoked_at IS NULL AND k.org_id = spent.org_id)::boolean AS key_active
FROM spent JOIN api_keys k ON k.id = spent.key_id;
