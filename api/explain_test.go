package api

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExplainIsTheCheck: the explanation's verdict is what a check with the
// same fields answers, level and rule included, as rules change; it shows
// what every level held; people who may not read rules cannot explain.
func TestExplainIsTheCheck(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk, sk := e.boot.ManagementKey, e.boot.StandardKey
	e.want(http.StatusCreated, http.MethodPost, "/v1/tenants", mk, map[string]any{"name": "acme"})
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{"name": "send_email", "annotations_acknowledged": true, "approved": true})
	explain := func(q url.Values) Explanation {
		return decodeAs[Explanation](t, e.want(http.StatusOK, http.MethodGet, "/v1/permissions/explain?"+q.Encode(), mk, nil))
	}
	check := func(body map[string]any) CheckResult {
		return decodeAs[CheckResult](t, e.want(http.StatusOK, http.MethodPost, "/v1/permissions/check", sk, body))
	}
	same := func(q url.Values) Explanation {
		t.Helper()
		ex := explain(q)
		body := map[string]any{}
		for k := range q {
			body[k] = q.Get(k)
		}
		c := check(body)
		require.Equal(t, c.Permission, ex.Permission)
		require.Equal(t, c.Level, ex.Level)
		require.Equal(t, c.LevelName, ex.LevelName)
		require.Equal(t, c.Scope, ex.Scope)
		require.Equal(t, c.RuleID, ex.RuleID)
		require.Equal(t, c.Reason, ex.Reason)
		return ex
	}

	q := url.Values{"tool": {"send_email"}, "tenant": {" ACME "}, "method": {"Send"}}
	ex := same(q)
	require.Equal(t, "tool_approved", ex.LevelName)
	require.Equal(t, "acme", ex.Tenant, "normalised as checks normalise")
	require.Len(t, ex.Steps, 20)
	require.Equal(t, "skipped_no_resource", ex.Steps[0].Outcome)
	require.Equal(t, ExplainStep{Level: 3, LevelName: "tenant_tool_method", Scope: "tenant", Outcome: "no_rule",
		Key: &ExplainKey{Tenant: "acme", Tool: "send_email", Method: "send"}}, ex.Steps[2])

	rule := decodeAs[Rule](t, e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk,
		map[string]any{"tenant": "acme", "method": "send", "permission": "disabled"}))
	ex = same(q)
	require.Equal(t, rule.ID, ex.RuleID)
	require.Equal(t, ExplainStep{Level: 7, LevelName: "tenant_method", Scope: "tenant", Outcome: "decides",
		Key: &ExplainKey{Tenant: "acme", Method: "send"}, Permission: "disabled", RuleID: rule.ID}, ex.Steps[6])
	require.Equal(t, "not_reached", ex.Steps[7].Outcome)

	e.want(http.StatusOK, http.MethodPatch, "/v1/tools/send_email", mk, map[string]any{"enabled": false})
	ex = same(q)
	require.Equal(t, []ExplainStep{{LevelName: "tool_disabled", Scope: "gate", Outcome: "decides", Permission: "disabled"}}, ex.Steps)
	same(url.Values{"tool": {"nope"}})

	status, raw := e.do(http.MethodGet, "/v1/permissions/explain?tool=x&method=a%E2%80%8Bb", mk, nil)
	require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))
	requireProblem(t, raw, CodeValidationFailed, "query.method")
	status, _ = e.do(http.MethodGet, "/v1/permissions/explain", mk, nil)
	require.Equal(t, http.StatusUnprocessableEntity, status, "the tool is required")

	reviewer := e.signIn(e.person(RoleReviewer), true)
	status, _ = e.asSession(http.MethodGet, "/v1/permissions/explain?tool=send_email", cookie(reviewer.Token), nil)
	require.Equal(t, http.StatusForbidden, status)
	admin := e.signIn(e.person(RoleAdmin), true)
	status, raw = e.asSession(http.MethodGet, "/v1/permissions/explain?tool=send_email", cookie(admin.Token), nil)
	require.Equal(t, http.StatusOK, status, string(raw))
}
