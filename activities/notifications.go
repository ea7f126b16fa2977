package activities

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/serviceerror"

	"oakallow/activities/notify"
	"oakallow/activities/pii"
	"oakallow/store"
	"oakallow/workflows"
)

// Delivery target kinds (webhook_deliveries.target_kind).
const (
	TargetOrgWebhook = "org_webhook"
	TargetChannel    = "channel"
)

// storedAlert is the payload of a channel delivery: notify.Alert field for field, and
// nothing else — channel payloads never carry parameters, tenants, keys or tokens.
type storedAlert struct {
	Type         string `json:"type"`
	ToolName     string `json:"tool_name"`
	Reason       string `json:"reason"`
	Reference    string `json:"reference"`
	DashboardURL string `json:"dashboard_url,omitempty"`
	Decision     string `json:"decision,omitempty"`
	Decider      string `json:"decider,omitempty"`
	Note         string `json:"note,omitempty"`
}

func (s storedAlert) alert() notify.Alert {
	return notify.Alert{
		Type: s.Type, ToolName: s.ToolName, Reason: s.Reason, Reference: s.Reference,
		DashboardURL: s.DashboardURL, Decision: s.Decision, Decider: s.Decider, Note: s.Note,
	}
}

// webhookDecider is how a decider appears in an org webhook.
type webhookDecider struct {
	Kind    workflows.DeciderKind `json:"kind"`
	ID      string                `json:"id"`
	Display string                `json:"display,omitempty"`
}

func checkEnqueue(in workflows.EnqueueNotificationsInput) error {
	switch {
	case in.RunID == "" || in.Key == "":
		return errors.New("run id and key are required")
	case in.OrgID == "" || in.ApprovalID == "":
		return errors.New("org id and approval id are required")
	case in.Level != 1 && in.Level != 2:
		return fmt.Errorf("level %d is not 1 or 2", in.Level)
	case !validStatus(in.Status):
		return fmt.Errorf("status %q is not an approval status", in.Status)
	case in.At.IsZero():
		return errors.New("event time is required")
	}
	switch in.Event {
	case workflows.EventCreated, workflows.EventExpired:
		if in.Decision != nil {
			return fmt.Errorf("%s carries no decision", in.Event)
		}
	case workflows.EventEscalated, workflows.EventDecided:
		if in.Decision == nil {
			return fmt.Errorf("%s needs its decision", in.Event)
		}
		if in.Decision.Decision != workflows.Approve && in.Decision.Decision != workflows.Deny {
			return fmt.Errorf("decision %q is not approve or deny", in.Decision.Decision)
		}
	default:
		return fmt.Errorf("%q is not a notified event", in.Event)
	}
	return nil
}

// eventID is the webhook event id of one enqueueing: derived from (RunID, Key), so every
// delivery of the event, and every retry of the enqueueing, carries the same id.
func eventID(runID, key string) string {
	sum := sha256.Sum256([]byte(runID + "\x00" + key))
	return "evt_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:15]))
}

// dashboardLink is the approval's page in the dashboard, or "" without a public URL.
func (a *Activities) dashboardLink(ref string) string {
	if a.publicURL == "" {
		return ""
	}
	return a.publicURL + "/approvals/" + ref
}

// plannedDelivery is one webhook_deliveries row to insert.
type plannedDelivery struct {
	target    string // dedup suffix: org_webhook or channel:<id>
	kind      string
	channelID *string
	url       string
	payload   json.RawMessage
}

// EnqueueNotifications implements workflows.ActivityEnqueueNotifications: it records one
// webhook_deliveries row per target of the event — the org webhook when the org has a
// URL, and every enabled channel whose scope covers in.Level — with the payload built
// now, and hands each pending row to the process's direct attempts, which make the first
// attempt in the background and start a DeliveryWorkflow only when a retry is needed. It
// returns without waiting for any receiver. When the direct attempts are full or closed,
// it starts the row's DeliveryWorkflow itself, as the retries would. Rows are
// deduplicated on "<RunID>:<Key>:<target>" and workflows on the delivery id, so a retry
// records and starts nothing twice; a row recorded but neither attempted nor handed off
// (the process died) is picked up by SweepStrandedDeliveries.
func (a *Activities) EnqueueNotifications(ctx context.Context, in workflows.EnqueueNotificationsInput) (workflows.EnqueueNotificationsResult, error) {
	var res workflows.EnqueueNotificationsResult
	if err := checkEnqueue(in); err != nil {
		return res, nonRetryable(workflows.ErrorTypeValidation, "enqueue notifications: %v", err)
	}
	org, err := a.st.GetOrg(ctx, in.OrgID)
	if err != nil {
		return res, lookupErr(err, "org "+in.OrgID)
	}
	if in.Decision, err = withStoredNote(ctx, a.st.Queries, in.Decision); err != nil {
		return res, err
	}
	apr, err := a.st.GetApprovalForActivity(ctx, store.GetApprovalForActivityParams{OrgID: in.OrgID, ID: in.ApprovalID})
	if err != nil {
		return res, lookupErr(err, "approval "+in.ApprovalID)
	}
	channels, err := a.st.ListEnabledChannelsForOrg(ctx, in.OrgID)
	if err != nil {
		return res, fmt.Errorf("list channels: %w", err)
	}
	evID := eventID(in.RunID, in.Key)
	plans, err := a.planDeliveries(org, apr, channels, in, evID)
	if err != nil {
		return res, nonRetryable(workflows.ErrorTypeValidation, "enqueue notifications: %v", err)
	}
	if len(plans) == 0 {
		return res, nil
	}

	now := a.now()
	var rows []store.WebhookDelivery
	err = a.st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		rows = rows[:0]
		for _, p := range plans {
			dedup := in.RunID + ":" + in.Key + ":" + p.target
			if _, err := q.InsertWebhookDelivery(ctx, store.InsertWebhookDeliveryParams{
				ID: store.NewID("whd"), OrgID: in.OrgID, DedupKey: dedup, EventID: evID, EventType: string(in.Event),
				TargetKind: p.kind, ChannelID: p.channelID, Url: p.url, Payload: p.payload, CreatedAt: now,
			}); err != nil {
				return fmt.Errorf("insert delivery: %w", err)
			}
			row, err := q.GetWebhookDeliveryByDedupKey(ctx, dedup)
			if err != nil {
				return fmt.Errorf("read delivery: %w", err)
			}
			rows = append(rows, row)
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("enqueue notifications: %w", err)
	}
	var fallback []store.WebhookDelivery
	for _, row := range rows {
		if row.Status != DeliveryPending || row.HandedOffAt != nil {
			continue // finished, or in its workflow already (a retried enqueue)
		}
		if !a.dispatch(row) {
			fallback = append(fallback, row)
		}
	}
	if err := a.startDeliveries(ctx, fallback); err != nil {
		return res, fmt.Errorf("enqueue notifications: %w", err)
	}
	res.Enqueued = len(rows)
	return res, nil
}

// startDeliveries starts the DeliveryWorkflow of every row at once and marks the rows
// whose workflow started handed off.
func (a *Activities) startDeliveries(ctx context.Context, rows []store.WebhookDelivery) error {
	if len(rows) == 0 {
		return nil
	}
	// Started concurrently: each start is a round trip to Temporal, and the approval
	// workflow waits for this activity before it moves on (to the token, for a decision).
	errs := make([]error, len(rows))
	var wg sync.WaitGroup
	for i, row := range rows {
		wg.Go(func() { errs[i] = a.startDelivery(ctx, row.ID, a.deliveryInput(row.ID, row.OrgID), 0) })
	}
	wg.Wait()
	var started []string
	for i, row := range rows {
		switch {
		case errs[i] == nil:
			started = append(started, row.ID)
		case errors.Is(errs[i], errWorkflowClosed):
			// Its workflow ran, yet the row is pending again: left to the sweep, which
			// starts it under a fresh id. Retrying this activity would not help.
			a.logger.WarnContext(ctx, "Pending delivery whose workflow already closed; left to the sweep", "delivery_id", row.ID)
			errs[i] = nil
		}
	}
	if len(started) > 0 {
		// Not fatal for the caller: a started row merely not marked is swept later,
		// which attaches to its running workflow.
		if err := a.markHandedOff(ctx, started); err != nil {
			a.logger.WarnContext(ctx, "Started deliveries not marked handed off", "deliveries", len(started), "error", err)
		}
	}
	return errors.Join(errs...)
}

// errWorkflowClosed is returned by startDelivery when a workflow with the id already ran
// to its end: DeliveryStartWorkflowOptions never runs an id twice.
var errWorkflowClosed = errors.New("delivery workflow already closed")

// startDelivery starts the DeliveryWorkflow workflowID for in, its first task delayed by
// delay. A workflow with that id that is running counts as started; one that closed
// already gives errWorkflowClosed.
func (a *Activities) startDelivery(ctx context.Context, workflowID string, in workflows.DeliveryInput, delay time.Duration) error {
	opts := workflows.DeliveryStartWorkflowOptions(workflowID)
	opts.TaskQueue = a.taskQueue
	opts.StartDelay = delay
	// A running workflow is attached to (conflict policy UseExisting) without error;
	// without this, a closed one would be too, and look started.
	opts.WorkflowExecutionErrorWhenAlreadyStarted = true
	_, err := a.temporal.ExecuteWorkflow(ctx, opts, workflows.DeliveryWorkflowName, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case errors.As(err, &started):
		return fmt.Errorf("start delivery workflow %s: %w", workflowID, errWorkflowClosed)
	case err != nil:
		return fmt.Errorf("start delivery workflow %s: %w", workflowID, err)
	}
	return nil
}

// planDeliveries builds the payload of every target of the event.
func (a *Activities) planDeliveries(org store.Org, apr store.Approval, channels []store.NotificationChannel, in workflows.EnqueueNotificationsInput, evID string) ([]plannedDelivery, error) {
	var plans []plannedDelivery
	if org.WebhookUrl != "" {
		body, err := json.Marshal(orgWebhookEvent(org, apr, in, evID))
		if err != nil {
			return nil, fmt.Errorf("encode webhook event: %w", err)
		}
		plans = append(plans, plannedDelivery{target: TargetOrgWebhook, kind: TargetOrgWebhook, url: org.WebhookUrl, payload: body})
	}
	var alertBody json.RawMessage
	for _, ch := range channels {
		if !notify.ScopeMatches(ch.Scope, in.Level) {
			continue
		}
		if alertBody == nil {
			al := a.channelAlert(apr, in)
			if err := al.alert().Validate(); err != nil {
				return nil, fmt.Errorf("channel alert: %w", err)
			}
			body, err := json.Marshal(al)
			if err != nil {
				return nil, fmt.Errorf("encode channel alert: %w", err)
			}
			alertBody = body
		}
		plans = append(plans, plannedDelivery{target: TargetChannel + ":" + ch.ID, kind: TargetChannel, channelID: &ch.ID, payload: alertBody})
	}
	return plans, nil
}

// orgWebhookEvent is the org webhook body of SPEC §4. Tool parameters are included only
// when the org turned webhook_include_parameters on.
func orgWebhookEvent(org store.Org, apr store.Approval, in workflows.EnqueueNotificationsInput, evID string) notify.Event {
	var tenant any
	if apr.TenantName != "" {
		tenant = apr.TenantName
	}
	data := map[string]any{
		"approval_id":  apr.ID,
		"reference":    apr.Reference,
		"tool":         apr.ToolName,
		"tenant":       tenant,
		"status":       in.Status,
		"level":        in.Level,
		"expires_at":   in.ExpiresAt.UTC(),
		"reference_id": apr.ReferenceID,
		"reason":       pii.Scrub(apr.Reasoning),
	}
	if d := in.Decision; d != nil {
		data["decision"] = d.Decision
		data["decider"] = webhookDecider{Kind: d.Decider.Kind, ID: d.Decider.ID, Display: d.Decider.Display}
		data["note"] = d.Note
		data["decided_at"] = d.At.UTC()
	}
	if org.WebhookIncludeParameters && len(apr.Parameters) > 0 {
		data["parameters"] = apr.Parameters
	}
	return notify.Event{ID: evID, Type: string(in.Event), CreatedAt: in.At.UTC(), Data: data}
}

// channelAlert is the alert every channel gets for the event: only the notify.Alert
// fields, with the stored (scrubbed) reason scrubbed once more.
func (a *Activities) channelAlert(apr store.Approval, in workflows.EnqueueNotificationsInput) storedAlert {
	al := storedAlert{
		Type:         string(in.Event),
		ToolName:     apr.ToolName,
		Reason:       pii.Scrub(apr.Reasoning),
		Reference:    apr.Reference,
		DashboardURL: a.dashboardLink(apr.Reference),
	}
	if d := in.Decision; d != nil && in.Event == workflows.EventDecided {
		al.Decision = notify.DecisionApproved
		if d.Decision == workflows.Deny {
			al.Decision = notify.DecisionDenied
		}
		al.Decider = d.Decider.Display
		if al.Decider == "" || d.Decider.Kind != workflows.DeciderUser {
			al.Decider = deciderFallback(d.Decider.Kind)
		}
		al.Note = d.Note
	}
	return al
}

// deciderFallback names a decider that is not a reviewer with a display name; never by id
// or display, which for a management key point at a credential.
func deciderFallback(kind workflows.DeciderKind) string {
	if kind == workflows.DeciderManagementKey {
		return "a management key"
	}
	return "a reviewer"
}

// SweepStrandedDeliveries starts the DeliveryWorkflow of every pending delivery that has
// none and that nothing touched for olderThan (at most limit per call), and returns how
// many it claimed. Such a delivery was stranded between being recorded and being handed
// to a workflow: the process died before or during its direct attempt, Temporal refused
// the workflow start after a retryable attempt (or, in EnqueueNotifications, past that
// activity's retries), or a redelivery died before starting its workflow. olderThan
// must exceed a direct attempt (workflows.DeliveryAttemptTimeout plus the hand-off), so
// an attempt under way is never swept.
//
// The workflow id is the delivery id, so a sweep racing a late start attaches to the
// same run; when that id has already closed (the row was reopened by a redelivery), the
// sweep starts a fresh "<delivery id>:<swp_…>" workflow. Claiming is exclusive between
// sweepers (see store ClaimStrandedDeliveries): a claimed row is not claimed again for
// olderThan, so a start that fails here is retried by a later sweep.
func (a *Activities) SweepStrandedDeliveries(ctx context.Context, olderThan time.Duration, limit int32) (int, error) {
	now := a.now()
	rows, err := a.st.ClaimStrandedDeliveries(ctx, store.ClaimStrandedDeliveriesParams{
		ClaimedAt: now, Before: now.Add(-olderThan), RowLimit: limit,
	})
	if err != nil {
		return 0, fmt.Errorf("sweep deliveries: %w", err)
	}
	var errs []error
	var started []string
	for _, r := range rows {
		in := a.deliveryInput(r.ID, r.OrgID)
		err := a.startDelivery(ctx, r.ID, in, 0)
		if errors.Is(err, errWorkflowClosed) {
			workflowID := r.ID + ":" + store.NewID("swp")
			err = a.startDelivery(ctx, workflowID, in, 0)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		started = append(started, r.ID)
	}
	if len(started) > 0 {
		if err := a.markHandedOff(ctx, started); err != nil {
			errs = append(errs, err)
		}
		a.logger.InfoContext(ctx, "Stranded deliveries handed to their workflows", "deliveries", len(started))
	}
	if err := errors.Join(errs...); err != nil {
		return len(rows), fmt.Errorf("sweep deliveries: %w", err)
	}
	return len(rows), nil
}
