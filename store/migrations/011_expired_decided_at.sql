-- decided_at is when an approval reached its final status (the API documents it so), but
-- the projection set it only for decisions: expired approvals had none. The projection now
-- sets it on expiry too; this fills it in for the approvals that expired before. The expiry
-- projection set updated_at to the expiry's time, and nothing changes an expired approval
-- afterwards, so updated_at is that time.
UPDATE approvals SET decided_at = updated_at WHERE status = 'expired' AND decided_at IS NULL;

---- create above / drop below ----

-- Back to the old meaning: expired approvals carry no decided_at.
UPDATE approvals SET decided_at = NULL WHERE status = 'expired';
