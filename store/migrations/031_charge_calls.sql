-- The charge of a check, defined once. Until now it was written three
-- times: in the batch function's loop over teams (016), in that function's
-- one-entry branch (024) and in oakallow_record_audit_one (029), held equal
-- only by a test. oakallow_charge_calls below is the one definition; both
-- commit functions call it, once per team whose entries they bill.
--
-- 024's one-entry branch goes: the recorder has sent one-entry commits to
-- oakallow_record_audit_one since 029, and a replica still running an older
-- version that sends a batch of one entry gets the general path, which
-- charges it as the branch did, through this function — only without the
-- branch's saving (up to about 30 µs of backend CPU per such commit), for
-- the length of the upgrade.
--
-- Cost: one more PL/pgSQL call per commit and team. Measured against 029
-- (docs/PERFORMANCE.md, "One definition of the charge"): a one-entry commit
-- spends about 1 µs more in its function (within the runs' spread) and
-- writes the same WAL; a batch whose calls the balance covers charges them
-- with one UPDATE instead of SELECT … FOR UPDATE and an UPDATE, and writes
-- 56 bytes less WAL.

-- Charges p_calls billable calls of team p_team_id, in order, at p_cost each;
-- returns how many were paid for — the first that many (0 … p_calls). The
-- rest are refused: the caller records them as not billable, with outcome
-- insufficient_credits. p_first_id (the first call's audit id) names the
-- low-balance alert the charge may raise.
--
-- p_enforce false (billing mode off): every call is metered — counted in
-- billed_calls and billed_micros — and paid for; the balance is not touched.
-- p_enforce true: unexpired free credit is spent before purchased credit; a
-- balance below zero (a refund took back spent credit) covers nothing; a team
-- without a balance row pays for nothing. When p_low_threshold > 0 and the
-- charge leaves the spendable balance below it, a credits.low alert is
-- recorded, once per crossing (low_balance_alerted).
--
-- Calls the balance covers cost one UPDATE. Otherwise the row is read and
-- locked, and as many calls as it covers are charged.
CREATE FUNCTION oakallow_charge_calls(
    p_team_id text, p_calls int, p_first_id text, p_cost bigint, p_now timestamptz,
    p_enforce boolean, p_low_threshold bigint
) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    total     bigint := p_calls::bigint * p_cost; -- what the calls paid for cost
    paid      int;
    available bigint; -- the spendable balance before the charge
    free_ok   bigint; -- the unexpired free credit before the charge
    purchased bigint;
    alerted   boolean;
BEGIN
    IF NOT p_enforce THEN
        INSERT INTO team_balances (team_id, billed_calls, billed_micros) VALUES (p_team_id, p_calls, total)
        ON CONFLICT (team_id) DO UPDATE SET
            billed_calls  = team_balances.billed_calls + EXCLUDED.billed_calls,
            billed_micros = team_balances.billed_micros + EXCLUDED.billed_micros;
        RETURN p_calls;
    END IF;

    UPDATE team_balances SET
        free_micros      = free_micros - least(CASE WHEN free_expires_at > p_now THEN free_micros ELSE 0 END, total),
        purchased_micros = purchased_micros - (total - least(CASE WHEN free_expires_at > p_now THEN free_micros ELSE 0 END, total)),
        billed_calls     = billed_calls + p_calls,
        billed_micros    = billed_micros + total
    WHERE team_id = p_team_id
      AND (total = 0 OR CASE WHEN free_expires_at > p_now THEN free_micros ELSE 0 END + purchased_micros >= total)
    -- Free credit unexpired before is unexpired after (the same p_now), so
    -- what is spendable now plus the charge is what was spendable before.
    RETURNING CASE WHEN free_expires_at > p_now THEN free_micros ELSE 0 END + purchased_micros + total, low_balance_alerted
    INTO available, alerted;
    IF FOUND THEN
        paid := p_calls;
    ELSE
        -- Not all covered, or no balance row. Credit may have arrived since
        -- the UPDATE looked: judge on the locked row.
        SELECT CASE WHEN free_expires_at > p_now THEN free_micros ELSE 0 END, purchased_micros, low_balance_alerted
        INTO free_ok, purchased, alerted
        FROM team_balances WHERE team_id = p_team_id FOR UPDATE;
        IF NOT FOUND THEN
            RETURN 0;
        END IF;
        available := free_ok + purchased;
        paid := CASE WHEN p_cost = 0 THEN p_calls
                     ELSE greatest(0, least(p_calls::bigint, available / p_cost))::int END;
        total := paid::bigint * p_cost;
        IF paid > 0 THEN
            UPDATE team_balances SET
                free_micros      = free_micros - least(free_ok, total),
                purchased_micros = purchased_micros - (total - least(free_ok, total)),
                billed_calls     = billed_calls + paid,
                billed_micros    = billed_micros + total
            WHERE team_id = p_team_id;
        END IF;
    END IF;

    IF p_low_threshold > 0 AND NOT alerted AND available - total < p_low_threshold THEN
        UPDATE team_balances SET low_balance_alerted = true WHERE team_id = p_team_id;
        INSERT INTO credit_alerts (id, team_id, balance_micros, threshold_micros, created_at)
        VALUES ('cal_' || md5(p_first_id), p_team_id, available - total, p_low_threshold, p_now);
    END IF;
    RETURN paid;
END $$;

-- The group commit (016's signature; the 003 one still calls it): each
-- team's billable entries charged through oakallow_charge_calls, teams in
-- order (so two batches lock shared balance rows in the same order), then
-- every row inserted.
CREATE OR REPLACE FUNCTION oakallow_record_audit_batch(
    p_ids text[], p_org_ids text[], p_team_ids text[], p_occurred_at timestamptz[],
    p_actor_kinds text[], p_actor_ids text[], p_kinds text[], p_subjects text[],
    p_outcomes text[], p_tools text[], p_tenants text[], p_billable boolean[],
    p_details jsonb[], p_cost bigint, p_now timestamptz, p_enforce boolean, p_low_threshold bigint
) RETURNS boolean[] LANGUAGE plpgsql AS $$
DECLARE
    charged boolean[] := array_fill(false, ARRAY[cardinality(p_ids)]);
    team    text;
    idx     int[];
    paid    int;
BEGIN
    FOR team, idx IN
        SELECT u.t, array_agg(u.i ORDER BY u.i)
        FROM unnest(p_team_ids, p_billable) WITH ORDINALITY AS u(t, bl, i)
        WHERE u.bl GROUP BY u.t ORDER BY u.t
    LOOP
        paid := oakallow_charge_calls(team, cardinality(idx), p_ids[idx[1]], p_cost, p_now, p_enforce, p_low_threshold);
        FOR i IN 1 .. paid LOOP
            charged[idx[i]] := true;
        END LOOP;
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

-- One audit entry (029: fenced by an advisory lock and a look-up of the
-- recorder's fence row, in READ COMMITTED), charged through
-- oakallow_charge_calls; returns whether it was charged.
CREATE OR REPLACE FUNCTION oakallow_record_audit_one(
    p_id text, p_org_id text, p_team_id text, p_occurred_at timestamptz,
    p_actor_kind text, p_actor_id text, p_kind text, p_subject text,
    p_outcome text, p_tool text, p_tenant text, p_billable boolean,
    p_details jsonb, p_cost bigint, p_now timestamptz, p_enforce boolean, p_low_threshold bigint
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    charged boolean := false;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'oakallow_record_audit_one needs READ COMMITTED, not %', current_setting('transaction_isolation');
    END IF;
    PERFORM set_config('lock_timeout', '5s', true),
            pg_advisory_xact_lock(hashtext('oakallow.audit_batch_fence'), hashtext(p_id));
    IF EXISTS (SELECT FROM audit_batch_fences WHERE id = p_id) THEN
        RAISE unique_violation USING MESSAGE = 'audit batch ' || p_id || ' was fenced',
            CONSTRAINT = 'audit_batch_fences_pkey';
    END IF;

    IF p_billable THEN
        charged := oakallow_charge_calls(p_team_id, 1, p_id, p_cost, p_now, p_enforce, p_low_threshold) = 1;
    END IF;

    INSERT INTO audit_events (id, org_id, team_id, occurred_at, actor_kind, actor_id, kind, subject,
                              outcome, tool, tenant, billable, cost_micros, details)
    VALUES (p_id, p_org_id, p_team_id, p_occurred_at, p_actor_kind, p_actor_id, p_kind, p_subject,
            CASE WHEN p_billable AND NOT charged THEN 'insufficient_credits' ELSE p_outcome END,
            p_tool, p_tenant, charged, CASE WHEN charged THEN p_cost ELSE 0 END, p_details);
    RETURN charged;
END $$;

---- create above / drop below ----

-- 029's one-entry function and 024's batch function again, each with the
-- charge written out in it.
CREATE OR REPLACE FUNCTION oakallow_record_audit_one(
    p_id text, p_org_id text, p_team_id text, p_occurred_at timestamptz,
    p_actor_kind text, p_actor_id text, p_kind text, p_subject text,
    p_outcome text, p_tool text, p_tenant text, p_billable boolean,
    p_details jsonb, p_cost bigint, p_now timestamptz, p_enforce boolean, p_low_threshold bigint
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    charged   boolean := false;
    b         record;
    available bigint; -- the spendable balance before this call; NULL: no balance row
    cost      bigint := 0;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'oakallow_record_audit_one needs READ COMMITTED, not %', current_setting('transaction_isolation');
    END IF;
    PERFORM set_config('lock_timeout', '5s', true),
            pg_advisory_xact_lock(hashtext('oakallow.audit_batch_fence'), hashtext(p_id));
    IF EXISTS (SELECT FROM audit_batch_fences WHERE id = p_id) THEN
        RAISE unique_violation USING MESSAGE = 'audit batch ' || p_id || ' was fenced',
            CONSTRAINT = 'audit_batch_fences_pkey';
    END IF;

    IF p_billable AND NOT p_enforce THEN
        charged := true;
        INSERT INTO team_balances (team_id, billed_calls, billed_micros) VALUES (p_team_id, 1, p_cost)
        ON CONFLICT (team_id) DO UPDATE SET
            billed_calls  = team_balances.billed_calls + 1,
            billed_micros = team_balances.billed_micros + p_cost;
    ELSIF p_billable THEN
        -- Free credit (while unexpired) is spent first; a balance below zero
        -- (a refund took back spent credit) covers nothing.
        UPDATE team_balances SET
            free_micros      = free_micros - least(CASE WHEN free_expires_at > p_now THEN free_micros ELSE 0 END, p_cost),
            purchased_micros = purchased_micros - (p_cost - least(CASE WHEN free_expires_at > p_now THEN free_micros ELSE 0 END, p_cost)),
            billed_calls     = billed_calls + 1,
            billed_micros    = billed_micros + p_cost
        WHERE team_id = p_team_id
          AND (p_cost = 0 OR CASE WHEN free_expires_at > p_now THEN free_micros ELSE 0 END + purchased_micros >= p_cost)
        RETURNING CASE WHEN free_expires_at > p_now THEN free_micros ELSE 0 END + purchased_micros AS left_after,
                  low_balance_alerted INTO b;
        IF FOUND THEN
            charged := true;
            cost := p_cost;
            -- What was spendable before: free credit unexpired before is
            -- unexpired after (the same p_now), and this call took p_cost.
            available := b.left_after + p_cost;
        ELSE
            SELECT free_micros, free_expires_at, purchased_micros, low_balance_alerted INTO b
            FROM team_balances WHERE team_id = p_team_id FOR UPDATE;
            IF FOUND THEN
                available := CASE WHEN b.free_expires_at > p_now THEN b.free_micros ELSE 0 END + b.purchased_micros;
                -- Credit may have arrived since the UPDATE looked.
                charged := p_cost = 0 OR available >= p_cost;
                IF charged THEN
                    cost := p_cost;
                    UPDATE team_balances SET
                        free_micros      = free_micros - least(CASE WHEN b.free_expires_at > p_now THEN b.free_micros ELSE 0 END, cost),
                        purchased_micros = purchased_micros - (cost - least(CASE WHEN b.free_expires_at > p_now THEN b.free_micros ELSE 0 END, cost)),
                        billed_calls     = billed_calls + 1,
                        billed_micros    = billed_micros + cost
                    WHERE team_id = p_team_id;
                END IF;
            END IF;
        END IF;
        IF available IS NOT NULL AND p_low_threshold > 0 AND NOT b.low_balance_alerted
           AND available - cost < p_low_threshold THEN
            UPDATE team_balances SET low_balance_alerted = true WHERE team_id = p_team_id;
            INSERT INTO credit_alerts (id, team_id, balance_micros, threshold_micros, created_at)
            VALUES ('cal_' || md5(p_id), p_team_id, available - cost, p_low_threshold, p_now);
        END IF;
    END IF;

    INSERT INTO audit_events (id, org_id, team_id, occurred_at, actor_kind, actor_id, kind, subject,
                              outcome, tool, tenant, billable, cost_micros, details)
    VALUES (p_id, p_org_id, p_team_id, p_occurred_at, p_actor_kind, p_actor_id, p_kind, p_subject,
            CASE WHEN p_billable AND NOT charged THEN 'insufficient_credits' ELSE p_outcome END,
            p_tool, p_tenant, charged, CASE WHEN charged THEN p_cost ELSE 0 END, p_details);
    RETURN charged;
END $$;

-- 024's definition.
CREATE OR REPLACE FUNCTION oakallow_record_audit_batch(
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
    IF n = 1 THEN
        -- One entry: the loop below for one call of one team, and the
        -- insert from the arrays' first elements.
        team := p_team_ids[1];
        IF p_billable[1] AND NOT p_enforce THEN
            charged[1] := true;
            INSERT INTO team_balances (team_id, billed_calls, billed_micros) VALUES (team, 1, p_cost)
            ON CONFLICT (team_id) DO UPDATE SET
                billed_calls  = team_balances.billed_calls + 1,
                billed_micros = team_balances.billed_micros + p_cost;
        ELSIF p_billable[1] THEN
            SELECT free_micros, free_expires_at, purchased_micros, low_balance_alerted INTO b
            FROM team_balances WHERE team_id = team FOR UPDATE;
            IF FOUND THEN
                free_ok := CASE WHEN b.free_expires_at > p_now THEN b.free_micros ELSE 0 END;
                available := free_ok + b.purchased_micros;
                charged[1] := p_cost = 0 OR available >= p_cost;
                cost := CASE WHEN charged[1] THEN p_cost ELSE 0 END;
                from_free := least(free_ok, cost);
                IF charged[1] THEN
                    UPDATE team_balances SET
                        free_micros      = free_micros - from_free,
                        purchased_micros = purchased_micros - (cost - from_free),
                        billed_calls     = billed_calls + 1,
                        billed_micros    = billed_micros + cost
                    WHERE team_id = team;
                END IF;
                IF p_low_threshold > 0 AND NOT b.low_balance_alerted AND available - cost < p_low_threshold THEN
                    UPDATE team_balances SET low_balance_alerted = true WHERE team_id = team;
                    INSERT INTO credit_alerts (id, team_id, balance_micros, threshold_micros, created_at)
                    VALUES ('cal_' || md5(p_ids[1]), team, available - cost, p_low_threshold, p_now);
                END IF;
            END IF;
        END IF;
        INSERT INTO audit_events (id, org_id, team_id, occurred_at, actor_kind, actor_id, kind, subject,
                                  outcome, tool, tenant, billable, cost_micros, details)
        VALUES (p_ids[1], p_org_ids[1], team, p_occurred_at[1], p_actor_kinds[1], p_actor_ids[1], p_kinds[1],
                p_subjects[1], CASE WHEN p_billable[1] AND NOT charged[1] THEN 'insufficient_credits' ELSE p_outcomes[1] END,
                p_tools[1], p_tenants[1], charged[1], CASE WHEN charged[1] THEN p_cost ELSE 0 END, p_details[1]);
        RETURN charged;
    END IF;

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

DROP FUNCTION oakallow_charge_calls(text, int, text, bigint, timestamptz, boolean, bigint);
