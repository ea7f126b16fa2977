-- Prepaid credit: credit_grants records every credit added (free or
-- purchased); team_balances holds what is spendable now and what has been
-- billed. Charging happens in oakallow_charge_calls (migrations/031_charge_calls.sql),
-- called by the audit commit.

-- name: CreateCreditGrant :execrows
-- Records a grant (deduplicated by source, e.g. a Checkout) and adds it to
-- the team's balance, in one statement; 0 rows when the source was granted
-- already. Free credit: the bucket keeps the unexpired amount plus the new
-- one, and the later expiry. Purchased and prepaid credit never expire.
WITH grant_row AS (
    INSERT INTO credit_grants (id, team_id, kind, amount_micros, expires_at, source, granted_by, note, created_at)
    VALUES (@id, @team_id, @kind, @amount_micros, sqlc.narg('expires_at'), @source, @granted_by, @note, @created_at)
    ON CONFLICT (source) DO NOTHING
    RETURNING team_id, kind, amount_micros, expires_at, created_at
)
INSERT INTO team_balances (team_id, free_micros, free_expires_at, purchased_micros)
SELECT team_id,
       CASE WHEN kind = 'free' THEN amount_micros ELSE 0 END,
       CASE WHEN kind = 'free' THEN expires_at END,
       CASE WHEN kind <> 'free' THEN amount_micros ELSE 0 END
FROM grant_row
ON CONFLICT (team_id) DO UPDATE SET
    free_micros = CASE
        WHEN EXCLUDED.free_expires_at IS NULL THEN team_balances.free_micros
        WHEN team_balances.free_expires_at > @created_at::timestamptz THEN team_balances.free_micros + EXCLUDED.free_micros
        ELSE EXCLUDED.free_micros END,
    free_expires_at = CASE
        WHEN EXCLUDED.free_expires_at IS NULL THEN team_balances.free_expires_at
        WHEN team_balances.free_expires_at > @created_at::timestamptz THEN greatest(team_balances.free_expires_at, EXCLUDED.free_expires_at)
        ELSE EXCLUDED.free_expires_at END,
    purchased_micros = team_balances.purchased_micros + EXCLUDED.purchased_micros;

-- name: GetTeamBalance :one
SELECT * FROM team_balances WHERE team_id = $1;

-- name: ClearLowBalanceAlert :exec
-- After credit was added: a balance back at or above the threshold may
-- alert again on its next crossing.
UPDATE team_balances SET low_balance_alerted = false
WHERE team_id = @team_id AND low_balance_alerted
  AND (CASE WHEN free_expires_at > @now::timestamptz THEN free_micros ELSE 0 END) + purchased_micros >= @threshold::bigint;

-- name: TakeBackCredit :one
-- A refund or dispute: purchased credit goes down, below zero if it was spent.
UPDATE team_balances SET purchased_micros = purchased_micros - @amount_micros
WHERE team_id = @team_id
RETURNING *;

-- name: MarkLowBalanceAlerted :execrows
UPDATE team_balances SET low_balance_alerted = true WHERE team_id = $1 AND NOT low_balance_alerted;

-- name: InsertCreditAlert :exec
INSERT INTO credit_alerts (id, team_id, balance_micros, threshold_micros, created_at)
VALUES ($1, $2, $3, $4, $5);

-- name: ClaimUnsentCreditAlerts :many
-- Alerts not sent yet; a sender holds them locked until it marks them sent,
-- so two API servers never send one twice.
SELECT * FROM credit_alerts WHERE sent_at IS NULL ORDER BY created_at LIMIT @row_limit FOR UPDATE SKIP LOCKED;

-- name: MarkCreditAlertSent :exec
UPDATE credit_alerts SET sent_at = @sent_at WHERE id = @id;

-- name: ListTeamOwnerIDs :many
-- The team's owners who can still sign in: whom a credits.low e-mail is for.
SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id
WHERE m.team_id = $1 AND m.role = 'owner' AND u.status = 'active'
ORDER BY m.user_id
LIMIT 1000;

-- name: InsertCreditAlertMail :exec
INSERT INTO credit_alert_mails (alert_id, user_id, next_attempt_at, created_at)
VALUES (@alert_id, @user_id, @created_at, @created_at)
ON CONFLICT (alert_id, user_id) DO NOTHING;

-- name: ClaimDueCreditAlertMail :one
-- The next credits.low e-mail due, with what it says; locked until its
-- sender records the outcome, so two API servers never send one twice.
SELECT m.alert_id, m.user_id, m.attempts, m.created_at, u.email, u.status AS user_status,
       a.team_id, a.balance_micros, a.threshold_micros, a.created_at AS crossed_at, t.name AS team_name
FROM credit_alert_mails m
JOIN credit_alerts a ON a.id = m.alert_id
JOIN users u ON u.id = m.user_id
JOIN teams t ON t.id = a.team_id
WHERE m.status = 'pending' AND m.next_attempt_at <= @now::timestamptz
ORDER BY m.next_attempt_at
LIMIT 1
FOR UPDATE OF m SKIP LOCKED;

-- name: SetCreditAlertMailOutcome :exec
-- One attempt's outcome: sent, failed for good, or pending until
-- next_attempt_at.
UPDATE credit_alert_mails SET status = @status, attempts = attempts + 1, next_attempt_at = @next_attempt_at,
    last_error = @last_error, sent_at = sqlc.narg('sent_at')
WHERE alert_id = @alert_id AND user_id = @user_id;

-- name: ListCreditGrants :many
-- A team's grants, newest first.
SELECT * FROM credit_grants WHERE team_id = @team_id ORDER BY created_at DESC, id DESC LIMIT @row_limit;

-- name: ListCreditReversals :many
SELECT * FROM credit_reversals WHERE team_id = @team_id ORDER BY created_at DESC, id DESC LIMIT @row_limit;

-- name: InsertCheckout :exec
INSERT INTO billing_checkouts (id, team_id, pack, credit_micros, amount_cents, currency, created_by, created_at, updated_at)
VALUES (@id, @team_id, @pack, @credit_micros, @amount_cents, @currency, @created_by, @created_at, @created_at);

-- name: SetCheckoutSession :exec
UPDATE billing_checkouts SET stripe_session_id = @stripe_session_id, updated_at = @updated_at WHERE id = @id;

-- name: GetCheckoutForUpdate :one
SELECT * FROM billing_checkouts WHERE id = $1 FOR UPDATE;

-- name: GetCheckoutByPaymentIntentForUpdate :one
SELECT * FROM billing_checkouts WHERE payment_intent = $1 AND payment_intent <> '' FOR UPDATE;

-- name: CompleteCheckout :exec
UPDATE billing_checkouts SET grant_id = @grant_id, payment_intent = @payment_intent,
    stripe_session_id = CASE WHEN @stripe_session_id::text = '' THEN stripe_session_id ELSE @stripe_session_id::text END,
    updated_at = @updated_at
WHERE id = @id;

-- name: AddCheckoutReversal :exec
UPDATE billing_checkouts SET reversed_micros = reversed_micros + @reversed_micros,
    refunded_micros = greatest(refunded_micros, @refunded_micros), updated_at = @updated_at
WHERE id = @id;

-- name: InsertCreditReversal :execrows
INSERT INTO credit_reversals (id, team_id, checkout_id, reason, amount_micros, source, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source) DO NOTHING;

-- name: InsertStripeEvent :execrows
-- The event's dedup: 0 rows when it was handled already (or is being
-- handled by a concurrent delivery, which this insert waits for).
INSERT INTO stripe_events (id, type, outcome, team_id, received_at)
VALUES (@id, @type, @outcome, sqlc.narg('team_id'), @received_at) ON CONFLICT (id) DO NOTHING;

-- name: SetStripeEventOutcome :exec
UPDATE stripe_events SET outcome = @outcome, team_id = sqlc.narg('team_id') WHERE id = @id;

-- name: ListTeamOrgIDs :many
SELECT id FROM orgs WHERE team_id = $1 AND deleted_at IS NULL ORDER BY id;

-- name: RefundCall :execrows
-- Gives back the charge of the billable audit row @audit_id, once: to the
-- free bucket while it holds unexpired credit (free credit is spent first, so
-- that is where a charge made while it lasted came from), else to purchased
-- credit; with @credit false (billing mode off, nothing was debited) only the
-- billed totals go down. 0 rows: not charged, or refunded already.
WITH refund AS (
    INSERT INTO call_refunds (audit_id, team_id, org_id, cost_micros, reason, created_at)
    SELECT id, team_id, org_id, cost_micros, @reason, @created_at FROM audit_events
    WHERE id = @audit_id AND billable
    ON CONFLICT (audit_id) DO NOTHING
    RETURNING team_id, cost_micros
)
UPDATE team_balances b SET
    free_micros = b.free_micros + CASE WHEN @credit::boolean AND b.free_micros > 0 AND b.free_expires_at > @created_at::timestamptz
        THEN r.cost_micros ELSE 0 END,
    purchased_micros = b.purchased_micros + CASE WHEN @credit::boolean AND NOT (b.free_micros > 0 AND b.free_expires_at > @created_at::timestamptz)
        THEN r.cost_micros ELSE 0 END,
    billed_calls = b.billed_calls - 1,
    billed_micros = b.billed_micros - r.cost_micros
FROM refund r WHERE b.team_id = r.team_id;

-- name: UsageByDay :many
-- Billable calls and their cost per UTC day and org, for a team, since @since.
SELECT a.org_id, (a.occurred_at AT TIME ZONE 'UTC')::date AS day,
       count(*)::bigint AS calls, coalesce(sum(a.cost_micros), 0)::bigint AS cost_micros
FROM audit_events a
WHERE a.team_id = @team_id AND a.billable AND a.occurred_at >= @since::timestamptz
  AND NOT EXISTS (SELECT 1 FROM call_refunds r WHERE r.audit_id = a.id)
GROUP BY a.org_id, day
ORDER BY day, org_id;
