package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/api/ratelimit"
)

// TestConnectedMCPClientsAreListedAndRevoked: an org's owner sees the MCP
// clients people authorized (name, redirect URIs, who, when, scopes, last
// use) and revokes one; its access token is refused by the next /mcp call
// and its refresh token by the token endpoint, and the revocation is
// audited. The dashboard page lists and revokes through the same API.
func TestConnectedMCPClientsAreListedAndRevoked(t *testing.T) {
	t.Parallel()
	o := newOAuthEnv(t, ratelimit.Limit{})
	clientID := o.register(testRedirect)
	cfg := o.oauth2Config(clientID, "mcp:read")
	tok := o.authorized(cfg, o.boot.OrgID, "mcp:read")
	other := o.authorized(o.oauth2Config(o.register(testRedirect), "mcp:read"), o.org2, "mcp:read")
	status, _ := o.mcpStatus(tok.AccessToken, listTools)
	require.Equal(t, http.StatusOK, status)

	list := func(org string) []map[string]any {
		t.Helper()
		resp, body := o.get(o.base+"/v1/orgs/"+org+"/mcp-clients", true)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		var out struct {
			Items []map[string]any `json:"items"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &out))
		return out.Items
	}
	items := list(o.boot.OrgID)
	require.Len(t, items, 1, "only this org's clients")
	c := items[0]
	require.Equal(t, clientID, c["client_id"])
	require.Equal(t, "Test agent", c["client_name"])
	require.Equal(t, []any{testRedirect}, c["redirect_uris"])
	require.Equal(t, "owner@example.com", c["authorized_by_email"])
	require.Equal(t, []any{"mcp:read"}, c["scopes"])
	require.NotEmpty(t, c["last_used_at"], "the /mcp call was recorded")
	grant := c["id"].(string)

	// The dashboard page (in the org chosen) lists it under the admin navigation.
	inOrg := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, o.base+path, nil)
		require.NoError(t, err)
		req.Header.Set("Cookie", sessionCookiePlain+"="+o.session+"; oakallow_org="+o.boot.OrgID)
		resp, err := o.noFollow.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, page := inOrg(http.MethodGet, "/mcp-clients")
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	require.Contains(t, page, clientID)
	require.Contains(t, page, `href="/mcp-clients" aria-current="page"`)
	require.Contains(t, page, `action="/mcp-clients/`+grant+`/revoke"`)

	// Revoking from the page ends the grant at once.
	resp, raw := inOrg(http.MethodPost, "/mcp-clients/"+grant+"/revoke")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, raw)
	require.Equal(t, "/mcp-clients?done=mcp-client-revoked", resp.Header.Get("Location"))
	status, challenge := o.mcpStatus(tok.AccessToken, listTools)
	require.Equal(t, http.StatusUnauthorized, status, "the revoked access token is refused by the next call")
	require.Contains(t, challenge, `error="invalid_token"`)
	status, code := o.tokenError(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {clientID}})
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "invalid_grant", code)
	require.Empty(t, list(o.boot.OrgID))
	require.Equal(t, 1, o.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'oauth.revoked'
		AND subject = $2 AND actor_kind = 'user' AND actor_id = $3 AND details->>'reason' = 'revoked_by_admin'`, grant, o.boot.UserID))

	// Revoked already, or of another org: 404, and the other org's client works on.
	resp, body := o.browse(http.MethodDelete, o.base+"/v1/orgs/"+o.boot.OrgID+"/mcp-clients/"+grant, nil, true)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, string(body))
	otherGrant := list(o.org2)[0]["id"].(string)
	resp, body = o.browse(http.MethodDelete, o.base+"/v1/orgs/"+o.boot.OrgID+"/mcp-clients/"+otherGrant, nil, true)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, string(body))
	status, _ = o.mcpStatus(other.AccessToken, listTools)
	require.Equal(t, http.StatusOK, status)

	// Keys cannot list or revoke; people who do not manage the org cannot either.
	st, rawKey := o.do(http.MethodGet, "/v1/orgs/"+o.boot.OrgID+"/mcp-clients", o.boot.ManagementKey, nil)
	require.Equal(t, http.StatusForbidden, st, string(rawKey))
	st, rawKey = o.do(http.MethodDelete, "/v1/orgs/"+o.org2+"/mcp-clients/"+otherGrant, o.boot.ManagementKey, nil)
	require.Equal(t, http.StatusForbidden, st, string(rawKey))
}
