-- Notification channels (Slack, PagerDuty, generic HTTPS webhook). config
-- holds the non-secret settings; secret_ciphertext holds the channel's
-- credential sealed with activities/sealed under the additional data
-- "channel:<id>": the Slack incoming-webhook URL, the PagerDuty API key, or
-- the generic webhook's signing secret.

-- name: CreateChannel :one
INSERT INTO notification_channels (id, org_id, kind, name, scope, config, secret_ciphertext, enabled, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
RETURNING *;

-- name: GetChannel :one
SELECT * FROM notification_channels WHERE org_id = $1 AND id = $2;

-- name: LockChannel :one
SELECT * FROM notification_channels WHERE org_id = $1 AND id = $2 FOR UPDATE;

-- name: ListChannelsPage :many
SELECT * FROM notification_channels WHERE org_id = $1 AND id > @after ORDER BY id LIMIT @row_limit;

-- name: UpdateChannel :one
UPDATE notification_channels SET name = $3, scope = $4, config = $5, secret_ciphertext = $6, enabled = $7, updated_at = $8
WHERE org_id = $1 AND id = $2
RETURNING *;

-- name: DeleteChannel :one
DELETE FROM notification_channels WHERE org_id = $1 AND id = $2 RETURNING id;
