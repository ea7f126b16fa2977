-- The OAuth 2.1 authorization server of the MCP connector (issue 12, SPEC §7):
-- dynamically registered public clients, pending authorization requests
-- awaiting a person's consent, grants (one per consent: the family of every
-- code and token it yields), authorization codes and tokens. Codes and
-- tokens are opaque random strings stored only as SHA-256.

-- RFC 7591 clients. Public clients only (token_endpoint_auth_method none,
-- PKCE S256 required): an MCP client on someone's machine cannot keep a secret.
CREATE TABLE oauth_clients (
    id            text PRIMARY KEY,
    name          text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    client_uri    text NOT NULL DEFAULT '' CHECK (length(client_uri) <= 2000),
    redirect_uris text[] NOT NULL CHECK (cardinality(redirect_uris) BETWEEN 1 AND 10),
    client_ip     text NOT NULL DEFAULT '' CHECK (length(client_ip) <= 64),
    created_at    timestamptz NOT NULL
);

-- An authorization request (RFC 6749 §4.1.1 with PKCE and RFC 8707) kept
-- server-side while the person signs in and consents, so no request
-- parameter has to survive the sign-in pages. The consent form's CSRF token
-- is bound to the session that was shown the form.
CREATE TABLE oauth_requests (
    id             text PRIMARY KEY,
    client_id      text NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    redirect_uri   text NOT NULL CHECK (length(redirect_uri) <= 2000),
    state          text NOT NULL DEFAULT '' CHECK (length(state) <= 1024),
    code_challenge text NOT NULL CHECK (length(code_challenge) = 43),
    scopes         text[] NOT NULL,
    resource       text NOT NULL,
    session_id     text,
    csrf_hash      bytea,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    decided_at     timestamptz
);
CREATE INDEX oauth_requests_expires_idx ON oauth_requests (expires_at);

-- A grant: what one person consented to for one client, org and resource.
-- Its code, and every access and refresh token issued from it, belong to it;
-- revoking the grant (code reuse, refresh-token reuse, RFC 7009 revocation)
-- ends them all at once.
CREATE TABLE oauth_grants (
    id             text PRIMARY KEY,
    client_id      text NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    user_id        text NOT NULL REFERENCES users (id),
    org_id         text NOT NULL REFERENCES orgs (id),
    team_id        text NOT NULL REFERENCES teams (id),
    scopes         text[] NOT NULL,
    resource       text NOT NULL,
    created_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text NOT NULL DEFAULT ''
);
CREATE INDEX oauth_grants_user_idx ON oauth_grants (user_id);

CREATE TABLE oauth_codes (
    code_hash      bytea PRIMARY KEY CHECK (length(code_hash) = 32),
    grant_id       text NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    redirect_uri   text NOT NULL,
    code_challenge text NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);
CREATE INDEX oauth_codes_expires_idx ON oauth_codes (expires_at);

CREATE TABLE oauth_tokens (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    grant_id   text NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('access', 'refresh')),
    scopes     text[] NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    -- Refresh tokens: when it was exchanged (rotation); a second exchange is reuse.
    used_at    timestamptz
);
CREATE INDEX oauth_tokens_grant_idx ON oauth_tokens (grant_id);
CREATE INDEX oauth_tokens_expires_idx ON oauth_tokens (expires_at);
