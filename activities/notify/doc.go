// Package notify holds the outbound HTTP clients behind oakallow's approval
// notifications (SPEC §4): the signed organization webhook, and the three
// alert-only notification channels — Slack (incoming webhook with a Block Kit
// card, plus the "Add to Slack" OAuth v2 install), PagerDuty (REST API v2
// incidents) and a generic signed HTTPS webhook.
//
// The package has no database and no Temporal dependency. Each send takes a
// plain configuration value and an event, performs exactly one logical side
// effect over HTTP, and returns an [Attempt] that the calling activity
// records (time, status code, latency, error) and uses to decide whether
// Temporal should retry: [Attempt.Retryable] is true for network errors,
// 408, 429 and 5xx answers, and false for everything a retry cannot fix.
//
// # What leaves the process
//
// Organization webhooks ([Deliver]) carry the [Event] the caller built: the
// caller decides what goes into Data (SPEC §4 lists it; tool parameters only
// when the organization opted in).
//
// Notification channels carry an [Alert] and nothing else: event type, tool
// name, the reason, the approval REF, a dashboard link and, for decisions,
// the decision, decider and note. The type has no field for parameters,
// tenant identifiers, keys or tokens, so none can be sent. Free text (reason,
// note) is passed through the configured [Scrubber] (the PII scrubber), then
// through a last-line redaction of credentials with the scrubber's own list
// of shapes (pii.RedactSecrets: oak_live_…, oak_agent_…, oak_tok_…, whsec_…,
// vendor keys, bearer tokens), has control characters flattened, and is cut
// to [MaxTextRunes] characters.
//
// # Verifying our webhook signatures (for receivers)
//
// Every request carries
//
//	X-Oakallow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=<hex HMAC-SHA256>]
//	X-Oakallow-Event:     approval.created
//	X-Oakallow-Delivery:  <unique delivery id, stable across retries>
//
// The MAC is HMAC-SHA256 keyed with the webhook secret exactly as it was shown
// when created (the whole "whsec_…" string, as UTF-8 bytes), computed over the
// decimal timestamp from the header, a full stop, and the raw request body
// bytes — verify before parsing the JSON. During a secret rotation overlap the
// header carries one v1 entry per active secret; accept the request when any
// entry matches your secret. Compare in constant time, and reject timestamps
// more than five minutes away from your clock so that a captured request
// cannot be replayed later. Use the X-Oakallow-Delivery header to discard
// duplicates: a delivery is retried until it is acknowledged with a 2xx.
// [VerifySignature] implements exactly these steps and is short enough to
// port to any language.
//
// # Network policy
//
// [NewHTTPClient] builds the client every send should use: a 10 s overall
// timeout, redirects never followed (a redirect answer is a failed
// delivery), response bodies read only up to a small bound, every request
// URL checked against [ValidateURL], and — unless explicitly allowed —
// connections to loopback, private, link-local and other non-public
// addresses refused at dial time, after DNS resolution, so that a webhook URL
// cannot be used to reach the server's own network.
package notify
