package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"oakallow/activities/notify"
	"oakallow/store"
)

// OrgEvent is an org event that is not about an approval (tool.auto_created,
// credits.low): what the org webhook receives as the event's data, and what
// notification channels receive as an alert.
type OrgEvent struct {
	// Type is notify.EventToolAutoCreated or notify.EventCreditsLow.
	Type string
	// Key identifies the event for good (the discovered tool's id, the credit
	// alert's id): recording the same event twice records nothing twice, and
	// every delivery of it carries the same event id.
	Key string
	// At is when it happened.
	At time.Time
	// Data is the org webhook event's data (SPEC §4: never parameters, keys or
	// tokens).
	Data map[string]any
	// ToolName and Details are all a channel is told: the tool discovered,
	// and one line of text (PII-scrubbed and cut by the senders).
	ToolName string
	Details  string
	// DashboardURL, optional, is the dashboard page a channel links to (the
	// Billing page for credits.low).
	DashboardURL string
}

// RecordOrgEvent records, on q — the caller's transaction, so the event is
// recorded exactly when the change it reports commits — one pending delivery
// per target: the org webhook when the org has a URL, and every enabled Slack
// and generic webhook channel whatever its level scope (the event belongs to
// no approval level; PagerDuty pages for approvals only). Rows are
// deduplicated on "<type>:<key>:<target>". It returns the rows to hand to
// HandOff once the transaction committed; until then nothing is sent, and
// rows nobody hands off are started by the worker's sweep.
func RecordOrgEvent(ctx context.Context, q *store.Queries, orgID string, ev OrgEvent, now time.Time) ([]store.WebhookDelivery, error) {
	if ev.Key == "" || ev.At.IsZero() || orgID == "" {
		return nil, errors.New("record org event: org, key and time are required")
	}
	evID := eventID(ev.Type, ev.Key)
	body := notify.Event{ID: evID, Type: ev.Type, CreatedAt: ev.At.UTC(), Data: ev.Data}
	if err := body.Validate(); err != nil {
		return nil, fmt.Errorf("record org event: %w", err)
	}
	al := storedAlert{Type: ev.Type, ToolName: ev.ToolName, Reason: ev.Details, DashboardURL: ev.DashboardURL}
	if err := al.alert().Validate(); err != nil {
		return nil, fmt.Errorf("record org event: %w", err)
	}
	org, err := q.GetOrg(ctx, orgID)
	if err != nil {
		return nil, fmt.Errorf("record org event: load org: %w", err)
	}
	channels, err := q.ListEnabledChannelsForOrg(ctx, orgID)
	if err != nil {
		return nil, fmt.Errorf("record org event: list channels: %w", err)
	}
	var plans []plannedDelivery
	if org.WebhookUrl != "" {
		payload, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("record org event: encode: %w", err)
		}
		plans = append(plans, plannedDelivery{target: TargetOrgWebhook, kind: TargetOrgWebhook, url: org.WebhookUrl, payload: payload})
	}
	var alertBody json.RawMessage
	for _, ch := range channels {
		if ch.Kind == ChannelPagerDuty {
			continue
		}
		if alertBody == nil {
			if alertBody, err = json.Marshal(al); err != nil {
				return nil, fmt.Errorf("record org event: encode alert: %w", err)
			}
		}
		plans = append(plans, plannedDelivery{target: TargetChannel + ":" + ch.ID, kind: TargetChannel, channelID: &ch.ID, payload: alertBody})
	}
	rows := make([]store.WebhookDelivery, 0, len(plans))
	for _, p := range plans {
		dedup := ev.Type + ":" + ev.Key + ":" + p.target
		if _, err := q.InsertWebhookDelivery(ctx, store.InsertWebhookDeliveryParams{
			ID: store.NewID("whd"), OrgID: orgID, DedupKey: dedup, EventID: evID, EventType: ev.Type,
			TargetKind: p.kind, ChannelID: p.channelID, Url: p.url, Payload: p.payload, CreatedAt: now,
		}); err != nil {
			return nil, fmt.Errorf("record org event: insert delivery: %w", err)
		}
		row, err := q.GetWebhookDeliveryByDedupKey(ctx, dedup)
		if err != nil {
			return nil, fmt.Errorf("record org event: read delivery: %w", err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// HandOff gives deliveries recorded by a committed transaction their first
// attempt, as EnqueueNotifications does: a direct attempt in this process, or
// their DeliveryWorkflow when the direct attempts are full. It returns once
// they are handed over, without waiting for any receiver. What it cannot
// start is logged and left to the worker's sweep.
func (a *Activities) HandOff(ctx context.Context, rows []store.WebhookDelivery) {
	var fallback []store.WebhookDelivery
	for _, row := range rows {
		if row.Status != DeliveryPending || row.HandedOffAt != nil {
			continue
		}
		if !a.dispatch(row) {
			fallback = append(fallback, row)
		}
	}
	if err := a.startDeliveries(ctx, fallback); err != nil {
		a.logger.WarnContext(ctx, "Deliveries not started; the sweep will start them", "deliveries", len(fallback), "error", err)
	}
}
