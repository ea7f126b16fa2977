-- Execution tokens: minting (idempotent per source) and single-use
-- verification (package activities).

-- name: InsertExecutionToken :execrows
-- 0 rows: a token for this source already exists (a concurrent or earlier
-- mint won); read it with GetExecutionTokenBySource.
-- token_sealed is the token sealed under store.ExecutionTokenAAD(id).
INSERT INTO execution_tokens (id, org_id, source_kind, source_id, token_sealed, token_hash, nonce, tool_name, params_hash, key_id, issued_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (source_kind, source_id) DO NOTHING;

-- name: GetExecutionTokenBySource :one
SELECT * FROM execution_tokens WHERE source_kind = $1 AND source_id = $2;

-- name: SpendNonce :execrows
-- Consumes a token's nonce. Exactly one INSERT can succeed per nonce, across
-- every replica: 0 rows means the token was already used.
INSERT INTO spent_nonces (nonce, token_id, org_id, spent_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (nonce) DO NOTHING;
