-- Regenerating recovery codes is confirmed with a passkey: a session alone
-- (perhaps a stolen cookie) must not mint codes that sign in to the account
-- for good. Its ceremony is a kind of its own, so an assertion made for a
-- sign-in or a decision can never be spent on it, nor the other way round.
ALTER TABLE webauthn_ceremonies DROP CONSTRAINT webauthn_ceremonies_kind_check,
    ADD CONSTRAINT webauthn_ceremonies_kind_check CHECK (kind IN ('register', 'login', 'decide', 'recovery_codes'));

---- create above / drop below ----

DELETE FROM webauthn_ceremonies WHERE kind = 'recovery_codes';
ALTER TABLE webauthn_ceremonies DROP CONSTRAINT webauthn_ceremonies_kind_check,
    ADD CONSTRAINT webauthn_ceremonies_kind_check CHECK (kind IN ('register', 'login', 'decide'));
