-- Execution tokens and org webhook signing secrets are stored sealed
-- (AES-256-GCM under OAKALLOW_SECRET_KEY, bound to their row), never in
-- clear. The sealing itself needs the key, so this migration runs as Go code:
-- store.sealStoredSecrets (store/sealing.go) runs the statements above the
-- "seal here" line, seals every clear value into the new columns (and every
-- stored idempotent answer still kept in clear), then runs the rest. Without
-- the key it refuses, changing nothing, when there is anything to seal.

ALTER TABLE execution_tokens ADD COLUMN token_sealed bytea;
ALTER TABLE orgs
    ADD COLUMN webhook_secret_sealed          bytea NOT NULL DEFAULT '\x'::bytea,
    ADD COLUMN webhook_secret_previous_sealed bytea NOT NULL DEFAULT '\x'::bytea;

-- oakallow: seal here

ALTER TABLE execution_tokens DROP COLUMN token;
ALTER TABLE execution_tokens ALTER COLUMN token_sealed SET NOT NULL;
ALTER TABLE orgs DROP COLUMN webhook_secret, DROP COLUMN webhook_secret_previous;
