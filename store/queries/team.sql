-- Orgs, API keys, invitations and members managed by people (api/team.go).

-- name: ListTeamOrgs :many
SELECT id, name, created_at FROM orgs WHERE team_id = $1 AND deleted_at IS NULL ORDER BY created_at, id LIMIT 1000;

-- name: RenameOrg :one
UPDATE orgs SET name = @name, updated_at = @now WHERE id = @id AND team_id = @team_id AND deleted_at IS NULL
RETURNING id, name, created_at;

-- name: DeleteOrg :one
UPDATE orgs SET deleted_at = @now::timestamptz, updated_at = @now WHERE id = @id AND team_id = @team_id AND deleted_at IS NULL
RETURNING id;

-- name: RevokeOrgKeys :many
UPDATE api_keys SET revoked_at = @now::timestamptz WHERE org_id = @org_id AND revoked_at IS NULL RETURNING id;

-- name: ListOrgKeys :many
SELECT k.id, k.name, k.prefix, k.tier, k.created_by, k.created_at, k.last_used_at, k.revoked_at,
       coalesce(u.email, '')::text AS created_by_email
FROM api_keys k LEFT JOIN users u ON u.id = k.created_by
WHERE k.org_id = $1
ORDER BY k.created_at DESC, k.id DESC
LIMIT 1000;

-- name: CountOrgActiveKeys :one
SELECT count(*)::int FROM api_keys WHERE org_id = $1 AND revoked_at IS NULL;

-- name: RevokeAPIKey :one
UPDATE api_keys SET revoked_at = @now::timestamptz WHERE id = @id AND org_id = @org_id AND revoked_at IS NULL
RETURNING id, prefix, tier;

-- name: MarkKeysUsed :exec
-- Records when keys were last used (minute precision, see api.KeyCache).
UPDATE api_keys k SET last_used_at = greatest(k.last_used_at, u.at)
FROM (SELECT unnest(@ids::text[]) AS id, unnest(@ats::timestamptz[]) AS at) u
WHERE k.id = u.id;

-- name: CreateInvitation :exec
INSERT INTO invitations (id, team_id, email, role, token_hash, invited_by, created_at, expires_at)
VALUES (@id, @team_id, @email, @role, @token_hash, @invited_by, @created_at, @expires_at);

-- name: ListOpenInvitations :many
SELECT id, email, role, invited_by, created_at, expires_at FROM invitations
WHERE team_id = @team_id AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > @now
ORDER BY created_at DESC, id DESC
LIMIT 1000;

-- name: CountOpenInvitations :one
SELECT count(*)::int FROM invitations
WHERE team_id = @team_id AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > @now;

-- name: RevokeInvitation :one
UPDATE invitations SET revoked_at = @now::timestamptz
WHERE id = @id AND team_id = @team_id AND accepted_at IS NULL AND revoked_at IS NULL
RETURNING id, email, role;

-- name: ListTeamMembers :many
SELECT u.id, u.email, u.name, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id
WHERE m.team_id = $1 AND u.status = 'active'
ORDER BY m.created_at, u.id
LIMIT 5000;

-- name: LockTeamMemberships :many
-- Locks the team's memberships, so two role changes cannot each leave the
-- other's owner as the last and both demote.
SELECT user_id, role FROM memberships WHERE team_id = $1 ORDER BY user_id FOR UPDATE;

-- name: SetMemberRole :exec
UPDATE memberships SET role = @role WHERE team_id = @team_id AND user_id = @user_id;

-- name: RemoveMember :exec
DELETE FROM memberships WHERE team_id = @team_id AND user_id = @user_id;

-- name: GetTeam :one
SELECT * FROM teams WHERE id = $1;
