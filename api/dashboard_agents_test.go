package api

import (
	"net/http"
	"net/url"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDashboardAgents: an owner makes an agent identity on the Agents page,
// sees its secret on that answer only, the agent works with it, and a
// revocation from the page stops it; bad input is refused with the reason.
func TestDashboardAgents(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	owner := e.signIn(e.person(RoleOwner), true).Token
	e.seedTool("search", "", nil)

	status, h, body := e.form("/agents", owner, url.Values{"name": {"support triage"}, "expires_in_days": {"30"}})
	require.Equal(t, http.StatusCreated, status, body)
	require.Equal(t, "no-store", h.Get("Cache-Control"))
	secret := regexp.MustCompile(`oak_agent_[A-Za-z0-9_-]+`).FindString(body)
	require.NotEmpty(t, secret, "the new secret is on the answer: %s", body)
	require.Contains(t, body, "shown only this once")
	check := func() int {
		status, _, _ := e.send(http.MethodPost, "/v1/permissions/check", "", map[string]string{"Authorization": "Bearer " + secret},
			map[string]any{"tool": "search"})
		return status
	}
	require.Equal(t, http.StatusOK, check(), "the agent works with it")

	status, _, body = e.page("/agents", owner)
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, body, secret, "never shown again")
	require.Contains(t, body, "support triage")
	id := regexp.MustCompile(`action="/agents/(agt_[A-Za-z0-9]+)/revoke"`).FindStringSubmatch(body)
	require.NotNil(t, id, body)
	status, h, _ = e.form("/agents/"+id[1]+"/revoke", owner, nil)
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/agents?done=agent-revoked", h.Get("Location"))
	require.Equal(t, http.StatusUnauthorized, check(), "the revoked agent stopped working")
	_, _, body = e.page("/agents", owner)
	require.Contains(t, body, "revoked ")
	require.NotContains(t, body, `action="/agents/`+id[1]+`/revoke"`)

	status, _, body = e.form("/agents", owner, url.Values{"name": {"x"}, "expires_in_days": {"soon"}})
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
	require.Contains(t, body, "must be a whole number")
	status, _, body = e.form("/agents", owner, url.Values{"name": {"x"}, "expires_in_days": {"99999"}})
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
	require.Regexp(t, `role="alert">validation failed: expires_in_days`, body, "the refusal names the field")
}
