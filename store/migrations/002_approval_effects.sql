-- Approval workflow bookkeeping: the side effects already applied per
-- workflow run, and the execution token on the approval row.

-- One row per (workflow run, activity key) whose write has been applied. The
-- approval activities insert it in the same transaction as their write, so a
-- retried or replayed activity finds it and writes nothing twice.
CREATE TABLE workflow_effects (
    run_id      text NOT NULL CHECK (length(run_id) BETWEEN 1 AND 200),
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    approval_id text NOT NULL REFERENCES approvals (id),
    applied_at  timestamptz NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX workflow_effects_approval_idx ON workflow_effects (approval_id);

-- The execution token minted for an approved approval (projected after the
-- mint); execution_tokens (source_kind, source_id) stays the authority.
ALTER TABLE approvals ADD COLUMN token_id text REFERENCES execution_tokens (id);

---- create above / drop below ----

ALTER TABLE approvals DROP COLUMN token_id;
DROP TABLE workflow_effects;
