-- Teams, users, orgs and API keys.

-- name: CreateTeam :exec
INSERT INTO teams (id, name, created_at) VALUES ($1, $2, $3);

-- name: LockFirstTeam :exec
-- Serialises first-install bootstraps (api.Bootstrap with OnlyIfEmpty) until commit.
SELECT pg_advisory_xact_lock(hashtext('oakallow.bootstrap'));

-- name: AnyTeam :one
SELECT EXISTS (SELECT 1 FROM teams);

-- name: CreateUser :exec
INSERT INTO users (id, email, name, created_at) VALUES ($1, $2, $3, $4);

-- name: CreateMembership :exec
INSERT INTO memberships (team_id, user_id, role, created_at) VALUES ($1, $2, $3, $4);

-- name: CreateOrg :exec
INSERT INTO orgs (id, team_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4);

-- name: SetOrgDiscoveryCaps :exec
-- The auto-discovery caps a new org starts with, when the installation's
-- differ from the column defaults.
UPDATE orgs SET autodiscovery_hourly_cap = sqlc.arg(hourly_cap), autodiscovery_total_cap = sqlc.arg(total_cap)
WHERE id = sqlc.arg(id);

-- name: GetOrg :one
SELECT * FROM orgs WHERE id = $1;

-- name: UpdateOrgSettings :one
UPDATE orgs SET
    name = $2,
    approval_timeout_seconds = $3,
    webhook_url = $4,
    webhook_include_parameters = $5,
    scrub_parameters = $6,
    management_keys_may_decide = $7,
    autodiscovery_hourly_cap = $8,
    autodiscovery_total_cap = $9,
    updated_at = $10
WHERE id = $1
RETURNING *;

-- name: RotateOrgWebhookSecret :one
-- webhook_secret_sealed is the new secret sealed under
-- store.OrgWebhookSecretAAD(id); the current one becomes the previous.
UPDATE orgs SET
    webhook_secret_previous_sealed = webhook_secret_sealed,
    webhook_secret_sealed = $2,
    webhook_secret_rotated_at = $3,
    updated_at = $3
WHERE id = $1
RETURNING *;

-- name: SetApproverGroup :exec
INSERT INTO approver_group_members (team_id, level, user_id)
SELECT $1, $2, unnest(@user_ids::text[])
ON CONFLICT DO NOTHING;

-- name: ClearApproverGroup :exec
DELETE FROM approver_group_members WHERE team_id = $1 AND level = $2;

-- name: ListApproverGroup :many
SELECT user_id FROM approver_group_members WHERE team_id = $1 AND level = $2 ORDER BY user_id;

-- name: CreateAPIKey :exec
INSERT INTO api_keys (id, org_id, tier, name, prefix, hash, created_by, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- name: LoadActiveAPIKeys :many
-- Every usable key with its org's team, for the in-memory key cache.
SELECT k.id, k.org_id, o.team_id, k.tier, k.hash
FROM api_keys k JOIN orgs o ON o.id = k.org_id
WHERE k.revoked_at IS NULL AND o.deleted_at IS NULL;

-- name: GetAPIKeyByHash :one
-- A key by its hash, revoked or not: names the org of a key that keeps
-- failing authentication (a revoked key still in use).
SELECT k.id, k.org_id, o.team_id, k.prefix
FROM api_keys k JOIN orgs o ON o.id = k.org_id
WHERE k.hash = $1;

-- name: NotifyChange :exec
-- Announces a change to every API replica (delivered at commit). Payload:
-- "keys" or "policy:<org id>".
SELECT pg_notify('oakallow_changes', @payload::text);

-- name: NotifyPolicyChange :one
-- Announces a change of the org's policy to every API replica (delivered at
-- commit), with the id of the announcing transaction: "policy:<org
-- id>:<xid>". A replica whose policy was loaded from a snapshot that
-- already sees that transaction need not load it again. Returns the id.
SELECT pg_current_xact_id()::text AS xid,
       pg_notify('oakallow_changes', 'policy:' || @org_id::text || ':' || pg_current_xact_id()::text)::text AS notified;
