package api

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBrowserMCPClientsCallAcrossOrigins: a browser-based MCP client on
// another origin gets its preflight answered and calls /mcp with a Bearer
// credential, while a cross-site form riding on a person's cookie is still
// refused, on /mcp (which reads no cookie) and on the dashboard.
func TestBrowserMCPClientsCallAcrossOrigins(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	owner := e.signIn(e.person(RoleOwner), true)
	send := func(method string, hdr map[string]string, body string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, e.base+mcpPath, strings.NewReader(body))
		require.NoError(t, err)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(raw)
	}
	crossSite := map[string]string{"Origin": "https://client.example", "Sec-Fetch-Site": "cross-site"}

	resp, _ := send(http.MethodOptions, with(with(crossSite, "Access-Control-Request-Method", "POST"),
		"Access-Control-Request-Headers", "authorization, content-type, mcp-protocol-version"), "")
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "POST")
	for _, h := range []string{"Authorization", "Content-Type", "Mcp-Protocol-Version"} {
		require.Contains(t, resp.Header.Get("Access-Control-Allow-Headers"), h)
	}

	call := with(with(with(crossSite, "Content-Type", "application/json"), "Accept", "application/json, text/event-stream"),
		"Authorization", "Bearer "+e.boot.StandardKey)
	resp, body := send(http.MethodPost, call, listTools)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, body, `"result"`)

	// Without a credential the challenge is readable from the other origin.
	delete(call, "Authorization")
	resp, _ = send(http.MethodPost, call, listTools)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate")

	// A person's cookie is no credential on /mcp, from any origin.
	resp, body = send(http.MethodPost, with(call, "Cookie", sessionCookiePlain+"="+owner.Token), listTools)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, body)
	require.NotContains(t, body, `"result"`)

	// Cookie-authenticated routes still refuse cross-site unsafe requests.
	status, _, _ := e.sendVia(noRedirects, http.MethodPost, "/sign-out", "", with(cookie(owner.Token), "Sec-Fetch-Site", "cross-site"), []byte{})
	require.Equal(t, http.StatusForbidden, status)
	status, _ = e.asSession(http.MethodPost, "/v1/orgs", with(cookie(owner.Token), "Origin", "https://client.example"), map[string]any{"name": "x"})
	require.Equal(t, http.StatusForbidden, status)
}
