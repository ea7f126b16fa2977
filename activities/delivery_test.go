package activities_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/activities/notify/notifytest"
	"oakallow/store"
	"oakallow/workflows"
)

type delivery struct {
	id, kind, channel string
	payload           json.RawMessage
}

func (e *env) deliveries() []delivery {
	e.t.Helper()
	rows, err := e.st.Pool.Query(context.Background(),
		`SELECT id, target_kind, coalesce(channel_id, ''), payload FROM webhook_deliveries WHERE org_id = $1 ORDER BY target_kind DESC, channel_id`, e.orgID)
	require.NoError(e.t, err)
	defer rows.Close()
	var out []delivery
	for rows.Next() {
		var d delivery
		require.NoError(e.t, rows.Scan(&d.id, &d.kind, &d.channel, &d.payload))
		out = append(out, d)
	}
	require.NoError(e.t, rows.Err())
	return out
}

func (e *env) deliveryFor(kind, channel string) delivery {
	e.t.Helper()
	for _, d := range e.deliveries() {
		if d.kind == kind && d.channel == channel {
			return d
		}
	}
	e.t.Fatalf("no %s delivery for %q", kind, channel)
	return delivery{}
}

func (e *env) deliveryStatus(id string) (string, int) {
	e.t.Helper()
	var status string
	var attempts int
	require.NoError(e.t, e.st.Pool.QueryRow(context.Background(),
		`SELECT status, attempts FROM webhook_deliveries WHERE id = $1`, id).Scan(&status, &attempts))
	return status, attempts
}

func (e *env) enqueue(a approvalRow, runID string, ev workflows.Event, status workflows.Status, level int, d *workflows.Decision) workflows.EnqueueNotificationsResult {
	e.t.Helper()
	res, err := e.acts.EnqueueNotifications(context.Background(), workflows.EnqueueNotificationsInput{
		RunID: runID, Key: "notify:" + string(ev), OrgID: e.orgID, ApprovalID: a.id, Reference: a.ref,
		Event: ev, Level: level, Status: status, ExpiresAt: e.now.Add(time.Hour), Decision: d, At: e.now,
	})
	require.NoError(e.t, err)
	return res
}

func (e *env) deliver(id string) error {
	return e.acts.DeliverNotification(context.Background(), workflows.DeliverNotificationInput{DeliveryID: id})
}

// requireNoCustomerData fails if b carries anything a channel must never see.
func requireNoCustomerData(t *testing.T, b []byte) {
	t.Helper()
	for _, leak := range []string{secretParam, tenantName, reasonLeakEm, reasonLeakKy, "payments-db", "ticket-991", "oak_tok_", "whsec_"} {
		require.NotContains(t, string(b), leak)
	}
}

func TestEnqueueNotificationsRecordsEveryTargetOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{temporal: true})
	ctx := context.Background()
	secret, err := notify.NewWebhookSecret()
	require.NoError(t, err)
	e.setWebhook("https://hooks.example.com/oak", secret, false)
	slackAll := e.addChannel(activities.ChannelSlack, notify.ScopeAll, activities.SlackChannelConfig{Channel: "#approvals"}, "https://hooks.slack.com/services/T/B/x")
	pdL1 := e.addChannel(activities.ChannelPagerDuty, notify.ScopeLevel1, activities.PagerDutyChannelConfig{FromEmail: "oncall@example.com", ServiceID: "PSVC1"}, "u+key")
	hookL2 := e.addChannel(activities.ChannelWebhook, notify.ScopeLevel2, activities.WebhookChannelConfig{URL: "https://alerts.example.com"}, secret)
	disabled := e.addChannel(activities.ChannelSlack, notify.ScopeAll, activities.SlackChannelConfig{}, "https://hooks.slack.com/services/T/B/y")
	e.exec(`UPDATE notification_channels SET enabled = false WHERE id = $1`, disabled)
	a := e.insertApproval(true)

	tests := []struct {
		name         string
		runID        string
		event        workflows.Event
		level        int
		decision     *workflows.Decision
		wantEnqueued int
		wantTotal    int
	}{
		{name: "created reaches the webhook and the level-1 channels", runID: "run-1", event: workflows.EventCreated, level: 1, wantEnqueued: 3, wantTotal: 3},
		{name: "a retried enqueue records nothing new", runID: "run-1", event: workflows.EventCreated, level: 1, wantEnqueued: 3, wantTotal: 3},
		{name: "escalated reaches the level-2 channels", runID: "run-1", event: workflows.EventEscalated, level: 2,
			decision: decision(1, workflows.Approve, alice, e.now), wantEnqueued: 3, wantTotal: 6},
	}
	for _, tc := range tests {
		res := e.enqueue(a, tc.runID, tc.event, workflows.StatusPending, tc.level, tc.decision)
		require.Equal(t, tc.wantEnqueued, res.Enqueued, tc.name)
		require.Len(t, e.deliveries(), tc.wantTotal, tc.name)
	}
	var channels []string
	for _, d := range e.deliveries() {
		channels = append(channels, d.channel)
		// Each delivery has its own workflow, on the activities' task queue, waiting there.
		desc, err := e.tc.DescribeWorkflowExecution(ctx, d.id, "")
		require.NoError(t, err)
		require.Equal(t, workflows.DeliveryWorkflowName, desc.GetWorkflowExecutionInfo().GetType().GetName())
		require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.GetWorkflowExecutionInfo().GetStatus())
		require.Equal(t, e.queue, desc.GetWorkflowExecutionInfo().GetTaskQueue())
		require.NoError(t, e.tc.TerminateWorkflow(ctx, d.id, "", "test done"))
	}
	require.ElementsMatch(t, []string{"", "", slackAll, slackAll, pdL1, hookL2}, channels)

	// The org webhook body (SPEC §4) carries the scrubbed reason and no parameters;
	// channel payloads carry only the alert fields.
	webhook := e.deliveryFor(activities.TargetOrgWebhook, "")
	var ev struct {
		ID   string         `json:"id"`
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(webhook.payload, &ev))
	require.True(t, strings.HasPrefix(ev.ID, "evt_"))
	require.Subset(t, keys(ev.Data), []string{"approval_id", "reference", "tool", "tenant", "status", "level", "expires_at", "reference_id", "reason"})
	require.NotContains(t, ev.Data, "parameters")
	require.Equal(t, a.ref, ev.Data["reference"])
	require.Equal(t, tenantName, ev.Data["tenant"])
	require.Equal(t, "ticket-991", ev.Data["reference_id"])
	require.NotContains(t, ev.Data["reason"], reasonLeakEm)
	require.NotContains(t, ev.Data["reason"], reasonLeakKy)
	for _, d := range e.deliveries() {
		if d.kind == activities.TargetChannel {
			requireNoCustomerData(t, d.payload)
			require.Contains(t, string(d.payload), "https://oak.example.com/approvals/"+a.ref)
		}
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestOrgWebhookIncludesParametersOnlyWhenEnabled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		include bool
	}{
		{name: "off by default", include: false},
		{name: "on when the org opted in", include: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{temporal: true})
			rcv := notifytest.NewWebhookReceiver(t, "whsec_test_secret_0123456789")
			e.setWebhook(rcv.URL(), "whsec_test_secret_0123456789", tc.include)
			a := e.insertApproval(false)
			e.enqueue(a, "run-1", workflows.EventDecided, workflows.StatusApproved, 1, decision(1, workflows.Approve, alice, e.now))
			d := e.deliveryFor(activities.TargetOrgWebhook, "")
			require.NoError(t, e.tc.TerminateWorkflow(context.Background(), d.id, "", "delivered by the test"))
			require.NoError(t, e.deliver(d.id))

			got := rcv.WaitForDeliveries(t, 1, 5*time.Second)[0]
			require.Equal(t, "approval.decided", got.Event)
			require.Equal(t, d.id, got.ID)
			var body struct {
				Data map[string]json.RawMessage `json:"data"`
			}
			require.NoError(t, json.Unmarshal(got.Body, &body))
			require.JSONEq(t, `"approve"`, string(body.Data["decision"]))
			require.JSONEq(t, `{"kind":"user","id":"usr_alice","display":"Alice"}`, string(body.Data["decider"]))
			require.JSONEq(t, `"checked the ledger"`, string(body.Data["note"]))
			if tc.include {
				require.JSONEq(t, string(a.params), string(body.Data["parameters"]))
			} else {
				require.NotContains(t, body.Data, "parameters")
				require.NotContains(t, string(got.Body), secretParam)
			}
		})
	}
}

func TestDeliverNotificationRetriesRecordsAndDeliversOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{temporal: true})
	const secret = "whsec_test_secret_0123456789"
	rcv := notifytest.NewWebhookReceiver(t, secret)
	e.setWebhook(rcv.URL(), secret, false)
	a := e.insertApproval(false)
	e.enqueue(a, "run-1", workflows.EventCreated, workflows.StatusPending, 1, nil)
	d := e.deliveryFor(activities.TargetOrgWebhook, "")
	require.NoError(t, e.tc.TerminateWorkflow(context.Background(), d.id, "", "delivered by the test"))

	rcv.SetMode(notifytest.Down503)
	err := e.deliver(d.id)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, workflows.ErrorTypeDeliveryRetryable, appErr.Type())
	require.False(t, appErr.NonRetryable(), "a 503 is worth retrying")
	status, attempts := e.deliveryStatus(d.id)
	require.Equal(t, []any{"pending", 1}, []any{status, attempts})

	rcv.SetMode(notifytest.Up)
	require.NoError(t, e.deliver(d.id))
	require.NoError(t, e.deliver(d.id), "a delivered delivery is not sent again")
	require.Len(t, rcv.Deliveries(), 1)
	require.Equal(t, 2, rcv.Attempts())
	status, attempts = e.deliveryStatus(d.id)
	require.Equal(t, []any{"delivered", 2}, []any{status, attempts})

	var codes []int
	rows, err := e.st.Pool.Query(context.Background(), `SELECT status_code FROM webhook_attempts WHERE delivery_id = $1 ORDER BY seq`, d.id)
	require.NoError(t, err)
	for rows.Next() {
		var c int
		require.NoError(t, rows.Scan(&c))
		codes = append(codes, c)
	}
	require.Equal(t, []int{503, 204}, codes)

	// Redelivery: back to pending with a fresh workflow; refused while pending.
	require.ErrorIs(t, e.acts.Redeliver(context.Background(), "org_other", d.id), activities.ErrDeliveryNotFound)
	require.ErrorIs(t, e.acts.Redeliver(context.Background(), e.orgID, "whd_missing"), activities.ErrDeliveryNotFound)
	require.NoError(t, e.acts.Redeliver(context.Background(), e.orgID, d.id))
	status, _ = e.deliveryStatus(d.id)
	require.Equal(t, "pending", status)
	require.ErrorIs(t, e.acts.Redeliver(context.Background(), e.orgID, d.id), activities.ErrDeliveryInProgress)
	require.NoError(t, e.deliver(d.id))
	got := rcv.WaitForDeliveries(t, 2, 5*time.Second)
	require.Equal(t, got[0].ID, got[1].ID, "a redelivery keeps the delivery id")
	require.Equal(t, got[0].Body, got[1].Body)
}

func TestOrgWebhookSecretRotationOverlap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		rotatedAt time.Duration // before now
		wantOK    bool
	}{
		{name: "previous secret still signs an hour after rotation", rotatedAt: time.Hour, wantOK: true},
		{name: "previous secret no longer signs after 24 h", rotatedAt: 25 * time.Hour, wantOK: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{temporal: true})
			const previous, current = "whsec_previous_secret_0123456789", "whsec_current_secret_0123456789"
			old := notifytest.NewWebhookReceiver(t, previous) // a receiver not yet switched over
			e.setWebhook(old.URL(), current, false)
			e.exec(`UPDATE orgs SET webhook_secret_previous = $2, webhook_secret_rotated_at = $3 WHERE id = $1`,
				e.orgID, previous, time.Now().Add(-tc.rotatedAt))
			a := e.insertApproval(false)
			e.enqueue(a, "run-1", workflows.EventCreated, workflows.StatusPending, 1, nil)
			d := e.deliveryFor(activities.TargetOrgWebhook, "")
			require.NoError(t, e.tc.TerminateWorkflow(context.Background(), d.id, "", "delivered by the test"))
			err := e.deliver(d.id)
			if tc.wantOK {
				require.NoError(t, err)
				sig := old.Deliveries()[0].Signature
				require.Equal(t, 2, strings.Count(sig, "v1="), "signed with both secrets: %s", sig)
				return
			}
			requireAppErr(t, err, workflows.ErrorTypeDeliveryRejected) // 401 from the receiver
			require.Empty(t, old.Deliveries())
		})
	}
}

func TestChannelDeliveries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{temporal: true})
	slack := notifytest.NewSlack(t)
	pd := notifytest.NewPagerDuty(t)
	const chSecret = "whsec_channel_secret_0123456789"
	hook := notifytest.NewWebhookReceiver(t, chSecret)
	slackID := e.addChannel(activities.ChannelSlack, notify.ScopeAll, activities.SlackChannelConfig{}, slack.WebhookURL())
	pdID := e.addChannel(activities.ChannelPagerDuty, notify.ScopeAll, activities.PagerDutyChannelConfig{
		FromEmail: pd.FromEmail, ServiceID: pd.ServiceID, BaseURL: pd.URL()}, pd.APIKey)
	hookID := e.addChannel(activities.ChannelWebhook, notify.ScopeAll, activities.WebhookChannelConfig{URL: hook.URL()}, chSecret)
	a := e.insertApproval(false)

	deliverAll := func() {
		for _, d := range e.deliveries() {
			if status, _ := e.deliveryStatus(d.id); status != "pending" {
				continue
			}
			_ = e.tc.TerminateWorkflow(context.Background(), d.id, "", "delivered by the test")
			require.NoError(t, e.deliver(d.id), "%s %s", d.kind, d.channel)
		}
	}
	e.enqueue(a, "run-1", workflows.EventCreated, workflows.StatusPending, 1, nil)
	deliverAll()
	inc, ok := pd.Incident(notify.PagerDutyIncidentKey(a.ref))
	require.True(t, ok)
	require.Equal(t, "triggered", inc.Status)

	e.enqueue(a, "run-1", workflows.EventDecided, workflows.StatusDenied, 1, decision(1, workflows.Deny, bob, e.now))
	deliverAll()
	inc, _ = pd.Incident(notify.PagerDutyIncidentKey(a.ref))
	require.Equal(t, "resolved", inc.Status)

	require.Len(t, slack.Messages(), 2)
	for _, m := range slack.Messages() {
		require.NoError(t, notifytest.ValidateWebhookMessage(m))
		requireNoCustomerData(t, m)
	}
	require.Contains(t, string(slack.Messages()[1]), "Bob")
	for _, r := range pd.Requests() {
		requireNoCustomerData(t, r.Body)
	}
	require.Empty(t, pd.Rejections())
	got := hook.WaitForDeliveries(t, 2, 5*time.Second)
	for _, d := range got {
		requireNoCustomerData(t, d.Body)
	}
	require.Equal(t, []string{"approval.created", "approval.decided"}, []string{got[0].Event, got[1].Event})
	require.NotEqual(t, slackID, pdID)
	require.NotEmpty(t, hookID)

	// The test action sends a sample to any channel.
	att, err := e.acts.TestChannel(context.Background(), e.orgID, slackID)
	require.NoError(t, err)
	require.True(t, att.OK(), att.Error)
	require.Len(t, slack.Messages(), 3)
	_, err = e.acts.TestChannel(context.Background(), e.orgID, "ch_missing")
	require.ErrorIs(t, err, activities.ErrChannelNotFound)
}

func TestChannelWithoutSecretBoxFailsForGood(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{temporal: true, noBox: true})
	slack := notifytest.NewSlack(t)
	e.addChannel(activities.ChannelSlack, notify.ScopeAll, activities.SlackChannelConfig{}, slack.WebhookURL())
	a := e.insertApproval(false)
	e.enqueue(a, "run-1", workflows.EventCreated, workflows.StatusPending, 1, nil)
	d := e.deliveries()[0]
	require.NoError(t, e.tc.TerminateWorkflow(context.Background(), d.id, "", "delivered by the test"))
	err := e.deliver(d.id)
	requireAppErr(t, err, workflows.ErrorTypeDeliveryRejected)
	require.ErrorContains(t, err, "no secrets key configured")
	require.Empty(t, slack.Messages())
	var recorded string
	require.NoError(t, e.st.Pool.QueryRow(context.Background(), `SELECT error FROM webhook_attempts WHERE delivery_id = $1`, d.id).Scan(&recorded))
	require.Contains(t, recorded, "no secrets key configured")

	require.NoError(t, e.acts.MarkDeliveryFailed(context.Background(), workflows.MarkDeliveryFailedInput{DeliveryID: d.id}))
	status, _ := e.deliveryStatus(d.id)
	require.Equal(t, "failed", status)
	_, err = e.acts.TestChannel(context.Background(), e.orgID, d.channel)
	require.ErrorIs(t, err, activities.ErrChannelUnusable)
}

// TestSweepStartsDeliveriesWhoseWorkflowNeverStarted: a delivery recorded
// but never attempted (its workflow start failed) gets its workflow from the
// sweeper; a recent one is left to the activity that recorded it, and
// sweeping twice starts nothing twice.
func TestSweepStartsDeliveriesWhoseWorkflowNeverStarted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{temporal: true})
	ctx := context.Background()
	insert := func(age time.Duration) string {
		id := store.NewID("whd")
		n, err := e.st.InsertWebhookDelivery(ctx, store.InsertWebhookDeliveryParams{
			ID: id, OrgID: e.orgID, DedupKey: "sweep:" + id, EventID: store.NewID("evt"), EventType: "approval.created",
			TargetKind: activities.TargetOrgWebhook, Url: "https://hooks.example.com/oak", Payload: []byte(`{}`),
			CreatedAt: time.Now().UTC().Add(-age),
		})
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
		return id
	}
	stuck, recent := insert(10*time.Minute), insert(time.Minute)

	n, err := e.acts.SweepUnattemptedDeliveries(ctx, 5*time.Minute, 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	desc, err := e.tc.DescribeWorkflowExecution(ctx, stuck, "")
	require.NoError(t, err)
	require.Equal(t, workflows.DeliveryWorkflowName, desc.GetWorkflowExecutionInfo().GetType().GetName())
	require.Equal(t, e.queue, desc.GetWorkflowExecutionInfo().GetTaskQueue())
	runID := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	_, err = e.tc.DescribeWorkflowExecution(ctx, recent, "")
	require.Error(t, err, "a recent delivery is not swept")

	n, err = e.acts.SweepUnattemptedDeliveries(ctx, 5*time.Minute, 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	desc, err = e.tc.DescribeWorkflowExecution(ctx, stuck, "")
	require.NoError(t, err)
	require.Equal(t, runID, desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(), "the second sweep attached to the same run")
	require.NoError(t, e.tc.TerminateWorkflow(ctx, stuck, "", "test done"))
}
