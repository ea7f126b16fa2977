-- Webhook and notification-channel deliveries and their attempts, as the
-- delivery activities write them (the API's reads are in approvals_api.sql).

-- name: InsertWebhookDelivery :execrows
-- 0 rows: the delivery with this dedup_key was already recorded.
INSERT INTO webhook_deliveries (id, org_id, dedup_key, event_id, event_type, target_kind, channel_id, url, payload, status, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $10)
ON CONFLICT (dedup_key) DO NOTHING;

-- name: GetWebhookDeliveryByDedupKey :one
SELECT * FROM webhook_deliveries WHERE dedup_key = $1;

-- name: GetWebhookDeliveryByID :one
SELECT * FROM webhook_deliveries WHERE id = $1;

-- name: BeginWebhookAttempt :one
-- Records an attempt — before it is sent (finished_at NULL, no outcome yet, see
-- FinishWebhookAttempt), or whole when nothing could be sent — and counts it
-- on the delivery, if still pending, with the URL it goes to. One statement,
-- so both happen or neither, in one round trip.
WITH counted AS (
    UPDATE webhook_deliveries SET attempts = attempts + 1, url = @url, updated_at = @updated_at
    WHERE id = @delivery_id AND status = 'pending'
)
INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, latency_ms, error, finished_at)
VALUES (@delivery_id, @attempted_at, @status_code, @latency_ms, @error, @finished_at)
RETURNING seq;

-- name: FinishWebhookAttempt :exec
-- Records the outcome of attempt @seq, recorded before it was sent, and when
-- @delivered marks its delivery delivered if still pending. One statement, so
-- both happen or neither, in one round trip.
WITH finished AS (
    UPDATE webhook_attempts SET status_code = @status_code, latency_ms = @latency_ms, error = @error,
        finished_at = @finished_at
    WHERE seq = @seq AND finished_at IS NULL
)
UPDATE webhook_deliveries SET status = 'delivered', delivered_at = @finished_at, updated_at = @finished_at
WHERE id = @delivery_id AND status = 'pending' AND @delivered::boolean;

-- name: MarkWebhookDeliveryFailed :execrows
UPDATE webhook_deliveries SET status = 'failed', updated_at = $2
WHERE id = $1 AND status = 'pending';

-- name: ReopenWebhookDelivery :one
-- Puts a finished (delivered or failed) delivery back to pending for a
-- redelivery; no row when it does not exist or is still pending. The row is
-- not handed off until the redelivery's workflow has started, so a redelivery
-- that dies before starting it is swept.
UPDATE webhook_deliveries SET status = 'pending', delivered_at = NULL, handed_off_at = NULL, updated_at = $3
WHERE org_id = $1 AND id = $2 AND status <> 'pending'
RETURNING *;

-- name: ListEnabledChannelsForOrg :many
SELECT * FROM notification_channels WHERE org_id = $1 AND enabled ORDER BY created_at, id;

-- name: GetChannelForDelivery :one
SELECT * FROM notification_channels WHERE org_id = $1 AND id = $2;

-- name: RestoreWebhookDelivery :exec
-- Undoes ReopenWebhookDelivery when the redelivery could not be started.
UPDATE webhook_deliveries SET status = @status, delivered_at = @delivered_at, handed_off_at = @handed_off_at,
    updated_at = @updated_at
WHERE org_id = @org_id AND id = @id AND status = 'pending';

-- name: MarkWebhookDeliveriesHandedOff :exec
-- Records that a DeliveryWorkflow was started for each of @ids; a row marked
-- already keeps its first time.
UPDATE webhook_deliveries SET handed_off_at = @handed_off_at::timestamptz
WHERE id = ANY(@ids::text[]) AND handed_off_at IS NULL;

-- name: ClaimStrandedDeliveries :many
-- Claims up to @row_limit pending deliveries that no DeliveryWorkflow has
-- taken and nothing touched since @before (oldest first), for the sweeper:
-- claiming moves updated_at to @claimed_at, so other sweepers skip them (and
-- SKIP LOCKED skips rows another sweeper is claiming) until the claim is as
-- old as @before is now. A sweeper that dies after claiming delays the rows
-- by one sweep, and loses none.
UPDATE webhook_deliveries SET updated_at = @claimed_at
WHERE id IN (
    SELECT s.id FROM webhook_deliveries s
    WHERE s.status = 'pending' AND s.handed_off_at IS NULL AND s.updated_at < @before
    ORDER BY s.updated_at
    LIMIT @row_limit
    FOR UPDATE SKIP LOCKED
)
RETURNING id, org_id;
