-- "Add to Slack" from the dashboard: an install is started either by a
-- management key (the REST install of migration 004) or by an owner's or
-- admin's browser session (the Settings page). A session-started state is
-- bound to that session: the callback completes it only in the browser
-- that holds the session's cookie, and only while the session is live.

ALTER TABLE slack_oauth_states
    ALTER COLUMN key_id DROP NOT NULL,
    ADD COLUMN session_id text REFERENCES sessions (id) ON DELETE CASCADE,
    ADD CONSTRAINT slack_oauth_states_starter CHECK ((key_id IS NULL) <> (session_id IS NULL));

---- create above / drop below ----

DELETE FROM slack_oauth_states WHERE key_id IS NULL;
ALTER TABLE slack_oauth_states
    DROP CONSTRAINT slack_oauth_states_starter,
    DROP COLUMN session_id,
    ALTER COLUMN key_id SET NOT NULL;
