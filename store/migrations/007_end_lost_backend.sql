-- The recorder's way to make the outcome of a commit whose connection broke
-- final: signal the server process that ran it to end, and report whether
-- it is still alive. Once it is gone its transaction has committed or rolled
-- back for good, and the batch's rows say which. A PID counts as that
-- process only if it started before p_started_before (PIDs are reused).
-- pg_stat_activity is read once per transaction, so a caller polls with
-- separate calls until this returns false.
CREATE FUNCTION oakallow_end_lost_backend(p_pid int, p_started_before timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    alive boolean;
BEGIN
    SELECT EXISTS (
        SELECT 1 FROM pg_stat_activity
        WHERE pid = p_pid AND backend_start < p_started_before AND pid <> pg_backend_pid()
    ) INTO alive;
    IF alive THEN
        PERFORM pg_terminate_backend(p_pid);
    END IF;
    RETURN alive;
END $$;

---- create above / drop below ----

DROP FUNCTION oakallow_end_lost_backend(int, timestamptz);
