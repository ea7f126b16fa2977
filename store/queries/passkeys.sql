-- Passkeys, WebAuthn ceremonies, recovery codes and decision evidence.

-- name: GetUserForPasskeys :one
SELECT id, email, name, status, webauthn_handle FROM users WHERE id = $1;

-- name: GetUserByWebAuthnHandle :one
SELECT id, email, name, status, webauthn_handle FROM users WHERE webauthn_handle = $1;

-- name: SetWebAuthnHandle :one
-- Sets the user's handle once; a concurrent first enrollment keeps the first.
UPDATE users SET webauthn_handle = COALESCE(webauthn_handle, @handle::bytea)
WHERE id = @id
RETURNING webauthn_handle;

-- name: ListPasskeysOfUser :many
SELECT * FROM passkeys WHERE user_id = $1 ORDER BY created_at, id;

-- name: GetPasskeyByCredentialID :one
SELECT * FROM passkeys WHERE credential_id = $1;

-- name: CountPasskeysOfUser :one
SELECT count(*) FROM passkeys WHERE user_id = $1;

-- name: InsertPasskey :exec
INSERT INTO passkeys (id, user_id, credential_id, public_key, attestation_type, aaguid, sign_count,
    transports, backup_eligible, backup_state, name, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12);

-- name: RecordPasskeyUse :execrows
-- Stores the signature counter of a successful assertion. The counter only
-- moves forward (WebAuthn §7.2 step 22): an assertion whose counter another
-- replica already passed changes nothing and is refused by the caller.
UPDATE passkeys SET sign_count = @sign_count, backup_state = @backup_state, last_used_at = @used_at
WHERE id = @id AND (sign_count < @sign_count OR (sign_count = 0 AND @sign_count = 0));

-- name: LockUserPasskeys :many
-- Locks the user's passkeys, so "never the last one" holds against concurrent removals.
SELECT id FROM passkeys WHERE user_id = $1 ORDER BY id FOR UPDATE;

-- name: DeletePasskey :one
DELETE FROM passkeys WHERE user_id = $1 AND id = $2 RETURNING *;

-- name: DeletePasskeysOfUser :execrows
DELETE FROM passkeys WHERE user_id = $1;

-- name: RenamePasskey :one
UPDATE passkeys SET name = $3 WHERE user_id = $1 AND id = $2 RETURNING *;

-- name: InsertCeremony :exec
INSERT INTO webauthn_ceremonies (id, kind, user_id, session_data, approval_id, org_id, level, decision, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10);

-- name: TakeCeremony :one
-- Consumes a ceremony: the one statement that can return it, so it is used at
-- most once however many replicas race for it. An expired one is consumed
-- too, and refused.
DELETE FROM webauthn_ceremonies WHERE id = $1 AND kind = $2 RETURNING *;

-- name: DeleteExpiredCeremonies :execrows
DELETE FROM webauthn_ceremonies WHERE expires_at <= $1;

-- name: DeleteRecoveryCodes :execrows
DELETE FROM recovery_codes WHERE user_id = $1;

-- name: InsertRecoveryCodes :exec
INSERT INTO recovery_codes (user_id, hash, created_at)
SELECT @user_id, unnest(@hashes::bytea[]), @created_at;

-- name: CountRecoveryCodes :one
SELECT count(*) FILTER (WHERE used_at IS NULL) AS unused, count(*) AS total FROM recovery_codes WHERE user_id = $1;

-- name: SpendRecoveryCode :execrows
-- Spends a code: only one UPDATE can set used_at.
UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND hash = $2 AND used_at IS NULL;

-- name: GetActiveUserByEmail :one
SELECT id, email, name, status, webauthn_handle FROM users
WHERE lower(email) = lower(@email) AND status = 'active';

-- name: InsertDecisionEvidence :execrows
INSERT INTO decision_evidence (request_id, approval_id, level, decision, user_id, passkey_id, credential_id,
    public_key, rp_id, tool_name, params_hash, client_data_json, authenticator_data, signature, user_handle, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (request_id) DO NOTHING;

-- name: ListDecisionEvidence :many
-- The evidence of an approval's accepted decisions: only rows whose request
-- id is the one of the decision the workflow accepted at that level.
SELECT e.*, d.decided_at FROM decision_evidence e
JOIN approval_decisions d ON d.approval_id = e.approval_id AND d.level = e.level AND d.request_id = e.request_id
WHERE e.approval_id = $1
ORDER BY e.level;

-- name: IsApproverGroupMember :one
-- Whether the user may decide the level: a member of the team's group for
-- it, or any active member of the team when the group is empty.
SELECT EXISTS (
    SELECT 1 FROM users u JOIN memberships m ON m.user_id = u.id AND m.team_id = @team_id
    WHERE u.id = @user_id AND u.status = 'active'
      AND (NOT EXISTS (SELECT 1 FROM approver_group_members g WHERE g.team_id = @team_id AND g.level = @level)
           OR EXISTS (SELECT 1 FROM approver_group_members g WHERE g.team_id = @team_id AND g.level = @level AND g.user_id = @user_id))
);
