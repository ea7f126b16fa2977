package activities_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/converter"
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

// TestEnqueueNotificationsRecordsEveryTargetOnce runs with the direct attempts closed,
// as during a worker's shutdown: every delivery then goes to its own DeliveryWorkflow
// at once, as before direct attempts existed.
func TestEnqueueNotificationsRecordsEveryTargetOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{temporal: true, noDirect: true})
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
		require.Equal(t, desc.GetWorkflowExecutionInfo().GetStartTime().AsTime(),
			desc.GetWorkflowExecutionInfo().GetExecutionTime().AsTime(), "no first attempt was made, so none is delayed")
		require.True(t, e.handedOff(d.id))
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

// TestChannelAlertNamesTheDecider: a channel card names a reviewer by display name, and a
// management key only as "a management key": its display is a key prefix, which a
// channel never gets (and the scrubber would show as "[redacted:secret]").
func TestChannelAlertNamesTheDecider(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		decider workflows.Decider
		want    string
	}{
		{name: "reviewer by display name", decider: alice, want: "Alice"},
		{name: "reviewer without a display name", decider: workflows.Decider{Kind: workflows.DeciderUser, ID: "usr_bob"}, want: "a reviewer"},
		{name: "management key, never its prefix",
			decider: workflows.Decider{Kind: workflows.DeciderManagementKey, ID: "key_1", Display: "oak_live_a5ce11"}, want: "a management key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{temporal: true, noDirect: true})
			ch := e.addChannel(activities.ChannelSlack, notify.ScopeAll, activities.SlackChannelConfig{Channel: "#approvals"}, "https://hooks.slack.com/services/T/B/x")
			a := e.insertApproval(false)
			e.enqueue(a, "run-1", workflows.EventDecided, workflows.StatusApproved, 1, decision(1, workflows.Approve, tc.decider, e.now))
			d := e.deliveryFor(activities.TargetChannel, ch)
			var alert struct {
				Decider string `json:"decider"`
			}
			require.NoError(t, json.Unmarshal(d.payload, &alert))
			require.Equal(t, tc.want, alert.Decider)
			require.NotContains(t, string(d.payload), "oak_live_")
			require.NoError(t, e.tc.TerminateWorkflow(context.Background(), d.id, "", "test done"))
		})
	}
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
			e := newEnv(t, envOptions{})
			rcv := notifytest.NewWebhookReceiver(t, "whsec_test_secret_0123456789")
			e.setWebhook(rcv.URL(), "whsec_test_secret_0123456789", tc.include)
			a := e.insertApproval(false)
			e.enqueue(a, "run-1", workflows.EventDecided, workflows.StatusApproved, 1, decision(1, workflows.Approve, alice, e.now))
			d := e.deliveryFor(activities.TargetOrgWebhook, "")

			got := rcv.WaitForDeliveries(t, 1, 30*time.Second)[0]
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
	e := newEnv(t, envOptions{temporal: true, noDirect: true})
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
	require.True(t, e.handedOff(d.id), "the redelivery's workflow has the delivery")
	require.ErrorIs(t, e.acts.Redeliver(context.Background(), e.orgID, d.id), activities.ErrDeliveryInProgress)
	require.NoError(t, e.deliver(d.id))
	got := rcv.WaitForDeliveries(t, 2, 30*time.Second)
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
			e := newEnv(t, envOptions{temporal: true, noDirect: true})
			const previous, current = "whsec_previous_secret_0123456789", "whsec_current_secret_0123456789"
			old := notifytest.NewWebhookReceiver(t, previous) // a receiver not yet switched over
			e.setWebhook(old.URL(), current, false)
			e.exec(`UPDATE orgs SET webhook_secret_previous_sealed = $2, webhook_secret_rotated_at = $3 WHERE id = $1`,
				e.orgID, e.sealOrgSecret(previous), time.Now().Add(-tc.rotatedAt))
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
	// No Temporal: every channel is delivered by its direct attempt.
	e := newEnv(t, envOptions{})
	slack := notifytest.NewSlack(t)
	pd := notifytest.NewPagerDuty(t)
	const chSecret = "whsec_channel_secret_0123456789"
	hook := notifytest.NewWebhookReceiver(t, chSecret)
	slackID := e.addChannel(activities.ChannelSlack, notify.ScopeAll, activities.SlackChannelConfig{}, slack.WebhookURL())
	pdID := e.addChannel(activities.ChannelPagerDuty, notify.ScopeAll, activities.PagerDutyChannelConfig{
		FromEmail: pd.FromEmail, ServiceID: pd.ServiceID, BaseURL: pd.URL()}, pd.APIKey)
	hookID := e.addChannel(activities.ChannelWebhook, notify.ScopeAll, activities.WebhookChannelConfig{URL: hook.URL()}, chSecret)
	a := e.insertApproval(false)

	e.enqueue(a, "run-1", workflows.EventCreated, workflows.StatusPending, 1, nil)
	e.waitSettled()
	inc, ok := pd.Incident(notify.PagerDutyIncidentKey(a.ref))
	require.True(t, ok)
	require.Equal(t, "triggered", inc.Status)

	e.enqueue(a, "run-1", workflows.EventDecided, workflows.StatusDenied, 1, decision(1, workflows.Deny, bob, e.now))
	e.waitSettled()
	inc, _ = pd.Incident(notify.PagerDutyIncidentKey(a.ref))
	require.Equal(t, "resolved", inc.Status)
	require.Zero(t, e.count(`SELECT count(*) FROM webhook_deliveries WHERE org_id = $1 AND (status <> 'delivered' OR attempts <> 1)`, e.orgID),
		"every channel delivered on its first attempt")

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
	got := hook.WaitForDeliveries(t, 2, 30*time.Second)
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

func TestChannelSealedUnderAnotherKeyFailsForGood(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{temporal: true, foreignSecrets: true})
	slack := notifytest.NewSlack(t)
	e.addChannel(activities.ChannelSlack, notify.ScopeAll, activities.SlackChannelConfig{}, slack.WebhookURL())
	a := e.insertApproval(false)
	e.enqueue(a, "run-1", workflows.EventCreated, workflows.StatusPending, 1, nil)
	d := e.deliveries()[0]
	e.waitSettled()
	status, attempts := e.deliveryStatus(d.id)
	require.Equal(t, []any{"failed", 1}, []any{status, attempts}, "the direct attempt fails it for good")
	e.requireNoWorkflow(d.id)
	require.Empty(t, slack.Messages())
	var recorded string
	require.NoError(t, e.st.Pool.QueryRow(context.Background(), `SELECT error FROM webhook_attempts WHERE delivery_id = $1`, d.id).Scan(&recorded))
	require.Contains(t, recorded, "does not open with the server's key")

	// What the DeliveryWorkflow would get for it: a final failure.
	err := e.deliver(d.id)
	requireAppErr(t, err, workflows.ErrorTypeDeliveryRejected)
	_, err = e.acts.TestChannel(context.Background(), e.orgID, d.channel)
	require.ErrorIs(t, err, activities.ErrChannelUnusable)
}

// waitSettled waits until no delivery of e's org is pending.
func (e *env) waitSettled() {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		return e.count(`SELECT count(*) FROM webhook_deliveries WHERE org_id = $1 AND status = 'pending'`, e.orgID) == 0
	}, 20*time.Second, 10*time.Millisecond)
}

// handedOff reports whether a DeliveryWorkflow was recorded as started for delivery id.
func (e *env) handedOff(id string) bool {
	e.t.Helper()
	return e.count(`SELECT count(*) FROM webhook_deliveries WHERE id = $1 AND handed_off_at IS NOT NULL`, id) == 1
}

// requireNoWorkflow fails unless Temporal has never heard of workflow id.
func (e *env) requireNoWorkflow(id string) {
	e.t.Helper()
	_, err := e.tc.DescribeWorkflowExecution(context.Background(), id, "")
	var notFound *serviceerror.NotFound
	require.ErrorAs(e.t, err, &notFound, "workflow %s must not exist", id)
}

// deliveryInputOf decodes the input workflow id was started with.
func (e *env) deliveryInputOf(id string) workflows.DeliveryInput {
	e.t.Helper()
	iter := e.tc.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	require.True(e.t, iter.HasNext())
	ev, err := iter.Next()
	require.NoError(e.t, err)
	var in workflows.DeliveryInput
	require.NoError(e.t, converter.GetDefaultDataConverter().FromPayloads(
		ev.GetWorkflowExecutionStartedEventAttributes().GetInput(), &in))
	return in
}

// TestDirectAttemptOutcomes: EnqueueNotifications makes the first attempt itself and
// involves Temporal only when a retry is needed.
func TestDirectAttemptOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		setup        func(*notifytest.WebhookReceiver)
		wantStatus   string
		wantCode     int
		wantWorkflow bool
		wantDelay    time.Duration // the DeliveryWorkflow's start delay
	}{
		{name: "receiver up: delivered once, no workflow", setup: func(*notifytest.WebhookReceiver) {},
			wantStatus: "delivered", wantCode: 204},
		{name: "receiver refuses with 400: failed, no workflow",
			setup:      func(r *notifytest.WebhookReceiver) { r.SetMode(notifytest.Reject400) },
			wantStatus: "failed", wantCode: 400},
		{name: "receiver answers 503: retried by a delayed DeliveryWorkflow",
			setup:      func(r *notifytest.WebhookReceiver) { r.SetMode(notifytest.Down503) },
			wantStatus: "pending", wantCode: 503, wantWorkflow: true, wantDelay: workflows.DeliveryInitialInterval},
		{name: "receiver answers 503 with Retry-After: the DeliveryWorkflow waits as asked",
			setup: func(r *notifytest.WebhookReceiver) {
				r.SetMode(notifytest.Down503)
				r.SetRetryAfter("120")
			},
			wantStatus: "pending", wantCode: 503, wantWorkflow: true, wantDelay: 2 * time.Minute},
		{name: "a Retry-After shorter than the schedule does not shorten it",
			setup: func(r *notifytest.WebhookReceiver) {
				r.SetMode(notifytest.Down503)
				r.SetRetryAfter("1")
			},
			wantStatus: "pending", wantCode: 503, wantWorkflow: true, wantDelay: workflows.DeliveryInitialInterval},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{temporal: true})
			const secret = "whsec_test_secret_0123456789"
			rcv := notifytest.NewWebhookReceiver(t, secret)
			tc.setup(rcv)
			e.setWebhook(rcv.URL(), secret, false)
			a := e.insertApproval(false)
			began := time.Now()
			e.enqueue(a, "run-1", workflows.EventCreated, workflows.StatusPending, 1, nil)
			d := e.deliveryFor(activities.TargetOrgWebhook, "")

			// The attempt is over once its outcome is recorded; Close waits for that.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			require.NoError(t, e.acts.Close(ctx))
			// The direct attempt and its hand-off happened within this much time.
			tookAtMost := time.Since(began)
			status, attempts := e.deliveryStatus(d.id)
			require.Equal(t, []any{tc.wantStatus, 1}, []any{status, attempts})
			require.Equal(t, 1, e.count(`SELECT count(*) FROM webhook_attempts WHERE delivery_id = $1 AND status_code = $2 AND finished_at IS NOT NULL`, d.id, tc.wantCode))
			require.Equal(t, []string{d.id}, rcv.AttemptIDs())
			require.Equal(t, tc.wantWorkflow, e.handedOff(d.id))
			if !tc.wantWorkflow {
				e.requireNoWorkflow(d.id)
				return
			}
			desc, err := e.tc.DescribeWorkflowExecution(ctx, d.id, "")
			require.NoError(t, err)
			info := desc.GetWorkflowExecutionInfo()
			require.Equal(t, workflows.DeliveryWorkflowName, info.GetType().GetName())
			require.Equal(t, e.queue, info.GetTaskQueue())
			// Its first attempt waits one initial interval after the direct one, as the
			// workflow's own retry would have, or longer when the receiver asked.
			require.Equal(t, tc.wantDelay, info.GetExecutionTime().AsTime().Sub(info.GetStartTime().AsTime()))
			// Then twice that, doubling on, all within 24 h of the direct attempt.
			in := e.deliveryInputOf(d.id)
			require.Equal(t, d.id, in.DeliveryID)
			require.Equal(t, 2*workflows.DeliveryInitialInterval, in.InitialInterval)
			require.GreaterOrEqual(t, in.ScheduleToClose, workflows.DeliveryScheduleToClose-tc.wantDelay-tookAtMost)
			require.LessOrEqual(t, in.ScheduleToClose, workflows.DeliveryScheduleToClose-tc.wantDelay)
			require.NoError(t, e.tc.TerminateWorkflow(ctx, d.id, "", "test done"))
		})
	}
}

// TestEnqueueNotificationsNeverWaitsForTheReceiver: a receiver that does not answer
// holds neither the activity nor a later shutdown beyond its bound.
func TestEnqueueNotificationsNeverWaitsForTheReceiver(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// closeWithin bounds Close; release, when set, lets the receiver answer while
		// Close waits.
		closeWithin  time.Duration
		release      bool
		wantCloseErr error
		wantStatus   string
		wantAttempts int
	}{
		{name: "close waits for the attempt in flight", closeWithin: 20 * time.Second, release: true,
			wantStatus: "delivered", wantAttempts: 1},
		{name: "close gives up and leaves the delivery to the sweep", closeWithin: 300 * time.Millisecond,
			wantCloseErr: context.DeadlineExceeded, wantStatus: "pending", wantAttempts: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{temporal: true})
			const secret = "whsec_test_secret_0123456789"
			rcv := notifytest.NewWebhookReceiver(t, secret)
			rcv.SetMode(notifytest.Held)
			e.setWebhook(rcv.URL(), secret, false)
			a := e.insertApproval(false)

			e.enqueue(a, "run-1", workflows.EventCreated, workflows.StatusPending, 1, nil)
			d := e.deliveryFor(activities.TargetOrgWebhook, "")
			require.Eventually(t, func() bool { return rcv.Attempts() == 1 }, 10*time.Second, 5*time.Millisecond)
			status, attempts := e.deliveryStatus(d.id)
			require.Equal(t, []any{"pending", 1}, []any{status, attempts}, "enqueue returned while the receiver held the attempt")
			// The attempt on the wire is already recorded, without an outcome: were the
			// process to die now, the history would still show it.
			require.Equal(t, 1, e.count(`SELECT count(*) FROM webhook_attempts WHERE delivery_id = $1 AND finished_at IS NULL AND status_code = 0`, d.id))

			closed := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), tc.closeWithin)
				defer cancel()
				closed <- e.acts.Close(ctx)
			}()
			if tc.release {
				select {
				case err := <-closed:
					t.Fatalf("Close returned (%v) while an attempt was in flight", err)
				case <-time.After(200 * time.Millisecond):
				}
				rcv.SetMode(notifytest.Up)
			}
			err := <-closed
			if tc.wantCloseErr != nil {
				require.ErrorIs(t, err, tc.wantCloseErr)
			} else {
				require.NoError(t, err)
			}
			status, attempts = e.deliveryStatus(d.id)
			require.Equal(t, []any{tc.wantStatus, tc.wantAttempts}, []any{status, attempts})
			require.False(t, e.handedOff(d.id))
			e.requireNoWorkflow(d.id)

			// Closed: the next event's delivery goes to its workflow at once.
			e.enqueue(a, "run-1", workflows.EventExpired, workflows.StatusExpired, 1, nil)
			var next string
			require.NoError(t, e.st.Pool.QueryRow(context.Background(),
				`SELECT id FROM webhook_deliveries WHERE org_id = $1 AND event_type = 'approval.expired'`, e.orgID).Scan(&next))
			require.True(t, e.handedOff(next))
			require.NoError(t, e.tc.TerminateWorkflow(context.Background(), next, "", "test done"))
		})
	}
}

// TestDirectAttemptsAreBounded: beyond MaxDirectAttempts in flight, deliveries go to
// their workflow at once.
func TestDirectAttemptsAreBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{temporal: true})
	e.acts = e.newActivities(t, e.tc, 1)
	const secret = "whsec_test_secret_0123456789"
	org := notifytest.NewWebhookReceiver(t, secret)
	org.SetMode(notifytest.Held)
	e.setWebhook(org.URL(), secret, false)
	hook := notifytest.NewWebhookReceiver(t, secret)
	hookID := e.addChannel(activities.ChannelWebhook, notify.ScopeAll, activities.WebhookChannelConfig{URL: hook.URL()}, secret)
	a := e.insertApproval(false)

	e.enqueue(a, "run-1", workflows.EventCreated, workflows.StatusPending, 1, nil)
	direct := e.deliveryFor(activities.TargetOrgWebhook, "") // planned first: takes the one slot
	overflow := e.deliveryFor(activities.TargetChannel, hookID)
	require.Eventually(t, func() bool { return org.Attempts() == 1 }, 10*time.Second, 5*time.Millisecond)

	require.True(t, e.handedOff(overflow.id))
	desc, err := e.tc.DescribeWorkflowExecution(context.Background(), overflow.id, "")
	require.NoError(t, err)
	info := desc.GetWorkflowExecutionInfo()
	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, info.GetStatus())
	require.Equal(t, info.GetStartTime().AsTime(), info.GetExecutionTime().AsTime(), "not attempted yet, so not delayed")
	require.Zero(t, hook.Attempts(), "the overflow is the workflow's to attempt")
	require.NoError(t, e.tc.TerminateWorkflow(context.Background(), overflow.id, "", "test done"))

	org.SetMode(notifytest.Up)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, e.acts.Close(ctx))
	status, attempts := e.deliveryStatus(direct.id)
	require.Equal(t, []any{"delivered", 1}, []any{status, attempts})
	e.requireNoWorkflow(direct.id)
}

// TestSweepStartsStrandedDeliveries: deliveries left pending without a workflow — the
// process died, or Temporal refused the start before or after the direct attempt — get
// their workflow from the sweep once untouched for the sweep's age; recent ones, and
// ones handed off already, are left alone; a claimed delivery is not claimed again until
// its claim is as old.
func TestSweepStartsStrandedDeliveries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{temporal: true})
	ctx := context.Background()
	const secret = "whsec_test_secret_0123456789"
	rcv := notifytest.NewWebhookReceiver(t, secret)
	e.setWebhook(rcv.URL(), secret, false)
	a := e.insertApproval(false)
	down := e.newActivities(t, refusingClient{}, 0)

	// Direct attempts closed and Temporal down: recorded, never attempted.
	require.NoError(t, down.Close(ctx))
	_, err := down.EnqueueNotifications(ctx, workflows.EnqueueNotificationsInput{
		RunID: "run-1", Key: "notify:created", OrgID: e.orgID, ApprovalID: a.id, Reference: a.ref,
		Event: workflows.EventCreated, Level: 1, Status: workflows.StatusPending, ExpiresAt: e.now.Add(time.Hour), At: e.now,
	})
	require.ErrorContains(t, err, "temporal is down")
	neverAttempted := e.deliveryFor(activities.TargetOrgWebhook, "")

	// Attempted directly (503), then Temporal refused the retry's workflow.
	retryDown := e.newActivities(t, refusingClient{}, 0)
	rcv.SetMode(notifytest.Down503)
	_, err = retryDown.EnqueueNotifications(ctx, workflows.EnqueueNotificationsInput{
		RunID: "run-1", Key: "notify:expired", OrgID: e.orgID, ApprovalID: a.id, Reference: a.ref,
		Event: workflows.EventExpired, Level: 1, Status: workflows.StatusExpired, ExpiresAt: e.now.Add(time.Hour), At: e.now,
	})
	require.NoError(t, err, "a refused retry does not fail the enqueue")
	require.NoError(t, retryDown.Close(ctx))
	var attemptedOnce string
	require.NoError(t, e.st.Pool.QueryRow(ctx,
		`SELECT id FROM webhook_deliveries WHERE org_id = $1 AND event_type = 'approval.expired'`, e.orgID).Scan(&attemptedOnce))
	status, attempts := e.deliveryStatus(attemptedOnce)
	require.Equal(t, []any{"pending", 1}, []any{status, attempts})

	insert := func(name string) string {
		id := store.NewID("whd")
		n, err := e.st.InsertWebhookDelivery(ctx, store.InsertWebhookDeliveryParams{
			ID: id, OrgID: e.orgID, DedupKey: name + ":" + id, EventID: store.NewID("evt"), EventType: "approval.created",
			TargetKind: activities.TargetOrgWebhook, Url: rcv.URL(), Payload: []byte(`{}`), CreatedAt: time.Now().UTC(),
		})
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
		return id
	}
	recent, handedOff := insert("recent"), insert("handed-off")
	e.exec(`UPDATE webhook_deliveries SET handed_off_at = now() WHERE id = $1`, handedOff)
	age := func(ids ...string) {
		e.exec(`UPDATE webhook_deliveries SET updated_at = updated_at - interval '10 minutes' WHERE id = ANY($1)`, ids)
	}
	age(neverAttempted.id, attemptedOnce, handedOff)
	require.False(t, e.handedOff(neverAttempted.id))
	require.False(t, e.handedOff(attemptedOnce))
	for _, id := range []string{neverAttempted.id, attemptedOnce, recent, handedOff} {
		e.requireNoWorkflow(id)
	}

	// Temporal still down: the sweep claims both stranded rows, starts nothing, and a
	// sweep right after finds them claimed.
	n, err := down.SweepStrandedDeliveries(ctx, 5*time.Minute, 100)
	require.ErrorContains(t, err, "temporal is down")
	require.Equal(t, 2, n)
	n, err = e.acts.SweepStrandedDeliveries(ctx, 5*time.Minute, 100)
	require.NoError(t, err)
	require.Zero(t, n, "claimed a moment ago")

	// Once the claim is as old as the sweep's age, the next sweep starts them.
	age(neverAttempted.id, attemptedOnce)
	n, err = e.acts.SweepStrandedDeliveries(ctx, 5*time.Minute, 100)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	for _, id := range []string{neverAttempted.id, attemptedOnce} {
		desc, err := e.tc.DescribeWorkflowExecution(ctx, id, "")
		require.NoError(t, err, id)
		require.Equal(t, workflows.DeliveryWorkflowName, desc.GetWorkflowExecutionInfo().GetType().GetName())
		require.Equal(t, e.queue, desc.GetWorkflowExecutionInfo().GetTaskQueue())
		require.True(t, e.handedOff(id))
	}
	e.requireNoWorkflow(recent)
	e.requireNoWorkflow(handedOff)

	// Handed off now: never swept again, however old.
	age(neverAttempted.id, attemptedOnce)
	n, err = e.acts.SweepStrandedDeliveries(ctx, 5*time.Minute, 100)
	require.NoError(t, err)
	require.Zero(t, n)
	for _, id := range []string{neverAttempted.id, attemptedOnce} {
		require.NoError(t, e.tc.TerminateWorkflow(ctx, id, "", "test done"))
	}
}
