// Package activities holds oakallow's side effects behind the Temporal workflows: the
// approval workflow's projection into PostgreSQL, its notifications and its execution
// token, and the delivery of webhooks and channel alerts. The workflows call the
// activities by the names in package workflows; package worker registers the methods of
// [Activities] under those names.
//
// # Idempotency
//
// Temporal runs an activity at least once, so every write here is idempotent:
//
//   - [Activities.ProjectApproval] inserts a workflow_effects row keyed by (run id,
//     activity key) in the same transaction as its write; a retry finds the row and
//     writes nothing. The approval row also records the highest transition applied
//     (projection_seq), so an older transition arriving late never moves it backwards.
//   - [MintToken] (and [Activities.MintApprovalToken]) stores at most one token per
//     source, enforced by the unique (source_kind, source_id) of execution_tokens: every
//     later or concurrent call returns the stored token.
//   - [Activities.EnqueueNotifications] records deliveries under the dedup key
//     "<run id>:<activity key>:<target>"; a retry finds the rows and attempts only those
//     still pending and not handed off (and not already being attempted in this
//     process). Each delivery workflow has the delivery id as workflow id, so it is
//     started once. Receivers deduplicate on X-Oakallow-Delivery for the rare repeat
//     (an attempt that reached the receiver but could not be recorded).
//   - [VerifyAndConsume] spends a token's nonce with a single INSERT … ON CONFLICT DO
//     NOTHING: exactly one verification of a token succeeds, across all replicas.
//
// # Audit
//
// Each approval transition writes one audit event in the transaction that projects it:
// approval.created, approval.escalated, approval.decided (actor: the decider) and
// approval.expired (actor: the workflow, by its REF), and token.minted once the token
// exists. Token verification writes token.verified with outcome ok or replayed.
//
// # Deliveries
//
// An approval event reaches the org webhook and every enabled notification channel
// whose scope covers the event's level. Each target is one webhook_deliveries row whose
// payload is fixed when it is enqueued: the org webhook gets the SPEC §4 event body
// (tool parameters only when the org enabled webhook_include_parameters); channels get
// only the notify.Alert fields (event type, tool, scrubbed reason, REF, dashboard link,
// and for decisions the decision, decider and note). The approval workflow only waits
// for the rows to be recorded, never for a receiver: the first attempt of each row is
// made in the background by this process, outside Temporal, with
// [Activities.DeliverNotification] itself (at most Deps.MaxDirectAttempts at once). Only
// a retryable failure starts a [workflows.DeliveryWorkflow], which retries with
// exponential backoff for up to 24 h from the first attempt; every attempt is recorded in
// webhook_attempts. [Activities.Close] drains the background attempts; what a dead or
// stopped process leaves pending without a workflow is picked up by
// [Activities.SweepStrandedDeliveries].
//
// Org webhooks are signed with the org's current secret and, for 24 h after a rotation,
// with the previous one too; both are stored sealed for the org's row
// (store.OrgWebhookSecretAAD), as execution tokens are for theirs ([MintToken],
// [OpenToken]). Channel credentials (the Slack webhook URL, the PagerDuty
// API key, the generic webhook's signing secret) are stored sealed (package sealed, with
// [ChannelSecretAAD]); the non-secret settings are the JSON config types
// [PagerDutyChannelConfig], [WebhookChannelConfig] and [SlackChannelConfig].
//
// # Errors
//
// Failures retrying cannot fix are non-retryable application errors typed with the
// workflows.ErrorType* constants; anything else (PostgreSQL or Temporal unavailable) is
// returned as is and retried by the workflow's retry policy.
package activities
