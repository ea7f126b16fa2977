-- name: CreateAgentIdentity :exec
INSERT INTO agent_identities (id, org_id, name, prefix, hash, created_by, created_at, expires_at)
VALUES (@id, @org_id, @name, @prefix, @hash, @created_by, @created_at, @expires_at);

-- name: LoadActiveAgentIdentities :many
-- Every agent identity that is neither revoked nor expired, with its org's
-- team, for the in-memory key cache (which also checks expiry per request).
SELECT a.id, a.org_id, o.team_id, a.hash, a.expires_at
FROM agent_identities a JOIN orgs o ON o.id = a.org_id
WHERE a.revoked_at IS NULL AND (a.expires_at IS NULL OR a.expires_at > @now::timestamptz) AND o.deleted_at IS NULL;

-- name: ListOrgAgentIdentities :many
SELECT a.id, a.name, a.prefix, a.created_by, a.created_at, a.expires_at, a.revoked_at, a.last_used_at,
       coalesce(u.email, '')::text AS created_by_email
FROM agent_identities a LEFT JOIN users u ON u.id = a.created_by
WHERE a.org_id = $1
ORDER BY a.created_at DESC, a.id DESC
LIMIT 1000;

-- name: CountOrgActiveAgentIdentities :one
SELECT count(*)::int FROM agent_identities
WHERE org_id = @org_id AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > @now::timestamptz);

-- name: RevokeAgentIdentity :one
UPDATE agent_identities SET revoked_at = @now::timestamptz
WHERE id = @id AND org_id = @org_id AND revoked_at IS NULL
RETURNING id, prefix, name;

-- name: MarkAgentIdentitiesUsed :exec
-- Records when agent identities were last used (minute precision, see api.KeyCache).
UPDATE agent_identities a SET last_used_at = greatest(a.last_used_at, u.at)
FROM (SELECT unnest(@ids::text[]) AS id, unnest(@ats::timestamptz[]) AS at) u
WHERE a.id = u.id;
