package api

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/activities/notify/notifytest"
)

type channelList struct {
	Items      []Channel `json:"items"`
	NextCursor string    `json:"next_cursor"`
}

// testChannelSecrets creates one channel of each kind and checks that no
// answer, audit event or stored column ever shows a credential in clear, and
// that each channel's test action reaches its (fake) service.
func testChannelSecrets(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	mk, sk := e.boot.ManagementKey, e.boot.StandardKey
	slack := notifytest.NewSlack(t)
	pd := notifytest.NewPagerDuty(t)

	hookPath := strings.TrimPrefix(slack.WebhookURL(), "http://")
	hookPath = hookPath[strings.Index(hookPath, "/"):]
	sl := expect[ChannelWithSecret](e, http.StatusCreated, http.MethodPost, "/v1/channels", mk,
		map[string]any{"kind": "slack", "name": "approvals", "scope": "level_1", "webhook_url": slack.WebhookURL()})
	u, err := url.Parse(slack.WebhookURL())
	require.NoError(t, err)
	require.Equal(t, u.Host+"/…", sl.WebhookURLMasked)
	require.Empty(t, sl.Secret)
	require.Equal(t, "level_1", sl.Scope)

	pg := expect[ChannelWithSecret](e, http.StatusCreated, http.MethodPost, "/v1/channels", mk,
		map[string]any{"kind": "pagerduty", "name": "oncall", "api_key": pd.APIKey, "from_email": pd.FromEmail,
			"service_id": pd.ServiceID, "base_url": pd.URL()})
	require.True(t, pg.APIKeySet)
	require.Equal(t, pd.ServiceID, pg.ServiceID)

	// A webhook channel's secret is generated and shown once; point the
	// channel at a receiver holding it.
	wh := expect[ChannelWithSecret](e, http.StatusCreated, http.MethodPost, "/v1/channels", mk,
		map[string]any{"kind": "webhook", "name": "siem", "url": "https://example.com/hook"})
	require.True(t, strings.HasPrefix(wh.Secret, "whsec_"), wh.Secret)
	receiver := notifytest.NewWebhookReceiver(t, wh.Secret)
	expect[ChannelWithSecret](e, http.StatusOK, http.MethodPatch, "/v1/channels/"+wh.ID, mk,
		map[string]any{"url": receiver.URL(), "secret": wh.Secret})

	secrets := []string{hookPath, slack.WebhookURL(), pd.APIKey, wh.Secret}
	noSecret := func(what string, raw []byte) {
		t.Helper()
		for _, sec := range secrets {
			require.False(t, bytes.Contains(raw, []byte(sec)), "%s shows a channel credential: %s", what, raw)
		}
	}
	for _, key := range []string{mk, sk} {
		status, raw := e.do(http.MethodGet, "/v1/channels", key, nil)
		require.Equal(t, http.StatusOK, status, string(raw))
		noSecret("list", raw)
		for _, id := range []string{sl.ID, pg.ID, wh.ID} {
			status, raw := e.do(http.MethodGet, "/v1/channels/"+id, key, nil)
			require.Equal(t, http.StatusOK, status, string(raw))
			noSecret("get", raw)
			require.NotContains(t, string(raw), `"secret"`)
		}
	}
	// Not in the audit log, and not in clear in the table either.
	rows, err := s.st.Pool.Query(context.Background(), `SELECT details::text FROM audit_events WHERE org_id = $1`, e.boot.OrgID)
	require.NoError(t, err)
	for rows.Next() {
		var d string
		require.NoError(t, rows.Scan(&d))
		noSecret("audit", []byte(d))
	}
	require.NoError(t, rows.Err())
	rows, err = s.st.Pool.Query(context.Background(), `SELECT config::text, secret_ciphertext FROM notification_channels WHERE org_id = $1`, e.boot.OrgID)
	require.NoError(t, err)
	for rows.Next() {
		var cfg string
		var sealedSecret []byte
		require.NoError(t, rows.Scan(&cfg, &sealedSecret))
		require.NotEmpty(t, sealedSecret)
		noSecret("stored config", []byte(cfg))
		noSecret("stored ciphertext", sealedSecret)
	}
	require.NoError(t, rows.Err())

	// The test action sends the sample alert through each real client.
	for _, ch := range []string{sl.ID, pg.ID, wh.ID} {
		res := expect[ChannelTestResult](e, http.StatusOK, http.MethodPost, "/v1/channels/"+ch+"/test", mk, nil)
		require.True(t, res.OK, "%s: %+v", ch, res)
		require.Less(t, res.StatusCode, 300)
	}
	require.Len(t, slack.Messages(), 1)
	require.Contains(t, string(slack.Messages()[0]), "oakallow.test_notification")
	require.Len(t, pd.Incidents(), 1)
	require.Len(t, receiver.Deliveries(), 1, "the receiver verified the signature with the secret shown once")
	require.Equal(t, 3, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'channel.tested'`))

	// A failing service is reported, not turned into a server error.
	slack.FailNext(http.StatusForbidden, "invalid_token")
	res := expect[ChannelTestResult](e, http.StatusOK, http.MethodPost, "/v1/channels/"+sl.ID+"/test", mk, nil)
	require.False(t, res.OK)
	require.Equal(t, http.StatusForbidden, res.StatusCode)
	require.NotEmpty(t, res.Error)
	noSecret("test result", []byte(res.Error))
}

func testChannelLifecycle(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	mk, sk := e.boot.ManagementKey, e.boot.StandardKey
	cases := []struct {
		name   string
		key    string
		body   map[string]any
		status int
		code   string
		where  string
	}{
		{"standard key", sk, map[string]any{"kind": "webhook", "name": "n", "url": "https://example.com/h"}, http.StatusForbidden, CodeWrongKeyTier, ""},
		{"slack without url", mk, map[string]any{"kind": "slack", "name": "n"}, http.StatusUnprocessableEntity, CodeValidationFailed, "body.webhook_url"},
		{"plain http to a public host", mk, map[string]any{"kind": "webhook", "name": "n", "url": "http://example.com/h"}, http.StatusUnprocessableEntity, CodeValidationFailed, "body.url"},
		{"credentials in the url", mk, map[string]any{"kind": "webhook", "name": "n", "url": "https://u:p@example.com/h"}, http.StatusUnprocessableEntity, CodeValidationFailed, "body.url"},
		{"field of another kind", mk, map[string]any{"kind": "slack", "name": "n", "webhook_url": "https://hooks.slack.com/services/x", "api_key": "k"}, http.StatusUnprocessableEntity, CodeValidationFailed, "body.api_key"},
		{"pagerduty without email", mk, map[string]any{"kind": "pagerduty", "name": "n", "api_key": "k", "service_id": "PX"}, http.StatusUnprocessableEntity, CodeValidationFailed, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := e.expectProblem(tc.status, tc.code, http.MethodPost, "/v1/channels", tc.key, tc.body)
			if tc.where != "" {
				require.Contains(t, string(raw), `"location":"`+tc.where+`"`)
			}
		})
	}

	wh := expect[ChannelWithSecret](e, http.StatusCreated, http.MethodPost, "/v1/channels", mk,
		map[string]any{"kind": "webhook", "name": "siem", "url": "https://example.com/hook", "enabled": false})
	require.False(t, wh.Enabled)
	require.Equal(t, "all", wh.Scope)
	renamed := expect[ChannelWithSecret](e, http.StatusOK, http.MethodPatch, "/v1/channels/"+wh.ID, mk,
		map[string]any{"name": "siem-2", "enabled": true, "scope": "level_2"})
	require.Equal(t, "siem-2", renamed.Name)
	require.True(t, renamed.Enabled)
	require.Empty(t, renamed.Secret, "the secret is only shown when it is generated")
	rotated := expect[ChannelWithSecret](e, http.StatusOK, http.MethodPatch, "/v1/channels/"+wh.ID, mk,
		map[string]any{"regenerate_secret": true})
	require.True(t, strings.HasPrefix(rotated.Secret, "whsec_"))
	require.NotEqual(t, wh.Secret, rotated.Secret)
	e.expectProblem(http.StatusUnprocessableEntity, CodeValidationFailed, http.MethodPatch, "/v1/channels/"+wh.ID, mk,
		map[string]any{"webhook_url": "https://hooks.slack.com/services/x"})
	e.expectProblem(http.StatusForbidden, CodeWrongKeyTier, http.MethodPatch, "/v1/channels/"+wh.ID, sk, map[string]any{"name": "x"})

	list := expect[channelList](e, http.StatusOK, http.MethodGet, "/v1/channels", sk, nil)
	require.Len(t, list.Items, 1)
	other := s.org(t)
	other.expectProblem(http.StatusNotFound, CodeNotFound, http.MethodGet, "/v1/channels/"+wh.ID, other.boot.StandardKey, nil)
	other.expectProblem(http.StatusNotFound, CodeNotFound, http.MethodPost, "/v1/channels/"+wh.ID+"/test", other.boot.ManagementKey, nil)

	status, raw := e.do(http.MethodDelete, "/v1/channels/"+wh.ID, mk, nil)
	require.Equal(t, http.StatusNoContent, status, string(raw))
	e.expectProblem(http.StatusNotFound, CodeNotFound, http.MethodGet, "/v1/channels/"+wh.ID, mk, nil)
	for _, kind := range []string{"channel.created", "channel.updated", "channel.deleted"} {
		require.NotZero(t, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = $2 AND subject = $3`, kind, wh.ID), kind)
	}
}

// recordingServer is a server run by whoever holds a stolen management key:
// it answers 200 to everything and keeps every request it receives.
type recordingServer struct {
	url  string
	mu   sync.Mutex
	seen [][]byte
}

func newRecordingServer(t *testing.T) *recordingServer {
	r := &recordingServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var dump bytes.Buffer
		_ = req.Header.Write(&dump)
		_, _ = io.Copy(&dump, io.LimitReader(req.Body, 1<<20))
		dump.WriteString(req.URL.String())
		r.mu.Lock()
		r.seen = append(r.seen, dump.Bytes())
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"incident":{"id":"PX1","incident_key":"k","status":"triggered","html_url":"https://x"}}`))
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// received reports whether any request the server got holds secret.
func (r *recordingServer) received(secret string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.seen {
		if bytes.Contains(b, []byte(secret)) {
			return true
		}
	}
	return false
}

func (r *recordingServer) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// testChannelDestinationsNeedTheSecret plays a thief holding only a
// management key: moving a channel's destination to their own server
// without resending its credential is refused, so pressing Test afterwards
// never hands them the stored credential (or alerts signed with it).
func testChannelDestinationsNeedTheSecret(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	mk := e.boot.ManagementKey
	pd := notifytest.NewPagerDuty(t)
	thief := newRecordingServer(t)

	pg := expect[ChannelWithSecret](e, http.StatusCreated, http.MethodPost, "/v1/channels", mk,
		map[string]any{"kind": "pagerduty", "name": "oncall", "api_key": pd.APIKey, "from_email": pd.FromEmail,
			"service_id": pd.ServiceID, "base_url": pd.URL()})
	raw := e.expectProblem(http.StatusUnprocessableEntity, CodeValidationFailed, http.MethodPatch, "/v1/channels/"+pg.ID, mk,
		map[string]any{"base_url": thief.url})
	require.Contains(t, string(raw), `"location":"body.api_key"`)
	e.expectProblem(http.StatusUnprocessableEntity, CodeValidationFailed, http.MethodPatch, "/v1/channels/"+pg.ID, mk,
		map[string]any{"base_url": thief.url, "service_id": "PSTOLEN"})
	e.do(http.MethodPost, "/v1/channels/"+pg.ID+"/test", mk, nil)
	require.False(t, thief.received(pd.APIKey), "the stored PagerDuty key was sent to the new base_url")
	require.Zero(t, thief.requests())
	got := expect[Channel](e, http.StatusOK, http.MethodGet, "/v1/channels/"+pg.ID, mk, nil)
	require.Equal(t, pd.URL(), got.BaseURL, "a refused update changed nothing")
	// Unchanged base_url (or other fields) need no key; a new base_url with
	// a key of the caller's own is theirs to send anywhere.
	expect[ChannelWithSecret](e, http.StatusOK, http.MethodPatch, "/v1/channels/"+pg.ID, mk,
		map[string]any{"base_url": pd.URL(), "service_id": pd.ServiceID})
	expect[ChannelWithSecret](e, http.StatusOK, http.MethodPatch, "/v1/channels/"+pg.ID, mk,
		map[string]any{"base_url": thief.url, "api_key": "thiefs-own-key"})
	e.do(http.MethodPost, "/v1/channels/"+pg.ID+"/test", mk, nil)
	require.True(t, thief.received("thiefs-own-key"))
	require.False(t, thief.received(pd.APIKey))

	// A webhook channel's alerts are signed with its secret: moving them
	// needs the current secret, or a new one.
	thief = newRecordingServer(t)
	wh := expect[ChannelWithSecret](e, http.StatusCreated, http.MethodPost, "/v1/channels", mk,
		map[string]any{"kind": "webhook", "name": "siem", "url": "https://example.com/hook"})
	raw = e.expectProblem(http.StatusUnprocessableEntity, CodeValidationFailed, http.MethodPatch, "/v1/channels/"+wh.ID, mk,
		map[string]any{"url": thief.url})
	require.Contains(t, string(raw), `"location":"body.secret"`)
	e.expectProblem(http.StatusUnprocessableEntity, CodeValidationFailed, http.MethodPatch, "/v1/channels/"+wh.ID, mk,
		map[string]any{"url": thief.url, "secret": "whsec_guess"})
	e.do(http.MethodPost, "/v1/channels/"+wh.ID+"/test", mk, nil)
	require.Zero(t, thief.requests(), "a webhook alert signed with the stored secret reached the new url")
	moved := expect[ChannelWithSecret](e, http.StatusOK, http.MethodPatch, "/v1/channels/"+wh.ID, mk,
		map[string]any{"url": thief.url, "regenerate_secret": true})
	require.True(t, strings.HasPrefix(moved.Secret, "whsec_"))
	require.NotEqual(t, wh.Secret, moved.Secret)
	back := expect[ChannelWithSecret](e, http.StatusOK, http.MethodPatch, "/v1/channels/"+wh.ID, mk,
		map[string]any{"url": "https://example.com/hook", "secret": moved.Secret})
	require.Equal(t, "https://example.com/hook", back.URL)
	require.Empty(t, back.Secret)

	// A Slack channel's destination is its credential: a new one is given
	// whole, and the old URL is never sent to the new one.
	slack := notifytest.NewSlack(t)
	sl := expect[ChannelWithSecret](e, http.StatusCreated, http.MethodPost, "/v1/channels", mk,
		map[string]any{"kind": "slack", "name": "approvals", "webhook_url": slack.WebhookURL()})
	expect[ChannelWithSecret](e, http.StatusOK, http.MethodPatch, "/v1/channels/"+sl.ID, mk,
		map[string]any{"webhook_url": thief.url + "/services/x"})
	e.do(http.MethodPost, "/v1/channels/"+sl.ID+"/test", mk, nil)
	require.False(t, thief.received(slack.WebhookURL()))
}
