-- E-mail sign-in attempts, invitations and attempt limits (api/emailcodes.go).

-- name: HitAuthLimit :one
-- Counts one event against (scope, subject) in a fixed window that starts
-- with the first event after the previous window ended; returns the count
-- in the current window and when the window started.
INSERT INTO auth_limits (scope, subject, window_start, count) VALUES (@scope, @subject, @now, 1)
ON CONFLICT (scope, subject) DO UPDATE SET
    count = CASE WHEN auth_limits.window_start <= @window_cutoff THEN 1 ELSE auth_limits.count + 1 END,
    window_start = CASE WHEN auth_limits.window_start <= @window_cutoff THEN @now ELSE auth_limits.window_start END
RETURNING count, window_start;

-- name: GetAuthLimit :one
SELECT count, window_start FROM auth_limits
WHERE scope = @scope AND subject = @subject AND window_start > @window_cutoff;

-- name: SweepAuthLimits :exec
DELETE FROM auth_limits WHERE window_start < @cutoff;

-- name: CreateSignInAttempt :exec
INSERT INTO sign_in_attempts (id, token_hash, code_hash, email, purpose, user_id, invitation_id, client_ip, created_at, expires_at)
VALUES (@id, @token_hash, @code_hash, @email, @purpose, @user_id, @invitation_id, @client_ip, @created_at, @expires_at);

-- name: TrySignInAttempt :one
-- Spends one try of a live attempt and returns it; nothing for an unknown,
-- expired, used or exhausted one.
UPDATE sign_in_attempts SET tries = tries + 1
WHERE token_hash = @token_hash AND consumed_at IS NULL AND expires_at > @now AND tries < @max_tries
RETURNING *;

-- name: ConsumeSignInAttempt :one
-- Uses the attempt up; a concurrent verify of the same code finds nothing.
UPDATE sign_in_attempts SET consumed_at = @now::timestamptz
WHERE id = @id AND consumed_at IS NULL
RETURNING id;

-- name: SweepSignInAttempts :exec
DELETE FROM sign_in_attempts WHERE expires_at < @cutoff;

-- name: GetOpenInvitationByHash :one
SELECT * FROM invitations
WHERE token_hash = @token_hash AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > @now;

-- name: AcceptInvitation :one
UPDATE invitations SET accepted_at = @now::timestamptz, accepted_by = @user_id
WHERE id = @id AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > @now
RETURNING team_id, role;

-- name: AddMembership :one
-- Adds the person to the team; an existing membership keeps its role.
INSERT INTO memberships (team_id, user_id, role, created_at) VALUES (@team_id, @user_id, @role, @created_at)
ON CONFLICT (team_id, user_id) DO UPDATE SET role = memberships.role
RETURNING role;
