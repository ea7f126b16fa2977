-- Dynamic client registrations nobody uses are swept (api/oauth Sweep,
-- store query SweepOAuthClients): the sweep walks old clients oldest first
-- and keeps those with a request or a standing grant, and deleting a client
-- cascades to its requests and grants. Without these indexes each of those
-- steps reads the whole table, once per client swept.
CREATE INDEX oauth_clients_created_idx ON oauth_clients (created_at, id);
CREATE INDEX oauth_grants_client_idx ON oauth_grants (client_id);
CREATE INDEX oauth_requests_client_idx ON oauth_requests (client_id);

---- create above / drop below ----

DROP INDEX oauth_requests_client_idx;
DROP INDEX oauth_grants_client_idx;
DROP INDEX oauth_clients_created_idx;
