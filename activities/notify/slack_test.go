package notify_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"oakallow/activities/notify"
	"oakallow/activities/notify/notifytest"
)

// card is the part of a posted Block Kit message the tests read.
type card struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type string `json:"type"`
		Text *struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"text"`
		Fields []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"fields"`
		Elements []struct {
			Type string `json:"type"`
			URL  string `json:"url"`
			Text any    `json:"text"`
		} `json:"elements"`
	} `json:"blocks"`
}

func (c card) header() string {
	for _, b := range c.Blocks {
		if b.Type == "header" {
			return b.Text.Text
		}
	}
	return ""
}

// texts returns every text in sections (block text and fields).
func (c card) texts() []string {
	var out []string
	for _, b := range c.Blocks {
		if b.Type != "section" {
			continue
		}
		if b.Text != nil {
			out = append(out, b.Text.Text)
		}
		for _, f := range b.Fields {
			out = append(out, f.Text)
		}
	}
	return out
}

func (c card) buttonURL() string {
	for _, b := range c.Blocks {
		if b.Type == "actions" {
			for _, e := range b.Elements {
				if e.Type == "button" {
					return e.URL
				}
			}
		}
	}
	return ""
}

func TestSendSlackCardPerEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		alert      notify.Alert
		wantHeader string
		wantTexts  []string
	}{
		{
			name:       "requested",
			alert:      createdAlert(),
			wantHeader: "Approval requested: stripe.refund",
			wantTexts:  []string{"*Tool*\nstripe.refund", "*Reference*\nREF-7K3M9Q2X-4F8A", "*Reason*\nRefund for [redacted:email] using key [redacted:secret], agent [redacted:secret], token [redacted:secret] and secret [redacted:secret]"},
		},
		{
			name:       "escalated",
			alert:      func() notify.Alert { a := createdAlert(); a.Type = notify.EventApprovalEscalated; return a }(),
			wantHeader: "Approval escalated to second level: stripe.refund",
			wantTexts:  []string{"*Tool*\nstripe.refund", "*Reference*\nREF-7K3M9Q2X-4F8A"},
		},
		{
			name:       "approved",
			alert:      decidedAlert(notify.DecisionApproved),
			wantHeader: "Approval granted: stripe.refund",
			wantTexts:  []string{"*Decision*\nApproved", "*Decided by*\nBob Reviewer", "*Note*\nChecked with [redacted:email]; key [redacted:secret]"},
		},
		{
			name:       "denied",
			alert:      decidedAlert(notify.DecisionDenied),
			wantHeader: "Approval denied: stripe.refund",
			wantTexts:  []string{"*Decision*\nDenied", "*Decided by*\nBob Reviewer"},
		},
		{
			name:       "expired",
			alert:      func() notify.Alert { a := createdAlert(); a.Type = notify.EventApprovalExpired; return a }(),
			wantHeader: "Approval expired without a decision: stripe.refund",
			wantTexts:  []string{"*Tool*\nstripe.refund", "*Reference*\nREF-7K3M9Q2X-4F8A"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := notifytest.NewSlack(t)
			att := newNotifier(t).SendSlack(context.Background(), notify.SlackChannel{WebhookURL: fake.WebhookURL()}, tc.alert)
			require.True(t, att.OK(), "%s; fake rejections: %v", att.Error, fake.Rejections())
			require.Equal(t, http.StatusOK, att.StatusCode)

			msgs := fake.Messages()
			require.Len(t, msgs, 1)
			raw := msgs[0]
			requireNoLeaks(t, raw)

			var c card
			require.NoError(t, json.Unmarshal(raw, &c))
			require.Equal(t, tc.wantHeader, c.header())
			require.Equal(t, tc.wantHeader+" (REF-7K3M9Q2X-4F8A)", c.Text)
			require.Subset(t, c.texts(), tc.wantTexts)
			require.Equal(t, tc.alert.DashboardURL, c.buttonURL())
			if tc.alert.Type != notify.EventApprovalDecided {
				for _, txt := range c.texts() {
					require.NotContains(t, txt, "Decision")
					require.NotContains(t, txt, "Note")
				}
			}
		})
	}
}

func TestSlackMessageEscapesMrkdwn(t *testing.T) {
	t.Parallel()
	fake := notifytest.NewSlack(t)
	a := createdAlert()
	a.ToolName = "tool<@U123>"
	a.Reason = "please <!channel> click <https://evil.example|here> & approve"
	att := newNotifier(t).SendSlack(context.Background(), notify.SlackChannel{WebhookURL: fake.WebhookURL()}, a)
	require.True(t, att.OK(), att.Error)
	raw := string(fake.Messages()[0])
	// encoding/json escapes < > & as \u003c \u003e \u0026; decode to check
	// what Slack will read.
	var c card
	require.NoError(t, json.Unmarshal([]byte(raw), &c))
	all := strings.Join(append(c.texts(), c.Text), "\n")
	require.NotContains(t, all, "<!channel>")
	require.NotContains(t, all, "<https://evil.example|here>")
	require.NotContains(t, all, "<@U123>")
	require.Contains(t, all, "&lt;!channel&gt;")
	require.Contains(t, all, "&amp; approve")
	require.Contains(t, all, "tool&lt;@U123&gt;")
}

func TestSlackCardWithinBlockKitLimits(t *testing.T) {
	t.Parallel()
	fake := notifytest.NewSlack(t)
	a := decidedAlert(notify.DecisionApproved)
	a.ToolName = strings.Repeat("t", 500)
	a.Reason = strings.Repeat("<&>", 2000)
	a.Note = strings.Repeat("n", 5000)
	a.Decider = strings.Repeat("d", 500)
	att := newNotifier(t).SendSlack(context.Background(), notify.SlackChannel{WebhookURL: fake.WebhookURL()}, a)
	require.True(t, att.OK(), "%s; fake rejections: %v", att.Error, fake.Rejections())

	var c card
	require.NoError(t, json.Unmarshal(fake.Messages()[0], &c))
	require.LessOrEqual(t, utf8.RuneCountInString(c.header()), 150)
	for _, txt := range c.texts() {
		label, value, _ := strings.Cut(txt, "\n")
		if label == "*Reason*" {
			// 200 characters before escaping: 66 "<&>" triples, one "<", and the ellipsis.
			require.Equal(t, strings.Repeat("&lt;&amp;&gt;", 66)+"&lt;…", value)
		}
	}
}

func TestSlackMessageWithoutDashboardLinkHasNoButton(t *testing.T) {
	t.Parallel()
	fake := notifytest.NewSlack(t)
	a := createdAlert()
	a.DashboardURL = ""
	att := newNotifier(t).SendSlack(context.Background(), notify.SlackChannel{WebhookURL: fake.WebhookURL()}, a)
	require.True(t, att.OK(), att.Error)
	var c card
	require.NoError(t, json.Unmarshal(fake.Messages()[0], &c))
	require.Empty(t, c.buttonURL())
}

func TestSendSlackFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		status        int
		body          string
		wrongURL      bool
		wantStatus    int
		wantRetryable bool
		wantInError   string
	}{
		{name: "server error", status: 500, body: "internal_error", wantStatus: 500, wantRetryable: true, wantInError: "internal_error"},
		{name: "rate limited", status: 429, body: "rate_limited", wantStatus: 429, wantRetryable: true},
		{name: "channel archived", status: 410, body: "channel_is_archived", wantStatus: 410, wantInError: "channel_is_archived"},
		{name: "revoked webhook", status: 403, body: "invalid_token", wantStatus: 403, wantInError: "invalid_token"},
		{name: "unknown webhook", wrongURL: true, wantStatus: 404, wantInError: "no_service"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := notifytest.NewSlack(t)
			hook := fake.WebhookURL()
			if tc.wrongURL {
				hook += "x"
			} else {
				fake.FailNext(tc.status, tc.body)
			}
			att := newNotifier(t).SendSlack(context.Background(), notify.SlackChannel{WebhookURL: hook}, createdAlert())
			require.False(t, att.OK())
			require.Equal(t, tc.wantStatus, att.StatusCode)
			require.Equal(t, tc.wantRetryable, att.Retryable)
			if tc.status == http.StatusTooManyRequests {
				require.Equal(t, notifytest.SlackRetryAfterSeconds*time.Second, att.RetryAfter, "Slack's Retry-After is honoured")
			} else {
				require.Zero(t, att.RetryAfter)
			}
			require.Contains(t, att.Error, tc.wantInError)
			u, err := url.Parse(hook)
			require.NoError(t, err)
			require.NotContains(t, att.Error, u.Path, "the webhook URL is a credential")
			require.Empty(t, fake.Messages())
		})
	}
}

func TestSendSlackInvalidInputSendsNothing(t *testing.T) {
	t.Parallel()
	fake := notifytest.NewSlack(t)
	n := newNotifier(t)
	bad := createdAlert()
	bad.Type = "approval.unknown"
	att := n.SendSlack(context.Background(), notify.SlackChannel{WebhookURL: fake.WebhookURL()}, bad)
	require.False(t, att.OK())
	require.False(t, att.Retryable)
	att = n.SendSlack(context.Background(), notify.SlackChannel{WebhookURL: "not a url"}, createdAlert())
	require.False(t, att.OK())
	require.False(t, att.Retryable)
	require.Empty(t, fake.Messages())
	require.Empty(t, fake.Rejections())
}

func TestScopeMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		scope string
		level int
		want  bool
	}{
		{notify.ScopeAll, 1, true},
		{notify.ScopeAll, 2, true},
		{notify.ScopeAll, 3, false},
		{notify.ScopeLevel1, 1, true},
		{notify.ScopeLevel1, 2, false},
		{notify.ScopeLevel2, 1, false},
		{notify.ScopeLevel2, 2, true},
		{"", 1, false},
		{"level_3", 1, false},
		{"ALL", 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.scope+"/"+string(rune('0'+tc.level)), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, notify.ScopeMatches(tc.scope, tc.level))
		})
	}
}

func slackApp(fake *notifytest.Slack) notify.SlackApp {
	return notify.SlackApp{
		ClientID:      fake.ClientID,
		ClientSecret:  fake.ClientSecret,
		RedirectURL:   "https://oakallow.example.com/v1/channels/slack/callback",
		APIURL:        fake.APIURL(),
		AllowInsecure: true,
	}
}

func TestSlackAuthCodeURL(t *testing.T) {
	t.Parallel()
	app := notify.SlackApp{ClientID: "123.456", ClientSecret: "s", RedirectURL: "https://oakallow.example.com/cb"}
	state, err := notify.NewOAuthState()
	require.NoError(t, err)
	raw, err := app.AuthCodeURL(state)
	require.NoError(t, err)
	u, err := url.Parse(raw)
	require.NoError(t, err)
	require.Equal(t, "https", u.Scheme)
	require.Equal(t, "slack.com", u.Host)
	require.Equal(t, "/oauth/v2/authorize", u.Path)
	require.Equal(t, url.Values{
		"client_id":    {"123.456"},
		"scope":        {"incoming-webhook"},
		"redirect_uri": {"https://oakallow.example.com/cb"},
		"state":        {state},
	}, u.Query())

	_, err = app.AuthCodeURL("short")
	require.Error(t, err)
	_, err = notify.SlackApp{ClientID: "x", RedirectURL: "https://a.example/cb"}.AuthCodeURL(state)
	require.Error(t, err, "no client secret")
}

func TestSlackInstallExchange(t *testing.T) {
	t.Parallel()
	fake := notifytest.NewSlack(t)
	app := slackApp(fake)
	client := testClient(t)

	code := fake.IssueCode(app.RedirectURL)
	inst, err := app.Exchange(context.Background(), client, code)
	require.NoError(t, err)
	require.Equal(t, fake.WebhookURL(), inst.WebhookURL)
	require.Equal(t, fake.Channel, inst.Channel)
	require.Equal(t, fake.ChannelID, inst.ChannelID)
	require.Equal(t, "T0FAKE", inst.TeamID)

	// The installed webhook works end to end.
	att := newNotifier(t).SendSlack(context.Background(), notify.SlackChannel{WebhookURL: inst.WebhookURL}, createdAlert())
	require.True(t, att.OK(), att.Error)

	// A code works once.
	_, err = app.Exchange(context.Background(), client, code)
	require.ErrorIs(t, err, notify.ErrSlackInstallRejected)
	require.ErrorContains(t, err, "invalid_code")
	require.Equal(t, 1, fake.Exchanges())
}

func TestSlackInstallExchangeRejections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*notify.SlackApp)
		code    func(*notifytest.Slack, notify.SlackApp) string
		wantErr string
	}{
		{
			name:    "wrong client secret",
			mutate:  func(a *notify.SlackApp) { a.ClientSecret = "wrong" },
			code:    func(f *notifytest.Slack, a notify.SlackApp) string { return f.IssueCode(a.RedirectURL) },
			wantErr: "bad_client_secret",
		},
		{
			name:    "wrong client id",
			mutate:  func(a *notify.SlackApp) { a.ClientID = "999.999" },
			code:    func(f *notifytest.Slack, a notify.SlackApp) string { return f.IssueCode(a.RedirectURL) },
			wantErr: "invalid_client_id",
		},
		{
			name:   "redirect differs from the one the code was issued for",
			mutate: func(*notify.SlackApp) {},
			code: func(f *notifytest.Slack, a notify.SlackApp) string {
				return f.IssueCode("https://elsewhere.example/cb")
			},
			wantErr: "bad_redirect_uri",
		},
		{
			name:    "made-up code",
			mutate:  func(*notify.SlackApp) {},
			code:    func(*notifytest.Slack, notify.SlackApp) string { return "1111.guess" },
			wantErr: "invalid_code",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := notifytest.NewSlack(t)
			app := slackApp(fake)
			code := tc.code(fake, app)
			tc.mutate(&app)
			_, err := app.Exchange(context.Background(), testClient(t), code)
			require.ErrorIs(t, err, notify.ErrSlackInstallRejected)
			require.ErrorContains(t, err, tc.wantErr)
			require.NotContains(t, err.Error(), fake.ClientSecret)
			require.Zero(t, fake.Exchanges())
		})
	}
}

func TestSlackFakeRejectsInvalidBlockKit(t *testing.T) {
	t.Parallel()
	// The fake must refuse what Slack refuses, or the card tests above prove
	// nothing.
	tests := []struct {
		name string
		body string
	}{
		{name: "no text fallback", body: `{"blocks":[{"type":"divider"}]}`},
		{name: "no blocks", body: `{"text":"x"}`},
		{name: "empty blocks", body: `{"text":"x","blocks":[]}`},
		{name: "unknown block type", body: `{"text":"x","blocks":[{"type":"banner"}]}`},
		{name: "header in mrkdwn", body: `{"text":"x","blocks":[{"type":"header","text":{"type":"mrkdwn","text":"h"}}]}`},
		{name: "header over 150", body: `{"text":"x","blocks":[{"type":"header","text":{"type":"plain_text","text":"` + strings.Repeat("h", 151) + `"}}]}`},
		{name: "section over 3000", body: `{"text":"x","blocks":[{"type":"section","text":{"type":"mrkdwn","text":"` + strings.Repeat("s", 3001) + `"}}]}`},
		{name: "section without text or fields", body: `{"text":"x","blocks":[{"type":"section"}]}`},
		{name: "eleven fields", body: `{"text":"x","blocks":[{"type":"section","fields":[` + strings.TrimSuffix(strings.Repeat(`{"type":"mrkdwn","text":"f"},`, 11), ",") + `]}]}`},
		{name: "button text mrkdwn", body: `{"text":"x","blocks":[{"type":"actions","elements":[{"type":"button","text":{"type":"mrkdwn","text":"b"},"url":"https://x.example"}]}]}`},
		{name: "51 blocks", body: `{"text":"x","blocks":[` + strings.TrimSuffix(strings.Repeat(`{"type":"divider"},`, 51), ",") + `]}`},
		{name: "emoji on mrkdwn", body: `{"text":"x","blocks":[{"type":"section","text":{"type":"mrkdwn","text":"t","emoji":true}}]}`},
		{name: "not json", body: `text=x`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Error(t, notifytest.ValidateWebhookMessage([]byte(tc.body)))
		})
	}
	require.NoError(t, notifytest.ValidateWebhookMessage([]byte(`{"text":"x","blocks":[{"type":"divider"}]}`)))
}
