-- Connected MCP clients are listed per org on the dashboard (owners and
-- admins revoke them there): when each grant last authenticated a request,
-- written at most once a minute per grant, and an index to list an org's
-- grants newest first.
ALTER TABLE oauth_grants ADD COLUMN last_used_at timestamptz;
CREATE INDEX oauth_grants_org_idx ON oauth_grants (org_id, created_at DESC, id DESC) WHERE revoked_at IS NULL;

---- create above / drop below ----

DROP INDEX oauth_grants_org_idx;
ALTER TABLE oauth_grants DROP COLUMN last_used_at;
