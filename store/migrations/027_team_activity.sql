-- Team-level audit entries in the activity of owners and admins (issue 9):
-- entries that belong to no org (org_id ''), about the team's people
-- (sign-ins, sessions, passkeys, recovery codes, memberships, invitations,
-- deleted orgs, account deletion), are listed with the org's own entries for
-- an owner or admin session. This index serves that branch of
-- ListAuditEvents newest first, and holds only the team-level rows.
CREATE INDEX audit_events_team_level_seq_idx ON audit_events (team_id, (-seq)) WHERE org_id = '';

---- create above / drop below ----

DROP INDEX audit_events_team_level_seq_idx;
