-- Spending moves from per-grant remaining balances to one balance row per
-- team, so a group commit charges a team with one locked row update and no
-- ledger insert: the per-call debit record is the billable audit row itself,
-- and credit_grants stays the record of every credit added. Measured: the
-- single-entry commit went from ~235 µs to ~… (docs/PERFORMANCE.md).
--
-- Free credit is one bucket with one expiry: adding free credit sums the
-- unexpired amounts and keeps the later expiry.

CREATE TABLE team_balances (
    team_id          text PRIMARY KEY REFERENCES teams (id),
    free_micros      bigint NOT NULL DEFAULT 0 CHECK (free_micros >= 0),
    free_expires_at  timestamptz,
    purchased_micros bigint NOT NULL DEFAULT 0 CHECK (purchased_micros >= 0),
    -- Totals charged so far; equal to the sum of the team's billable audit rows.
    billed_calls     bigint NOT NULL DEFAULT 0,
    billed_micros    bigint NOT NULL DEFAULT 0
);

INSERT INTO team_balances (team_id, free_micros, free_expires_at, purchased_micros)
SELECT team_id,
       coalesce(sum(remaining_micros) FILTER (WHERE kind = 'free'), 0),
       max(expires_at) FILTER (WHERE kind = 'free'),
       coalesce(sum(remaining_micros) FILTER (WHERE kind = 'purchased'), 0)
FROM credit_grants GROUP BY team_id;

UPDATE team_balances b SET
    billed_calls = s.calls, billed_micros = s.micros
FROM (SELECT team_id, count(*) AS calls, sum(cost_micros) AS micros FROM audit_events WHERE billable GROUP BY team_id) s
WHERE s.team_id = b.team_id;

ALTER TABLE credit_grants DROP COLUMN remaining_micros;
DROP TABLE credit_ledger;
DROP INDEX audit_events_team_billable_idx;

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

---- create above / drop below ----

-- Irreversible in practice (per-grant balances are not recoverable); the
-- down step restores the shape only.
CREATE INDEX audit_events_team_billable_idx ON audit_events (team_id) WHERE billable;
CREATE TABLE credit_ledger (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id      text NOT NULL REFERENCES teams (id),
    grant_id     text NOT NULL REFERENCES credit_grants (id),
    delta_micros bigint NOT NULL,
    calls        integer NOT NULL DEFAULT 0,
    reason       text NOT NULL,
    created_at   timestamptz NOT NULL
);
ALTER TABLE credit_grants ADD COLUMN remaining_micros bigint NOT NULL DEFAULT 0;
DROP TABLE team_balances;
