package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"
	"github.com/stretchr/testify/require"
)

// TestEveryAnswerIsNoSniff: whoever answers — an operation, a problem from
// the auth middleware, the mux's own 404, the body limit, metrics, the docs
// — the answer tells browsers not to guess its type.
func TestEveryAnswerIsNoSniff(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	for _, tc := range []struct {
		name, method, path, key string
		body                    []byte
		wantStatus              int
	}{
		{"operation", http.MethodGet, "/healthz", "", nil, http.StatusOK},
		{"openapi", http.MethodGet, "/openapi.json", "", nil, http.StatusOK},
		{"docs page", http.MethodGet, "/docs", "", nil, http.StatusOK},
		{"docs asset", http.MethodGet, "/docs/assets/styles.min.css", "", nil, http.StatusOK},
		{"metrics", http.MethodGet, "/metrics", "", nil, http.StatusOK},
		{"authenticated read", http.MethodGet, "/v1/credits", e.boot.StandardKey, nil, http.StatusOK},
		{"problem from auth", http.MethodGet, "/v1/credits", "", nil, http.StatusUnauthorized},
		{"unknown route", http.MethodGet, "/v1/nothing-here", "", nil, http.StatusNotFound},
		{"validation problem", http.MethodPost, "/v1/permissions/check", e.boot.StandardKey, []byte(`{"tool":`), http.StatusBadRequest},
		{"body over the limit", http.MethodPost, "/v1/permissions/check", e.boot.StandardKey, bytes.Repeat([]byte("x"), maxBodyBytes+1), http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tc.method, e.base+tc.path, bytes.NewReader(tc.body))
			require.NoError(t, err)
			if tc.key != "" {
				req.Header.Set("X-API-Key", tc.key)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			require.Equal(t, []string{"nosniff"}, resp.Header.Values("X-Content-Type-Options"))
		})
	}
}

// TestNoStoreOperationsExist keeps noStoreOperations in step with the
// operations: a renamed operation must not silently lose no-store.
func TestNoStoreOperationsExist(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	ids := map[string]bool{}
	for _, item := range e.srv.API().OpenAPI().Paths {
		for _, op := range []*huma.Operation{item.Get, item.Put, item.Post, item.Delete, item.Patch} {
			if op != nil {
				ids[op.OperationID] = true
			}
		}
	}
	for id := range noStoreOperations {
		require.True(t, ids[id], "noStoreOperations names %q, which is not an operation", id)
	}
}

// testNoStoreOnSecrets: answers that carry an execution token or a signing
// secret — and their problems and idempotent replays — are never stored by a
// cache; other answers are left to the client.
func testNoStoreOnSecrets(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	mk, sk := e.boot.ManagementKey, e.boot.StandardKey
	noStore := func(t *testing.T, what string, h http.Header) {
		t.Helper()
		require.Equal(t, "no-store", h.Get("Cache-Control"), what)
	}
	cacheable := func(t *testing.T, what string, h http.Header) {
		t.Helper()
		require.Empty(t, h.Get("Cache-Control"), what)
	}

	// Seeded first: allowedCheck waits until the server's policy shows both.
	e.seedTool("send_email", "", nil)
	// A token minted from a check, and its replay.
	checkID := e.allowedCheck("read_file", map[string]any{"path": "/etc/motd"})
	idem := map[string]string{"Idempotency-Key": "mint-1"}
	status, h, raw := e.send(http.MethodPost, "/v1/tokens/mint", sk, idem, map[string]any{"check_id": checkID})
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Contains(t, string(raw), "oak_tok_")
	noStore(t, "mint", h)
	status, h, raw = e.send(http.MethodPost, "/v1/tokens/mint", sk, idem, map[string]any{"check_id": checkID})
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Equal(t, "true", h.Get("Idempotent-Replayed"))
	noStore(t, "mint replayed", h)
	status, h, raw = e.send(http.MethodPost, "/v1/tokens/mint", sk, nil, map[string]any{"check_id": "chk_unknown"})
	require.GreaterOrEqual(t, status, 400, string(raw))
	noStore(t, "mint refused", h)
	status, h, raw = e.send(http.MethodPost, "/v1/permissions/check", sk, nil, map[string]any{"tool": "read_file", "method": "run"})
	require.Equal(t, http.StatusOK, status, string(raw))
	cacheable(t, "check", h)

	// An approval: pending, decided with its token, polled with its token.
	status, h, raw = e.send(http.MethodPost, "/v1/approvals", sk, nil, map[string]any{"tool": "send_email", "reasoning": "r"})
	require.Equal(t, http.StatusCreated, status, string(raw))
	cacheable(t, "create approval", h)
	var created ApprovalCreated
	require.NoError(t, json.Unmarshal(raw, &created))
	status, h, raw = e.send(http.MethodPost, "/v1/approvals/"+created.ID+"/decide", mk,
		map[string]string{"Idempotency-Key": "decide-1"}, map[string]any{"decision": "approve"})
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Contains(t, string(raw), "oak_tok_")
	noStore(t, "decide", h)
	status, h, raw = e.send(http.MethodPost, "/v1/approvals/"+created.ID+"/decide", mk,
		map[string]string{"Idempotency-Key": "decide-1"}, map[string]any{"decision": "approve"})
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Equal(t, "true", h.Get("Idempotent-Replayed"))
	noStore(t, "decide replayed", h)
	status, h, raw = e.send(http.MethodGet, "/v1/approvals/"+created.ID, sk, nil, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Contains(t, string(raw), "oak_tok_")
	noStore(t, "get approval", h)
	status, h, raw = e.send(http.MethodGet, "/v1/approvals", sk, nil, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.NotContains(t, string(raw), "oak_tok_")
	cacheable(t, "list approvals", h)

	// Signing secrets shown once.
	status, h, raw = e.send(http.MethodPatch, "/v1/settings", mk, nil, map[string]any{"webhook_url": "https://example.com/hook"})
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Contains(t, string(raw), "whsec_")
	noStore(t, "webhook URL set", h)
	status, h, raw = e.send(http.MethodPost, "/v1/webhook/rotate-secret", mk, nil, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Contains(t, string(raw), "whsec_")
	noStore(t, "rotate", h)
	status, h, raw = e.send(http.MethodPost, "/v1/channels", mk, nil,
		map[string]any{"kind": "webhook", "name": "siem", "url": "https://example.com/siem"})
	require.Equal(t, http.StatusCreated, status, string(raw))
	require.Contains(t, string(raw), "whsec_")
	noStore(t, "create channel", h)
	var ch ChannelWithSecret
	require.NoError(t, json.Unmarshal(raw, &ch))
	status, h, raw = e.send(http.MethodPatch, "/v1/channels/"+ch.ID, mk, nil, map[string]any{"regenerate_secret": true})
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Contains(t, string(raw), "whsec_")
	noStore(t, "regenerate channel secret", h)
	status, h, raw = e.send(http.MethodGet, "/v1/channels/"+ch.ID, mk, nil, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.False(t, strings.Contains(string(raw), "whsec_"))
	cacheable(t, "get channel", h)
}
