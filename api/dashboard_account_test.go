package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// testDashboardSettings: settings saved through the page as the API stores
// them, webhook secrets shown once, and a channel's Test reaching its
// receiver (the delivery backend runs in the approval suite's server).
func testDashboardSettings(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	owner := e.signIn(e.person(RoleOwner), true).Token
	var got atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Header.Get("X-Oakallow-Signature") != "" {
			got.Add(1)
		}
	}))
	t.Cleanup(hook.Close)
	save := url.Values{"name": {"checkout"}, "approval_timeout_seconds": {"900"}, "autodiscovery_hourly_cap": {"10"},
		"autodiscovery_total_cap": {"100"}, "scrub_parameters": {"on"}}

	// The first webhook URL makes a signing secret, shown on this answer only.
	withHook := url.Values{"webhook_url": {hook.URL + "/hook"}}
	for k, v := range save {
		withHook[k] = v
	}
	status, h, body := e.form("/settings", owner, withHook)
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, "no-store", h.Get("Cache-Control"))
	secret := regexp.MustCompile(`whsec_[A-Za-z0-9_-]+`).FindString(body)
	require.NotEmpty(t, secret, body)
	st := expect[OrgSettings](e, http.StatusOK, http.MethodGet, "/v1/settings", e.boot.ManagementKey, nil)
	require.Equal(t, int32(900), st.ApprovalTimeoutSeconds)
	require.Equal(t, "checkout", st.Name)
	require.Equal(t, hook.URL+"/hook", st.WebhookURL)
	require.Equal(t, int32(10), st.AutodiscoveryHourlyCap)
	require.True(t, st.ScrubParameters)
	require.False(t, st.ManagementKeysMayDecide)
	status, _, body = e.page("/settings", owner)
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, body, secret, "never shown again")
	require.Contains(t, body, `<option value="900" selected>15 minutes</option>`)

	// Saving again keeps the secret and says so.
	status, h, _ = e.form("/settings", owner, withHook)
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/settings?done=settings-saved", h.Get("Location"))
	// Rotation shows the new one once.
	status, _, body = e.form("/settings/webhook/rotate", owner, nil)
	require.Equal(t, http.StatusOK, status, body)
	rotated := regexp.MustCompile(`whsec_[A-Za-z0-9_-]+`).FindString(body)
	require.NotEmpty(t, rotated)
	require.NotEqual(t, secret, rotated)

	// Out-of-range and non-numeric input is refused with the reason.
	bad := url.Values{}
	for k, v := range save {
		bad[k] = v
	}
	bad.Set("autodiscovery_hourly_cap", "-1")
	status, _, body = e.form("/settings", owner, bad)
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
	require.Contains(t, body, "autodiscovery_hourly_cap")
	bad.Set("autodiscovery_hourly_cap", "ten")
	status, _, body = e.form("/settings", owner, bad)
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
	require.Contains(t, body, "autodiscovery hourly cap must be a whole number")

	// A webhook channel: its secret shown once; Test reaches the receiver.
	status, _, body = e.form("/settings/channels", owner, url.Values{"kind": {"webhook"}, "name": {"ops hook"}, "scope": {"all"},
		"webhook_url": {hook.URL + "/channel"}})
	require.Equal(t, http.StatusCreated, status, body)
	require.Regexp(t, `whsec_[A-Za-z0-9_-]+`, body)
	ch := regexp.MustCompile(`action="/settings/channels/(chn_[A-Za-z0-9]+)/test"`).FindStringSubmatch(body)
	require.NotNil(t, ch, body)
	before := got.Load()
	status, _, body = e.form("/settings/channels/"+ch[1]+"/test", owner, nil)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "Test alert delivered.")
	require.Greater(t, got.Load(), before, "the receiver got a signed sample")
	// A Slack channel without its URL is refused by the API's rule.
	status, _, body = e.form("/settings/channels", owner, url.Values{"kind": {"slack"}, "name": {"s"}, "scope": {"all"}})
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
	status, _, _ = e.form("/settings/channels/"+ch[1]+"/delete", owner, nil)
	require.Equal(t, http.StatusSeeOther, status)
	_, _, body = e.page("/settings", owner)
	require.NotContains(t, body, "ops hook")
}

func TestDashboardTeam(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	owner := e.signIn(e.boot.UserID, true).Token
	rita := e.person(RoleReviewer)
	admin := e.signIn(e.person(RoleAdmin), true).Token

	status, _, body := e.page("/team", owner)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, rita+"@example.com")
	status, _, _ = e.page("/team", e.signIn(rita, true).Token)
	require.Equal(t, http.StatusForbidden, status, "reviewers do not run the team")

	status, _, body = e.form("/team/invitations", admin, url.Values{"email": {"new@example.com"}, "role": {"reviewer"}})
	require.Equal(t, http.StatusSeeOther, status, body)
	_, _, body = e.page("/team", owner)
	require.Contains(t, body, "new@example.com · reviewer")
	inv := regexp.MustCompile(`action="/team/invitations/(inv_[A-Za-z0-9]+)/revoke"`).FindStringSubmatch(body)
	require.NotNil(t, inv)
	// Only owners invite owners: the API's rule, shown on the page.
	status, _, body = e.form("/team/invitations", admin, url.Values{"email": {"boss@example.com"}, "role": {"owner"}})
	require.Equal(t, http.StatusForbidden, status, body)
	status, _, _ = e.form("/team/invitations/"+inv[1]+"/revoke", owner, nil)
	require.Equal(t, http.StatusSeeOther, status)
	_, _, body = e.page("/team", owner)
	require.NotContains(t, body, "new@example.com")

	status, _, _ = e.form("/team/members/"+rita+"/role", owner, url.Values{"role": {"admin"}})
	require.Equal(t, http.StatusSeeOther, status)
	status, raw := e.asSession(http.MethodGet, "/v1/team/members", cookie(owner), nil)
	require.Equal(t, http.StatusOK, status)
	require.Regexp(t, `"user_id":"`+rita+`"[^}]*"role":"admin"`, string(raw))

	// Approver group 2: just Rita; then nobody (everyone).
	status, _, body = e.form("/team/groups/2", owner, url.Values{"user_id": {rita}})
	require.Equal(t, http.StatusSeeOther, status, body)
	g := expect[ApproverGroup](e, http.StatusOK, http.MethodGet, "/v1/team/approver-groups/2", e.boot.ManagementKey, nil)
	require.Equal(t, []string{rita}, g.UserIDs)
	_, _, body = e.page("/team", owner)
	require.Regexp(t, `name="user_id" value="`+rita+`" checked`, body)
	status, _, _ = e.form("/team/groups/2", owner, url.Values{})
	require.Equal(t, http.StatusSeeOther, status)
	g = expect[ApproverGroup](e, http.StatusOK, http.MethodGet, "/v1/team/approver-groups/2", e.boot.ManagementKey, nil)
	require.True(t, g.Everyone)

	status, _, _ = e.form("/team/members/"+rita+"/remove", owner, nil)
	require.Equal(t, http.StatusSeeOther, status)
	_, _, body = e.page("/team", owner)
	require.NotContains(t, body, rita+"@example.com")
}

func TestDashboardBilling(t *testing.T) {
	t.Parallel()
	e := newBillingEnv(t, stripeConfig(t))
	owner := e.signIn(e.boot.UserID, true).Token
	e.seedTool("send_email", "", ptr("allowed"))
	for range 3 {
		e.want(http.StatusOK, http.MethodPost, "/v1/permissions/check", e.boot.StandardKey, map[string]any{"tool": "send_email"})
	}
	status, _, body := e.page("/billing", owner)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "<b>$4.99</b>", "five dollars of free credit less three calls")
	require.Contains(t, body, "3 billable calls, $0.02")
	require.Regexp(t, `Free credit</dt><dd>\$4\.99, expires \d{4}-`, body)
	require.Equal(t, 30, strings.Count(body, `class="bar"`), "one bar per day")
	require.Contains(t, body, "at most 3 a day")
	require.Contains(t, body, `height="120" class="bar"><title>`, "today is the tallest bar")

	status, _, body = e.form("/billing/checkout", owner, url.Values{"pack": {"starter"}})
	require.Equal(t, http.StatusCreated, status, body)
	link := regexp.MustCompile(`<a class="button" href="(https?://[^"]+)">Continue to payment`).FindStringSubmatch(body)
	require.NotNil(t, link, "the checkout is a link, not a cross-site redirect from a form: %s", body)
	status, _, body = e.form("/billing/checkout", owner, url.Values{"pack": {"nope"}})
	require.Equal(t, formStatusOf(status), status, body)
	require.Contains(t, body, `role="alert"`)

	admin := e.signIn(e.person(RoleAdmin), true).Token
	status, _, _ = e.page("/billing", admin)
	require.Equal(t, http.StatusOK, status)
	status, _, _ = e.page("/billing", e.signIn(e.person(RoleReviewer), true).Token)
	require.Equal(t, http.StatusForbidden, status)
	status, _, _ = e.form("/billing/checkout", e.signIn(e.person(RoleReviewer), true).Token, url.Values{"pack": {"starter"}})
	require.Equal(t, http.StatusForbidden, status)
}

// formStatusOf requires a refused form's status to be a 4xx.
func formStatusOf(status int) int {
	if status >= 400 && status < 500 {
		return status
	}
	return -1
}
