-- Which rows of an org's policy each transaction changed, so that a replica
-- holding the org's policy reads only those rows on a change instead of the
-- whole org (a 5,000-rule org took ~20 ms to read, and every change on any
-- replica made every other replica read it again). Triggers log every
-- insert, update and delete of the tables a policy is compiled from, so no
-- writer can forget to, SQL included. xid is the writing transaction's id
-- (pg_current_xact_id, the one NotifyPolicyChange announces): a replica
-- whose policy was read from snapshot S reads the rows logged by the
-- transactions that S does not see and the current snapshot does.
CREATE TABLE policy_changes (
    org_id text NOT NULL,
    xid    bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
    kind   text NOT NULL CHECK (kind IN ('tool', 'category', 'rule', 'tenant', 'resource')),
    row_id text NOT NULL,
    at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, xid, kind, row_id)
);

-- Old log rows are pruned; every pruned row's xid is below horizon, so a
-- policy read from a snapshot whose xmin is below the horizon may miss a
-- pruned change and is loaded whole instead. TRUNCATE, which fires no row
-- trigger, raises the horizon past its own transaction for the same reason.
CREATE TABLE policy_change_horizon (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    xid      bigint NOT NULL
);
-- Policies loaded before this migration committed are loaded whole once.
INSERT INTO policy_change_horizon (xid) VALUES (pg_current_xact_id()::text::bigint + 1);

CREATE FUNCTION oakallow_log_policy_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO policy_changes (org_id, kind, row_id) VALUES (OLD.org_id, TG_ARGV[0], OLD.id)
            ON CONFLICT DO NOTHING;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO policy_changes (org_id, kind, row_id) VALUES (NEW.org_id, TG_ARGV[0], NEW.id)
            ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION oakallow_policy_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE policy_change_horizon SET xid = greatest(xid, pg_current_xact_id()::text::bigint + 1);
    RETURN NULL;
END;
$$;

CREATE TRIGGER tools_policy_change AFTER INSERT OR UPDATE OR DELETE ON tools
    FOR EACH ROW EXECUTE FUNCTION oakallow_log_policy_change('tool');
CREATE TRIGGER categories_policy_change AFTER INSERT OR UPDATE OR DELETE ON categories
    FOR EACH ROW EXECUTE FUNCTION oakallow_log_policy_change('category');
CREATE TRIGGER rules_policy_change AFTER INSERT OR UPDATE OR DELETE ON rules
    FOR EACH ROW EXECUTE FUNCTION oakallow_log_policy_change('rule');
CREATE TRIGGER tenants_policy_change AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION oakallow_log_policy_change('tenant');
CREATE TRIGGER resources_policy_change AFTER INSERT OR UPDATE OR DELETE ON resources
    FOR EACH ROW EXECUTE FUNCTION oakallow_log_policy_change('resource');
CREATE TRIGGER tools_policy_truncate AFTER TRUNCATE ON tools
    FOR EACH STATEMENT EXECUTE FUNCTION oakallow_policy_truncated();
CREATE TRIGGER categories_policy_truncate AFTER TRUNCATE ON categories
    FOR EACH STATEMENT EXECUTE FUNCTION oakallow_policy_truncated();
CREATE TRIGGER rules_policy_truncate AFTER TRUNCATE ON rules
    FOR EACH STATEMENT EXECUTE FUNCTION oakallow_policy_truncated();
CREATE TRIGGER tenants_policy_truncate AFTER TRUNCATE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION oakallow_policy_truncated();
CREATE TRIGGER resources_policy_truncate AFTER TRUNCATE ON resources
    FOR EACH STATEMENT EXECUTE FUNCTION oakallow_policy_truncated();

---- create above / drop below ----

DROP TRIGGER resources_policy_truncate ON resources;
DROP TRIGGER tenants_policy_truncate ON tenants;
DROP TRIGGER rules_policy_truncate ON rules;
DROP TRIGGER categories_policy_truncate ON categories;
DROP TRIGGER tools_policy_truncate ON tools;
DROP TRIGGER resources_policy_change ON resources;
DROP TRIGGER tenants_policy_change ON tenants;
DROP TRIGGER rules_policy_change ON rules;
DROP TRIGGER categories_policy_change ON categories;
DROP TRIGGER tools_policy_change ON tools;
DROP FUNCTION oakallow_policy_truncated();
DROP FUNCTION oakallow_log_policy_change();
DROP TABLE policy_change_horizon;
DROP TABLE policy_changes;
