-- Deliveries recorded but never attempted: the worker's sweeper starts their
-- delivery workflow when the activity that recorded them could not (Temporal
-- unreachable until its retries ran out). Kept small by the WHERE clause.
CREATE INDEX webhook_deliveries_unattempted_idx ON webhook_deliveries (created_at)
    WHERE status = 'pending' AND attempts = 0;

---- create above / drop below ----

DROP INDEX webhook_deliveries_unattempted_idx;
