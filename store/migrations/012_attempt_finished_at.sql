-- An attempt is recorded before it is sent and its outcome when it is known, so an attempt
-- whose process died mid-send (the receiver may have got it, and gets it again after the
-- restart) still shows. finished_at is when the outcome was recorded; NULL while the
-- attempt runs, and for good when its process stopped first. Attempts recorded before
-- this migration were recorded whole, when they finished.
ALTER TABLE webhook_attempts ADD COLUMN finished_at timestamptz;
UPDATE webhook_attempts SET finished_at = attempted_at + latency_ms * interval '1 millisecond';

---- create above / drop below ----

ALTER TABLE webhook_attempts DROP COLUMN finished_at;
