-- Lost-commit resolution without server process ids. Behind a pooler
-- (PgBouncer in any mode, RDS Proxy) the process id a client sees is not the
-- process that runs its statements, so ending "the commit's process" by id
-- (oakallow_end_lost_backend) could end another client's work and still not
-- make the commit's outcome final. Instead each batch fences itself with a
-- row keyed by its first audit id:
--
--   * the batch inserts the fence and deletes it again in its own
--     transaction, so no row stays behind, but until that transaction ends a
--     concurrent insert of the same key waits for it;
--   * the recorder, resolving a commit whose answer was lost, inserts the
--     same key (oakallow_fence_audit_batch). While the batch runs, that waits
--     for its end; afterwards the batch's audit rows say whether it
--     committed. If the batch has not started yet (a statement still queued
--     in a pooler), the recorder's committed fence makes it fail when it does
--     start. Either way its outcome is final once the fence is in.
--
-- A batch bounds its lock waits (a team's balance row) at 5 s, well inside
-- the recorder's ResolveTimeout (10 s), so a stuck batch ends on its own
-- instead of being killed, and the recorder's wait on it ends too.
CREATE TABLE audit_batch_fences (
    id text PRIMARY KEY -- the first audit id of the batch
);

-- Opens a batch: bounds its lock waits and fences it. The batch statement
-- (RecordAuditBatch in queries/audit.sql) calls it in a CTE, before
-- oakallow_record_audit_batch in the same transaction.
CREATE FUNCTION oakallow_open_audit_batch(p_first_id text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('lock_timeout', '5s', true);
    IF p_first_id IS NOT NULL THEN
        INSERT INTO audit_batch_fences (id) VALUES (p_first_id);
        DELETE FROM audit_batch_fences WHERE id = p_first_id;
    END IF;
END $$;

-- The recorder's side of the fence: returns once no batch with this first id
-- is in flight, and makes sure none starts later.
CREATE FUNCTION oakallow_fence_audit_batch(p_id text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO audit_batch_fences (id) VALUES (p_id) ON CONFLICT DO NOTHING;
$$;

-- oakallow_end_lost_backend (007) is no longer called.

---- create above / drop below ----

DROP FUNCTION oakallow_fence_audit_batch(text);
DROP FUNCTION oakallow_open_audit_batch(text);
DROP TABLE audit_batch_fences;
