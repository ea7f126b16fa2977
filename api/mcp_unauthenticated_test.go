package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUnauthenticatedMCPAnswerSpeaksOAuth: an MCP client that calls /mcp
// without a credential is told what it needs (SPEC §7): the RFC 9728
// challenge, and a body that names the protected resource metadata and
// OAuth first, API keys only as the alternative. REST keeps its own answer.
func TestUnauthenticatedMCPAnswerSpeaksOAuth(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	metadata := "http://localhost:8080/.well-known/oauth-protected-resource/mcp"
	for name, key := range map[string]string{"no credential": "", "unknown key": randomKey(t)} {
		t.Run(name, func(t *testing.T) {
			status, hdr, raw := e.sendVia(http.DefaultClient, http.MethodPost, mcpPath, key,
				map[string]string{"Accept": "application/json, text/event-stream"}, []byte(listTools))
			require.Equal(t, http.StatusUnauthorized, status, string(raw))
			require.Contains(t, hdr.Get("WWW-Authenticate"), `Bearer resource_metadata="`+metadata+`"`)
			var p struct{ Code, Detail string }
			require.NoError(t, json.Unmarshal(raw, &p))
			require.Equal(t, CodeInvalidToken, p.Code)
			require.Contains(t, p.Detail, "OAuth 2.1 access token")
			require.Contains(t, p.Detail, metadata)
			oauthAt, keyAt := strings.Index(p.Detail, "OAuth"), strings.Index(p.Detail, "API key")
			require.True(t, keyAt > oauthAt, "API keys come second, as the alternative: %s", p.Detail)
		})
	}
	status, _, raw := e.sendVia(http.DefaultClient, http.MethodGet, "/v1/credits", "", nil, nil)
	require.Equal(t, http.StatusUnauthorized, status)
	require.Equal(t, CodeInvalidKey, problemCode(t, raw))
}
