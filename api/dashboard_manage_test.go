package api

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The dashboard's admin pages over the real server: who may open them, and
// that each form does what the API operation it calls does.

// form POSTs a dashboard form with the session, as the browser sends it
// (same-origin), and returns status, headers and body.
func (e *testEnv) form(path, session string, v url.Values) (int, http.Header, string) {
	e.t.Helper()
	hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"}
	if session != "" {
		hdr = with(with(hdr, "Cookie", sessionCookiePlain+"="+session), "Sec-Fetch-Site", "same-origin")
	}
	status, h, raw := e.sendVia(noRedirects, http.MethodPost, path, "", hdr, []byte(v.Encode()))
	return status, h, string(raw)
}

// adminPaths are the admin pages' addresses.
var adminPaths = []string{"/rules", "/rules/explain", "/rules/explain?tool=x", "/tools", "/tenants", "/resources", "/keys", "/agents", "/activity",
	"/quickstart", "/builder"}

func TestDashboardAdminPagesByRole(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	owner := e.signIn(e.person(RoleOwner), true)
	admin := e.signIn(e.person(RoleAdmin), true)
	reviewer := e.signIn(e.person(RoleReviewer), true)
	enrolling := e.signIn(e.person(RoleOwner), false)
	for _, path := range adminPaths {
		t.Run(path, func(t *testing.T) {
			for _, s := range []issuedSession{owner, admin} {
				status, h, body := e.page(path, s.Token)
				require.Equal(t, http.StatusOK, status, body)
				require.Contains(t, h.Get("Content-Security-Policy"), "script-src 'self'")
				require.NotContains(t, body, "<script>", "no inline script")
				require.NotContains(t, body, " style=", "no inline style")
				require.Contains(t, body, `<a href="/rules"`, "owners and admins get the admin navigation")
			}
			status, _, body := e.page(path, reviewer.Token)
			require.Equal(t, http.StatusForbidden, status, "reviewers only see approvals: %s", body)
			require.NotContains(t, body, `<a href="/rules"`)

			status, h, _ := e.page(path, "")
			require.Equal(t, http.StatusSeeOther, status)
			require.True(t, strings.HasPrefix(h.Get("Location"), "/sign-in?next="), h.Get("Location"))
			status, h, _ = e.page(path, enrolling.Token)
			require.Equal(t, http.StatusSeeOther, status)
			require.Equal(t, "/enroll?next="+url.QueryEscape(strings.Split(path, "?")[0]), h.Get("Location"), "enrollment goes on to the page asked for")
		})
	}
	status, _, body := e.page("/approvals", reviewer.Token)
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, body, `<a href="/rules"`, "a reviewer's navigation offers approvals only")
	for _, path := range []string{"/builder/seed.sh", "/builder/seed.py"} {
		status, _, body = e.page(path, reviewer.Token)
		require.Equal(t, http.StatusForbidden, status, "a reviewer gets no copy of the catalog: %s", body)
		status, _, _ = e.page(path, admin.Token)
		require.Equal(t, http.StatusOK, status)
	}

	// A reviewer's forms change nothing.
	status, _, _ = e.form("/tenants", reviewer.Token, url.Values{"name": {"acme"}})
	require.Equal(t, http.StatusForbidden, status)
	status, _, _ = e.form("/keys", reviewer.Token, url.Values{"name": {"k"}, "tier": {"standard"}})
	require.Equal(t, http.StatusForbidden, status)
	status, raw := e.do(http.MethodGet, "/v1/tenants", e.boot.ManagementKey, nil)
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, string(raw), "acme")
	// And another site's form is refused before it reaches a page.
	hdr := with(cookie(owner.Token), "Sec-Fetch-Site", "cross-site")
	status, _, _ = e.sendVia(noRedirects, http.MethodPost, "/tenants", "", with(hdr, "Content-Type", "application/x-www-form-urlencoded"), []byte("name=evil"))
	require.Equal(t, http.StatusForbidden, status)
}

func TestDashboardRulesAndExplain(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	owner := e.signIn(e.person(RoleOwner), true).Token

	status, h, body := e.form("/tenants", owner, url.Values{"name": {"acme"}})
	require.Equal(t, http.StatusSeeOther, status, body)
	require.Equal(t, "/tenants?done=tenant-created", h.Get("Location"))
	_, _, body = e.page("/tenants?done=tenant-created", owner)
	require.Contains(t, body, "Tenant created.")
	require.Contains(t, body, "<b>acme</b>")
	status, _, _ = e.form("/resources", owner, url.Values{"name": {"billing-db"}, "description": {"the ledger"}})
	require.Equal(t, http.StatusSeeOther, status)
	status, _, body = e.form("/tools", owner, url.Values{"name": {"send_email"}, "risk_level": {"high"}, "destructive": {"on"},
		"open_world": {"on"}, "annotations_acknowledged": {"on"}, "approved": {"on"}})
	require.Equal(t, http.StatusSeeOther, status, body)
	tool := expect[Tool](e, http.StatusOK, http.MethodGet, "/v1/tools/send_email", e.boot.ManagementKey, nil)
	require.Equal(t, "high", tool.RiskLevel)
	require.True(t, tool.Approved)
	require.True(t, tool.Destructive && tool.OpenWorld && !tool.ReadOnly && !tool.Idempotent)

	// A rule the API refuses shows its reason, with the form filled again.
	status, _, body = e.form("/rules", owner, url.Values{"tenant": {"nobody"}, "tool": {"send_email"}, "permission": {"disabled"}})
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
	require.Contains(t, body, `role="alert"`)
	require.Contains(t, body, `no tenant &#34;nobody&#34; in this org`)
	require.NotContains(t, body, `in this org: no tenant`, "the reason is said once")
	require.Contains(t, body, `value="nobody"`)

	status, _, body = e.form("/rules", owner, url.Values{"tenant": {"acme"}, "tool": {"send_email"}, "method": {"Send"},
		"permission": {"disabled"}, "description": {"no mail for acme"}})
	require.Equal(t, http.StatusSeeOther, status, body)
	rules := expect[listOutputBody[Rule]](e, http.StatusOK, http.MethodGet, "/v1/rules", e.boot.ManagementKey, nil)
	require.Len(t, rules.Items, 1)
	rule := rules.Items[0]
	require.Equal(t, "send", *rule.Method)
	_, _, body = e.page("/rules", owner)
	require.Contains(t, body, rule.ID)
	require.Contains(t, body, "tenant_tool_method")

	// Explain shows the deciding level, the same one a check reports.
	check := expect[CheckResult](e, http.StatusOK, http.MethodPost, "/v1/permissions/check", e.boot.StandardKey,
		map[string]any{"tool": "send_email", "tenant": "ACME", "method": "send"})
	require.Equal(t, rule.ID, check.RuleID)
	status, _, body = e.page("/rules/explain?"+url.Values{"tool": {"send_email"}, "tenant": {"ACME"}, "method": {"send"}}.Encode(), owner)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "Verdict: <span class=\"perm perm-disabled\">disabled</span>")
	decides := regexp.MustCompile(`(?s)<li class="decides">(.*?)</li>`).FindAllStringSubmatch(body, -1)
	require.Len(t, decides, 1, "exactly one level decides")
	require.Contains(t, decides[0][1], "tenant 3")
	require.Contains(t, decides[0][1], rule.ID)
	require.Contains(t, body, "Skipped: the check names no resource")
	require.Equal(t, 20, strings.Count(body, "<li class="), "every level of the chain is shown")
	// Without the tenant the org levels and fallbacks decide: pre-approved.
	_, _, body = e.page("/rules/explain?tool=send_email&method=send", owner)
	require.Contains(t, body, "allowed, by the tool is pre-approved")
	require.Contains(t, body, "Skipped: the check names no tenant")
	// A name checks refuse is refused here too.
	status, _, body = e.page("/rules/explain?tool=send_email&method=a%E2%80%8Bb", owner)
	require.Equal(t, http.StatusUnprocessableEntity, status)
	require.Contains(t, body, `role="alert"`)

	status, _, _ = e.form("/rules/"+rule.ID+"/delete", owner, nil)
	require.Equal(t, http.StatusSeeOther, status)
	rules = expect[listOutputBody[Rule]](e, http.StatusOK, http.MethodGet, "/v1/rules", e.boot.ManagementKey, nil)
	require.Empty(t, rules.Items)
	status, _, body = e.form("/rules/rule_nope/delete", owner, nil)
	require.Equal(t, http.StatusNotFound, status, body)
}

func TestDashboardToolTriage(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	owner := e.signIn(e.person(RoleOwner), true).Token
	mk := e.boot.ManagementKey
	for _, name := range []string{"drop_table", "list_files", "send_sms"} {
		e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{"name": name, "status": "draft",
			"annotations_acknowledged": true, "default_permission": "requires_approval"})
		// As the MCP connector leaves a discovered tool: unacknowledged.
		e.want(http.StatusOK, http.MethodPatch, "/v1/tools/"+name, mk, map[string]any{"annotations_acknowledged": false})
	}
	status, _, body := e.page("/tools", owner)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "Recently Discovered")
	require.Equal(t, 3*2, strings.Count(body, `<span class="mark">needs annotations</span>`), "in the triage list and the catalog")

	// Approve: the annotations as reviewed, acknowledged, activated.
	status, h, body := e.form("/tools/list_files/triage", owner, url.Values{"action": {"approve"}, "read_only": {"on"}, "idempotent": {"on"}})
	require.Equal(t, http.StatusSeeOther, status, body)
	require.Equal(t, "/tools?done=tool-approved", h.Get("Location"))
	tool := expect[Tool](e, http.StatusOK, http.MethodGet, "/v1/tools/list_files", mk, nil)
	require.Equal(t, "active", tool.Status)
	require.True(t, tool.AnnotationsAcknowledged && tool.ReadOnly && tool.Idempotent && !tool.Destructive && !tool.OpenWorld)

	// Annotate only: acknowledged, still a draft.
	status, _, _ = e.form("/tools/send_sms/triage", owner, url.Values{"action": {"annotate"}, "open_world": {"on"}})
	require.Equal(t, http.StatusSeeOther, status)
	tool = expect[Tool](e, http.StatusOK, http.MethodGet, "/v1/tools/send_sms", mk, nil)
	require.Equal(t, "draft", tool.Status)
	require.True(t, tool.AnnotationsAcknowledged && tool.OpenWorld && !tool.Destructive)

	// Disable: every check answers disabled.
	status, _, _ = e.form("/tools/drop_table/triage", owner, url.Values{"action": {"disable"}})
	require.Equal(t, http.StatusSeeOther, status)
	check := expect[CheckResult](e, http.StatusOK, http.MethodPost, "/v1/permissions/check", e.boot.StandardKey, map[string]any{"tool": "drop_table"})
	require.Equal(t, "tool_disabled", check.LevelName)

	_, _, body = e.page("/tools", owner)
	require.Equal(t, 2, strings.Count(body, `<span class="mark">needs annotations</span>`), "only drop_table still needs annotations")
	status, _, body = e.form("/tools/list_files/triage", owner, url.Values{"action": {"explode"}})
	require.Equal(t, http.StatusBadRequest, status, body)

	// Registration without the acknowledgement is refused, as over the API.
	status, _, body = e.form("/tools", owner, url.Values{"name": {"rm_rf"}, "risk_level": {"critical"}})
	require.Equal(t, http.StatusUnprocessableEntity, status)
	require.Contains(t, body, "annotations_acknowledged")
}

func TestDashboardKeysShownOnce(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	owner := e.signIn(e.person(RoleOwner), true).Token
	e.seedTool("search", "", nil)

	status, h, body := e.form("/keys", owner, url.Values{"name": {"checkout agent"}, "tier": {"standard"}})
	require.Equal(t, http.StatusCreated, status, body)
	require.Equal(t, "no-store", h.Get("Cache-Control"))
	key := regexp.MustCompile(`oak_live_[0-9a-f]{32}`).FindString(body)
	require.NotEmpty(t, key, "the new key is on the answer: %s", body)
	require.Contains(t, body, "shown only this once")
	e.want(http.StatusOK, http.MethodPost, "/v1/permissions/check", key, map[string]any{"tool": "search"})

	status, _, body = e.page("/keys", owner)
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, body, key, "never shown again")
	require.Contains(t, body, "checkout agent")
	id := regexp.MustCompile(`action="/keys/(key_[A-Za-z0-9]+)/revoke" ?><button type="submit" class="link" aria-label="Revoke key checkout agent"`).FindStringSubmatch(body)
	require.NotNil(t, id, body)
	status, _, _ = e.form("/keys/"+id[1]+"/revoke", owner, nil)
	require.Equal(t, http.StatusSeeOther, status)
	status, _ = e.do(http.MethodPost, "/v1/permissions/check", key, map[string]any{"tool": "search"})
	require.Equal(t, http.StatusUnauthorized, status, "the revoked key stopped working")

	status, _, body = e.form("/keys", owner, url.Values{"name": {"x"}, "tier": {"root"}})
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
	require.Regexp(t, `role="alert">validation failed: tier [^<]*management`, body, "the refusal names the field")
}

func TestDashboardActivityPages(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	owner := e.signIn(e.person(RoleOwner), true).Token
	e.seedTool("search", "", nil)
	for range 55 {
		e.want(http.StatusOK, http.MethodPost, "/v1/permissions/check", e.boot.StandardKey, map[string]any{"tool": "search", "reason": "mail ada@example.com"})
	}
	status, _, body := e.page("/activity?kind=permission.check", owner)
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, listPageSizeForTest, strings.Count(body, "<b>permission.check</b>"), "one bounded page")
	require.NotContains(t, body, "ada@example.com", "reasons are shown scrubbed")
	next := regexp.MustCompile(`<a href="(/activity\?[^"]+)" rel="next">`).FindStringSubmatch(body)
	require.NotNil(t, next, body)
	status, _, body = e.page(strings.ReplaceAll(next[1], "&amp;", "&"), owner)
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, 5, strings.Count(body, "<b>permission.check</b>"), "the older page, with the filter kept")
	require.NotContains(t, body, `rel="next"`)
}

// listPageSizeForTest is the dashboard's page size (api/web.listPageSize).
const listPageSizeForTest = 50
