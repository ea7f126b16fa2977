-- Session cache invalidation (api/sessioncache.go). Every API replica keeps
-- the sessions it recently authenticated in memory; these triggers announce,
-- on the oakallow_sessions channel and at commit, every change that can make
-- a cached session answer wrong — whoever makes it (a handler, the account
-- deletion workflow, an operator's SQL). Payload "user:<user id>" drops that
-- person's entries; "all" (an org appeared, vanished or moved: the org a
-- session selects without a header, and which orgs it may name) drops every
-- entry. PostgreSQL folds identical payloads of one transaction into one
-- notification, so revoking all of a person's sessions sends one.

CREATE FUNCTION notify_session_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('oakallow_sessions', 'user:' || OLD.user_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('oakallow_sessions', 'user:' || NEW.user_id);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION notify_session_person() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('oakallow_sessions', 'user:' || OLD.id);
    RETURN NULL;
END $$;

CREATE FUNCTION notify_session_all() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('oakallow_sessions', 'all');
    RETURN NULL;
END $$;

-- Revocation, sign-out, upgrade (new token, new state). Not last_seen_at,
-- ip or user_agent: recording use must not empty the caches.
CREATE TRIGGER sessions_notify AFTER UPDATE OF revoked_at, token_hash, state, expires_at, user_id OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION notify_session_user();

-- Joining, role changes, removal.
CREATE TRIGGER memberships_notify AFTER INSERT OR UPDATE OR DELETE ON memberships
    FOR EACH ROW EXECUTE FUNCTION notify_session_user();

-- Account deletion (status 'deleted').
CREATE TRIGGER users_notify AFTER UPDATE OF status OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION notify_session_person();

CREATE TRIGGER orgs_notify AFTER INSERT OR UPDATE OF deleted_at, team_id OR DELETE ON orgs
    FOR EACH STATEMENT EXECUTE FUNCTION notify_session_all();

---- create above / drop below ----

DROP TRIGGER orgs_notify ON orgs;
DROP TRIGGER users_notify ON users;
DROP TRIGGER memberships_notify ON memberships;
DROP TRIGGER sessions_notify ON sessions;
DROP FUNCTION notify_session_all();
DROP FUNCTION notify_session_person();
DROP FUNCTION notify_session_user();
