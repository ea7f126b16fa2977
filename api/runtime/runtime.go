package runtime

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.temporal.io/sdk/client"

	"oakallow/activities/sealed"
	"oakallow/activities/tokens"
	"oakallow/resolver"
	"oakallow/store"
)

// Caller is who makes a runtime call: an org (and its team, which pays),
// and the credential that authenticated it, as the audit log names it.
type Caller struct {
	OrgID  string
	TeamID string
	// Kind is the audit actor kind: "api_key", "agent", …
	Kind string
	// ID is the credential's id (the API key id, the agent id, the OAuth
	// grant id).
	ID string
	// ReadsAllApprovals is set for callers that read every approval of the
	// org: management keys and people. Every other caller — standard keys,
	// agent identities, OAuth grants — reads, polls and mints from only the
	// approvals and checks it made itself (Kind and ID as recorded); to it
	// another's is answered not found, like one that does not exist (SPEC §1:
	// an agent reads its own requests). The zero value is the narrow one.
	ReadsAllApprovals bool
}

// requester is the (created_by_kind, created_by_id) filter of c's approval
// reads: a nil kind when c reads them all.
func (c Caller) requester() (*string, string) {
	if c.ReadsAllApprovals {
		return nil, ""
	}
	return &c.Kind, c.ID
}

// made reports whether c may use what the credential actorKind/actorID
// made (an approval, a check).
func (c Caller) made(actorKind, actorID string) bool {
	return c.ReadsAllApprovals || actorKind == c.Kind && actorID == c.ID
}

// ToolInfo is what the runtime needs of a registered tool besides the
// verdict.
type ToolInfo struct {
	ID                     string
	Schema                 *jsonschema.Schema // nil: parameters are not validated
	RequiresSecondApproval bool
	TimeoutSeconds         *int32
	Draft                  bool
}

// Policy is one org's compiled, immutable policy.
type Policy interface {
	// Decide runs the org's rule chain (pure, no I/O).
	Decide(resolver.Input) resolver.Decision
	// Tool returns the registered tool named name.
	Tool(name string) (ToolInfo, bool)
}

// Policies serves each org's current policy (api.PolicyCache).
type Policies interface {
	// Policy returns the org's current policy, loading it on first use.
	Policy(ctx context.Context, orgID string) (Policy, error)
	// AwaitChange returns once this replica serves the org's policy as
	// changed by the committed transaction xid (read your writes).
	AwaitChange(ctx context.Context, orgID string, xid uint64) error
}

// Recorder queues audit entries and returns once they are durable (group
// commit), charging billable ones in the same transaction (store.Recorder).
type Recorder interface {
	Record(ctx context.Context, e store.Entry) error
	// Refund gives back, in q's transaction, the charge of a billable entry
	// that Record committed, when what it paid for failed afterwards.
	Refund(ctx context.Context, q *store.Queries, auditID, reason string, at time.Time) error
	// CostMicros is the price of one billable call.
	CostMicros() int64
}

// Deps are the runtime's collaborators.
type Deps struct {
	// Store is the database. Required.
	Store *store.Store
	// Recorder writes audit entries and bills them. Required.
	Recorder Recorder
	// Policies serves compiled policies. Required.
	Policies Policies
	// Keyring signs receipts and execution tokens. Required.
	Keyring *tokens.Keyring
	// SecretBox seals and opens stored execution tokens. Required.
	SecretBox *sealed.Box
	// Temporal starts approval workflows; nil makes approval requests
	// unavailable (KindUnavailable).
	Temporal client.Client
	// Logger gets failures the caller is not told about. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// RequestID names the request carried by ctx in log lines. Optional.
	RequestID func(context.Context) string
	// ObserveCheck is told each answered check's latency and verdict
	// (metrics). Optional; it must not block.
	ObserveCheck func(d time.Duration, permission, scope string)
	// HandOff gives event deliveries recorded with a committed change
	// (tool.auto_created) their first attempt (activities.Activities.HandOff).
	// Optional: without it the worker's sweep starts them, minutes later.
	HandOff func(ctx context.Context, rows []store.WebhookDelivery)
}

// Service is the runtime core. It is safe for concurrent use.
type Service struct {
	d Deps
}

// New returns the runtime core over deps.
func New(deps Deps) (*Service, error) {
	switch {
	case deps.Store == nil:
		return nil, errors.New("runtime: Store is required")
	case deps.Recorder == nil:
		return nil, errors.New("runtime: Recorder is required")
	case deps.Policies == nil:
		return nil, errors.New("runtime: Policies is required")
	case deps.Keyring == nil:
		return nil, errors.New("runtime: Keyring is required")
	case deps.SecretBox == nil:
		return nil, errors.New("runtime: SecretBox is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.RequestID == nil {
		deps.RequestID = func(context.Context) string { return "" }
	}
	if deps.HandOff == nil {
		deps.HandOff = func(context.Context, []store.WebhookDelivery) {}
	}
	if deps.ObserveCheck == nil {
		deps.ObserveCheck = func(time.Duration, string, string) {}
	}
	return &Service{d: deps}, nil
}

// now is the runtime clock in UTC.
func (s *Service) now() time.Time { return s.d.Now().UTC() }

// inTx runs fn in one transaction.
func (s *Service) inTx(ctx context.Context, fn func(q *store.Queries) error) error {
	return s.d.Store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error { return fn(q) })
}
