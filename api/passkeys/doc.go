// Package passkeys is oakallow's WebAuthn relying party (SPEC §8, issue 9):
// passkey enrollment and removal, discoverable (usernameless) sign-in,
// recovery codes, and the passkey assertion a reviewer makes for one approval
// decision, kept as evidence that anyone can verify offline. What a session
// alone must not do — decide, make new recovery codes, add a passkey to an
// account that has one, remove a passkey — takes such an assertion made for
// exactly that act (confirm.go); a refused one is audited.
//
// It is transport-neutral: it takes and returns WebAuthn JSON and domain
// values, and reports refusals as [*Error] with a stable code; the REST
// surface maps them to HTTP and creates sessions.
//
// Ceremony state lives in PostgreSQL (webauthn_ceremonies), never in the
// client: a ceremony is consumed by the one DELETE … RETURNING that finishes
// it, so it is used at most once across replicas, and it expires after
// Config.CeremonyTTL. Every ceremony requires user verification, sign-in is
// refused when the authenticator's signature counter says it may be cloned,
// and every event that changes what a person can do is audited in the same
// transaction as the change.
package passkeys
