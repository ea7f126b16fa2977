package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"oakallow/api/runtime"
)

// directTestDefs are tools with the connector's handler and argument
// decoding but no runtime: echo answers its text beside characters that
// JSON encoders treat differently, write needs mcp:write, fail fails.
func directTestDefs() []toolDef {
	schema := json.RawMessage(`{"type":"object","properties":{"org":{"type":"string"},"text":{"type":"string"}}}`)
	echo := func(_ context.Context, c runtime.Caller, args json.RawMessage) (any, error) {
		var a struct {
			Org  string `json:"org"`
			Text string `json:"text"`
		}
		if err := decodeArgs(args, &a); err != nil {
			return nil, err
		}
		if err := text("text", a.Text, 0, 70000); err != nil {
			return nil, err
		}
		return struct {
			Echo  string `json:"echo"`
			Org   string `json:"org"`
			Marks string `json:"marks"`
		}{a.Text, c.OrgID, "<b>&amp;</b> é \u2028 \t\"quoted\""}, nil
	}
	return []toolDef{
		{tool: &sdk.Tool{Name: "echo", InputSchema: schema}, run: echo},
		{tool: &sdk.Tool{Name: "write", InputSchema: schema}, write: true, run: echo},
		{tool: &sdk.Tool{Name: "fail", InputSchema: schema}, run: func(context.Context, runtime.Caller, json.RawMessage) (any, error) {
			return nil, errors.New("database on fire")
		}},
	}
}

// TestDirectCallMatchesSDK sends the same requests to the connector with and
// without its direct path and requires the same status, headers and body
// byte for byte: for the tools/calls the direct path serves, and for the
// requests it must leave to the SDK (which it must not serve).
func TestDirectCallMatchesSDK(t *testing.T) {
	t.Parallel()
	deps := Deps{Logger: slog.New(slog.DiscardHandler), RequestID: func(context.Context) string { return "" }}
	var served atomic.Int64
	direct := &connector{cfg: Config{Version: "test"}, d: deps, onDirect: func() { served.Add(1) }}
	viaSDK := &connector{cfg: Config{Version: "test"}, d: deps}
	dh, sh := direct.httpHandler(directTestDefs(), true), viaSDK.httpHandler(directTestDefs(), false)

	call := func(id, tool, args string) string {
		b := `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + tool + `"`
		if args != "" {
			b += `,"arguments":` + args
		}
		return b + `}}`
	}
	readOnly := []string{ScopeRead}
	big := `{"text":"` + strings.Repeat("x", directMaxBody) + `"}`
	cases := []struct {
		name    string
		body    string
		headers map[string]string // replace the defaults; "" deletes
		scopes  []string
		method  string
		direct  bool
	}{
		{name: "number id", body: call("1", "echo", `{"text":"hello"}`), direct: true},
		{name: "zero id", body: call("0", "echo", `{"text":"hello"}`), direct: true},
		{name: "largest exact id", body: call("9007199254740992", "echo", `{}`), direct: true},
		{name: "string id with escapes", body: call(`"a<b>&\u00e9\"\\"`, "echo", `{"text":"x"}`), direct: true},
		{name: "empty string id", body: call(`""`, "echo", `{}`), direct: true},
		{name: "text needing escapes", body: call("2", "echo", `{"text":"<script>\u2028&\u0000é😀"}`), direct: true},
		{name: "no arguments", body: call("3", "echo", ""), direct: true},
		{name: "null arguments", body: call("4", "echo", `null`), direct: true},
		{name: "arguments not an object", body: call("5", "echo", `"x"`), direct: true},
		{name: "unknown argument", body: call("6", "echo", `{"text":"x","to":"y"}`), direct: true},
		{name: "argument of the wrong type", body: call("7", "echo", `{"text":42}`), direct: true},
		{name: "trailing argument data", body: call("8", "echo", `{"text":"x"} `), direct: true},
		{name: "pretty-printed", body: "\n {\n \"params\": {\"arguments\": {\"text\": \"x\"}, \"name\": \"echo\"},\n \"method\": \"tools/call\", \"id\": 9, \"jsonrpc\": \"2.0\"}\n", direct: true},
		{name: "key-like text in a value", body: call("21", "echo", `{"text":"\"method\": \"x\", \"Name\":"}`), direct: true},
		{name: "nested keys in arguments", body: call("22", "echo", `{"text":"x","parameters":{"Method":{"_meta":1}}}`), direct: true},
		{name: "escaped key", body: `{"jsonr\u0070c":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`},
		{name: "params key in other case", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"echo"}}`},
		{name: "null name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":null}}`},
		{name: "null params", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":null}`},
		{name: "write scope missing", body: call("10", "write", `{"text":"x"}`), scopes: readOnly, direct: true},
		{name: "write scope present", body: call("11", "write", `{"text":"x"}`), direct: true},
		{name: "other org", body: call("12", "echo", `{"org":"org_other"}`), direct: true},
		{name: "own org", body: call("13", "echo", `{"org":"org_1"}`), direct: true},
		{name: "internal error", body: call("14", "fail", `{}`), direct: true},
		{name: "no scopes", body: call("15", "echo", `{}`), scopes: []string{}, direct: true},
		{name: "no protocol version header", body: call("16", "echo", `{}`), headers: map[string]string{"Mcp-Protocol-Version": ""}, direct: true},
		{name: "protocol 2025-11-25", body: call("17", "echo", `{}`), headers: map[string]string{"Mcp-Protocol-Version": "2025-11-25"}, direct: true},
		{name: "protocol 2024-11-05", body: call("18", "echo", `{}`), headers: map[string]string{"Mcp-Protocol-Version": "2024-11-05"}, direct: true},
		{name: "content type with charset", body: call("19", "echo", `{}`), headers: map[string]string{"Content-Type": "application/json; charset=utf-8"}, direct: true},
		{name: "accept with parameters", body: call("20", "echo", `{}`), headers: map[string]string{"Accept": "text/event-stream;q=0.5 , Application/JSON"}, direct: true},

		{name: "tools/list", body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`},
		{name: "initialize", body: `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`},
		{name: "notification", body: `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}`},
		{name: "batch", body: "[" + call("1", "echo", `{}`) + "]", headers: map[string]string{"Mcp-Protocol-Version": "2025-03-26"}},
		{name: "_meta", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"_meta":{"progressToken":"p"}}}`},
		{name: "null id", body: call("null", "echo", `{}`)},
		{name: "fractional id", body: call("1.5", "echo", `{}`)},
		{name: "negative id", body: call("-1", "echo", `{}`)},
		{name: "exponent id", body: call("1e3", "echo", `{}`)},
		{name: "object id", body: call(`{"a":1}`, "echo", `{}`)},
		{name: "unknown tool", body: call("1", "nope", `{}`)},
		{name: "name not a string", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}`},
		{name: "params not an object", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}`},
		{name: "extra top-level key", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"x":1}`},
		{name: "key in other case", body: `{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"echo"}}`},
		{name: "old jsonrpc version", body: `{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"echo"}}`},
		{name: "invalid UTF-8", body: call("1", "echo", "{\"text\":\"\xff\"}")},
		{name: "malformed", body: `{"jsonrpc":"2.0","id":1,`},
		{name: "trailing data", body: call("1", "echo", `{}`) + `{}`},
		{name: "empty body", body: ``},
		{name: "larger than the direct path reads", body: call("1", "echo", big)},
		{name: "protocol 2026-07-28", body: call("1", "echo", `{}`), headers: map[string]string{"Mcp-Protocol-Version": "2026-07-28"}},
		{name: "unsupported protocol", body: call("1", "echo", `{}`), headers: map[string]string{"Mcp-Protocol-Version": "1999-01-01"}},
		{name: "standard headers", body: call("1", "echo", `{}`), headers: map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "echo"}},
		{name: "resumption", body: call("1", "echo", `{}`), headers: map[string]string{"Last-Event-ID": "x_1"}},
		{name: "accept without event stream", body: call("1", "echo", `{}`), headers: map[string]string{"Accept": "application/json"}},
		{name: "accept wildcard", body: call("1", "echo", `{}`), headers: map[string]string{"Accept": "*/*"}},
		{name: "text body", body: call("1", "echo", `{}`), headers: map[string]string{"Content-Type": "text/plain"}},
		{name: "GET", method: http.MethodGet},
		{name: "DELETE", method: http.MethodDelete},
	}
	for _, tc := range cases {
		answer := func(h http.Handler) *httptest.ResponseRecorder {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			r := httptest.NewRequest(method, "/mcp", strings.NewReader(tc.body))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Accept", "application/json, text/event-stream")
			r.Header.Set("Mcp-Protocol-Version", "2025-06-18")
			for k, v := range tc.headers {
				r.Header.Del(k)
				if v != "" {
					r.Header.Set(k, v)
				}
			}
			scopes := tc.scopes
			if scopes == nil {
				scopes = []string{ScopeRead, ScopeWrite}
			}
			id := Identity{Caller: runtime.Caller{OrgID: "org_1", TeamID: "team_1", Kind: "api_key", ID: "key_1"}, Scopes: scopes}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
			return w
		}
		before := served.Load()
		got, want := answer(dh), answer(sh)
		require.Equal(t, tc.direct, served.Load() > before, "%s: served directly", tc.name)
		require.Equal(t, want.Code, got.Code, "%s: status", tc.name)
		for _, h := range []string{"Content-Type", "Cache-Control", "Allow"} {
			require.Equal(t, want.Header().Get(h), got.Header().Get(h), "%s: %s", tc.name, h)
		}
		require.Equal(t, want.Body.String(), got.Body.String(), "%s: body", tc.name)
		if tc.direct {
			require.Equal(t, http.StatusOK, got.Code, "%s: %s", tc.name, got.Body)
			require.True(t, json.Valid(got.Body.Bytes()), tc.name)
		}
	}
}

// TestDirectPathServesGoSDKClient: the official client's tools/calls take the
// direct path when it speaks a protocol before 2026-07-28 (as deployed
// clients do) and the SDK's at its default, 2026-07-28; both get the answer.
func TestDirectPathServesGoSDKClient(t *testing.T) {
	t.Parallel()
	deps := Deps{Logger: slog.New(slog.DiscardHandler), RequestID: func(context.Context) string { return "" }}
	var served atomic.Int64
	c := &connector{cfg: Config{Version: "test"}, d: deps, onDirect: func() { served.Add(1) }}
	h := c.httpHandler(directTestDefs(), true)
	id := Identity{Caller: runtime.Caller{OrgID: "org_1"}, Scopes: []string{ScopeRead, ScopeWrite}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		version string
		direct  bool
	}{{"2025-11-25", true}, {"2025-06-18", true}, {"", false}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := sdk.NewClient(&sdk.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx,
			&sdk.StreamableClientTransport{Endpoint: srv.URL}, &sdk.ClientSessionOptions{ProtocolVersion: tc.version})
		require.NoError(t, err, tc.version)
		before := served.Load()
		res, err := s.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
		require.NoError(t, err, tc.version)
		require.False(t, res.IsError, tc.version)
		require.Equal(t, map[string]any{"echo": "hi", "org": "org_1", "marks": "<b>&amp;</b> é \u2028 \t\"quoted\""}, res.StructuredContent, tc.version)
		require.Equal(t, tc.direct, served.Load() == before+1, "%s: served directly", tc.version)
		_ = s.Close()
		cancel()
	}
}
