-- Reviewer notes are customer data and stay out of workflow history (SPEC §4). The API
-- stores a decide's note here, keyed by the decide's request id (the Update id), before
-- it sends the Update; the workflow sees only the request id, and the projection and
-- notification activities read the note from here. A row is written once: a retried
-- decide with the same Idempotency-Key and another note is refused.
CREATE TABLE decision_notes (
    request_id  text PRIMARY KEY CHECK (length(request_id) BETWEEN 1 AND 200),
    approval_id text NOT NULL REFERENCES approvals (id),
    note        text NOT NULL CHECK (length(note) BETWEEN 1 AND 1000),
    created_at  timestamptz NOT NULL
);
CREATE INDEX decision_notes_approval_idx ON decision_notes (approval_id);

---- create above / drop below ----

DROP TABLE decision_notes;
