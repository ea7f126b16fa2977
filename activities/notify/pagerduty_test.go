package notify_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/activities/notify"
	"oakallow/activities/notify/notifytest"
)

func pdChannel(fake *notifytest.PagerDuty) notify.PagerDutyChannel {
	return notify.PagerDutyChannel{APIKey: fake.APIKey, FromEmail: fake.FromEmail, ServiceID: fake.ServiceID, BaseURL: fake.URL()}
}

const wantPDReason = "Refund for [redacted:email] using key [redacted:secret], agent [redacted:secret], token [redacted:secret] and secret [redacted:secret]"

func TestPagerDutyRequestedOpensIncident(t *testing.T) {
	t.Parallel()
	fake := notifytest.NewPagerDuty(t)
	att := newNotifier(t).SendPagerDuty(context.Background(), pdChannel(fake), createdAlert())
	require.True(t, att.OK(), "%s; rejections %v", att.Error, fake.Rejections())
	require.Equal(t, http.StatusCreated, att.StatusCode)

	reqs := fake.Requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	require.Equal(t, http.MethodPost, r.Method)
	require.Equal(t, "/incidents", r.Path)
	require.Equal(t, "Token token="+fake.APIKey, r.Header.Get("Authorization"))
	require.Equal(t, "application/vnd.pagerduty+json;version=2", r.Header.Get("Accept"))
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))
	require.Equal(t, fake.FromEmail, r.Header.Get("From"))
	// The exact body: default urgency means no urgency member at all.
	require.JSONEq(t, `{"incident":{
		"type":"incident",
		"title":"oakallow: Approval requested: stripe.refund (REF-7K3M9Q2X-4F8A)",
		"service":{"id":"`+fake.ServiceID+`","type":"service_reference"},
		"incident_key":"oakallow-REF-7K3M9Q2X-4F8A",
		"body":{"type":"incident_body","details":"Tool: stripe.refund\nReference: REF-7K3M9Q2X-4F8A\nReason: `+wantPDReason+`\nReview: https://oakallow.example.com/approvals/REF-7K3M9Q2X-4F8A\n"}
	}}`, string(r.Body))
	requireNoLeaks(t, r.Body)
	require.NotContains(t, string(r.Body), fake.APIKey)

	inc, ok := fake.Incident("oakallow-REF-7K3M9Q2X-4F8A")
	require.True(t, ok)
	require.Equal(t, "triggered", inc.Status)
	require.Empty(t, inc.Urgency)
}

func TestPagerDutyRequestedTwiceIsDeduplicated(t *testing.T) {
	t.Parallel()
	fake := notifytest.NewPagerDuty(t)
	n := newNotifier(t)
	require.True(t, n.SendPagerDuty(context.Background(), pdChannel(fake), createdAlert()).OK())

	// A retry after a lost answer: PagerDuty refuses the duplicate key, and
	// the sender recognizes that the incident exists.
	att := n.SendPagerDuty(context.Background(), pdChannel(fake), createdAlert())
	require.True(t, att.OK(), att.Error)
	require.Contains(t, att.Detail, "already open")
	require.Len(t, fake.Incidents(), 1)
}

func TestPagerDutyDecidedResolves(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		decision       string
		wantResolution string
	}{
		{name: "approved", decision: notify.DecisionApproved, wantResolution: "oakallow approval REF-7K3M9Q2X-4F8A approved by Bob Reviewer. Note: Checked with [redacted:email]; key [redacted:secret]"},
		{name: "denied", decision: notify.DecisionDenied, wantResolution: "oakallow approval REF-7K3M9Q2X-4F8A denied by Bob Reviewer. Note: Checked with [redacted:email]; key [redacted:secret]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := notifytest.NewPagerDuty(t)
			n := newNotifier(t)
			require.True(t, n.SendPagerDuty(context.Background(), pdChannel(fake), createdAlert()).OK())

			att := n.SendPagerDuty(context.Background(), pdChannel(fake), decidedAlert(tc.decision))
			require.True(t, att.OK(), "%s; rejections %v", att.Error, fake.Rejections())
			require.Equal(t, http.StatusOK, att.StatusCode)

			inc, ok := fake.Incident("oakallow-REF-7K3M9Q2X-4F8A")
			require.True(t, ok)
			require.Equal(t, "resolved", inc.Status)
			require.Equal(t, tc.wantResolution, inc.Resolution)

			reqs := fake.Requests()
			require.Len(t, reqs, 3) // create, find, resolve
			find, put := reqs[1], reqs[2]
			require.Equal(t, http.MethodGet, find.Method)
			q, err := url.ParseQuery(find.RawQuery)
			require.NoError(t, err)
			require.Equal(t, url.Values{
				"incident_key":  {"oakallow-REF-7K3M9Q2X-4F8A"},
				"service_ids[]": {fake.ServiceID},
				"statuses[]":    {"triggered", "acknowledged"},
				"date_range":    {"all"},
			}, q)
			require.Equal(t, http.MethodPut, put.Method)
			require.Equal(t, "/incidents/"+inc.ID, put.Path)
			require.Equal(t, fake.FromEmail, put.Header.Get("From"))
			require.JSONEq(t, `{"incident":{"type":"incident_reference","status":"resolved","resolution":"`+tc.wantResolution+`"}}`, string(put.Body))
			for _, r := range reqs {
				requireNoLeaks(t, r.Body)
			}
		})
	}
}

func TestPagerDutyDecidedWithNothingOpen(t *testing.T) {
	t.Parallel()
	fake := notifytest.NewPagerDuty(t)
	n := newNotifier(t)
	require.True(t, n.SendPagerDuty(context.Background(), pdChannel(fake), createdAlert()).OK())
	require.True(t, fake.Resolve("oakallow-REF-7K3M9Q2X-4F8A"), "resolved by a person in PagerDuty")

	att := n.SendPagerDuty(context.Background(), pdChannel(fake), decidedAlert(notify.DecisionApproved))
	require.True(t, att.OK(), att.Error)
	require.Equal(t, "no open incident to resolve", att.Detail)
	for _, r := range fake.Requests() {
		require.NotEqual(t, http.MethodPut, r.Method)
	}
}

func TestPagerDutyExpiredOpensHighUrgencyIncident(t *testing.T) {
	t.Parallel()
	fake := notifytest.NewPagerDuty(t)
	n := newNotifier(t)
	require.True(t, n.SendPagerDuty(context.Background(), pdChannel(fake), createdAlert()).OK())

	a := createdAlert()
	a.Type = notify.EventApprovalExpired
	att := n.SendPagerDuty(context.Background(), pdChannel(fake), a)
	require.True(t, att.OK(), "%s; rejections %v", att.Error, fake.Rejections())

	incs := fake.Incidents()
	require.Len(t, incs, 2, "a new incident, not the requested one")
	exp, ok := fake.Incident("oakallow-REF-7K3M9Q2X-4F8A-expired")
	require.True(t, ok)
	require.Equal(t, "high", exp.Urgency)
	require.Equal(t, "triggered", exp.Status)
	require.Equal(t, "oakallow: Approval expired without a decision: stripe.refund (REF-7K3M9Q2X-4F8A)", exp.Title)
	require.Contains(t, exp.Details, "The approval expired without a decision; the tool must not run.")
	requireNoLeaks(t, fake.Requests()[1].Body)
}

func TestPagerDutyEscalatedSendsNothing(t *testing.T) {
	t.Parallel()
	fake := notifytest.NewPagerDuty(t)
	a := createdAlert()
	a.Type = notify.EventApprovalEscalated
	att := newNotifier(t).SendPagerDuty(context.Background(), pdChannel(fake), a)
	require.True(t, att.OK())
	require.NotEmpty(t, att.Detail)
	require.Empty(t, fake.Requests())
}

func TestPagerDutyFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		mutate        func(*notify.PagerDutyChannel)
		failNext      int
		wantStatus    int
		wantRetryable bool
	}{
		{name: "wrong key", mutate: func(c *notify.PagerDutyChannel) { c.APIKey = "u+wrong" }, wantStatus: 401},
		{name: "unknown requester", mutate: func(c *notify.PagerDutyChannel) { c.FromEmail = "someone@example.com" }, wantStatus: 400},
		{name: "unknown service", mutate: func(c *notify.PagerDutyChannel) { c.ServiceID = "PNOPE" }, wantStatus: 404},
		{name: "rate limited", failNext: 429, wantStatus: 429, wantRetryable: true},
		{name: "server error", failNext: 503, wantStatus: 503, wantRetryable: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := notifytest.NewPagerDuty(t)
			ch := pdChannel(fake)
			if tc.mutate != nil {
				tc.mutate(&ch)
			}
			if tc.failNext != 0 {
				fake.FailNext(tc.failNext)
			}
			att := newNotifier(t).SendPagerDuty(context.Background(), ch, createdAlert())
			require.False(t, att.OK())
			require.Equal(t, tc.wantStatus, att.StatusCode)
			require.Equal(t, tc.wantRetryable, att.Retryable)
			require.NotContains(t, att.Error, fake.APIKey)
			require.NotContains(t, att.Error, ch.APIKey)
			require.Empty(t, fake.Incidents())
		})
	}
}

func TestPagerDutyChannelValidate(t *testing.T) {
	t.Parallel()
	good := notify.PagerDutyChannel{APIKey: "u+abcdef", FromEmail: "oncall@example.com", ServiceID: "PABC123"}
	tests := []struct {
		name    string
		mutate  func(*notify.PagerDutyChannel)
		wantErr bool
	}{
		{name: "good", mutate: func(*notify.PagerDutyChannel) {}},
		{name: "EU base URL", mutate: func(c *notify.PagerDutyChannel) { c.BaseURL = "https://api.eu.pagerduty.com" }},
		{name: "no key", mutate: func(c *notify.PagerDutyChannel) { c.APIKey = "" }, wantErr: true},
		{name: "key with newline", mutate: func(c *notify.PagerDutyChannel) { c.APIKey = "u+abc\r\nX-Evil: 1" }, wantErr: true},
		{name: "no from", mutate: func(c *notify.PagerDutyChannel) { c.FromEmail = "" }, wantErr: true},
		{name: "from not an address", mutate: func(c *notify.PagerDutyChannel) { c.FromEmail = "oncall" }, wantErr: true},
		{name: "no service", mutate: func(c *notify.PagerDutyChannel) { c.ServiceID = "" }, wantErr: true},
		{name: "service with slash", mutate: func(c *notify.PagerDutyChannel) { c.ServiceID = "P/../x" }, wantErr: true},
		{name: "base URL with credentials", mutate: func(c *notify.PagerDutyChannel) { c.BaseURL = "https://u:p@api.pagerduty.com" }, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := good
			tc.mutate(&c)
			err := c.Validate()
			if !tc.wantErr {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.NotContains(t, err.Error(), "u+abc")
		})
	}
}
