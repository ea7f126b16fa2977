-- Open approval queues in the dashboard update when an approval is created,
-- decided or expires, on every replica (SPEC §10: a new approval shows
-- within a second). A trigger announces each change on the channel
-- oakallow_approvals with the org id as payload, so no writer can forget
-- to: the API inserts approvals, the worker's projection moves them on.
-- PostgreSQL delivers the notification when the writing transaction
-- commits, and folds identical ones of one transaction into one.
CREATE FUNCTION oakallow_notify_approval() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('oakallow_approvals', NEW.org_id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER approvals_notify_insert AFTER INSERT ON approvals
    FOR EACH ROW EXECUTE FUNCTION oakallow_notify_approval();
-- Only what a queue shows: a projection that changes none of it is silent.
CREATE TRIGGER approvals_notify_update AFTER UPDATE ON approvals
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.level IS DISTINCT FROM NEW.level
                       OR OLD.expires_at IS DISTINCT FROM NEW.expires_at)
    EXECUTE FUNCTION oakallow_notify_approval();

---- create above / drop below ----

DROP TRIGGER approvals_notify_update ON approvals;
DROP TRIGGER approvals_notify_insert ON approvals;
DROP FUNCTION oakallow_notify_approval();
