package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// The connector answers the call agents make before every tool call — one
// tools/call of one of its tools — directly, and hands every other request to
// the SDK's Streamable HTTP handler.
//
// Why: in stateless mode the SDK builds a server session and a JSON-RPC
// connection for each POST and decodes the body nine times, and go-sdk
// 1.8.0's internal decoder allocates a fresh 32 KiB buffer for every decode
// (segmentio/encoding's Decoder.readValue), so a call cost 288 KiB of zeroed
// memory; allocation and garbage collection took more CPU than the check
// itself (docs/PERFORMANCE.md). The direct path calls the same tool handler
// the SDK calls, with the same arguments, and writes the answer the SDK
// would write, byte for byte (TestDirectCallMatchesSDK); it only takes
// requests whose meaning is beyond doubt and leaves anything else — other
// methods, batches, notifications, _meta, protocol 2026-07-28 and its
// headers, unusual ids, unknown tools, malformed or oversized bodies — to
// the SDK, which answers or refuses them as before.

// directMaxBody is the largest body the direct path reads; a longer one goes
// to the SDK, which applies its own limit.
const directMaxBody = 64 << 10

// directVersions are the MCP-Protocol-Version header values the direct path
// serves: those the SDK's stateless handler serves with synthesized
// initialization, where a tools/call carries no per-request metadata. An
// absent header means 2025-03-26 to the SDK (transports §2.7).
var directVersions = func() []string {
	vs := []string{""}
	for _, v := range sdk.SupportedProtocolVersions() {
		if v < "2026-07-28" {
			vs = append(vs, v)
		}
	}
	return vs
}()

// directRequest is the JSON-RPC 2.0 request the direct path serves, decoded
// with exact key names (the SDK's decoder matches field names
// case-sensitively; encoding/json's struct decoding would not).
type directRequest struct {
	idOut  []byte // the id (a string or a non-negative integer) as the SDK re-encodes it
	tool   string
	args   json.RawMessage
	handle sdk.ToolHandler
}

// serveDirect answers r if it is a tools/call the direct path serves and
// reports whether it did. When it did not, r.Body still yields the whole
// body (and any read error) for the SDK.
func (c *connector) serveDirect(w http.ResponseWriter, r *http.Request, handlers map[string]sdk.ToolHandler) bool {
	if !directHeaders(r.Header) || r.Method != http.MethodPost || r.Body == nil {
		return false
	}
	body, err := readUpTo(r.Body, directMaxBody)
	if err != nil || len(body) > directMaxBody {
		rest := r.Body
		if err != nil {
			rest = io.NopCloser(errReader{err})
		}
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), rest), r.Body}
		return false
	}
	req, ok := parseDirect(body, handlers)
	if !ok {
		r.Body = io.NopCloser(bytes.NewReader(body))
		return false
	}
	if c.onDirect != nil {
		c.onDirect()
	}
	res, err := req.handle(r.Context(), &sdk.CallToolRequest{Params: &sdk.CallToolParamsRaw{Name: req.tool, Arguments: req.args}})
	if err == nil && res == nil {
		err = errors.New("tool handler returned no result")
	}
	if err != nil {
		// The connector's handlers answer every failure as a tool error and
		// never return one; this keeps an impossible case visible.
		res = c.toolError(r.Context(), err)
	}
	if res.Content == nil {
		res.Content = []sdk.Content{} // as the SDK sends it: never null
	}
	out, err := encodeResponse(req.idOut, res)
	if err != nil {
		c.d.Logger.ErrorContext(r.Context(), "mcp encode answer", "request_id", c.d.RequestID(r.Context()), "err", err)
		http.Error(w, "failed to encode the answer", http.StatusInternalServerError)
		return true
	}
	h := w.Header()
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("Content-Type", "application/json")
	_, _ = w.Write(out)
	return true
}

// directHeaders reports whether the headers are those of a request the SDK
// would serve as a plain POST: a JSON body, an Accept that admits both JSON
// and an event stream, a protocol version before 2026-07-28 (or none), no
// stream resumption and no 2026-07-28 standard headers.
func directHeaders(h http.Header) bool {
	if len(h.Values("Last-Event-Id")) > 0 || h.Get("Mcp-Method") != "" || h.Get("Mcp-Name") != "" {
		return false
	}
	if !slices.Contains(directVersions, h.Get("Mcp-Protocol-Version")) {
		return false
	}
	if ct, _, err := mime.ParseMediaType(h.Get("Content-Type")); err != nil || ct != "application/json" {
		return false
	}
	var jsonOK, streamOK bool
	for _, v := range h.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			base, _, _ := strings.Cut(part, ";")
			switch strings.ToLower(strings.TrimSpace(base)) {
			case "application/json":
				jsonOK = true
			case "text/event-stream":
				streamOK = true
			}
		}
	}
	return jsonOK && streamOK
}

// parseDirect decodes body as one tools/call request of a known tool whose
// params hold only its name and arguments; ok is false for anything else.
func parseDirect(body []byte, handlers map[string]sdk.ToolHandler) (req directRequest, ok bool) {
	var msg struct {
		JSONRPC json.RawMessage `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Method  json.RawMessage `json:"method"`
		Params  json.RawMessage `json:"params"`
	}
	if !utf8.Valid(body) || json.Unmarshal(body, &msg) != nil ||
		!plainKeys(body, "jsonrpc", "id", "method", "params") || msg.ID == nil || msg.Params == nil ||
		!bytes.Equal(msg.JSONRPC, []byte(`"2.0"`)) || !bytes.Equal(msg.Method, []byte(`"tools/call"`)) {
		return req, false
	}
	if req.idOut, ok = directID(msg.ID); !ok {
		return req, false
	}
	var params struct {
		Name      *string         `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if json.Unmarshal(msg.Params, &params) != nil || params.Name == nil ||
		!plainKeys(msg.Params, "name", "arguments") {
		return req, false // _meta, inputResponses, requestState: the SDK's
	}
	req.tool, req.args = *params.Name, params.Arguments
	if req.handle, ok = handlers[req.tool]; !ok {
		return req, false // the SDK answers an unknown tool
	}
	return req, true
}

// plainKeys reports whether the valid JSON object obj has only keys among
// allowed, each spelled exactly so and without escapes. (encoding/json
// matches struct fields case-insensitively; the SDK's decoder does not.)
func plainKeys(obj []byte, allowed ...string) bool {
	obj = bytes.TrimLeft(obj, " \t\r\n")
	if len(obj) == 0 || obj[0] != '{' {
		return false
	}
	depth := 0
	for i := 0; i < len(obj); i++ {
		switch obj[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '"':
			start, escaped := i+1, false
			for i++; obj[i] != '"'; i++ {
				if obj[i] == '\\' {
					escaped = true
					i++
				}
			}
			if depth != 1 || !followedByColon(obj[i+1:]) {
				continue // a value, or inside one
			}
			if escaped || !slices.ContainsFunc(allowed, func(k string) bool { return k == string(obj[start:i]) }) {
				return false
			}
		}
	}
	return true
}

// followedByColon reports whether b starts with a colon after whitespace.
func followedByColon(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == ':'
}

// maxExactID is the largest integer id the SDK's float64 decoding keeps
// exact.
const maxExactID = 1 << 53

// directID is a request id as the SDK writes it back: a string re-encoded,
// an integer as decimal; ok is false for a null, fractional, negative,
// exponent or oversized number, or any other type.
func directID(raw json.RawMessage) (out []byte, ok bool) {
	if len(raw) == 0 {
		return nil, false // a notification, or no id
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		out, err := marshalNoEscape(s)
		return out, err == nil
	}
	for _, b := range raw {
		if b < '0' || b > '9' {
			return nil, false
		}
	}
	n, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil || n > maxExactID {
		return nil, false
	}
	return strconv.AppendUint(nil, n, 10), true
}

// encodeResponse is the JSON-RPC response the SDK writes for a tool result:
// {"jsonrpc":"2.0","id":…,"result":…}, encoded without HTML escaping.
func encodeResponse(id []byte, res *sdk.CallToolResult) ([]byte, error) {
	result, err := marshalNoEscape(res)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(`{"jsonrpc":"2.0","id":,"result":}`)+len(id)+len(result))
	out = append(out, `{"jsonrpc":"2.0","id":`...)
	out = append(out, id...)
	out = append(out, `,"result":`...)
	out = append(out, result...)
	return append(out, '}'), nil
}

// marshalNoEscape is json.Marshal without HTML escaping, as the SDK's
// JSON-RPC layer encodes.
func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// readUpTo reads r until EOF or until it has read more than max bytes.
func readUpTo(r io.Reader, max int64) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, max+1))
}

// errReader replays a read error to the SDK.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
