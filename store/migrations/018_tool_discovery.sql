-- Auto-discovery (SPEC §7): a tool the MCP connector registered as a draft
-- when an agent checked an unknown name. discovered_at is when; the org's
-- caps (autodiscovery_hourly_cap, autodiscovery_total_cap) count these rows
-- under the org row's lock, so they hold across replicas.
ALTER TABLE tools ADD COLUMN discovered_at timestamptz;
CREATE INDEX tools_discovered_idx ON tools (org_id, discovered_at) WHERE discovered_at IS NOT NULL;

---- create above / drop below ----

DROP INDEX tools_discovered_idx;
ALTER TABLE tools DROP COLUMN discovered_at;
