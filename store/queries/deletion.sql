-- Account deletion (api/deletion.go, activities/deletion.go).

-- name: LockUserTeams :many
-- Locks the memberships of every team the user belongs to, so two owners
-- deleting themselves at once cannot each leave the other as the last.
SELECT team_id, user_id, role FROM memberships
WHERE team_id IN (SELECT m.team_id FROM memberships m WHERE m.user_id = $1)
ORDER BY team_id, user_id FOR UPDATE;

-- name: MarkUserDeleted :one
UPDATE users SET status = 'deleted', deletion_requested_at = @now::timestamptz
WHERE id = @id AND status = 'active'
RETURNING id;

-- name: RemoveUserMemberships :many
DELETE FROM memberships WHERE user_id = $1 RETURNING team_id, role;

-- name: DeleteRecoveryCodesOfUser :execrows
DELETE FROM recovery_codes WHERE user_id = $1;

-- name: DeleteCeremoniesOfUser :exec
DELETE FROM webauthn_ceremonies WHERE user_id = @user_id::text;

-- name: RevokeKeysCreatedBy :many
-- The live API keys the person created (api_keys.created_by).
UPDATE api_keys k SET revoked_at = @now::timestamptz
FROM orgs o
WHERE o.id = k.org_id AND k.created_by = @user_id::text AND k.revoked_at IS NULL
RETURNING k.id, k.org_id, o.team_id;

-- name: GetUserDeletion :one
SELECT id, email, status, deletion_requested_at, purged_at FROM users WHERE id = $1 FOR UPDATE;

-- name: PurgeUser :exec
-- Replaces the personal data of a deleted person by the pseudonym; the row
-- stays, so audit entries and billing records still name someone.
UPDATE users SET email = @pseudonym, name = @pseudonym, webauthn_handle = NULL, purged_at = @now::timestamptz
WHERE id = @id AND status = 'deleted';

-- name: PseudonymiseInvitations :exec
-- Invitations to the person's address: the address goes, the record stays.
UPDATE invitations SET email = @pseudonym WHERE lower(email) = lower(@email);

-- name: DeleteSignInAttemptsOf :exec
DELETE FROM sign_in_attempts WHERE user_id = @user_id::text OR lower(email) = lower(@email);

-- name: DeletionAuditTeams :many
-- The teams a deletion request was audited in (the person's teams then).
SELECT DISTINCT team_id FROM audit_events
WHERE actor_id = $1 AND kind = 'account.deletion_requested' AND team_id <> ''
ORDER BY team_id;
