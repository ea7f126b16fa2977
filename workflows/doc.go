// Package workflows holds oakallow's Temporal workflows: deterministic code only. It imports
// the Temporal SDK and the standard library, nothing of ours with side effects; the
// activities it calls are implemented in package activities and registered under the
// names defined here, so this package is the contract between the API, the worker and the
// activities.
//
// # The approval workflow
//
// Every approval request is one [ApprovalWorkflow] run whose workflow id is the approval's
// REF. The API starts it with [StartWorkflowOptions] and an [ApprovalInput] (ids, tool
// name, level plan and deadline, never parameters or reasoning), sends decisions with the
// [UpdateDecide] Update and may read the state with the [QueryState] Query. PostgreSQL
// holds the projection every listing and poll reads; the workflow is the source of truth
// for transitions.
//
//	created, level 1 ── ProjectApproval(approval.created) ── EnqueueNotifications(created, L1)
//	   │
//	   ├─ deny ───────────────▶ denied:   Project(decided) ── Notify(decided)
//	   ├─ deadline ───────────▶ expired:  Project(expired) ── Notify(expired)       (no token)
//	   ├─ approve, TwoLevels ─▶ level 2:  Project(escalated) ── Notify(escalated, L2)
//	   │                           ├─ deny / deadline: as above, at level 2
//	   │                           └─ approve (another decider) ─▶ approved (below)
//	   └─ approve, one level ─▶ approved: Project(decided) ── Notify(decided)
//	                                      ── MintApprovalToken ── Project(token_minted)
//
// Each transition also upserts the search attributes it changed (status, level); those the
// starter set are not upserted again. A decision's upsert follows its effects (flowV4), so
// a final decision's shares the workflow task that completes the run, whose close record
// carries the attributes: the server writes no visibility record for it. Level 1 expires at
// CreatedAt+LevelTimeout (the expires_at the API already returned), level 2 at the
// escalation time plus LevelTimeout.
//
// # Decisions
//
// The decide Update's validator refuses, before anything is written to history: a
// malformed request ([DecideRequest.Validate]), an approval that is already decided or
// expired, a level other than the current one, a decision after the current level's
// deadline, and an approval at level 2 by the (Kind, ID) that approved level 1. Who may
// decide at all (approver groups, passkey assertion, management-key setting) is the API's
// check. Rejections are application errors typed with the Reject* constants; see
// [RejectionReason]. A request repeating an earlier RequestID with the same content is
// accepted and answered with the original result; with different content it is refused.
//
// The handler applies an accepted decision to the in-memory state at once, so a second
// decision in the same workflow task is validated against the new state, and then waits
// until the main loop has projected it (and, for a final approval, minted the token): the
// Update's result ([DecideResult]) is the state after that, TokenID included. The
// workflow waits for all handlers to finish before it completes. An Update sent after the
// run closed fails with Temporal's "workflow execution already completed" error; the API
// then answers from PostgreSQL.
//
// # Decision versus deadline
//
// The deadline is an absolute time and the rule is: a decision counts only if the
// workflow task that delivers it started strictly before the deadline (workflow.Now in the
// validator). The timer that ends a level fires no earlier than the deadline, so the task
// delivering it starts at or after the deadline and any decision in that same task is
// rejected as [RejectExpired]. Conversely a decision accepted in an earlier task is already
// queued when the main loop wakes, and a queued decision always wins over the timer. The
// outcome therefore does not depend on the order in which the SDK hands the timer and the
// Update to the workflow, and it replays identically (validators are not run on replay).
//
// # Activities
//
// The workflow calls activities by name, as local activities (they are short PostgreSQL
// transactions in the worker's own process, so a task-queue round trip and three history
// events per call would buy nothing), with an explicit StartToClose timeout and retry
// policy: [ActivityProjectApproval] and [ActivityMintApprovalToken] retry without limit
// except for the non-retryable ErrorType* errors, which fail the workflow;
// [ActivityEnqueueNotifications] is retried for at most [NotifyScheduleToClose] and its
// failure is only logged. Every input carries RunID and Key: writes are idempotent on that
// pair, so a local activity re-run after a worker crash writes nothing twice (on flowV1
// runs, which used regular activities, Key is also the activity id). Activity inputs carry
// ids and the [State], never customer data; activities read anything else from PostgreSQL.
//
// # Cancellation
//
// Cancelling a run (an operator action in the Temporal UI) ends a pending approval as
// expired, so the tool cannot run, and still projects and notifies that; the run then
// closes as cancelled.
//
// # The decision boundary
//
// A decision is accepted by the decide Update in a workflow task that the server may still
// discard (an aborted Update, a failed or timed-out task, a lost worker). Nothing a decision
// causes may happen before its acceptance is in history: from flowV3 on, the first effect
// of a decided or escalated transition — its projection — is a regular activity, whose
// command is committed together with the acceptance and which runs only after it. A
// retried task that accepts another decision therefore finds nothing of the discarded one
// in PostgreSQL, no webhook, and no token. The effects that follow (notification, mint)
// run in later tasks and may be local. Each effect's idempotency key names the decision,
// and ProjectApproval refuses (non-retryably, failing the run) a decision that contradicts
// one already stored for the same run. dev/approvalcheck states the resulting invariant
// as a check; the API and worker tests and dev/loadapprovals run it.
//
// # Changing the workflow
//
// Running approvals replay against new code for up to 14 days. Any change to the commands
// the workflow issues (activities, their order, timers, upserts) must be versioned: the run
// chooses its flow once at its start (see approval.go for the procedure). Runs up to flowV4
// recorded it with workflow.GetVersion(changeApprovalFlow); from flowV5 on a fresh run
// records nothing (GetVersion's marker cost a search attribute upsert and a visibility
// write) and a replay reads the marker back where there is one. TestReplay replays
// histories of the current version recorded from a real server — approve at both levels,
// deny at level 1 and at level 2, expiry at level 1 and after an escalation, cancellation
// (testdata/approval_*.json) — and approval_two_level_v1.json to approval_two_level_v4.json,
// of flowV1 (regular activities instead of local ones), flowV2 (every effect local), flowV3
// (search attributes upserted with each acceptance) and flowV4 (the same commands as
// flowV5, with the version marker), kept while such runs can exist.
// Re-record the current one after a versioned change with
//
//	go test -tags record -run TestRecord ./workflows/
//
// after renaming the old file into a replay case of its own.
package workflows
