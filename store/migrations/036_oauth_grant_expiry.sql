-- A grant whose every token expired was never swept: it works no more (it
-- is not listed among an org's connected clients), but it and its client
-- stayed for good. Its tokens are swept an hour after they expire, so
-- nothing said when it stopped working; expires_at does now: the expiry of
-- its latest refresh token (of its code, until one is issued), moved on by
-- every issue in the same transaction, so it is never before the expiry of
-- a token that can still be refreshed. The sweep (api/oauth Sweep, store
-- query SweepOAuthGrants) deletes a grant 30 days after it ended: revoked,
-- or past expires_at. oauth_grants_ended_idx serves that walk, earliest
-- end first; deleting a grant cascades to its codes, which without
-- oauth_codes_grant_idx reads the whole code table once per grant (7.6 s
-- for 500 grants beside 200,000 codes; the tokens had their index).
--
-- Existing grants end at their latest token's or code's expiry, and no
-- earlier than now: one whose tokens were already swept is kept 30 days
-- from the upgrade, as if it had just expired.
CREATE INDEX oauth_codes_grant_idx ON oauth_codes (grant_id);
ALTER TABLE oauth_grants ADD COLUMN expires_at timestamptz;
UPDATE oauth_grants g SET expires_at = GREATEST(now(),
    (SELECT max(t.expires_at) FROM oauth_tokens t WHERE t.grant_id = g.id),
    (SELECT max(c.expires_at) FROM oauth_codes c WHERE c.grant_id = g.id));
ALTER TABLE oauth_grants ALTER COLUMN expires_at SET NOT NULL;
CREATE INDEX oauth_grants_ended_idx ON oauth_grants ((COALESCE(revoked_at, expires_at)), id);

---- create above / drop below ----

DROP INDEX oauth_codes_grant_idx;
DROP INDEX oauth_grants_ended_idx;
ALTER TABLE oauth_grants DROP COLUMN expires_at;
