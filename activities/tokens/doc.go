// Package tokens signs and verifies oakallow's execution tokens and
// decision receipts (SPEC §5). It is pure: no I/O, no clock of its own
// (callers pass now), randomness only from crypto/rand.
//
// # Wire format
//
// Both artefacts are compact strings of the same construction:
//
//	oak_tok_<payload>.<mac>     execution token
//	oak_rcpt_<payload>.<mac>    decision receipt
//
// payload is base64url (RFC 4648 §5, unpadded) of a JSON object with short
// member names; mac is base64url of HMAC-SHA256 (RFC 2104) over the exact
// ASCII bytes "<prefix><payload>", under the key named by the payload's
// "kid" member. The prefix is part of the MAC input and the payload carries
// a "typ" member, so a receipt can never be replayed as a token or the
// other way round, even though both are signed with the same keys.
// Comparison is constant-time (hmac.Equal). Inputs longer than MaxLen are
// refused before any decoding.
//
// # Keys and rotation
//
// A Keyring holds one active key, which signs, and any number of older
// keys, which still verify. Marking a key retired removes it from
// verification: everything it signed stops verifying (ErrUnknownKey). The
// usual rotation is: add the new key as active and keep the old one;
// after the longest token lifetime has passed (receipts: after the
// retention you promise), mark the old key retired, then drop it. The
// environment form is parsed by ParseKeyring.
//
// # What verification does not do
//
// Verify proves a token is authentic, unexpired and for which request. It
// does not make a token single-use: the caller must spend Claims.Nonce
// atomically in the database (SPEC §5), and compare Claims.Org with the
// caller's org.
//
// # Parameter binding
//
// ParamsHash is the hex SHA-256 of the RFC 8785 (JSON Canonicalization
// Scheme) form of the tool parameters, so the same parameters hash the
// same whatever their member order, white space or number spelling
// (1.0 and 1 are one number). ParamsMatch compares a presented document
// against a bound hash in constant time.
package tokens
