-- name: CreateSlackOAuthState :exec
-- Records an "Add to Slack" install in progress (migrations 004, 027),
-- started by a management key (@key_id) or a session (@session_id); the
-- other is ''. state_hash is the SHA-256 of the state sent to Slack; the
-- state itself is never stored.
INSERT INTO slack_oauth_states (state_hash, org_id, team_id, key_id, session_id, channel_name, scope, created_at, expires_at)
VALUES (@state_hash, @org_id, @team_id, nullif(@key_id::text, ''), nullif(@session_id::text, ''), @channel_name, @scope,
        @created_at, @expires_at);

-- name: CountPendingSlackOAuthStates :one
-- Unexpired installs the org has in progress.
SELECT count(*) FROM slack_oauth_states WHERE org_id = $1 AND expires_at > @now;

-- name: DeleteExpiredSlackOAuthStates :execrows
-- Purges the states of installs nobody finished in time.
DELETE FROM slack_oauth_states WHERE expires_at <= @now;

-- name: ConsumeSlackOAuthState :one
-- Spends a state: the row is deleted whatever the outcome, so a state works
-- at most once even when two callbacks race. key_id or session_id ('' for
-- the other) says who started it; key_active tells whether a starting key
-- is still valid (a session is checked against the callback's cookie).
WITH spent AS (
    DELETE FROM slack_oauth_states WHERE state_hash = $1 RETURNING *
)
SELECT spent.org_id, spent.team_id, coalesce(spent.key_id, '')::text AS key_id, coalesce(spent.session_id, '')::text AS session_id,
       spent.channel_name, spent.scope, spent.created_at, spent.expires_at,
       coalesce(k.revoked_at IS NULL AND k.org_id = spent.org_id, false)::boolean AS key_active
FROM spent LEFT JOIN api_keys k ON k.id = spent.key_id;
