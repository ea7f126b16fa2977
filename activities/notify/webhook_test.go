package notify_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/activities/notify"
	"oakallow/activities/notify/notifytest"
)

func newSecret(t *testing.T) string {
	t.Helper()
	s, err := notify.NewWebhookSecret()
	require.NoError(t, err)
	return s
}

func sampleEvent() notify.Event {
	return notify.Event{
		ID:        "evt_01JABCDEF",
		Type:      notify.EventApprovalCreated,
		CreatedAt: time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600)),
		Data: map[string]any{
			"approval_id": "apr_123",
			"reference":   "REF-7K3M9Q2X-4F8A",
			"tool":        "stripe.refund",
			"status":      "pending",
			"level":       1,
		},
	}
}

func TestDeliverExactRequest(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	recv := notifytest.NewWebhookReceiver(t, secret)
	now := time.Now()

	att := notify.Deliver(context.Background(), testClient(t), recv.URL(), [][]byte{[]byte(secret)}, sampleEvent(), "dlv_1", now)
	require.True(t, att.OK(), att.Error)
	require.Equal(t, http.StatusNoContent, att.StatusCode)
	require.Positive(t, att.Latency)

	got := recv.Deliveries()
	require.Len(t, got, 1)
	d := got[0]
	require.Equal(t, "dlv_1", d.ID)
	require.Equal(t, notify.EventApprovalCreated, d.Event)
	require.Equal(t, "application/json", d.Header.Get("Content-Type"))
	require.Equal(t, "oakallow-webhooks/1", d.Header.Get("User-Agent"))
	// created_at is normalized to UTC; data is passed through unchanged.
	require.JSONEq(t, `{
		"id": "evt_01JABCDEF",
		"type": "approval.created",
		"created_at": "2026-03-04T04:06:07Z",
		"data": {"approval_id":"apr_123","reference":"REF-7K3M9Q2X-4F8A","tool":"stripe.refund","status":"pending","level":1}
	}`, string(d.Body))
	// Our own verifier agrees with the receiver's independent one.
	require.NoError(t, notify.VerifySignature(d.Signature, d.Body, []byte(secret), now, 0))
}

func TestDeliverNilDataIsEmptyObject(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	recv := notifytest.NewWebhookReceiver(t, secret)
	ev := sampleEvent()
	ev.Type = notify.EventToolAutoCreated
	ev.Data = nil
	att := notify.Deliver(context.Background(), testClient(t), recv.URL(), [][]byte{[]byte(secret)}, ev, "dlv_2", time.Now())
	require.True(t, att.OK(), att.Error)
	var body map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(recv.Deliveries()[0].Body, &body))
	require.JSONEq(t, `{}`, string(body["data"]))
}

func TestDeliverSignatureChecks(t *testing.T) {
	t.Parallel()
	oldSecret, newSecretValue, otherSecret := newSecret(t), newSecret(t), newSecret(t)
	tests := []struct {
		name          string
		receiverKey   string
		signWith      []string
		now           time.Time
		wantOK        bool
		wantRejection string
	}{
		{name: "current secret", receiverKey: newSecretValue, signWith: []string{newSecretValue}, now: time.Now(), wantOK: true},
		{name: "overlap: receiver still on the old secret", receiverKey: oldSecret, signWith: []string{newSecretValue, oldSecret}, now: time.Now(), wantOK: true},
		{name: "overlap: receiver already on the new secret", receiverKey: newSecretValue, signWith: []string{newSecretValue, oldSecret}, now: time.Now(), wantOK: true},
		{name: "receiver holds a different secret", receiverKey: otherSecret, signWith: []string{newSecretValue, oldSecret}, now: time.Now(), wantRejection: "no v1 matches"},
		{name: "timestamp 10 minutes old", receiverKey: newSecretValue, signWith: []string{newSecretValue}, now: time.Now().Add(-10 * time.Minute), wantRejection: "away from now"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			recv := notifytest.NewWebhookReceiver(t, tc.receiverKey)
			secrets := make([][]byte, len(tc.signWith))
			for i, s := range tc.signWith {
				secrets[i] = []byte(s)
			}
			att := notify.Deliver(context.Background(), testClient(t), recv.URL(), secrets, sampleEvent(), "dlv_sig", tc.now)
			if tc.wantOK {
				require.True(t, att.OK(), att.Error)
				require.Len(t, recv.Deliveries(), 1)
				return
			}
			require.False(t, att.OK())
			require.Equal(t, http.StatusUnauthorized, att.StatusCode)
			require.False(t, att.Retryable, "a signature the receiver refuses will not get better")
			require.Empty(t, recv.Deliveries())
			require.Len(t, recv.Rejections(), 1)
			require.Contains(t, recv.Rejections()[0], tc.wantRejection)
		})
	}
}

func TestDeliverReceiverDownThenUp(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	recv := notifytest.NewWebhookReceiver(t, secret)
	client := testClient(t)
	send := func() notify.Attempt {
		return notify.Deliver(context.Background(), client, recv.URL(), [][]byte{[]byte(secret)}, sampleEvent(), "dlv_retry", time.Now())
	}

	recv.SetMode(notifytest.Down503)
	att := send()
	require.False(t, att.OK())
	require.Equal(t, http.StatusServiceUnavailable, att.StatusCode)
	require.True(t, att.Retryable)

	recv.SetMode(notifytest.DownClosed)
	att = send()
	require.False(t, att.OK())
	require.Zero(t, att.StatusCode)
	require.True(t, att.Retryable, att.Error)
	require.NotContains(t, att.Error, recv.URL())

	recv.SetMode(notifytest.Up)
	att = send()
	require.True(t, att.OK(), att.Error)
	require.Equal(t, 3, recv.Attempts())
	got := recv.WaitForDeliveries(t, 1, time.Second)
	require.Len(t, got, 1, "delivered once")
	require.Equal(t, "dlv_retry", got[0].ID)
}

func TestDeliverRefusesBadInputWithoutSending(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	recv := notifytest.NewWebhookReceiver(t, secret)
	good := [][]byte{[]byte(secret)}
	tests := []struct {
		name       string
		mutate     func(*notify.Event)
		secrets    [][]byte
		deliveryID string
	}{
		{name: "unknown event type", mutate: func(e *notify.Event) { e.Type = "approval.deleted" }, secrets: good, deliveryID: "d"},
		{name: "no event id", mutate: func(e *notify.Event) { e.ID = "" }, secrets: good, deliveryID: "d"},
		{name: "zero created_at", mutate: func(e *notify.Event) { e.CreatedAt = time.Time{} }, secrets: good, deliveryID: "d"},
		{name: "unencodable data", mutate: func(e *notify.Event) { e.Data["bad"] = make(chan int) }, secrets: good, deliveryID: "d"},
		{name: "no secret", secrets: nil, deliveryID: "d"},
		{name: "short secret", secrets: [][]byte{[]byte("short")}, deliveryID: "d"},
		{name: "three secrets", secrets: [][]byte{good[0], good[0], good[0]}, deliveryID: "d"},
		{name: "empty delivery id", secrets: good, deliveryID: ""},
		{name: "delivery id with a newline", secrets: good, deliveryID: "d\r\nX-Injected: 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev := sampleEvent()
			if tc.mutate != nil {
				tc.mutate(&ev)
			}
			att := notify.Deliver(context.Background(), testClient(t), recv.URL(), tc.secrets, ev, tc.deliveryID, time.Now())
			require.False(t, att.OK())
			require.False(t, att.Retryable)
			require.Zero(t, att.StatusCode)
		})
	}
	require.Zero(t, recv.Attempts(), "nothing may be sent")
}

func TestSendWebhookChannelExactBytes(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	recv := notifytest.NewWebhookReceiver(t, secret)
	n := newNotifier(t)
	ch := notify.WebhookChannel{URL: recv.URL(), Secrets: [][]byte{[]byte(secret)}}

	att := n.SendWebhook(context.Background(), ch, createdAlert(), "dlv_c1", time.Now())
	require.True(t, att.OK(), att.Error)
	att = n.SendWebhook(context.Background(), ch, decidedAlert(notify.DecisionDenied), "dlv_c2", time.Now())
	require.True(t, att.OK(), att.Error)

	got := recv.Deliveries()
	require.Len(t, got, 2)
	wantReason := "Refund for [redacted:email] using key [redacted:secret], agent [redacted:secret], token [redacted:secret] and secret [redacted:secret]"
	require.JSONEq(t, `{
		"type": "approval.created",
		"tool_name": "stripe.refund",
		"reason": "`+wantReason+`",
		"reference": "REF-7K3M9Q2X-4F8A",
		"dashboard_url": "https://oakallow.example.com/approvals/REF-7K3M9Q2X-4F8A"
	}`, string(got[0].Body))
	require.JSONEq(t, `{
		"type": "approval.decided",
		"tool_name": "stripe.refund",
		"reason": "`+wantReason+`",
		"reference": "REF-7K3M9Q2X-4F8A",
		"dashboard_url": "https://oakallow.example.com/approvals/REF-7K3M9Q2X-4F8A",
		"decision": "denied",
		"decider": "Bob Reviewer",
		"note": "Checked with [redacted:email]; key [redacted:secret]"
	}`, string(got[1].Body))
	for _, d := range got {
		requireNoLeaks(t, d.Body)
		require.Equal(t, "oakallow-webhooks/1", d.Header.Get("User-Agent"))
	}
	require.Equal(t, notify.EventApprovalDecided, got[1].Event)
}

func TestSendWebhookChannelCutsReason(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	recv := notifytest.NewWebhookReceiver(t, secret)
	a := createdAlert()
	a.Reason = strings.Repeat("é", 1000)
	att := newNotifier(t).SendWebhook(context.Background(), notify.WebhookChannel{URL: recv.URL(), Secrets: [][]byte{[]byte(secret)}}, a, "dlv_cut", time.Now())
	require.True(t, att.OK(), att.Error)
	var body struct {
		Reason string `json:"reason"`
	}
	require.NoError(t, json.Unmarshal(recv.Deliveries()[0].Body, &body))
	require.Equal(t, strings.Repeat("é", 199)+"…", body.Reason)
}
