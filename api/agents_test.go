package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"
)

// agentDo sends a request with the agent's secret as a bearer token.
func (e *testEnv) agentDo(method, path, secret string, body any) (int, []byte) {
	e.t.Helper()
	return e.asSession(method, path, bearer(secret), body)
}

func TestAgentIdentities(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	st, boot := bootstrappedStore(t)
	a := startEnvWith(t, testConfig(), Deps{Store: st, Now: clock.Now}, boot)
	b := startEnvWith(t, testConfig(), Deps{Store: st, Now: clock.Now}, boot)
	admin := a.signIn(a.person(RoleAdmin), true)
	reviewer := a.signIn(a.person(RoleReviewer), true).Token
	path := "/v1/orgs/" + boot.OrgID + "/agents"
	allowed := "allowed"
	a.seedTool("read_file", "", &allowed)
	a.seedTool("send_email", "", nil)

	agent := sessionCall[CreatedAgentIdentity](a, http.StatusCreated, http.MethodPost, path, admin.Token, map[string]any{"name": "triage bot"})
	require.True(t, strings.HasPrefix(agent.Secret, agentPrefix), agent.Secret)
	require.Len(t, agent.Secret, agentLen)
	require.True(t, strings.HasPrefix(agent.Secret, agent.Prefix))
	require.Nil(t, agent.ExpiresAt)
	var stored []byte
	require.NoError(t, st.Pool.QueryRow(context.Background(), `SELECT hash FROM agent_identities WHERE id = $1`, agent.ID).Scan(&stored))
	require.Len(t, stored, 32, "only the SHA-256 is stored")
	_, raw := a.asSession(http.MethodGet, path, bearer(admin.Token), nil)
	require.NotContains(t, string(raw), agent.Secret[len(agent.Prefix):], "listed without its secret")
	b.waitForKey(boot.StandardKey)

	t.Run("runtime endpoints over REST, billed like a standard key", func(t *testing.T) {
		before := a.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND billable`)
		status, raw := a.agentDo(http.MethodPost, "/v1/permissions/check", agent.Secret, map[string]any{"tool": "read_file"})
		require.Equal(t, http.StatusOK, status, "usable at once on the replica that made it: %s", raw)
		check := decodeAs[CheckResult](t, raw)
		require.Equal(t, "allowed", check.Permission)
		status, raw = a.agentDo(http.MethodPost, "/v1/tokens/mint", agent.Secret, map[string]any{"check_id": check.CheckID})
		require.Equal(t, http.StatusOK, status, string(raw))
		tok := decodeAs[map[string]any](t, raw)["token"].(string)
		status, raw = a.agentDo(http.MethodPost, "/v1/executions", agent.Secret, map[string]any{"token": tok, "status": "success", "duration_ms": 3})
		require.Less(t, status, 300, string(raw))
		require.Equal(t, before+3, a.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND billable`))
		require.Equal(t, 3, a.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND actor_kind = 'agent' AND actor_id = $2 AND billable`, agent.ID))
		// No Temporal here: approvals are unavailable, but the agent got past authentication.
		status, raw = a.agentDo(http.MethodPost, "/v1/approvals", agent.Secret, map[string]any{"tool": "send_email", "reasoning": "r"})
		require.NotEqual(t, http.StatusUnauthorized, status, string(raw))
		require.NotEqual(t, http.StatusForbidden, status, string(raw))
		status, raw = a.agentDo(http.MethodGet, "/v1/approvals?status=pending", agent.Secret, nil)
		require.Equal(t, http.StatusOK, status, string(raw))
	})

	t.Run("never setup, never a decision, never people's endpoints", func(t *testing.T) {
		for _, c := range []struct{ method, path string }{
			{http.MethodPost, "/v1/tools"}, {http.MethodGet, "/v1/tools"}, {http.MethodPatch, "/v1/settings"},
			{http.MethodPost, "/v1/approvals/apr_x/decide"}, {http.MethodGet, "/v1/activity"}, {http.MethodGet, path},
			{http.MethodPost, path}, {http.MethodGet, "/v1/credits"},
		} {
			status, raw := a.agentDo(c.method, c.path, agent.Secret, map[string]any{})
			require.Equal(t, http.StatusForbidden, status, "%s %s: %s", c.method, c.path, raw)
		}
	})

	t.Run("MCP over Streamable HTTP with the go-sdk client", func(t *testing.T) {
		s := a.mcpSession(agent.Secret)
		out, isErr := callTool(t, s, "check_permission", map[string]any{"tool": "read_file"})
		require.False(t, isErr, "%v", out)
		require.Equal(t, "allowed", out["permission"])
		require.Equal(t, 1, a.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND id = $2 AND actor_kind = 'agent' AND actor_id = $3 AND billable`,
			out["check_id"], agent.ID))
		require.ElementsMatch(t, []any{"mcp:read", "mcp:write"}, readResource(t, s, "oakallow://status")["scopes"])
		ctx, cancel := context.WithTimeout(context.Background(), hangDeadline)
		defer cancel()
		list, err := s.ListTools(ctx, nil)
		require.NoError(t, err)
		for _, tl := range list.Tools {
			require.NotContains(t, tl.Name, "decide")
		}
	})

	t.Run("only owners and admins manage them, never with a key", func(t *testing.T) {
		status, raw := a.asSession(http.MethodPost, path, bearer(reviewer), map[string]any{"name": "x"})
		requireStatusCode(t, http.StatusForbidden, CodeInsufficientRole, status, raw)
		a.expectProblem(http.StatusForbidden, CodeWrongKeyTier, http.MethodPost, path, boot.ManagementKey, map[string]any{"name": "x"})
		for _, body := range []map[string]any{{}, {"name": ""}, {"name": "a\x01b"}, {"name": "x", "expires_in_days": 0},
			{"name": "x", "expires_in_days": 4000}, {"name": "x", "scope": "all"}} {
			status, raw = a.asSession(http.MethodPost, path, bearer(admin.Token), body)
			require.Equal(t, http.StatusUnprocessableEntity, status, "%v: %s", body, raw)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		short := sessionCall[CreatedAgentIdentity](a, http.StatusCreated, http.MethodPost, path, admin.Token,
			map[string]any{"name": "short-lived", "expires_in_days": 1})
		require.NotNil(t, short.ExpiresAt)
		status, raw := a.agentDo(http.MethodPost, "/v1/permissions/check", short.Secret, map[string]any{"tool": "read_file"})
		require.Equal(t, http.StatusOK, status, string(raw))
		// About to expire: the cache drops it when the moment passes, with no
		// reload (nothing announces an expiry).
		_, err := st.Pool.Exec(context.Background(), `UPDATE agent_identities SET expires_at = now() + interval '300 milliseconds' WHERE id = $1`, short.ID)
		require.NoError(t, err)
		require.NoError(t, a.srv.keys.Reload(context.Background()))
		require.Eventually(t, func() bool {
			status, _ := a.agentDo(http.MethodPost, "/v1/permissions/check", short.Secret, map[string]any{"tool": "read_file"})
			return status == http.StatusUnauthorized
		}, hangDeadline, 20*time.Millisecond)
		// Expired in the database: a reload leaves it out.
		require.NoError(t, a.srv.keys.Reload(context.Background()))
		a.expectProblem(http.StatusUnauthorized, CodeInvalidKey, http.MethodPost, "/v1/permissions/check", short.Secret, map[string]any{"tool": "read_file"})
	})

	t.Run("revocation reaches every replica", func(t *testing.T) {
		require.Eventually(t, func() bool {
			status, _ := b.agentDo(http.MethodPost, "/v1/permissions/check", agent.Secret, map[string]any{"tool": "read_file"})
			return status == http.StatusOK
		}, hangDeadline, 10*time.Millisecond)
		s := b.mcpSession(agent.Secret)
		revoked := time.Now()
		sessionCall[struct{}](a, http.StatusNoContent, http.MethodDelete, path+"/"+agent.ID, admin.Token, nil)
		a.expectProblem(http.StatusUnauthorized, CodeInvalidKey, http.MethodPost, "/v1/permissions/check", agent.Secret, map[string]any{"tool": "x"})
		require.Eventually(t, func() bool {
			status, _ := b.agentDo(http.MethodPost, "/v1/permissions/check", agent.Secret, map[string]any{"tool": "read_file"})
			return status == http.StatusUnauthorized
		}, hangDeadline, time.Millisecond)
		t.Logf("revoked agent refused by the other replica after %s", time.Since(revoked))
		ctx, cancel := context.WithTimeout(context.Background(), hangDeadline)
		defer cancel()
		_, err := s.CallTool(ctx, &sdk.CallToolParams{Name: "check_permission", Arguments: map[string]any{"tool": "read_file"}})
		require.Error(t, err, "the MCP connector refuses it too")
		status, raw := a.asSession(http.MethodDelete, path+"/"+agent.ID, bearer(admin.Token), nil)
		requireStatusCode(t, http.StatusNotFound, CodeNotFound, status, raw)
		listed := sessionCall[listOutputBody[AgentIdentity]](a, http.StatusOK, http.MethodGet, path, admin.Token, nil)
		require.Len(t, listed.Items, 2)
		for _, it := range listed.Items {
			if it.ID == agent.ID {
				require.NotNil(t, it.RevokedAt)
			}
		}
		require.Subset(t, auditKinds(t, a, admin.UserID), []string{kindAgentCreated, kindAgentRevoked})
	})
}
