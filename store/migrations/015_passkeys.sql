-- Passkeys (WebAuthn), their ceremonies, recovery codes and the evidence a
-- reviewer's passkey leaves on a decision (issue 9, SPEC §8).

-- The WebAuthn user handle: 64 random bytes, set once per user at the first
-- enrollment and never changed, so every passkey of the user carries it.
ALTER TABLE users ADD COLUMN webauthn_handle bytea
    CHECK (webauthn_handle IS NULL OR length(webauthn_handle) = 64);
CREATE UNIQUE INDEX users_webauthn_handle_key ON users (webauthn_handle);

CREATE TABLE passkeys (
    id               text PRIMARY KEY,
    user_id          text NOT NULL REFERENCES users (id),
    -- The credential id the authenticator chose (at most 1023 bytes, WebAuthn §5.1).
    credential_id    bytea NOT NULL UNIQUE CHECK (length(credential_id) BETWEEN 1 AND 1023),
    -- The credential public key, COSE_Key encoded, as attested.
    public_key       bytea NOT NULL CHECK (length(public_key) BETWEEN 1 AND 4096),
    attestation_type text NOT NULL DEFAULT '',
    aaguid           bytea NOT NULL DEFAULT '\x',
    sign_count       bigint NOT NULL DEFAULT 0 CHECK (sign_count BETWEEN 0 AND 4294967295),
    transports       text[] NOT NULL DEFAULT '{}',
    backup_eligible  boolean NOT NULL DEFAULT false,
    backup_state     boolean NOT NULL DEFAULT false,
    name             text NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    created_at       timestamptz NOT NULL,
    last_used_at     timestamptz
);
CREATE INDEX passkeys_user_idx ON passkeys (user_id);

-- Server-side WebAuthn ceremony state. A row is consumed by the one
-- DELETE … RETURNING that finishes it, so it can be used once; expired rows
-- are refused and swept.
CREATE TABLE webauthn_ceremonies (
    id           text PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('register', 'login', 'decide')),
    -- The user the ceremony is for; NULL for a discoverable sign-in.
    user_id      text REFERENCES users (id),
    session_data jsonb NOT NULL,
    -- For 'decide': what the challenge binds.
    approval_id  text,
    org_id       text,
    level        smallint CHECK (level IN (1, 2)),
    decision     text CHECK (decision IN ('approve', 'deny')),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX webauthn_ceremonies_expires_idx ON webauthn_ceremonies (expires_at);

-- Recovery codes, SHA-256 only. A code is spent by the one UPDATE that sets used_at.
CREATE TABLE recovery_codes (
    user_id    text NOT NULL REFERENCES users (id),
    hash       bytea NOT NULL CHECK (length(hash) = 32),
    created_at timestamptz NOT NULL,
    used_at    timestamptz,
    PRIMARY KEY (user_id, hash)
);

-- The passkey assertion a reviewer made for a decision, kept as evidence. The
-- API writes it, keyed by the decide's request id, before it sends the decide
-- Update; it is evidence of a decision only when approval_decisions holds a
-- decision with the same request id (a refused decide leaves a row that is
-- never served).
CREATE TABLE decision_evidence (
    request_id         text PRIMARY KEY CHECK (length(request_id) BETWEEN 1 AND 200),
    approval_id        text NOT NULL REFERENCES approvals (id),
    level              smallint NOT NULL CHECK (level IN (1, 2)),
    decision           text NOT NULL CHECK (decision IN ('approve', 'deny')),
    user_id            text NOT NULL,
    passkey_id         text NOT NULL,
    credential_id      bytea NOT NULL,
    public_key         bytea NOT NULL,
    rp_id              text NOT NULL,
    tool_name          text NOT NULL,
    params_hash        text NOT NULL,
    client_data_json   bytea NOT NULL,
    authenticator_data bytea NOT NULL,
    signature          bytea NOT NULL,
    user_handle        bytea NOT NULL DEFAULT '\x',
    created_at         timestamptz NOT NULL
);
CREATE INDEX decision_evidence_approval_idx ON decision_evidence (approval_id);

-- The decide request id of each projected decision, so evidence (keyed by it)
-- is tied to the decision that won. Empty for decisions projected before.
ALTER TABLE approval_decisions ADD COLUMN request_id text NOT NULL DEFAULT '';

---- create above / drop below ----

ALTER TABLE approval_decisions DROP COLUMN request_id;
DROP TABLE decision_evidence;
DROP TABLE recovery_codes;
DROP TABLE webauthn_ceremonies;
DROP TABLE passkeys;
DROP INDEX users_webauthn_handle_key;
ALTER TABLE users DROP COLUMN webauthn_handle;
