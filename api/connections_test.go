package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/api/ratelimit"
)

// inOrg sends a dashboard request signed in, in the org chosen, without
// following redirects.
func (o *oauthEnv) inOrg(method, path string) (*http.Response, string) {
	o.t.Helper()
	req, err := http.NewRequest(method, o.base+path, nil)
	require.NoError(o.t, err)
	req.Header.Set("Cookie", sessionCookiePlain+"="+o.session+"; oakallow_org="+o.boot.OrgID)
	resp, err := o.noFollow.Do(req)
	require.NoError(o.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

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
	resp, page := o.inOrg(http.MethodGet, "/mcp-clients")
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	require.Contains(t, page, clientID)
	require.Contains(t, page, `href="/mcp-clients" aria-current="page"`)
	require.Contains(t, page, `action="/mcp-clients/`+grant+`/revoke"`)

	// Revoking from the page ends the grant at once.
	resp, raw := o.inOrg(http.MethodPost, "/mcp-clients/"+grant+"/revoke")
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

// TestConnectedMCPClientsArePaged: an org with more connected clients than
// a page lists them a page at a time, newest first, each once — clients
// authorized at the same instant included — over the API (next_cursor) and
// on the dashboard page (a next-page link); a cursor that is not one this
// list returned is refused with 400.
func TestConnectedMCPClientsArePaged(t *testing.T) {
	t.Parallel()
	o := newOAuthEnv(t, ratelimit.Limit{})
	// 55 connected clients, two by two authorized at the same instant:
	// newest first is grt_page55 down to grt_page01.
	for _, q := range []string{
		`INSERT INTO oauth_clients (id, name, redirect_uris, created_at)
		 SELECT 'cli_page' || lpad(i::text, 2, '0'), 'Paged ' || i, ARRAY['http://127.0.0.1/cb'], now() FROM generate_series(1, 55) i`,
		`INSERT INTO oauth_grants (id, client_id, user_id, org_id, team_id, scopes, resource, created_at, expires_at)
		 SELECT 'grt_page' || lpad(i::text, 2, '0'), 'cli_page' || lpad(i::text, 2, '0'), $1, $2, $3, ARRAY['mcp:read'],
		     'http://127.0.0.1/mcp', timestamptz '2026-01-01 00:00:00.123456Z' + (i / 2) * interval '1 minute', now() + interval '1 hour'
		 FROM generate_series(1, 55) i`,
		`INSERT INTO oauth_tokens (token_hash, grant_id, kind, scopes, created_at, expires_at)
		 SELECT sha256(('page' || i)::bytea), 'grt_page' || lpad(i::text, 2, '0'), 'access', ARRAY['mcp:read'], now(), now() + interval '1 hour'
		 FROM generate_series(1, 55) i`,
	} {
		var args []any
		if strings.Contains(q, "$1") {
			args = []any{o.boot.UserID, o.boot.OrgID, o.boot.TeamID}
		}
		_, err := o.st.Pool.Exec(context.Background(), q, args...)
		require.NoError(t, err)
	}
	want := make([]string, 0, 55)
	for i := 55; i >= 1; i-- {
		want = append(want, fmt.Sprintf("grt_page%02d", i))
	}

	list := func(query string) (int, []string, string) {
		t.Helper()
		resp, body := o.get(o.base+"/v1/orgs/"+o.boot.OrgID+"/mcp-clients"+query, true)
		var out struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, nil, body
		}
		require.NoError(t, json.Unmarshal([]byte(body), &out))
		ids := make([]string, 0, len(out.Items))
		for _, it := range out.Items {
			ids = append(ids, it.ID)
		}
		return resp.StatusCode, ids, out.NextCursor
	}
	var got []string
	cursor, pages := "", 0
	for {
		q := "?limit=7" // odd: pages end between two clients authorized at the same instant
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		status, ids, next := list(q)
		require.Equal(t, http.StatusOK, status, next)
		pages++
		got = append(got, ids...)
		if next == "" {
			require.Len(t, ids, 6)
			break
		}
		require.Len(t, ids, 7)
		require.Less(t, pages, 9, "the list ends")
		cursor = next
	}
	require.Equal(t, 8, pages)
	require.Equal(t, want, got, "every client once, newest first")

	// Default page size 50; a forged cursor, or another list's, is refused.
	status, ids, next := list("")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, want[:50], ids)
	require.NotEmpty(t, next)
	for _, bad := range []string{"not-a-cursor", base64.RawURLEncoding.EncodeToString([]byte("delivery:2026-01-01T00:00:00Z/grt_page01"))} {
		status, _, body := list("?cursor=" + url.QueryEscape(bad))
		require.Equal(t, http.StatusBadRequest, status, body)
	}

	// The dashboard page lists 50 and links to the rest.
	page := func(path string) string {
		t.Helper()
		resp, body := o.inOrg(http.MethodGet, path)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		return body
	}
	first := page("/mcp-clients")
	require.Equal(t, 50, strings.Count(first, `/revoke"`))
	require.Contains(t, first, `action="/mcp-clients/grt_page55/revoke"`)
	require.NotContains(t, first, `action="/mcp-clients/grt_page05/revoke"`)
	link := regexp.MustCompile(`href="\?cursor=([^"]+)" rel="next"`).FindStringSubmatch(first)
	require.NotNil(t, link, "a next-page link")
	second := page("/mcp-clients?cursor=" + html.UnescapeString(link[1]))
	require.Equal(t, 5, strings.Count(second, `/revoke"`))
	require.Contains(t, second, `action="/mcp-clients/grt_page05/revoke"`)
	require.Contains(t, second, `action="/mcp-clients/grt_page01/revoke"`)
	require.NotContains(t, second, `rel="next"`, "the last page")
}
