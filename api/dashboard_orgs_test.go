package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"oakallow/store"
)

// A new user often connects the MCP client before making an org: the
// consent page then has nothing to grant, and leads to creating one and
// straight back to the same request.
func TestConsentWithoutAnOrgLeadsToCreatingOne(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	ctx, now := context.Background(), time.Now()
	team, user := store.NewID("team"), store.NewID("usr")
	require.NoError(t, e.st.CreateTeam(ctx, store.CreateTeamParams{ID: team, Name: "new@example.com", CreatedAt: now}))
	require.NoError(t, e.st.CreateUser(ctx, store.CreateUserParams{ID: user, Email: user + "@example.com", Name: "New", CreatedAt: now}))
	require.NoError(t, e.st.CreateMembership(ctx, store.CreateMembershipParams{TeamID: team, UserID: user, Role: RoleOwner, CreatedAt: now}))
	ses := e.signIn(user, true).Token

	status, raw := e.do(http.MethodPost, "/oauth/register", "", map[string]any{"client_name": "Desktop agent",
		"redirect_uris": []string{testRedirect}, "token_endpoint_auth_method": "none"})
	require.Equal(t, http.StatusCreated, status, string(raw))
	var client struct {
		ClientID string `json:"client_id"`
	}
	require.NoError(t, json.Unmarshal(raw, &client))
	authorize := "/oauth/authorize?" + url.Values{"response_type": {"code"}, "client_id": {client.ClientID},
		"redirect_uri": {testRedirect}, "state": {"s1"}, "scope": {"mcp:read mcp:write"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}}.Encode()
	status, h, body := e.page(authorize, "")
	require.Equal(t, http.StatusSeeOther, status, body)
	consent := h.Get("Location")
	require.True(t, strings.HasPrefix(consent, "/oauth/consent/oar_"), consent)

	status, _, body = e.page(consent, ses)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "You belong to no org yet")
	// (html/template writes the escapes in lower case: %2f.)
	require.Contains(t, body, `href="/orgs?next=`+strings.ToLower(url.QueryEscape(consent))+`"`)
	require.NotContains(t, body, `value="approve"`)

	// The org page carries the request along; creating the org goes back to it.
	status, _, body = e.page("/orgs?next="+url.QueryEscape(consent), ses)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, `name="next" value="`+consent+`"`)
	status, h, body = e.form("/orgs/new", ses, url.Values{"team": {team}, "name": {"agents"}, "next": {consent}})
	require.Equal(t, http.StatusSeeOther, status, body)
	require.Equal(t, consent, h.Get("Location"), "back to the application's request")
	status, _, body = e.page(consent, ses)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, `value="approve"`)
	require.Regexp(t, `<option value="org_[a-z0-9]+">agents \(`, body)
}
