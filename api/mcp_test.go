package api

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"oakallow/activities/tokens"
	"oakallow/store"
)

// bearerTransport adds the credential to every request of the MCP client.
type bearerTransport struct{ key string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return http.DefaultTransport.RoundTrip(r)
}

// mcpProtocol is the MCP version the tests' client speaks unless a test
// chooses: 2025-11-25, what deployed clients speak, whose tools/calls the
// connector answers on its direct path (api/mcp/direct.go).
// TestMCPConnector also runs at the go-sdk client's default, 2026-07-28,
// which the SDK serves.
const mcpProtocol = "2025-11-25"

// mcpSession connects the official go-sdk client to the server's /mcp over
// Streamable HTTP with key as the bearer credential, speaking mcpProtocol.
func (e *testEnv) mcpSession(key string) *sdk.ClientSession {
	e.t.Helper()
	return e.mcpSessionAt(key, mcpProtocol)
}

// mcpSessionAt is mcpSession speaking protocol version (the client's
// default when empty).
func (e *testEnv) mcpSessionAt(key, version string) *sdk.ClientSession {
	e.t.Helper()
	c := sdk.NewClient(&sdk.Implementation{Name: "oakallow-test", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), hangDeadline)
	defer cancel()
	s, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: e.base + mcpPath,
		HTTPClient: &http.Client{Transport: bearerTransport{key}}}, &sdk.ClientSessionOptions{ProtocolVersion: version})
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = s.Close() })
	return s
}

// callTool calls a tool and returns its structured result (or tool error body).
func callTool(t *testing.T, s *sdk.ClientSession, name string, args any) (map[string]any, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangDeadline)
	defer cancel()
	res, err := s.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	require.NoError(t, err, "a tool call must never fail at the protocol level")
	raw, err := json.Marshal(res.StructuredContent)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	return out, res.IsError
}

// wantToolError calls a tool and requires a tool error with code.
func wantToolError(t *testing.T, s *sdk.ClientSession, name string, args any, code string) map[string]any {
	t.Helper()
	out, isErr := callTool(t, s, name, args)
	require.True(t, isErr, "%s %v: want %s, got %v", name, args, code, out)
	require.Equal(t, code, out["error"], "%v", out)
	return out
}

func readResource(t *testing.T, s *sdk.ClientSession, uri string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangDeadline)
	defer cancel()
	res, err := s.ReadResource(ctx, &sdk.ReadResourceParams{URI: uri})
	require.NoError(t, err)
	require.Len(t, res.Contents, 1)
	var out map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.Contents[0].Text), &out))
	return out
}

func TestMCPConnector(t *testing.T) {
	t.Parallel()
	for _, version := range []string{mcpProtocol, ""} {
		t.Run("protocol="+cmp.Or(version, "default"), func(t *testing.T) {
			t.Parallel()
			testMCPConnector(t, version)
		})
	}
}

func testMCPConnector(t *testing.T, version string) {
	e := newTestEnv(t)
	allowed := "allowed"
	e.seedTool("read_file", `{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}`, &allowed)
	e.seedTool("send_email", "", nil)
	s := e.mcpSessionAt(e.boot.StandardKey, version)

	t.Run("tools carry accurate annotations and schemas", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), hangDeadline)
		defer cancel()
		list, err := s.ListTools(ctx, nil)
		require.NoError(t, err)
		byName := map[string]*sdk.Tool{}
		for _, tl := range list.Tools {
			byName[tl.Name] = tl
		}
		require.Len(t, byName, 6)
		for _, name := range []string{"list_my_tools", "list_pending_approvals", "check_approval_status"} {
			a := byName[name].Annotations
			require.True(t, a.ReadOnlyHint, name)
			require.True(t, a.IdempotentHint, name)
			require.False(t, *a.DestructiveHint, name)
		}
		for _, name := range []string{"check_permission", "request_approval", "mint_token"} {
			a := byName[name].Annotations
			require.False(t, a.ReadOnlyHint, name+" bills and records")
			require.False(t, a.IdempotentHint, name+" bills every call")
			require.NotNil(t, byName[name].OutputSchema, name)
		}
		require.True(t, *byName["request_approval"].Annotations.OpenWorldHint, "it notifies people")
		require.True(t, *byName["check_permission"].Annotations.OpenWorldHint, "discovering a tool notifies people")
		_, ok := byName["decide_approval"]
		require.False(t, ok, "the connector can never decide")
	})

	t.Run("check, mint and verify, billed like REST", func(t *testing.T) {
		before := e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND billable`)
		out, isErr := callTool(t, s, "check_permission", map[string]any{"tool": "read_file", "parameters": map[string]any{"path": "/tmp/a"}})
		require.False(t, isErr, "%v", out)
		require.Equal(t, "allowed", out["permission"])
		checkID := out["check_id"].(string)
		require.True(t, strings.HasPrefix(out["receipt"].(string), "oak_rcpt_"))
		minted, isErr := callTool(t, s, "mint_token", map[string]any{"check_id": checkID})
		require.False(t, isErr, "%v", minted)
		tok := minted["token"].(string)
		claims := expect[TokenClaims](e, http.StatusOK, http.MethodPost, "/v1/tokens/verify", e.boot.StandardKey,
			map[string]any{"token": tok, "parameters": map[string]any{"path": "/tmp/a"}})
		require.Equal(t, "read_file", claims.Tool)
		require.True(t, claims.ParamsVerified)
		// Exactly two billable entries (the check and the mint), by the standard key.
		require.Equal(t, before+2, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND billable`))
		require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND id = $2 AND kind = 'permission.check' AND actor_id = $3`,
			checkID, e.keyID(TierStandard)))
	})

	t.Run("parameters are bound exactly", func(t *testing.T) {
		params := `{"path":"/x","n":4.50,"big":"12345678901234567891"}`
		want, err := tokens.HashParameters(json.RawMessage(params))
		require.NoError(t, err)
		out, isErr := callTool(t, s, "check_permission", json.RawMessage(`{"tool":"read_file","parameters":`+params+`}`))
		require.False(t, isErr, "%v", out)
		var hash string
		require.NoError(t, e.st.Pool.QueryRow(context.Background(),
			`SELECT details->>'parameters_hash' FROM audit_events WHERE id = $1`, out["check_id"]).Scan(&hash))
		require.Equal(t, want, hash)
	})

	t.Run("verdicts other than allowed", func(t *testing.T) {
		out, _ := callTool(t, s, "check_permission", map[string]any{"tool": "send_email"})
		require.Equal(t, "requires_approval", out["permission"])
		wantToolError(t, s, "mint_token", map[string]any{"check_id": out["check_id"]}, CodeCheckNotAllowed)
		// An unknown tool is discovered (discover_test.go).
		out, _ = callTool(t, s, "check_permission", map[string]any{"tool": "no_such_tool"})
		require.Equal(t, "requires_approval", out["permission"])
		require.Equal(t, "tool_auto_created", out["reason"])
	})

	t.Run("bad inputs are tool errors, never internal", func(t *testing.T) {
		for name, args := range map[string]any{
			"missing tool":        map[string]any{},
			"unknown argument":    map[string]any{"tool": "read_file", "colour": "red"},
			"parameters not obj":  map[string]any{"tool": "read_file", "parameters": []int{1}},
			"schema violation":    map[string]any{"tool": "read_file", "parameters": map[string]any{"path": 7}},
			"NUL in reason":       map[string]any{"tool": "read_file", "parameters": map[string]any{"path": "a"}, "reason": "a\x00b"},
			"invisible tenant":    map[string]any{"tool": "read_file", "tenant": "acme\u200b"},
			"too long method":     map[string]any{"tool": "read_file", "method": strings.Repeat("m", 201)},
			"inexact number":      json.RawMessage(`{"tool":"read_file","parameters":{"path":"a","n":9007199254740993}}`),
			"too deep parameters": json.RawMessage(`{"tool":"read_file","parameters":` + nested(70) + `}`),
			"tool is a number":    json.RawMessage(`{"tool":7}`),
		} {
			out := wantToolError(t, s, "check_permission", args, CodeValidationFailed)
			require.NotEmpty(t, out["message"], name)
		}
		wantToolError(t, s, "mint_token", map[string]any{}, CodeValidationFailed)
		wantToolError(t, s, "mint_token", map[string]any{"check_id": "chk_nope"}, CodeNotFound)
		wantToolError(t, s, "check_approval_status", map[string]any{"reference": "REF-NOPE"}, CodeNotFound)
		wantToolError(t, s, "list_pending_approvals", map[string]any{"cursor": "!!"}, CodeValidationFailed)
		wantToolError(t, s, "list_pending_approvals", map[string]any{"limit": 51}, CodeValidationFailed)
		// No Temporal on this server: approvals are unavailable, not an internal error.
		wantToolError(t, s, "request_approval", map[string]any{"tool": "send_email", "reasoning": "r"}, CodeUnavailable)
	})

	t.Run("another org is refused with guidance", func(t *testing.T) {
		out := wantToolError(t, s, "check_permission", map[string]any{"tool": "read_file", "org": "org_other"}, "wrong_org")
		require.Contains(t, out["message"], e.boot.OrgID)
		out, isErr := callTool(t, s, "list_my_tools", map[string]any{"org": e.boot.OrgID})
		require.False(t, isErr, "%v", out)
		require.Len(t, out["tools"], 3, "the two seeded and the one discovered")
	})

	t.Run("a read-only credential cannot bill", func(t *testing.T) {
		ro := e.mcpSessionAt(e.boot.ManagementKey, version)
		before := e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1`)
		wantToolError(t, ro, "check_permission", map[string]any{"tool": "read_file"}, "insufficient_scope")
		wantToolError(t, ro, "request_approval", map[string]any{"tool": "send_email", "reasoning": "r"}, "insufficient_scope")
		wantToolError(t, ro, "mint_token", map[string]any{"check_id": "chk_x"}, "insufficient_scope")
		require.Equal(t, before, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1`), "nothing recorded or billed")
		out, isErr := callTool(t, ro, "list_my_tools", nil)
		require.False(t, isErr, "%v", out)
		require.Equal(t, []any{"mcp:read"}, readResource(t, ro, "oakallow://status")["scopes"])
	})

	t.Run("resources", func(t *testing.T) {
		st := readResource(t, s, "oakallow://status")
		require.Equal(t, "ok", st["status"])
		require.ElementsMatch(t, []any{"mcp:read", "mcp:write"}, st["scopes"])
		cr := readResource(t, s, "oakallow://credits")
		require.Equal(t, map[string]any{"can_fund": true}, cr, "only can_fund, never balances")
	})

	t.Run("unknown, missing and revoked credentials are refused", func(t *testing.T) {
		for _, key := range []string{"", "oak_live_00000000000000000000000000000000"} {
			req, err := http.NewRequest(http.MethodPost, e.base+mcpPath, strings.NewReader(
				`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		}
		key := e.newKey(TierStandard)
		rs := e.mcpSessionAt(key, version)
		callTool(t, rs, "list_my_tools", nil)
		_, err := e.st.Pool.Exec(context.Background(), `UPDATE api_keys SET revoked_at = now() WHERE hash = sha256($1::bytea)`, []byte(key))
		require.NoError(t, err)
		require.NoError(t, e.st.NotifyChange(context.Background(), "keys"))
		require.Eventually(t, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), hangDeadline)
			defer cancel()
			_, err := rs.CallTool(ctx, &sdk.CallToolParams{Name: "list_my_tools"})
			return err != nil
		}, hangDeadline, 20*time.Millisecond, "a revoked key keeps working over MCP")
	})
}

// newKey creates another key of the org and waits until the server knows it.
func (e *testEnv) newKey(tier string) string {
	e.t.Helper()
	var key string
	require.NoError(e.t, e.st.InTx(context.Background(), func(_ pgx.Tx, q *store.Queries) error {
		var err error
		key, err = createKey(context.Background(), q, e.boot.OrgID, tier, "another", e.boot.UserID, time.Now())
		if err != nil {
			return err
		}
		return q.NotifyChange(context.Background(), "keys")
	}))
	e.waitForKey(key)
	return key
}

// testMCPApprovalFlow: an agent requests an approval over MCP, polls it by
// reference, a reviewer decides over REST, and the agent gets its token.
func testMCPApprovalFlow(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	e.seedTool("send_email", "", nil)
	ms := e.mcpSession(e.boot.StandardKey)

	created, isErr := callTool(t, ms, "request_approval", map[string]any{"tool": "send_email", "method": "send",
		"parameters": map[string]any{"to": "bob@example.com"}, "reasoning": "Mail bob@example.com the invoice"})
	require.False(t, isErr, "%v", created)
	ref := created["reference"].(string)
	require.Regexp(t, referencePattern, ref)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'approval.requested' AND billable`))

	st, _ := callTool(t, ms, "check_approval_status", map[string]any{"reference": ref})
	require.Equal(t, "pending", st["status"])
	require.Nil(t, st["token"])
	pending, _ := callTool(t, ms, "list_pending_approvals", nil)
	require.Len(t, pending["approvals"], 1)
	require.Equal(t, ref, pending["approvals"].([]any)[0].(map[string]any)["reference"])
	wantToolError(t, ms, "mint_token", map[string]any{"approval_id": ref}, CodeApprovalNotApproved)

	expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+ref+"/decide", e.boot.ManagementKey,
		map[string]any{"decision": "approve"})
	st, _ = callTool(t, ms, "check_approval_status", map[string]any{"reference": ref})
	require.Equal(t, "approved", st["status"])
	require.True(t, strings.HasPrefix(st["token"].(string), "oak_tok_"))
	minted, isErr := callTool(t, ms, "mint_token", map[string]any{"approval_id": ref})
	require.False(t, isErr, "%v", minted)
	require.Equal(t, st["token"], minted["token"], "the same source gives the same token")
	pending, _ = callTool(t, ms, "list_pending_approvals", nil)
	require.Empty(t, pending["approvals"])
}
