-- "Add to Slack" installs in progress (SPEC §4; RFC 6749 §10.12). A
-- management key starts an install and gets Slack's authorize URL carrying
-- a random state; Slack sends the installer's browser back to the public
-- callback with that state. The row binds the state to the org, the key
-- that started the install and the channel it will create. Only the state's
-- SHA-256 is stored, so reading this table does not let anyone complete an
-- install. A row is deleted when the callback presents its state (single
-- use, whatever happens next) and rows past expires_at are purged whenever
-- an install starts.

CREATE TABLE slack_oauth_states (
    state_hash   bytea PRIMARY KEY CHECK (length(state_hash) = 32),
    org_id       text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    team_id      text NOT NULL,
    key_id       text NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    channel_name text NOT NULL CHECK (length(channel_name) BETWEEN 1 AND 200),
    scope        text NOT NULL CHECK (scope IN ('all', 'level_1', 'level_2')),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL CHECK (expires_at > created_at)
);
CREATE INDEX slack_oauth_states_org_idx ON slack_oauth_states (org_id);
CREATE INDEX slack_oauth_states_expires_idx ON slack_oauth_states (expires_at);

---- create above / drop below ----

DROP TABLE slack_oauth_states;
