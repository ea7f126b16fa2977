-- Sessions of people (api/sessions.go).

-- name: CreateSession :exec
INSERT INTO sessions (id, user_id, token_hash, state, method, client, user_agent, ip, created_at, last_seen_at, expires_at)
VALUES (@id, @user_id, @token_hash, @state, @method, @client, @user_agent, @ip, @created_at, @created_at, @expires_at);

-- name: AuthenticateSession :many
-- The live session with this token and the memberships that scope the
-- request: with @org_id, the membership of that org's team first (a row
-- whose org_id is empty means the user is no member of it); with @team_id,
-- that team's; otherwise any. At most two rows: enough to tell a single
-- membership from several. teams counts the user's memberships.
SELECT s.id, s.user_id, s.state, s.last_seen_at, s.expires_at,
       coalesce(m.team_id, '')::text AS team_id, coalesce(m.role, '')::text AS role, coalesce(o.id, '')::text AS org_id,
       (SELECT count(*) FROM memberships mc WHERE mc.user_id = s.user_id)::int AS teams,
       (SELECT count(*) FROM orgs oc WHERE oc.team_id = m.team_id AND oc.deleted_at IS NULL)::int AS team_orgs,
       coalesce((SELECT oc.id FROM orgs oc WHERE oc.team_id = m.team_id AND oc.deleted_at IS NULL ORDER BY oc.id LIMIT 1), '')::text AS first_org
FROM sessions s
JOIN users u ON u.id = s.user_id AND u.status = 'active'
LEFT JOIN memberships m ON m.user_id = s.user_id AND (@team_id::text = '' OR m.team_id = @team_id)
LEFT JOIN orgs o ON @org_id::text <> '' AND o.id = @org_id AND o.team_id = m.team_id AND o.deleted_at IS NULL
WHERE s.token_hash = @token_hash AND s.revoked_at IS NULL
  AND s.expires_at > @now AND s.last_seen_at > @idle_cutoff
ORDER BY (o.id IS NULL), m.team_id
LIMIT 2;

-- name: TouchSession :exec
-- Records activity (at most once a minute per session, see api/sessions.go).
UPDATE sessions SET last_seen_at = @now, ip = @ip, user_agent = @user_agent
WHERE id = @id AND revoked_at IS NULL;

-- name: MarkSessionsSeen :exec
-- Records the last use of sessions served from a replica's cache, in one
-- statement for every session used since the last (api/sessioncache.go).
UPDATE sessions s SET last_seen_at = u.at, ip = u.ip, user_agent = u.user_agent
FROM (SELECT unnest(@ids::text[]) AS id, unnest(@ats::timestamptz[]) AS at,
             unnest(@ips::text[]) AS ip, unnest(@user_agents::text[]) AS user_agent) u
WHERE s.id = u.id AND s.revoked_at IS NULL AND s.last_seen_at < u.at;

-- name: ListUserSessions :many
SELECT id, state, method, client, user_agent, ip, created_at, last_seen_at, expires_at FROM sessions
WHERE user_id = @user_id AND revoked_at IS NULL AND expires_at > @now AND last_seen_at > @idle_cutoff
ORDER BY last_seen_at DESC, id
LIMIT 200;

-- name: RevokeSession :one
UPDATE sessions SET revoked_at = @now::timestamptz
WHERE id = @id AND user_id = @user_id AND revoked_at IS NULL
RETURNING id;

-- name: RevokeOtherSessions :many
UPDATE sessions SET revoked_at = @now::timestamptz
WHERE user_id = @user_id AND id <> @keep AND revoked_at IS NULL
RETURNING id;

-- name: RevokeUserSessions :many
UPDATE sessions SET revoked_at = @now::timestamptz
WHERE user_id = @user_id AND revoked_at IS NULL
RETURNING id;

-- name: UpgradeSession :one
-- Makes an enrollment session full after a passkey verified it, under a new
-- token (the old one stops working: a token seen before the upgrade is not
-- worth more after it).
UPDATE sessions SET state = 'full', token_hash = @token_hash, method = @method, last_seen_at = @now
WHERE id = @id AND revoked_at IS NULL AND expires_at > @now
RETURNING id, user_id, client;

-- name: GetUser :one
SELECT * FROM users WHERE id = $1;

-- name: GetUserByEmail :one
SELECT * FROM users WHERE lower(email) = lower(@email) AND status = 'active';

-- name: ListUserMemberships :many
SELECT m.team_id, m.role, t.name AS team_name, m.created_at FROM memberships m JOIN teams t ON t.id = m.team_id
WHERE m.user_id = $1 ORDER BY m.created_at, m.team_id;

-- name: GetSessionExpiry :one
SELECT expires_at FROM sessions WHERE id = $1;
