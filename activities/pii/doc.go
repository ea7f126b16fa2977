// Package pii scrubs personal data and credentials out of free text before
// oakallow stores or forwards it (SPEC §4 "PII scrubbing").
//
// It is best effort by design: the goal is to keep the obvious, machine-shaped
// identifiers — e-mail addresses, phone numbers, payment card numbers, US
// social security numbers, IBANs, IP addresses and bearer credentials — out of
// the audit log, the approvals table, webhooks and notification cards. It is
// not a DLP engine and does not try to recognise names or postal addresses.
//
// Every match is replaced by a placeholder "[redacted:<kind>]". The kinds are
// applied in a fixed order, and each one sees the output of the ones before:
//
//  1. secret — bearer/basic credentials and known key formats (oakallow's own
//     oak_live_/oak_agent_/oak_tok_ and whsec_ in any case, Stripe sk_/rk_,
//     Slack xox?-, GitHub gh?_ and github_pat_, AWS AKIA/ASIA, JWTs). First, so
//     that digits inside a key are never mistaken for a phone or card number.
//     RedactSecrets applies this kind alone; notifications use it whatever
//     scrubber they are given, so storage and alerts share one list.
//  2. email — local@domain with a real top-level label; Unicode letters allowed.
//  3. iban — country code, check digits, mod-97 validated against the
//     registry length of the country. Before cards, because the digit groups of
//     an IBAN can pass the Luhn check.
//  4. card — 13 to 19 digits, optionally grouped by single spaces or dashes,
//     Luhn-checked. Digit runs that fail Luhn are left alone.
//  5. ssn — ###-##-#### with the area, group and serial numbers the SSA never
//     issues (000, 666, 9xx areas; 00 group; 0000 serial) excluded.
//  6. ip — IPv6 then IPv4, each candidate validated with net/netip.
//  7. phone — "+" international numbers with 8 to 15 digits, and national
//     numbers of 10 or 11 digits written in at least three groups, or as
//     (415) 555-2671 / 415.555.2671. Unseparated national digit runs are not
//     phones (they are far more often order ids or timestamps), and neither
//     are 7-digit local numbers.
//
// Matches are anchored on token boundaries: a candidate glued to letters,
// digits or "_" on either side (an id such as ORD-4111111111111111x, a
// version such as v1.2.3.4, a decimal such as 0.4111111111111111) is not
// redacted. Recognition is ASCII-based except for e-mail addresses; numbers
// written with non-ASCII digits are not recognised.
//
// Scrub is idempotent: the pipeline is re-run on its own output until nothing
// changes, so Scrub(Scrub(x)) == Scrub(x) and a redaction can never uncover a
// new match that a second pass would find. Text without any candidate is
// returned without allocating.
//
// Truncate cuts at rune boundaries; call it after Scrub, never before, so a
// card number cut in half cannot slip past the Luhn check.
package pii
