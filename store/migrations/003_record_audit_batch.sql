-- The audit group commit in one round trip: charge each team's billable
-- entries against its credit grants (free first, soonest expiry first, then
-- purchased), write the ledger, and insert every audit row — all in the
-- calling statement's transaction. Returns, per entry, whether it was
-- charged; a billable entry that was not charged is recorded as not billable
-- with outcome 'insufficient_credits'. Teams are locked in id order, so
-- concurrent batches (and replicas) cannot deadlock.
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
    available  bigint;
    affordable int;
    owed       bigint;
    take       bigint;
    calls      int;
    g          record;
BEGIN
    FOR team IN
        SELECT DISTINCT u.t FROM unnest(p_team_ids, p_billable) AS u(t, b) WHERE u.b ORDER BY u.t
    LOOP
        SELECT array_agg(i ORDER BY i) INTO idx
        FROM generate_subscripts(p_ids, 1) AS i
        WHERE p_billable[i] AND p_team_ids[i] = team;

        available := 0;
        FOR g IN
            SELECT remaining_micros FROM credit_grants
            WHERE team_id = team AND remaining_micros > 0 AND (expires_at IS NULL OR expires_at > p_now)
            ORDER BY id
            FOR UPDATE
        LOOP
            available := available + g.remaining_micros;
        END LOOP;

        affordable := cardinality(idx);
        IF p_cost > 0 THEN
            affordable := least(affordable::bigint, available / p_cost)::int;
        END IF;
        FOR i IN 1 .. affordable LOOP
            charged[idx[i]] := true;
        END LOOP;

        owed := affordable::bigint * p_cost;
        calls := affordable; -- the batch's call count goes on the first ledger row
        FOR g IN
            SELECT id, remaining_micros FROM credit_grants
            WHERE team_id = team AND remaining_micros > 0 AND (expires_at IS NULL OR expires_at > p_now)
            ORDER BY (kind = 'purchased'), expires_at NULLS LAST, created_at, id
        LOOP
            EXIT WHEN owed = 0;
            take := least(g.remaining_micros, owed);
            UPDATE credit_grants SET remaining_micros = remaining_micros - take WHERE id = g.id;
            INSERT INTO credit_ledger (team_id, grant_id, delta_micros, calls, reason, created_at)
            VALUES (team, g.id, -take, calls, 'usage', p_now);
            owed := owed - take;
            calls := 0;
        END LOOP;
    END LOOP;

    INSERT INTO audit_events (id, org_id, team_id, occurred_at, actor_kind, actor_id, kind, subject,
                              outcome, tool, tenant, billable, cost_micros, details)
    SELECT p_ids[i], p_org_ids[i], p_team_ids[i], p_occurred_at[i], p_actor_kinds[i], p_actor_ids[i],
           p_kinds[i], p_subjects[i],
           CASE WHEN p_billable[i] AND NOT charged[i] THEN 'insufficient_credits' ELSE p_outcomes[i] END,
           p_tools[i], p_tenants[i], charged[i], CASE WHEN charged[i] THEN p_cost ELSE 0 END, p_details[i]
    FROM generate_subscripts(p_ids, 1) AS i
    ORDER BY i;

    RETURN charged;
END $$;

---- create above / drop below ----

DROP FUNCTION oakallow_record_audit_batch(text[], text[], text[], timestamptz[], text[], text[], text[], text[],
    text[], text[], text[], boolean[], jsonb[], bigint, timestamptz);
