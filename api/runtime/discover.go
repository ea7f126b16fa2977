package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/resolver"
	"oakallow/store"
)

// Auto-discovery (SPEC §7): a check that asks to discover (the MCP
// connector's check_permission) and names a tool the org has not registered
// registers it as a draft with conservative annotations and
// default_permission requires_approval, fires tool.auto_created, and answers
// requires_approval at once — and never anything else, whatever the org's
// rules: the tool was unknown when the agent asked. The org's caps bound how
// many drafts appear (autodiscovery_hourly_cap per sliding hour,
// autodiscovery_total_cap drafts in all); past a cap the answer is the same
// and no row is added.
//
// The caps are counted in PostgreSQL under the org row's lock, so concurrent
// checks on any number of replicas never exceed them. The new tool's policy
// change is announced in the same transaction; the check is answered once
// this replica serves it, and every other replica learns it from the change
// notification.

// KindToolAutoCreated is the audit kind (and event type) of a discovered tool.
const KindToolAutoCreated = notify.EventToolAutoCreated

// Reasons a discovering check carries.
const (
	// ReasonToolAutoCreated: this check registered the tool as a draft.
	ReasonToolAutoCreated = "tool_auto_created"
	// ReasonDiscoveryCapped: a cap (or auto-discovery turned off, a cap of
	// 0) kept the tool from being registered.
	ReasonDiscoveryCapped = "tool_discovery_capped"
)

// discover registers tool as a draft when the org's caps allow, and returns
// the decision of the check that asked: requires_approval at the
// tool_not_registered gate, with the reason what became of the name.
func (s *Service) discover(ctx context.Context, c Caller, tool, checkID string) (resolver.Decision, error) {
	d := resolver.Decision{Permission: resolver.RequiresApproval, LevelName: resolver.ReasonToolNotRegistered,
		Scope: resolver.ScopeGate, Reason: ReasonDiscoveryCapped}
	if err := resolver.CheckToolName(tool); err != nil {
		return d, invalidField("tool", "tool "+err.Error()+"; a tool is registered under the exact name checked, so it must be one")
	}
	now := s.now()
	var (
		xid        uint64
		deliveries []store.WebhookDelivery
	)
	err := s.inTx(ctx, func(q *store.Queries) error {
		org, err := q.LockOrgSettings(ctx, c.OrgID)
		if err != nil {
			return fmt.Errorf("lock org: %w", err)
		}
		n, err := q.CountDiscoveredTools(ctx, store.CountDiscoveredToolsParams{OrgID: c.OrgID, Since: now.Add(-time.Hour)})
		if err != nil {
			return fmt.Errorf("count discovered tools: %w", err)
		}
		if n.Recent >= org.AutodiscoveryHourlyCap || n.Drafts >= org.AutodiscoveryTotalCap {
			return nil
		}
		t, err := q.CreateDiscoveredTool(ctx, store.CreateDiscoveredToolParams{
			ID: store.NewID("tool"), OrgID: c.OrgID, Name: tool, CreatedAt: now})
		if errors.Is(err, store.ErrNotFound) {
			// Registered meanwhile (a concurrent check, an admin): this check
			// still saw it unknown.
			d.Reason = resolver.ReasonToolNotRegistered
			return nil
		}
		if err != nil {
			return fmt.Errorf("register discovered tool: %w", err)
		}
		details := map[string]any{"name": t.Name, "status": t.Status, "risk_level": t.RiskLevel,
			"default_permission": "requires_approval", "read_only": t.ReadOnly, "destructive": t.Destructive,
			"idempotent": t.Idempotent, "open_world": t.OpenWorld, "check_id": checkID}
		if xid, err = RecordChange(ctx, q, c, now, Change{Kind: KindToolAutoCreated, Subject: t.ID, Tool: t.Name,
			Details: details, Policy: true}); err != nil {
			return err
		}
		data := map[string]any{"tool_id": t.ID, "discovered_by": map[string]any{"kind": c.Kind, "id": c.ID}}
		for k, v := range details {
			data[k] = v
		}
		deliveries, err = activities.RecordOrgEvent(ctx, q, c.OrgID, activities.OrgEvent{
			Type: notify.EventToolAutoCreated, Key: t.ID, At: now, Data: data, ToolName: t.Name,
			Details: "An agent checked a tool this org had not registered. It was added as a draft: every call needs approval until it is triaged.",
		}, now)
		if err != nil {
			return err
		}
		d.Reason = ReasonToolAutoCreated
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("discover tool: %w", err)
	}
	if d.Reason != ReasonToolAutoCreated {
		return d, nil
	}
	s.d.HandOff(context.WithoutCancel(ctx), deliveries)
	if err := s.d.Policies.AwaitChange(ctx, c.OrgID, xid); err != nil {
		// Registered and announced: other replicas load it from the
		// notification, and this one with its next load.
		s.d.Logger.WarnContext(ctx, "Discovered tool not yet served by this replica", "org_id", c.OrgID,
			"request_id", s.d.RequestID(ctx), "error", err)
	}
	return d, nil
}
