-- The audit group commit in one statement: for each team with billable
-- entries (teams in id order, so concurrent batches and replicas cannot
-- deadlock), lock its team_balances row, charge as many of its calls as the
-- spendable balance covers (unexpired free credit first, then purchased),
-- and insert every audit row in the same transaction. Returns, per entry,
-- whether it was charged; a billable entry that was not charged is recorded
-- as not billable with outcome 'insufficient_credits'.
CREATE FUNCTION oakallow_record_audit_batch(
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

---- create above / drop below ----

DROP FUNCTION oakallow_record_audit_batch(text[], text[], text[], timestamptz[], text[], text[], text[], text[],
    text[], text[], text[], boolean[], jsonb[], bigint, timestamptz);
