-- Low-balance alerts leave the database (issue 11): a credit_alerts row
-- (016, written in the transaction that crossed the threshold) is claimed by
-- one API server, which records in one transaction the credits.low event's
-- webhook and channel deliveries, its audit entries, one e-mail per owner
-- below, and sent_at.

-- One e-mail to one owner about one alert, sent by any API server with a
-- mailer. The address is read from users when it is sent, so a person who
-- changed it gets it at the new one and a deleted person gets none.
CREATE TABLE credit_alert_mails (
    alert_id        text NOT NULL REFERENCES credit_alerts (id),
    user_id         text NOT NULL REFERENCES users (id),
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text NOT NULL DEFAULT '' CHECK (length(last_error) <= 500),
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz,
    PRIMARY KEY (alert_id, user_id)
);
CREATE INDEX credit_alert_mails_due_idx ON credit_alert_mails (next_attempt_at) WHERE status = 'pending';

-- A new alert wakes every API server's sender at once (the commit that
-- crossed the threshold delivers the notification); the servers also look
-- for unsent alerts at start and every minute, so none waits for a
-- notification that was lost.
CREATE FUNCTION oakallow_notify_credit_alert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('oakallow_credit_alerts', NEW.team_id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER credit_alerts_notify_insert AFTER INSERT ON credit_alerts
    FOR EACH ROW EXECUTE FUNCTION oakallow_notify_credit_alert();

---- create above / drop below ----

DROP TRIGGER credit_alerts_notify_insert ON credit_alerts;
DROP FUNCTION oakallow_notify_credit_alert();
DROP TABLE credit_alert_mails;
