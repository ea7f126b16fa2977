-- Billing, version 2 (SPEC §9): purchases through Stripe Checkout, operator
-- grants (billing mode prepaid), refunds and disputes that take credit back
-- even below zero, billing mode off (metered, never refused), and the
-- low-balance alert, raised once per crossing.

-- A refund or dispute takes purchased credit back even when it was spent:
-- the bucket may go below zero, and then reduces what free credit covers.
ALTER TABLE team_balances DROP CONSTRAINT team_balances_purchased_micros_check;
-- Set when the spendable balance fell below the alert threshold and the
-- credits.low alert was raised; cleared when credit lifts it back above.
ALTER TABLE team_balances ADD COLUMN low_balance_alerted boolean NOT NULL DEFAULT false;

-- Grant kinds: free (sign-up, expires), purchased (Stripe), prepaid (an
-- operator's grant in billing mode prepaid). Only free credit expires.
ALTER TABLE credit_grants DROP CONSTRAINT credit_grants_kind_check;
ALTER TABLE credit_grants ADD CONSTRAINT credit_grants_kind_check CHECK (kind IN ('free', 'purchased', 'prepaid'));
ALTER TABLE credit_grants ADD COLUMN granted_by text NOT NULL DEFAULT '' CHECK (length(granted_by) <= 200);
ALTER TABLE credit_grants ADD COLUMN note text NOT NULL DEFAULT '' CHECK (length(note) <= 500);
CREATE INDEX credit_grants_team_created_idx ON credit_grants (team_id, created_at DESC, id DESC);

-- A Checkout session an owner or admin started. The Stripe webhook credits
-- what was recorded here (not what the event says), once: grant_id is set in
-- the transaction that inserts the grant.
CREATE TABLE billing_checkouts (
    id                text PRIMARY KEY, -- chk_…, also the session's metadata oakallow_checkout
    team_id           text NOT NULL REFERENCES teams (id),
    pack              text NOT NULL CHECK (length(pack) BETWEEN 1 AND 64),
    credit_micros     bigint NOT NULL CHECK (credit_micros > 0),
    amount_cents      bigint NOT NULL CHECK (amount_cents > 0),
    currency          text NOT NULL CHECK (length(currency) = 3),
    stripe_session_id text NOT NULL DEFAULT '',
    payment_intent    text NOT NULL DEFAULT '',
    grant_id          text REFERENCES credit_grants (id),
    -- Credit taken back by refunds and disputes; never above credit_micros.
    reversed_micros   bigint NOT NULL DEFAULT 0 CHECK (reversed_micros >= 0 AND reversed_micros <= credit_micros),
    refunded_micros   bigint NOT NULL DEFAULT 0 CHECK (refunded_micros >= 0),
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX billing_checkouts_team_idx ON billing_checkouts (team_id, created_at DESC);
CREATE INDEX billing_checkouts_payment_intent_idx ON billing_checkouts (payment_intent) WHERE payment_intent <> '';

-- Every Stripe event handled, by event id: inserted in the transaction that
-- acts on the event, so a redelivery (sequential or concurrent) finds it and
-- changes nothing.
CREATE TABLE stripe_events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    outcome     text NOT NULL,
    team_id     text,
    received_at timestamptz NOT NULL
);

-- Credit taken back: one row per refund or dispute event.
CREATE TABLE credit_reversals (
    id            text PRIMARY KEY,
    team_id       text NOT NULL REFERENCES teams (id),
    checkout_id   text NOT NULL REFERENCES billing_checkouts (id),
    reason        text NOT NULL CHECK (reason IN ('refund', 'dispute')),
    amount_micros bigint NOT NULL CHECK (amount_micros > 0),
    source        text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL
);
CREATE INDEX credit_reversals_team_idx ON credit_reversals (team_id, created_at DESC);

-- Low-balance alerts to send: written by the audit batch (or a reversal)
-- in the transaction that made the balance cross the threshold, sent by
-- the API servers' alert loop, which marks them sent.
CREATE TABLE credit_alerts (
    id               text PRIMARY KEY,
    team_id          text NOT NULL REFERENCES teams (id),
    balance_micros   bigint NOT NULL,
    threshold_micros bigint NOT NULL,
    created_at       timestamptz NOT NULL,
    sent_at          timestamptz
);
CREATE INDEX credit_alerts_unsent_idx ON credit_alerts (created_at) WHERE sent_at IS NULL;

-- A billable call refunded because what it paid for failed afterwards (an
-- approval whose workflow could not be started): the audit log is
-- append-only, so the charged row stays billable and this row cancels it.
-- One per charged audit row, in the transaction that gives the credit back.
CREATE TABLE call_refunds (
    audit_id    text PRIMARY KEY REFERENCES audit_events (id),
    team_id     text NOT NULL,
    org_id      text NOT NULL,
    cost_micros bigint NOT NULL CHECK (cost_micros >= 0),
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL
);

-- Usage per day and org (GET /v1/billing/usage) reads a team's billable rows
-- of the last 90 days.
CREATE INDEX audit_events_team_billable_idx ON audit_events (team_id, occurred_at) WHERE billable;

-- The audit group commit, now with the billing mode and the alert threshold.
-- p_enforce false (billing mode off): every billable entry is metered — a
-- billable row with its cost, counted in billed_calls and billed_micros —
-- and none is refused; the balance is not touched. p_enforce true: as in
-- 003, with a balance below zero covering nothing, and a crossing below
-- p_low_threshold (when > 0) recorded once in credit_alerts.
CREATE FUNCTION oakallow_record_audit_batch(
    p_ids text[], p_org_ids text[], p_team_ids text[], p_occurred_at timestamptz[],
    p_actor_kinds text[], p_actor_ids text[], p_kinds text[], p_subjects text[],
    p_outcomes text[], p_tools text[], p_tenants text[], p_billable boolean[],
    p_details jsonb[], p_cost bigint, p_now timestamptz, p_enforce boolean, p_low_threshold bigint
) RETURNS boolean[] LANGUAGE plpgsql AS $$
DECLARE
    n          int := cardinality(p_ids);
    charged    boolean[] := array_fill(false, ARRAY[n]);
    team       text;
    idx        int[];
    free_ok    bigint;
    available  bigint;
    affordable int;
    cost       bigint;
    from_free  bigint;
    b          record;
BEGIN
    FOR team, idx IN
        SELECT u.t, array_agg(u.i ORDER BY u.i)
        FROM unnest(p_team_ids, p_billable) WITH ORDINALITY AS u(t, bl, i)
        WHERE u.bl GROUP BY u.t ORDER BY u.t
    LOOP
        IF NOT p_enforce THEN
            FOR i IN 1 .. cardinality(idx) LOOP
                charged[idx[i]] := true;
            END LOOP;
            INSERT INTO team_balances (team_id, billed_calls, billed_micros)
            VALUES (team, cardinality(idx), cardinality(idx)::bigint * p_cost)
            ON CONFLICT (team_id) DO UPDATE SET
                billed_calls  = team_balances.billed_calls + EXCLUDED.billed_calls,
                billed_micros = team_balances.billed_micros + EXCLUDED.billed_micros;
            CONTINUE;
        END IF;

        SELECT free_micros, free_expires_at, purchased_micros, low_balance_alerted INTO b
        FROM team_balances WHERE team_id = team FOR UPDATE;
        IF NOT FOUND THEN
            CONTINUE; -- no balance row: nothing is affordable
        END IF;
        free_ok := CASE WHEN b.free_expires_at > p_now THEN b.free_micros ELSE 0 END;
        available := free_ok + b.purchased_micros; -- below zero after a refund

        affordable := cardinality(idx);
        IF p_cost > 0 THEN
            affordable := greatest(0, least(affordable::bigint, available / p_cost))::int;
        END IF;
        FOR i IN 1 .. affordable LOOP
            charged[idx[i]] := true;
        END LOOP;

        cost := affordable::bigint * p_cost;
        from_free := least(free_ok, cost); -- free credit is spent first
        IF affordable > 0 THEN
            UPDATE team_balances SET
                free_micros      = free_micros - from_free,
                purchased_micros = purchased_micros - (cost - from_free),
                billed_calls     = billed_calls + affordable,
                billed_micros    = billed_micros + cost
            WHERE team_id = team;
        END IF;
        IF p_low_threshold > 0 AND NOT b.low_balance_alerted AND available - cost < p_low_threshold THEN
            UPDATE team_balances SET low_balance_alerted = true WHERE team_id = team;
            INSERT INTO credit_alerts (id, team_id, balance_micros, threshold_micros, created_at)
            VALUES ('cal_' || md5(p_ids[idx[1]]), team, available - cost, p_low_threshold, p_now);
        END IF;
    END LOOP;

    INSERT INTO audit_events (id, org_id, team_id, occurred_at, actor_kind, actor_id, kind, subject,
                              outcome, tool, tenant, billable, cost_micros, details)
    SELECT u.id, u.org, u.team, u.at, u.akind, u.aid, u.kind, u.subj,
           CASE WHEN u.bl AND NOT charged[u.i] THEN 'insufficient_credits' ELSE u.outc END,
           u.tool, u.ten, charged[u.i], CASE WHEN charged[u.i] THEN p_cost ELSE 0 END, u.det
    FROM unnest(p_ids, p_org_ids, p_team_ids, p_occurred_at, p_actor_kinds, p_actor_ids, p_kinds,
                p_subjects, p_outcomes, p_tools, p_tenants, p_billable, p_details)
         WITH ORDINALITY AS u(id, org, team, at, akind, aid, kind, subj, outc, tool, ten, bl, det, i)
    ORDER BY u.i;

    RETURN charged;
END $$;

-- The 003 signature, still called by servers of the previous version during
-- a rolling upgrade: enforced, no alert. Redefined because a balance below
-- zero (now possible) made its count of affordable calls negative.
CREATE OR REPLACE FUNCTION oakallow_record_audit_batch(
    p_ids text[], p_org_ids text[], p_team_ids text[], p_occurred_at timestamptz[],
    p_actor_kinds text[], p_actor_ids text[], p_kinds text[], p_subjects text[],
    p_outcomes text[], p_tools text[], p_tenants text[], p_billable boolean[],
    p_details jsonb[], p_cost bigint, p_now timestamptz
) RETURNS boolean[] LANGUAGE sql AS $$
    SELECT oakallow_record_audit_batch(p_ids, p_org_ids, p_team_ids, p_occurred_at, p_actor_kinds,
        p_actor_ids, p_kinds, p_subjects, p_outcomes, p_tools, p_tenants, p_billable, p_details,
        p_cost, p_now, true, 0::bigint);
$$;

---- create above / drop below ----

DROP FUNCTION oakallow_record_audit_batch(text[], text[], text[], timestamptz[], text[], text[], text[], text[],
    text[], text[], text[], boolean[], jsonb[], bigint, timestamptz, boolean, bigint);
-- The 003 definition again.
CREATE OR REPLACE FUNCTION oakallow_record_audit_batch(
    p_ids text[], p_org_ids text[], p_team_ids text[], p_occurred_at timestamptz[],
    p_actor_kinds text[], p_actor_ids text[], p_kinds text[], p_subjects text[],
    p_outcomes text[], p_tools text[], p_tenants text[], p_billable boolean[],
    p_details jsonb[], p_cost bigint, p_now timestamptz
) RETURNS boolean[] LANGUAGE plpgsql AS $$
DECLARE
    n          int := cardinality(p_ids);
    charged    boolean[] := array_fill(false, ARRAY[n]);
    team       text;
    idx        int[];
    free_ok    bigint;
    available  bigint;
    affordable int;
    cost       bigint;
    from_free  bigint;
    b          record;
BEGIN
    FOR team, idx IN
        SELECT u.t, array_agg(u.i ORDER BY u.i)
        FROM unnest(p_team_ids, p_billable) WITH ORDINALITY AS u(t, bl, i)
        WHERE u.bl GROUP BY u.t ORDER BY u.t
    LOOP
        SELECT free_micros, free_expires_at, purchased_micros INTO b
        FROM team_balances WHERE team_id = team FOR UPDATE;
        IF NOT FOUND THEN
            CONTINUE; -- no balance row: nothing is affordable
        END IF;
        free_ok := CASE WHEN b.free_expires_at > p_now THEN b.free_micros ELSE 0 END;
        available := free_ok + b.purchased_micros;

        affordable := cardinality(idx);
        IF p_cost > 0 THEN
            affordable := least(affordable::bigint, available / p_cost)::int;
        END IF;
        IF affordable = 0 THEN
            CONTINUE;
        END IF;
        FOR i IN 1 .. affordable LOOP
            charged[idx[i]] := true;
        END LOOP;

        cost := affordable::bigint * p_cost;
        from_free := least(free_ok, cost); -- free credit is spent first
        UPDATE team_balances SET
            free_micros      = free_micros - from_free,
            purchased_micros = purchased_micros - (cost - from_free),
            billed_calls     = billed_calls + affordable,
            billed_micros    = billed_micros + cost
        WHERE team_id = team;
    END LOOP;

    -- unnest walks the arrays in step (subscripting a text[] in a loop is
    -- O(i) per element); charged[] is fixed-width, so indexing it is O(1).
    INSERT INTO audit_events (id, org_id, team_id, occurred_at, actor_kind, actor_id, kind, subject,
                              outcome, tool, tenant, billable, cost_micros, details)
    SELECT u.id, u.org, u.team, u.at, u.akind, u.aid, u.kind, u.subj,
           CASE WHEN u.bl AND NOT charged[u.i] THEN 'insufficient_credits' ELSE u.outc END,
           u.tool, u.ten, charged[u.i], CASE WHEN charged[u.i] THEN p_cost ELSE 0 END, u.det
    FROM unnest(p_ids, p_org_ids, p_team_ids, p_occurred_at, p_actor_kinds, p_actor_ids, p_kinds,
                p_subjects, p_outcomes, p_tools, p_tenants, p_billable, p_details)
         WITH ORDINALITY AS u(id, org, team, at, akind, aid, kind, subj, outc, tool, ten, bl, det, i)
    ORDER BY u.i;

    RETURN charged;
END $$;
DROP INDEX audit_events_team_billable_idx;
DROP TABLE call_refunds, credit_alerts, credit_reversals, stripe_events, billing_checkouts;
DROP INDEX credit_grants_team_created_idx;
ALTER TABLE credit_grants DROP COLUMN note, DROP COLUMN granted_by;
ALTER TABLE credit_grants DROP CONSTRAINT credit_grants_kind_check;
ALTER TABLE credit_grants ADD CONSTRAINT credit_grants_kind_check CHECK (kind IN ('free', 'purchased'));
ALTER TABLE team_balances DROP COLUMN low_balance_alerted;
ALTER TABLE team_balances ADD CONSTRAINT team_balances_purchased_micros_check CHECK (purchased_micros >= 0);
