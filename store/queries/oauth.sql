-- The OAuth 2.1 authorization server of the MCP connector (api/oauth).

-- name: CreateOAuthClient :exec
INSERT INTO oauth_clients (id, name, client_uri, redirect_uris, client_ip, created_at)
VALUES (@id, @name, @client_uri, @redirect_uris, @client_ip, @created_at);

-- name: GetOAuthClient :one
SELECT * FROM oauth_clients WHERE id = @id;

-- name: CreateOAuthRequest :exec
INSERT INTO oauth_requests (id, client_id, redirect_uri, state, code_challenge, scopes, resource, created_at, expires_at)
VALUES (@id, @client_id, @redirect_uri, @state, @code_challenge, @scopes, @resource, @created_at, @expires_at);

-- name: GetOAuthRequest :one
-- A request still waiting for its consent, with its client's name.
SELECT r.*, c.name AS client_name, c.client_uri
FROM oauth_requests r JOIN oauth_clients c ON c.id = r.client_id
WHERE r.id = @id AND r.decided_at IS NULL AND r.expires_at > @now;

-- name: BindOAuthRequest :one
-- Binds the consent form's CSRF token to the session shown the form (the
-- latest showing wins).
UPDATE oauth_requests SET session_id = @session_id, csrf_hash = @csrf_hash
WHERE id = @id AND decided_at IS NULL AND expires_at > @now
RETURNING id;

-- name: DecideOAuthRequest :one
-- Uses the request up: a second answer to the same consent finds nothing.
UPDATE oauth_requests SET decided_at = @now
WHERE id = @id AND decided_at IS NULL AND expires_at > @now AND session_id = @session_id
RETURNING *;

-- name: ListUserOrgs :many
-- The orgs a person may grant access to: those of every team they belong to.
SELECT o.id, o.name, o.team_id, t.name AS team_name
FROM memberships m
JOIN orgs o ON o.team_id = m.team_id AND o.deleted_at IS NULL
JOIN teams t ON t.id = m.team_id
JOIN users u ON u.id = m.user_id AND u.status = 'active'
WHERE m.user_id = @user_id
ORDER BY t.name, o.name, o.id
LIMIT 200;

-- name: CreateOAuthGrant :exec
-- expires_at: its code's expiry (ExtendOAuthGrant moves it on when tokens
-- are issued).
INSERT INTO oauth_grants (id, client_id, user_id, org_id, team_id, scopes, resource, created_at, expires_at)
VALUES (@id, @client_id, @user_id, @org_id, @team_id, @scopes, @resource, @created_at, @expires_at);

-- name: ExtendOAuthGrant :exec
-- Records that the grant works until @expires_at (a refresh token it was
-- just issued expires then), in the transaction that issues the token: a
-- grant is never swept while one of its tokens can still be refreshed.
-- GREATEST: never earlier than a token issued before (a replica whose clock
-- lags, a RefreshTTL shortened since).
UPDATE oauth_grants SET expires_at = GREATEST(expires_at, @expires_at)
WHERE id = @id;

-- name: CreateOAuthCode :exec
INSERT INTO oauth_codes (code_hash, grant_id, redirect_uri, code_challenge, created_at, expires_at)
VALUES (@code_hash, @grant_id, @redirect_uri, @code_challenge, @created_at, @expires_at);

-- name: UseOAuthCode :one
-- Spends a code once (a concurrent second exchange finds nothing) and
-- returns it with its grant.
UPDATE oauth_codes c SET used_at = @now
FROM oauth_grants g
WHERE c.code_hash = @code_hash AND c.used_at IS NULL AND g.id = c.grant_id
RETURNING c.grant_id, c.redirect_uri, c.code_challenge, c.expires_at,
    g.client_id, g.user_id, g.org_id, g.team_id, g.scopes, g.resource, g.revoked_at;

-- name: GetOAuthCodeGrant :one
-- The grant of a code already used (reuse detection).
SELECT grant_id FROM oauth_codes WHERE code_hash = @code_hash;

-- name: RevokeOAuthGrant :one
UPDATE oauth_grants SET revoked_at = @now, revoked_reason = @reason
WHERE id = @id AND revoked_at IS NULL
RETURNING id, client_id, user_id, org_id, team_id;

-- name: RevokeUserOAuthGrants :many
-- Revokes every standing grant of a person (their account was recovered:
-- whoever held the lost passkey may have authorized a client).
UPDATE oauth_grants SET revoked_at = @now, revoked_reason = @reason
WHERE user_id = @user_id AND revoked_at IS NULL
RETURNING id, client_id, user_id, org_id, team_id;

-- name: CreateOAuthToken :exec
INSERT INTO oauth_tokens (token_hash, grant_id, kind, scopes, created_at, expires_at)
VALUES (@token_hash, @grant_id, @kind, @scopes, @created_at, @expires_at);

-- name: UseRefreshToken :one
-- Rotates a refresh token: spends it once (a concurrent second use finds
-- nothing) and returns it with its grant.
UPDATE oauth_tokens t SET used_at = @now
FROM oauth_grants g
WHERE t.token_hash = @token_hash AND t.kind = 'refresh' AND t.used_at IS NULL AND g.id = t.grant_id
RETURNING t.grant_id, t.scopes, t.expires_at, g.client_id, g.user_id, g.org_id, g.team_id, g.resource, g.revoked_at;

-- name: GetOAuthToken :one
-- A token of any state with its grant's client (reuse detection, revocation).
SELECT t.grant_id, t.kind, t.used_at, g.client_id
FROM oauth_tokens t JOIN oauth_grants g ON g.id = t.grant_id
WHERE t.token_hash = @token_hash;

-- name: AuthenticateOAuthToken :one
-- A live access token whose grant stands and whose person is still an active
-- member of the org's team.
SELECT g.id AS grant_id, g.client_id, g.user_id, g.org_id, g.team_id, g.resource, t.scopes, t.expires_at, g.last_used_at
FROM oauth_tokens t
JOIN oauth_grants g ON g.id = t.grant_id AND g.revoked_at IS NULL
JOIN orgs o ON o.id = g.org_id AND o.deleted_at IS NULL
JOIN users u ON u.id = g.user_id AND u.status = 'active'
JOIN memberships m ON m.user_id = g.user_id AND m.team_id = g.team_id
WHERE t.token_hash = @token_hash AND t.kind = 'access' AND t.expires_at > @now;

-- name: SweepOAuthRequests :execrows
-- Deletes up to @row_limit authorization requests that expired before
-- @cutoff, oldest first. Like each Sweep… delete below, it is one short
-- transaction that api/oauth Sweep repeats a bounded number of times per
-- pass, so a backlog (after a flood) is worked off over several passes
-- instead of in one long transaction; SKIP LOCKED lets replicas sweep at
-- once without waiting for, or failing on, each other's rows (or a row a
-- request is using): a skipped row is left to a later statement or pass.
DELETE FROM oauth_requests WHERE id IN (
    SELECT r.id FROM oauth_requests r WHERE r.expires_at < @cutoff
    ORDER BY r.expires_at
    LIMIT @row_limit
    FOR UPDATE SKIP LOCKED);

-- name: SweepOAuthCodes :execrows
-- Deletes up to @row_limit authorization codes that expired before
-- @cutoff, used or not, oldest first.
DELETE FROM oauth_codes WHERE code_hash IN (
    SELECT c.code_hash FROM oauth_codes c WHERE c.expires_at < @cutoff
    ORDER BY c.expires_at
    LIMIT @row_limit
    FOR UPDATE SKIP LOCKED);

-- name: SweepOAuthTokens :execrows
-- Deletes up to @row_limit access and refresh tokens that expired before
-- @cutoff, oldest first (a used refresh token is kept until then, so its
-- reuse is still detected).
DELETE FROM oauth_tokens WHERE token_hash IN (
    SELECT t.token_hash FROM oauth_tokens t WHERE t.expires_at < @cutoff
    ORDER BY t.expires_at
    LIMIT @row_limit
    FOR UPDATE SKIP LOCKED);

-- name: SweepOAuthGrants :execrows
-- Deletes up to @row_limit grants that ended before @ended_before, the
-- earliest ended first: revoked then, or standing with every token expired
-- by then (expires_at). Their codes and tokens go by cascade; the
-- authorization and any revocation stay in the audit log. A grant that can
-- still be refreshed is never among them: expires_at is at least its
-- refresh token's expiry (ExtendOAuthGrant, in the transaction that issues
-- it). A grant in use (its row locked by a revocation, a token issue, a
-- recorded use) is skipped.
DELETE FROM oauth_grants WHERE id IN (
    SELECT g.id FROM oauth_grants g WHERE COALESCE(g.revoked_at, g.expires_at) < @ended_before::timestamptz
    ORDER BY COALESCE(g.revoked_at, g.expires_at), g.id
    LIMIT @row_limit
    FOR UPDATE SKIP LOCKED);

-- name: SweepOAuthClients :execrows
-- Deletes up to @row_limit registrations nobody uses, oldest first: those
-- registered before @unused_before with no grant, and those whose every
-- grant ended before @ended_before (revoked, or every token expired, as in
-- SweepOAuthGrants; they go with the client, by cascade). A client with an
-- authorization request of any age is kept: a consent needs its request,
-- and requests are swept an hour after they expire, so a client cannot be
-- deleted under a person consenting to it.
DELETE FROM oauth_clients WHERE id IN (
    SELECT c.id FROM oauth_clients c
    WHERE c.created_at < @unused_before
      AND NOT EXISTS (SELECT 1 FROM oauth_requests r WHERE r.client_id = c.id)
      AND NOT EXISTS (SELECT 1 FROM oauth_grants g WHERE g.client_id = c.id
          AND COALESCE(g.revoked_at, g.expires_at) >= @ended_before::timestamptz)
    ORDER BY c.created_at, c.id
    LIMIT @row_limit
    FOR UPDATE OF c SKIP LOCKED);

-- name: TouchOAuthGrant :exec
-- Records that a grant authenticated a request, unless a use after
-- stale_before is already recorded.
UPDATE oauth_grants SET last_used_at = @now
WHERE id = @id AND revoked_at IS NULL AND (last_used_at IS NULL OR last_used_at < @stale_before);

-- name: ListOrgOAuthGrants :many
-- The org's connected clients: standing grants with a token that still
-- works (an unexpired access token, or an unused unexpired refresh token),
-- newest first, with their client and the person who consented. The cursor
-- is (created_at, id) of the previous page's last row.
SELECT g.id, g.client_id, c.name AS client_name, c.client_uri, c.redirect_uris, g.user_id, u.email AS user_email,
    g.scopes, g.created_at, g.last_used_at
FROM oauth_grants g
JOIN oauth_clients c ON c.id = g.client_id
JOIN users u ON u.id = g.user_id
WHERE g.org_id = @org_id AND g.revoked_at IS NULL
  AND (sqlc.narg('before_created')::timestamptz IS NULL
       OR (g.created_at, g.id) < (sqlc.narg('before_created')::timestamptz, @before_id::text))
  AND EXISTS (SELECT 1 FROM oauth_tokens t WHERE t.grant_id = g.id AND t.expires_at > @now
      AND (t.kind = 'access' OR t.used_at IS NULL))
ORDER BY g.created_at DESC, g.id DESC
LIMIT @row_limit;

-- name: RevokeOrgOAuthGrant :one
-- Revokes one standing grant of an org (its owners and admins revoke a
-- connected client).
UPDATE oauth_grants SET revoked_at = @now, revoked_reason = @reason
WHERE id = @id AND org_id = @org_id AND revoked_at IS NULL
RETURNING id, client_id, user_id, org_id, team_id;
