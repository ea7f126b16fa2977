-- Runtime callers (standard keys, agent identities, OAuth grants) read only
-- the approvals they requested (SPEC §1: an agent reads its own requests).
-- Every approval has recorded its requester since 001 (created_by_kind: the
-- audit actor kind api_key, agent or oauth; created_by_id: the key, agent
-- identity or OAuth grant id), so no row needs a backfill, and management
-- keys and people keep reading them all. These indexes serve a requester's
-- newest-first list (ListRequesterApprovalsPage) and its list of one
-- status (…ByStatus: list_pending_approvals over MCP), like
-- approvals_org_created_idx and approvals_org_status_idx serve the org's.
CREATE INDEX approvals_requester_idx ON approvals (org_id, created_by_kind, created_by_id, created_at DESC, id DESC);
CREATE INDEX approvals_requester_status_idx ON approvals (org_id, created_by_kind, created_by_id, status, created_at DESC, id DESC);
