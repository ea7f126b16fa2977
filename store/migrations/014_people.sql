-- People (issue 9): users become people who may belong to several teams, each
-- membership with a role; invitations, e-mail sign-in attempts, sessions and
-- attempt limits that hold across replicas. Passkeys, ceremonies and recovery
-- codes have their own migration.

CREATE TABLE memberships (
    team_id    text NOT NULL REFERENCES teams (id),
    user_id    text NOT NULL REFERENCES users (id),
    -- owner and admin manage the team's orgs, keys, people and settings;
    -- reviewer sees and decides the approvals of the team's orgs.
    role       text NOT NULL CHECK (role IN ('owner', 'admin', 'reviewer')),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

INSERT INTO memberships (team_id, user_id, role, created_at)
SELECT team_id, id, CASE role WHEN 'member' THEN 'reviewer' ELSE role END, created_at FROM users;

ALTER TABLE users DROP COLUMN team_id, DROP COLUMN role;

-- An org is deleted softly: its audit log, approvals and billing stay, its
-- keys are revoked with it, and no session can select it.
ALTER TABLE orgs ADD COLUMN deleted_at timestamptz;
DROP INDEX orgs_team_name_key;
CREATE UNIQUE INDEX orgs_team_name_key ON orgs (team_id, name) WHERE deleted_at IS NULL;

ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;

-- Invitations by e-mail. The token is sent to the address (or printed by
-- `oakallow bootstrap`) and stored as SHA-256 only.
CREATE TABLE invitations (
    id          text PRIMARY KEY,
    team_id     text NOT NULL REFERENCES teams (id),
    email       text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'reviewer')),
    token_hash  bytea NOT NULL UNIQUE,
    invited_by  text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by text REFERENCES users (id),
    revoked_at  timestamptz
);
CREATE INDEX invitations_team_idx ON invitations (team_id, created_at DESC);

-- One e-mail sign-in (or sign-up) attempt: the client holds the attempt
-- token, the mailbox holds the code. Only SHA-256(token) and
-- SHA-256(token ":" code) are stored, so neither the database nor its backups
-- can be used to finish an attempt.
CREATE TABLE sign_in_attempts (
    id            text PRIMARY KEY,
    token_hash    bytea NOT NULL UNIQUE,
    code_hash     bytea NOT NULL,
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    -- sign_in: an existing user; sign_up: a new team (open sign-up);
    -- invitation: joins the invitation's team; none: nobody may use this
    -- address here, answered like the others so addresses cannot be probed.
    purpose       text NOT NULL CHECK (purpose IN ('sign_in', 'sign_up', 'invitation', 'none')),
    user_id       text REFERENCES users (id),
    invitation_id text REFERENCES invitations (id),
    tries         smallint NOT NULL DEFAULT 0,
    client_ip     text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    consumed_at   timestamptz
);
CREATE INDEX sign_in_attempts_expires_idx ON sign_in_attempts (expires_at);

-- Sessions: the token is opaque and stored as SHA-256. An 'enrollment'
-- session may only enroll a passkey and sign out (passkey MFA is mandatory);
-- a 'full' session was verified with a passkey.
CREATE TABLE sessions (
    id           text PRIMARY KEY,
    user_id      text NOT NULL REFERENCES users (id),
    token_hash   bytea NOT NULL UNIQUE,
    state        text NOT NULL CHECK (state IN ('enrollment', 'full')),
    method       text NOT NULL CHECK (method IN ('email_code', 'passkey', 'recovery_code')),
    client       text NOT NULL CHECK (client IN ('browser', 'app')),
    user_agent   text NOT NULL DEFAULT '' CHECK (length(user_agent) <= 512),
    ip           text NOT NULL DEFAULT '' CHECK (length(ip) <= 64),
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX sessions_user_idx ON sessions (user_id, created_at DESC) WHERE revoked_at IS NULL;

-- Attempt limits shared by every replica: a fixed window per (scope,
-- subject). Subjects are SHA-256 of the e-mail address or the client address.
CREATE TABLE auth_limits (
    scope        text NOT NULL,
    subject      bytea NOT NULL,
    window_start timestamptz NOT NULL,
    count        integer NOT NULL,
    PRIMARY KEY (scope, subject)
);
