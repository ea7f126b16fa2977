package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"oakallow/store"
)

// Change is one audited change of an org's setup (a tool's stored timeout,
// an auto-registered tool, any management write).
type Change struct {
	Kind    string // audit kind, e.g. "tool.created"
	Subject string // id of the changed object
	Tool    string // tool name, for activity filters
	Tenant  string // tenant name, for activity filters
	Details map[string]any
	// Policy: the org's compiled policy depends on the change, so every
	// replica must recompile it.
	Policy bool
}

// RecordChange writes the change's audit event and, for policy changes, the
// change notification, on q — the caller's transaction, so both commit with
// the write or not at all. For a policy change it returns the writing
// transaction's id, which Policies.AwaitChange waits for (0 otherwise).
func RecordChange(ctx context.Context, q *store.Queries, c Caller, now time.Time, ch Change) (uint64, error) {
	if ch.Details == nil {
		ch.Details = map[string]any{}
	}
	details, err := json.Marshal(ch.Details)
	if err != nil {
		return 0, fmt.Errorf("encode audit details of %s: %w", ch.Kind, err)
	}
	actorKind := c.Kind
	if actorKind == "" {
		actorKind = "api_key"
	}
	if err := q.InsertAuditEvent(ctx, store.InsertAuditEventParams{
		ID: store.NewID("evt"), OrgID: c.OrgID, TeamID: c.TeamID, OccurredAt: now,
		ActorKind: actorKind, ActorID: c.ID, Kind: ch.Kind, Subject: ch.Subject,
		Tool: ch.Tool, Tenant: ch.Tenant, Details: details,
	}); err != nil {
		return 0, fmt.Errorf("audit %s: %w", ch.Kind, err)
	}
	if !ch.Policy {
		return 0, nil
	}
	n, err := q.NotifyPolicyChange(ctx, c.OrgID)
	if err != nil {
		return 0, fmt.Errorf("announce policy change: %w", err)
	}
	xid, err := strconv.ParseUint(n.Xid, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("announce policy change: transaction id %q: %w", n.Xid, err)
	}
	return xid, nil
}
