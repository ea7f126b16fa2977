-- The first attempt of a delivery is made in the worker process that recorded
-- it; only a retryable failure starts a DeliveryWorkflow, and handed_off_at
-- records when one was started for the row. A pending row not handed off is
-- either being attempted right now or was stranded (the worker died, or
-- Temporal refused the start): the worker's sweeper claims rows untouched
-- for a while (updated_at, bumped by every attempt, redelivery and claim)
-- and starts their workflows.
ALTER TABLE webhook_deliveries ADD COLUMN handed_off_at timestamptz;

-- Rows already in a workflow's retry schedule when this migration runs were
-- started by the previous code; mark them so the sweep leaves them alone.
UPDATE webhook_deliveries SET handed_off_at = updated_at
WHERE status = 'pending' AND attempts > 0;

DROP INDEX webhook_deliveries_unattempted_idx;
CREATE INDEX webhook_deliveries_stranded_idx ON webhook_deliveries (updated_at)
    WHERE status = 'pending' AND handed_off_at IS NULL;

---- create above / drop below ----

DROP INDEX webhook_deliveries_stranded_idx;
CREATE INDEX webhook_deliveries_unattempted_idx ON webhook_deliveries (created_at)
    WHERE status = 'pending' AND attempts = 0;
ALTER TABLE webhook_deliveries DROP COLUMN handed_off_at;
