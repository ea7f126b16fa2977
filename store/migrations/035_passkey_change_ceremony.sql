-- Adding a passkey to an account that has one, and removing a passkey, are
-- confirmed with an existing passkey: a session alone (perhaps a stolen
-- cookie) must not plant a passkey of its own, nor strip the owner's. Its
-- ceremony is a kind of its own, so an assertion made for a sign-in, a
-- decision or new recovery codes can never be spent on it, nor the other way
-- round; the challenge binds which change (and which passkey).
ALTER TABLE webauthn_ceremonies DROP CONSTRAINT webauthn_ceremonies_kind_check,
    ADD CONSTRAINT webauthn_ceremonies_kind_check CHECK (kind IN ('register', 'login', 'decide', 'recovery_codes', 'passkey_change'));

---- create above / drop below ----

DELETE FROM webauthn_ceremonies WHERE kind = 'passkey_change';
ALTER TABLE webauthn_ceremonies DROP CONSTRAINT webauthn_ceremonies_kind_check,
    ADD CONSTRAINT webauthn_ceremonies_kind_check CHECK (kind IN ('register', 'login', 'decide', 'recovery_codes'));
