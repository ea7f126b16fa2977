package notifytest_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/activities/notify/notifytest"
)

// These tests hold the fakes to the rules they claim to enforce, using raw
// HTTP requests rather than package notify.

func send(t *testing.T, method, url string, header map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestPagerDutyFakeEnforcesTheAPI(t *testing.T) {
	t.Parallel()
	fake := notifytest.NewPagerDuty(t)
	good := func() map[string]string {
		return map[string]string{
			"Authorization": "Token token=" + fake.APIKey,
			"Accept":        "application/vnd.pagerduty+json;version=2",
			"Content-Type":  "application/json",
			"From":          fake.FromEmail,
		}
	}
	body := func(extra string) string {
		return `{"incident":{"type":"incident","title":"t","service":{"id":"` + fake.ServiceID + `","type":"service_reference"},"incident_key":"k"` + extra + `}}`
	}
	tests := []struct {
		name       string
		header     func() map[string]string
		body       string
		wantStatus int
	}{
		{name: "accepted", header: good, body: body(""), wantStatus: 201},
		{name: "bearer instead of token", header: func() map[string]string { h := good(); h["Authorization"] = "Bearer " + fake.APIKey; return h }, body: body(""), wantStatus: 401},
		{name: "no Accept", header: func() map[string]string { h := good(); delete(h, "Accept"); return h }, body: body(""), wantStatus: 406},
		{name: "no From", header: func() map[string]string { h := good(); delete(h, "From"); return h }, body: body(""), wantStatus: 400},
		{name: "form body", header: func() map[string]string {
			h := good()
			h["Content-Type"] = "application/x-www-form-urlencoded"
			return h
		}, body: body(""), wantStatus: 415},
		{name: "unknown member", header: good, body: body(`,"severity":"critical"`), wantStatus: 400},
		{name: "bad urgency", header: good, body: body(`,"urgency":"default"`), wantStatus: 400},
		{name: "details not a string", header: good, body: body(`,"body":{"type":"incident_body","details":{"a":1}}`), wantStatus: 400},
		{name: "wrong service", header: good, body: strings.Replace(body(""), fake.ServiceID, "POTHER", 1), wantStatus: 404},
	}
	// Sequential: the cases share one fake and the counts below depend on
	// all of them having run.
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, _ := send(t, http.MethodPost, fake.URL()+"/incidents", tc.header(), tc.body)
			require.Equal(t, tc.wantStatus, status)
		})
	}
	// The accepted one is open under its key; a second with the same key is
	// refused like PagerDuty refuses it.
	inc, ok := fake.Incident("k")
	require.True(t, ok)
	require.Equal(t, "triggered", inc.Status)
	status, msg := send(t, http.MethodPost, fake.URL()+"/incidents", good(), body(""))
	require.Equal(t, 400, status)
	require.Contains(t, msg, "matching dedup key")
	require.Len(t, fake.Incidents(), 1)
}

func TestSlackFakeRequiresJSON(t *testing.T) {
	t.Parallel()
	fake := notifytest.NewSlack(t)
	status, body := send(t, http.MethodPost, fake.WebhookURL(), map[string]string{"Content-Type": "text/plain"}, `{"text":"x","blocks":[{"type":"divider"}]}`)
	require.Equal(t, 400, status)
	require.Equal(t, "invalid_payload", body)
	status, body = send(t, http.MethodPost, fake.WebhookURL(), map[string]string{"Content-Type": "application/json; charset=utf-8"}, `{"text":"x","blocks":[{"type":"divider"}]}`)
	require.Equal(t, 200, status)
	require.Equal(t, "ok", body)
	require.Len(t, fake.Messages(), 1)
}

// sign re-derives a header for the receiver tests.
func sign(secret string, ts int64, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "%d.%s", ts, body)
	return "t=" + strconv.FormatInt(ts, 10) + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

func TestWebhookReceiverChecks(t *testing.T) {
	t.Parallel()
	const secret = "whsec_receiver-test-secret"
	body := `{"id":"evt_1","type":"approval.created","created_at":"2026-01-01T00:00:00Z","data":{}}`
	now := time.Now().Unix()
	good := func() map[string]string {
		return map[string]string{
			"Content-Type":         "application/json",
			"User-Agent":           "oakallow-webhooks/1",
			"X-Oakallow-Event":     "approval.created",
			"X-Oakallow-Delivery":  "dlv_1",
			"X-Oakallow-Signature": sign(secret, now, body),
		}
	}
	tests := []struct {
		name       string
		header     func() map[string]string
		body       string
		wantStatus int
	}{
		{name: "accepted", header: good, body: body, wantStatus: 204},
		{name: "tampered body", header: good, body: strings.Replace(body, "created", "expired", 1), wantStatus: 401},
		{name: "six minutes old", header: func() map[string]string {
			h := good()
			h["X-Oakallow-Signature"] = sign(secret, now-360, body)
			return h
		}, body: body, wantStatus: 401},
		{name: "event header differs from body", header: func() map[string]string { h := good(); h["X-Oakallow-Event"] = "approval.expired"; return h }, body: body, wantStatus: 400},
		{name: "no delivery id", header: func() map[string]string { h := good(); delete(h, "X-Oakallow-Delivery"); return h }, body: body, wantStatus: 400},
		{name: "other user agent", header: func() map[string]string { h := good(); h["User-Agent"] = "curl/8"; return h }, body: body, wantStatus: 400},
	}
	recv := notifytest.NewWebhookReceiver(t, secret)
	// Sequential: the cases share one receiver and the counts below depend
	// on all of them having run.
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, _ := send(t, http.MethodPost, recv.URL(), tc.header(), tc.body)
			require.Equal(t, tc.wantStatus, status)
		})
	}
	got := recv.Deliveries()
	require.Len(t, got, 1)
	require.True(t, bytes.Equal([]byte(body), got[0].Body))
	require.Len(t, recv.Rejections(), len(tests)-1)
	require.Equal(t, len(tests), recv.Attempts())
}

func TestWebhookReceiverDownModes(t *testing.T) {
	t.Parallel()
	recv := notifytest.NewWebhookReceiver(t, "whsec_x")
	recv.SetMode(notifytest.Down503)
	status, _ := send(t, http.MethodPost, recv.URL(), nil, "{}")
	require.Equal(t, 503, status)

	recv.SetMode(notifytest.DownClosed)
	req, err := http.NewRequest(http.MethodPost, recv.URL(), strings.NewReader("{}"))
	require.NoError(t, err)
	_, err = http.DefaultClient.Do(req)
	require.Error(t, err, "the connection is closed without an answer")
	require.Equal(t, 2, recv.Attempts())
	require.Empty(t, recv.Deliveries())
}

func TestWebhookReceiverScriptedAnswers(t *testing.T) {
	t.Parallel()
	const secret = "whsec_scripted-test-secret"
	body := `{"id":"evt_1","type":"approval.created","created_at":"2026-01-01T00:00:00Z","data":{}}`
	header := func(id string) map[string]string {
		return map[string]string{
			"Content-Type": "application/json", "User-Agent": "oakallow-webhooks/1",
			"X-Oakallow-Event": "approval.created", "X-Oakallow-Delivery": id,
			"X-Oakallow-Signature": sign(secret, time.Now().Unix(), body),
		}
	}
	tests := []struct {
		name       string
		mode       notifytest.Mode
		failNext   int
		wantStatus []int
	}{
		{name: "fail next answers 503 that many times, then as the mode says", mode: notifytest.Up, failNext: 2, wantStatus: []int{503, 503, 204}},
		{name: "reject 400 refuses every request", mode: notifytest.Reject400, wantStatus: []int{400, 400}},
		{name: "fail next overrides a refusing mode", mode: notifytest.Reject400, failNext: 1, wantStatus: []int{503, 400}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			recv := notifytest.NewWebhookReceiver(t, secret)
			recv.SetMode(tc.mode)
			recv.FailNext(tc.failNext)
			var got, wantIDs []string
			var statuses []int
			for i := range tc.wantStatus {
				id := fmt.Sprintf("whd_%d", i)
				status, _ := send(t, http.MethodPost, recv.URL(), header(id), body)
				statuses = append(statuses, status)
				wantIDs = append(wantIDs, id)
			}
			got = recv.AttemptIDs()
			require.Equal(t, tc.wantStatus, statuses)
			require.Equal(t, wantIDs, got, "every request's delivery id, accepted or not")
		})
	}
}

func TestWebhookReceiverHeldUntilReleased(t *testing.T) {
	t.Parallel()
	recv := notifytest.NewWebhookReceiver(t, "whsec_x")
	recv.SetMode(notifytest.Held)
	answered := make(chan int, 1)
	go func() {
		req, err := http.NewRequest(http.MethodPost, recv.URL(), strings.NewReader("{}"))
		if err != nil {
			answered <- -1
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- -1
			return
		}
		_ = resp.Body.Close()
		answered <- resp.StatusCode
	}()
	require.Eventually(t, func() bool { return recv.Attempts() == 1 }, 30*time.Second, 5*time.Millisecond)
	select {
	case s := <-answered:
		t.Fatalf("a held request was answered (%d)", s)
	case <-time.After(100 * time.Millisecond):
	}
	recv.SetMode(notifytest.Down503)
	require.Equal(t, 503, <-answered, "released with the answer of the new mode")
}
