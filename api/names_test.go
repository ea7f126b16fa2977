package api

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Rule matching used to be exact, so a deny rule on DELETE was sidestepped
// by "delete", "DELETE " or a zero-width space. Names are now normalised on
// write and on check, and invisible characters refused.
func TestNamesAreNormalisedOnWriteAndCheck(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk, sk := e.boot.ManagementKey, e.boot.StandardKey
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk,
		map[string]any{"name": "repo", "annotations_acknowledged": true, "default_permission": "allowed"})
	rule := decodeAs[Rule](t, e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk,
		map[string]any{"tool": "repo", "method": " DELETE", "permission": "disabled"}))
	require.Equal(t, "delete", *rule.Method, "stored in its normal form")

	tenant := decodeAs[Tenant](t, e.want(http.StatusCreated, http.MethodPost, "/v1/tenants", mk, map[string]any{"name": "Acme  Corp"}))
	require.Equal(t, "acme corp", tenant.Name)
	resource := decodeAs[Resource](t, e.want(http.StatusCreated, http.MethodPost, "/v1/resources", mk, map[string]any{"name": "Prod-DB"}))
	require.Equal(t, "prod-db", resource.Name)
	// Rules and lookups name them in any spelling.
	e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk,
		map[string]any{"tenant": "ACME CORP", "tool": "repo", "permission": "requires_approval"})
	e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk,
		map[string]any{"resource": "PROD-db", "tool": "repo", "method": "Write", "permission": "disabled"})
	got := decodeAs[Tenant](t, e.want(http.StatusOK, http.MethodGet, "/v1/tenants/"+url.PathEscape(" Acme Corp"), mk, nil))
	require.Equal(t, tenant.ID, got.ID)
	requireProblem(t, e.want(http.StatusConflict, http.MethodPost, "/v1/tenants", mk, map[string]any{"name": "ACME CORP"}), CodeConflict, "")

	verdict := func(body map[string]any) string {
		t.Helper()
		body["tool"] = "repo"
		var res CheckResult
		require.Eventually(t, func() bool {
			var status int
			status, res, _ = e.check(sk, body)
			return status == http.StatusOK && res.Permission != "allowed"
		}, 5*time.Second, 20*time.Millisecond, "%v stayed allowed", body)
		return res.Permission
	}
	for _, m := range []string{"DELETE", "delete", "Delete", "DELETE ", "\tdelete\n", "DELETE\u00a0"} {
		require.Equal(t, "disabled", verdict(map[string]any{"method": m}), "%q", m)
	}
	require.Equal(t, "requires_approval", verdict(map[string]any{"tenant": "  acme CORP", "method": "read"}))
	require.Equal(t, "disabled", verdict(map[string]any{"resource": "prod-DB", "method": "WRITE"}))

	// Invisible characters are refused, on checks and on writes.
	for field, value := range map[string]string{
		"method": "DELETE\u200b", "tenant": "acme\u202ecorp", "resource": "prod\u2060db",
	} {
		status, raw := e.do(http.MethodPost, "/v1/permissions/check", sk, map[string]any{"tool": "repo", field: value})
		require.Equal(t, http.StatusUnprocessableEntity, status, "%s: %s", field, raw)
		requireProblem(t, raw, CodeValidationFailed, "body."+field)
	}
	requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPost, "/v1/rules", mk,
		map[string]any{"tool": "repo", "method": "DEL\u200bETE", "permission": "allowed"}), CodeValidationFailed, "body.method")
	requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPost, "/v1/tenants", mk,
		map[string]any{"name": "\ufeffacme"}), CodeValidationFailed, "body.name")
	requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPatch, "/v1/resources/"+resource.ID, mk,
		map[string]any{"name": "prod\u200ddb"}), CodeValidationFailed, "body.name")
}

func testApprovalNamesAreNormalised(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	mk := e.boot.ManagementKey
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk,
		map[string]any{"name": "repo", "annotations_acknowledged": true, "default_permission": "requires_approval"})
	e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk, map[string]any{"tool": "repo", "method": "delete", "permission": "disabled"})
	e.want(http.StatusCreated, http.MethodPost, "/v1/tenants", mk, map[string]any{"name": "acme"})

	require.Eventually(t, func() bool {
		status, _ := e.do(http.MethodPost, "/v1/approvals", e.boot.StandardKey,
			map[string]any{"tool": "repo", "method": "DELETE ", "reasoning": "clean up"})
		return status == http.StatusForbidden
	}, 5*time.Second, 20*time.Millisecond, "a disabled method in another spelling was not refused")
	created := e.requestApproval(map[string]any{"tool": "repo", "method": "Read", "tenant": "ACME", "reasoning": "look"})
	got := expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+created.ID, e.boot.StandardKey, nil)
	require.Equal(t, "read", got.Method)
	require.Equal(t, "acme", got.Tenant)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM approvals WHERE org_id = $1 AND tenant_id IS NOT NULL`))
	e.expectProblem(http.StatusUnprocessableEntity, CodeValidationFailed, http.MethodPost, "/v1/approvals", e.boot.StandardKey,
		map[string]any{"tool": "repo", "method": "read\u200b", "reasoning": "look"})
}
