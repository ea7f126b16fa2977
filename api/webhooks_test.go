package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/activities/notify/notifytest"
	"oakallow/store"
)

func testRotateSecret(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	mk := e.boot.ManagementKey
	e.expectProblem(http.StatusForbidden, CodeWrongKeyTier, http.MethodPost, "/v1/webhook/rotate-secret", e.boot.StandardKey, nil)

	first := expect[WebhookSecret](e, http.StatusOK, http.MethodPost, "/v1/webhook/rotate-secret", mk, nil)
	require.True(t, strings.HasPrefix(first.Secret, "whsec_"), first.Secret)
	require.Nil(t, first.PreviousValidUntil, "there was no previous secret")
	require.False(t, first.WebhookURLConfigured)
	second := expect[WebhookSecret](e, http.StatusOK, http.MethodPost, "/v1/webhook/rotate-secret", mk, nil)
	require.NotEqual(t, first.Secret, second.Secret)
	require.NotNil(t, second.PreviousValidUntil)
	require.Equal(t, second.RotatedAt.Add(24*time.Hour), *second.PreviousValidUntil)

	// Both are stored sealed for the org's row, never in clear.
	var cur, prev []byte
	var row string
	require.NoError(t, s.st.Pool.QueryRow(t.Context(), `SELECT webhook_secret_sealed, webhook_secret_previous_sealed, o::text
		FROM orgs o WHERE id = $1`, e.boot.OrgID).Scan(&cur, &prev, &row))
	for _, secret := range []string{first.Secret, second.Secret} {
		require.NotContains(t, row, strings.TrimPrefix(secret, "whsec_"))
	}
	for sealedSecret, want := range map[string]string{string(cur): second.Secret, string(prev): first.Secret} {
		got, err := s.box.Open([]byte(sealedSecret), store.OrgWebhookSecretAAD(e.boot.OrgID))
		require.NoError(t, err)
		require.Equal(t, want, string(got))
	}
	// Settings never show the secret, and the audit log never records one.
	status, raw := e.do(http.MethodGet, "/v1/settings", mk, nil)
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, string(raw), second.Secret)
	require.Equal(t, 2, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'webhook.secret_rotated'`))
	require.Zero(t, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND details::text LIKE '%whsec_%'`))

	// A retried rotation with its Idempotency-Key gets the same secret back,
	// and does not rotate again.
	hdr := map[string]string{"Idempotency-Key": "rotate-3"}
	st1, _, r1 := e.send(http.MethodPost, "/v1/webhook/rotate-secret", mk, hdr, nil)
	st2, h2, r2 := e.send(http.MethodPost, "/v1/webhook/rotate-secret", mk, hdr, nil)
	require.Equal(t, http.StatusOK, st1, string(r1))
	require.Equal(t, http.StatusOK, st2, string(r2))
	require.JSONEq(t, string(r1), string(r2))
	require.Equal(t, "true", h2.Get("Idempotent-Replayed"))
	require.Equal(t, 3, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'webhook.secret_rotated'`))
	// The stored answer holds the secret, so it is sealed at rest.
	require.Equal(t, 1, e.count(`SELECT count(*) FROM idempotency_keys k JOIN api_keys a ON a.id = k.principal_id
		WHERE a.org_id = $1 AND k.key = 'rotate-3'`))
	require.Zero(t, e.count(`SELECT count(*) FROM idempotency_keys k JOIN api_keys a ON a.id = k.principal_id
		WHERE a.org_id = $1 AND position($2::bytea in k.response) > 0`, []byte("whsec_")))
}

type deliveryList struct {
	Items      []WebhookDelivery `json:"items"`
	NextCursor string            `json:"next_cursor"`
}

func testDeliveries(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	mk := e.boot.ManagementKey
	secret := expect[WebhookSecret](e, http.StatusOK, http.MethodPost, "/v1/webhook/rotate-secret", mk, nil)
	receiver := notifytest.NewWebhookReceiver(t, secret.Secret)
	expect[map[string]any](e, http.StatusOK, http.MethodPatch, "/v1/settings", mk, map[string]any{"webhook_url": receiver.URL()})
	e.seedTool("send_email", "", nil)
	created := e.requestApproval(map[string]any{"tool": "send_email", "reasoning": "r"})

	got := receiver.WaitForDeliveries(t, 1, 10*time.Second)
	require.Equal(t, "approval.created", got[0].Event)
	require.Contains(t, string(got[0].Body), created.Reference)

	var d WebhookDelivery
	require.Eventually(t, func() bool {
		status, raw := e.do(http.MethodGet, "/v1/webhook-deliveries?status=delivered", mk, nil)
		if status != http.StatusOK {
			return false
		}
		var l deliveryList
		if decodeErr := json.Unmarshal(raw, &l); decodeErr != nil || len(l.Items) != 1 {
			return false
		}
		d = l.Items[0]
		return true
	}, hangDeadline, 50*time.Millisecond, "the delivery never showed as delivered")
	require.Equal(t, got[0].ID, d.ID, "the X-Oakallow-Delivery header is the delivery id")
	require.Equal(t, "org_webhook", d.TargetKind)
	require.Equal(t, receiver.URL(), d.URL)
	require.Empty(t, d.History, "lists carry no attempts")

	one := expect[WebhookDelivery](e, http.StatusOK, http.MethodGet, "/v1/webhook-deliveries/"+d.ID, e.boot.StandardKey, nil)
	require.Len(t, one.History, 1)
	require.True(t, one.History[0].StatusCode >= 200 && one.History[0].StatusCode < 300, "%+v", one.History[0])
	require.Empty(t, one.History[0].Error)
	require.NotNil(t, one.History[0].FinishedAt, "the attempt's outcome is recorded")
	require.False(t, one.History[0].FinishedAt.Before(one.History[0].At))
	require.Contains(t, string(one.Payload), created.Reference)

	e.expectProblem(http.StatusForbidden, CodeWrongKeyTier, http.MethodPost, "/v1/webhook-deliveries/"+d.ID+"/redeliver", e.boot.StandardKey, nil)
	re := expect[WebhookDelivery](e, http.StatusAccepted, http.MethodPost, "/v1/webhook-deliveries/"+d.ID+"/redeliver", mk, nil)
	require.Equal(t, d.ID, re.ID)
	again := receiver.WaitForDeliveries(t, 2, 10*time.Second)
	require.Equal(t, d.ID, again[1].ID, "a redelivery keeps the delivery id, so receivers can deduplicate")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'webhook.redelivered' AND subject = $2`, d.ID))

	other := s.org(t)
	other.expectProblem(http.StatusNotFound, CodeNotFound, http.MethodGet, "/v1/webhook-deliveries/"+d.ID, other.boot.ManagementKey, nil)
	other.expectProblem(http.StatusNotFound, CodeNotFound, http.MethodPost, "/v1/webhook-deliveries/"+d.ID+"/redeliver", other.boot.ManagementKey, nil)
}
