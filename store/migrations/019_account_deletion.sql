-- Account deletion (SPEC §8, issue 9): the request revokes everything at
-- once and marks the person deleted; a durable workflow purges the personal
-- data 30 days later (workflows.AccountDeletionWorkflow). Audit entries and
-- billing records stay; they name the person by user id, whose row then
-- holds only a pseudonym.
ALTER TABLE users ADD COLUMN deletion_requested_at timestamptz;
ALTER TABLE users ADD COLUMN purged_at timestamptz;

---- create above / drop below ----

ALTER TABLE users DROP COLUMN purged_at;
ALTER TABLE users DROP COLUMN deletion_requested_at;
