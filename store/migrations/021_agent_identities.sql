-- Agent identities (SPEC §1, §7): named, org-scoped bearer credentials
-- oak_agent_… for autonomous agents. Like API keys, only the SHA-256 of the
-- secret is kept, with a short prefix for display; revoked and expired
-- identities stop authenticating at the next key-cache reload.
CREATE TABLE agent_identities (
    id           text PRIMARY KEY,
    org_id       text NOT NULL REFERENCES orgs (id),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    prefix       text NOT NULL,
    hash         bytea NOT NULL UNIQUE,
    created_by   text,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX agent_identities_org_idx ON agent_identities (org_id, created_at DESC);

---- create above / drop below ----

DROP TABLE agent_identities;
