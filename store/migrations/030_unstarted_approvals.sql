-- Approvals whose workflow never projected their creation: the API commits
-- the row before it starts the workflow, so a process lost between the two
-- (or a failed start whose withdrawal failed too) leaves a pending row that
-- nothing moves on. The worker's start reconciler (ClaimUnstartedApprovals)
-- looks for them by updated_at, which it also moves to claim a row. Every
-- approval leaves this partial index with its first projection, a few
-- milliseconds after its insert, so it stays tiny however many approvals
-- there are.
CREATE INDEX approvals_unstarted_idx ON approvals (updated_at) WHERE projection_seq = 0 AND status = 'pending';
---- create above / drop below ----

DROP INDEX approvals_unstarted_idx;
