package mcp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"oakallow/api/runtime"
)

// Config configures the connector.
type Config struct {
	// Version is the server version reported to clients and in oakallow://status.
	Version string
}

// Deps are the connector's collaborators.
type Deps struct {
	// Runtime is the runtime core. Required.
	Runtime *runtime.Service
	// Logger gets the causes of internal errors (never sent to clients).
	// Default: discard.
	Logger *slog.Logger
	// RequestID names the HTTP request carried by ctx in log lines. Optional.
	RequestID func(context.Context) string
}

// connector serves the tools and resources of one MCP server.
type connector struct {
	cfg Config
	d   Deps
	// onDirect, when set (by tests), is called for each request the direct
	// path serves.
	onDirect func()
}

// NewHandler returns the Streamable HTTP handler of the connector. Requests
// must carry an Identity (WithIdentity); one without is refused.
func NewHandler(cfg Config, deps Deps) (http.Handler, error) {
	if deps.Runtime == nil {
		return nil, errors.New("mcp: Runtime is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.RequestID == nil {
		deps.RequestID = func(context.Context) string { return "" }
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	c := &connector{cfg: cfg, d: deps}
	return c.httpHandler(c.toolDefs(), true), nil
}

// httpHandler serves defs and the resources over Streamable HTTP; with
// direct, a plain tools/call is answered without the SDK (direct.go).
func (c *connector) httpHandler(defs []toolDef, direct bool) http.Handler {
	srv := sdk.NewServer(&sdk.Implementation{Name: "oakallow", Title: "oakallow", Version: c.cfg.Version},
		&sdk.ServerOptions{
			Instructions: "oakallow decides whether this agent may run a tool. Before every tool call, call " +
				"check_permission. allowed: mint_token with the check_id and pass the token to the tool. " +
				"requires_approval: request_approval, then poll check_approval_status with the reference until " +
				"it is approved (the answer then carries the token) or denied/expired (do not run the tool). " +
				"disabled: do not run the tool.",
			Logger: c.d.Logger,
		})
	// One handler per tool, shared by the SDK and the direct path, so the
	// two cannot differ in what a call does.
	handlers := make(map[string]sdk.ToolHandler, len(defs))
	for _, d := range defs {
		handlers[d.tool.Name] = c.handler(d)
		srv.AddTool(d.tool, handlers[d.tool.Name])
	}
	if !direct {
		handlers = nil
	}
	c.addResources(srv)
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv }, &sdk.StreamableHTTPOptions{
		// Each POST stands alone: no session pins a client to a replica.
		Stateless:    true,
		JSONResponse: true,
		Logger:       c.d.Logger,
		// DNS-rebinding protection refuses loopback requests whose Host is
		// not localhost, which is every request a reverse proxy on the same
		// machine forwards. It guards servers that trust ambient
		// credentials; /mcp trusts none: every request must carry its own
		// bearer credential, which a rebinding page cannot have.
		DisableLocalhostProtection: true,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := identityFrom(r.Context()); !ok {
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		}
		if handlers != nil && c.serveDirect(w, r, handlers) {
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Limits of the tools' inputs, the same as the REST operations'.
const (
	maxNameLen   = 200
	maxReasonLen = 2000
	maxTokenLen  = 4096
	maxPage      = 50
	defaultPage  = 20
)

// toolDef is one tool: its MCP definition, whether it needs ScopeWrite, and
// its handler, which gets the caller and the raw arguments.
type toolDef struct {
	tool  *sdk.Tool
	write bool
	run   func(ctx context.Context, c runtime.Caller, args json.RawMessage) (any, error)
}

func boolPtr(b bool) *bool { return &b }

// toolDefs are the connector's tools.
func (c *connector) toolDefs() []toolDef {
	return []toolDef{
		{tool: &sdk.Tool{
			Name:  "list_my_tools",
			Title: "List my tools",
			Description: "Lists the tools registered in your org: name, description, category, risk level, status " +
				"(draft tools were discovered and await triage), annotations and parameter schema. Free.",
			InputSchema:  json.RawMessage(listToolsInput),
			OutputSchema: json.RawMessage(listToolsOutput),
			Annotations: &sdk.ToolAnnotations{Title: "List my tools", ReadOnlyHint: true, IdempotentHint: true,
				DestructiveHint: boolPtr(false), OpenWorldHint: boolPtr(false)},
		}, run: c.listTools},
		{tool: &sdk.Tool{
			Name:  "check_permission",
			Title: "Check permission",
			Description: "Asks whether a tool call may run. Answers allowed, requires_approval or disabled with the " +
				"deciding level, a check_id (mint_token takes it when allowed) and a signed receipt. " +
				"A tool the org has not registered is registered as a draft for its admins to triage (within the org's " +
				"auto-discovery caps) and answers requires_approval. " +
				"Billable ($0.005); every check is recorded in the audit log.",
			InputSchema:  json.RawMessage(checkInput),
			OutputSchema: json.RawMessage(checkOutput),
			// Not read-only and not idempotent: each call is billed and
			// recorded, and answers with a new check id. Open-world: checking
			// an unknown tool registers it and notifies the org (webhook,
			// channels). Not destructive: it only adds.
			Annotations: &sdk.ToolAnnotations{Title: "Check permission", ReadOnlyHint: false, IdempotentHint: false,
				DestructiveHint: boolPtr(false), OpenWorldHint: boolPtr(true)},
		}, write: true, run: c.check},
		{tool: &sdk.Tool{
			Name:  "request_approval",
			Title: "Request approval",
			Description: "Asks the org's reviewers to approve a tool call that needs approval. Answers the approval's " +
				"reference (REF-…); poll check_approval_status with it. Reviewers are notified (webhooks, Slack, …). " +
				"Refused for a disabled verdict or an unknown tool. Billable ($0.005).",
			InputSchema:  json.RawMessage(approvalInput),
			OutputSchema: json.RawMessage(approvalCreatedOutput),
			// Open world: it notifies people outside this server.
			Annotations: &sdk.ToolAnnotations{Title: "Request approval", ReadOnlyHint: false, IdempotentHint: false,
				DestructiveHint: boolPtr(false), OpenWorldHint: boolPtr(true)},
		}, write: true, run: c.requestApproval},
		{tool: &sdk.Tool{
			Name:  "list_pending_approvals",
			Title: "List pending approvals",
			Description: "Lists the approvals you requested that are still waiting for a decision, newest first " +
				"(a management key sees all of the org's). Free.",
			InputSchema:  json.RawMessage(listApprovalsInput),
			OutputSchema: json.RawMessage(listApprovalsOutput),
			Annotations: &sdk.ToolAnnotations{Title: "List pending approvals", ReadOnlyHint: true, IdempotentHint: true,
				DestructiveHint: boolPtr(false), OpenWorldHint: boolPtr(false)},
		}, run: c.listPending},
		{tool: &sdk.Tool{
			Name:  "check_approval_status",
			Title: "Check approval status",
			Description: "Reads an approval you requested by its reference (REF-…): pending, approved, denied or " +
				"expired, the decisions so far, and once approved the single-use execution token for the call. " +
				"Another credential's approval is not found. Free.",
			InputSchema:  json.RawMessage(approvalStatusInput),
			OutputSchema: json.RawMessage(approvalStatusOutput),
			Annotations: &sdk.ToolAnnotations{Title: "Check approval status", ReadOnlyHint: true, IdempotentHint: true,
				DestructiveHint: boolPtr(false), OpenWorldHint: boolPtr(false)},
		}, run: c.approvalStatus},
		{tool: &sdk.Tool{
			Name:  "mint_token",
			Title: "Mint execution token",
			Description: "Mints the single-use execution token for an allowed check (check_id, within 10 minutes of " +
				"the check) or an approved approval (approval_id: its id or reference) that you made. The same source always gives " +
				"the same token; the org's current policy is asked again first. Billable ($0.005); refusals are not billed.",
			InputSchema:  json.RawMessage(mintInput),
			OutputSchema: json.RawMessage(mintOutput),
			// Not idempotent in effect: every successful call is billed.
			Annotations: &sdk.ToolAnnotations{Title: "Mint execution token", ReadOnlyHint: false, IdempotentHint: false,
				DestructiveHint: boolPtr(false), OpenWorldHint: boolPtr(false)},
		}, write: true, run: c.mint},
	}
}

// handler wraps a tool: the caller's scope and org argument are checked,
// the result is sent as structured content (and as its JSON text), and every
// error becomes a tool error through toolError.
func (c *connector) handler(d toolDef) sdk.ToolHandler {
	return func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		id, ok := identityFrom(ctx)
		if !ok {
			return c.toolError(ctx, refusal{code: "unauthenticated", detail: "no credential"}), nil
		}
		if !id.can(ScopeRead) || (d.write && !id.can(ScopeWrite)) {
			need := ScopeRead
			if d.write {
				need = ScopeWrite
			}
			return c.toolError(ctx, refusal{code: "insufficient_scope",
				detail: fmt.Sprintf("%s needs the %s scope, which this credential was not granted", d.tool.Name, need)}), nil
		}
		args := req.Params.Arguments
		if err := checkOrg(args, id.Caller.OrgID); err != nil {
			return c.toolError(ctx, err), nil
		}
		out, err := d.run(ctx, id.Caller, args)
		if err != nil {
			return c.toolError(ctx, err), nil
		}
		b, err := json.Marshal(out)
		if err != nil {
			return c.toolError(ctx, fmt.Errorf("encode result: %w", err)), nil
		}
		return &sdk.CallToolResult{StructuredContent: json.RawMessage(b),
			Content: []sdk.Content{&sdk.TextContent{Text: string(b)}}}, nil
	}
}

// refusal is a refused tool call that is not the runtime's: bad arguments,
// missing scope, wrong org.
type refusal struct {
	code   string
	detail string
	field  string
}

func (r refusal) Error() string { return r.code + ": " + r.detail }

func invalid(field, detail string) error {
	return refusal{code: runtime.CodeValidationFailed, detail: detail, field: field}
}

// toolErrorBody is the structured content of a tool error.
type toolErrorBody struct {
	Error   string       `json:"error"`
	Message string       `json:"message"`
	Fields  []fieldError `json:"fields,omitempty"`
}

type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// toolError is the one place errors become MCP tool errors: a stable code
// and a message the model may read. Runtime refusals keep their code and
// detail; an unexpected error is logged with its cause and answered with a
// generic message.
func (c *connector) toolError(ctx context.Context, err error) *sdk.CallToolResult {
	body := toolErrorBody{}
	var rf refusal
	switch re, isRuntime := runtime.AsError(err); {
	case isRuntime:
		body.Error, body.Message = re.Code, re.Detail
		for _, f := range re.Fields {
			body.Fields = append(body.Fields, fieldError{Field: f.Location, Message: f.Message})
		}
	case errors.As(err, &rf):
		body.Error, body.Message = rf.code, rf.detail
		if rf.field != "" {
			body.Fields = []fieldError{{Field: rf.field, Message: rf.detail}}
		}
	default:
		body.Error, body.Message = storeErrorCode(err)
		if body.Error == "internal_error" {
			c.d.Logger.ErrorContext(ctx, "mcp tool failed", "request_id", c.d.RequestID(ctx), "err", err)
		}
	}
	b, _ := json.Marshal(body) // a struct of strings always encodes
	return &sdk.CallToolResult{IsError: true, StructuredContent: json.RawMessage(b),
		Content: []sdk.Content{&sdk.TextContent{Text: body.Error + ": " + body.Message}}}
}

// decodeArgs decodes a tool's arguments into v, refusing unknown fields,
// trailing data and anything but one JSON object.
func decodeArgs(args json.RawMessage, v any) error {
	if len(bytes.TrimSpace(args)) == 0 {
		args = json.RawMessage(`{}`)
	}
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("", "arguments do not match the tool's input schema: "+safeDecodeError(err))
	}
	if dec.More() {
		return invalid("", "arguments must be one JSON object")
	}
	return nil
}

// safeDecodeError is a decode error's message without the input's content.
func safeDecodeError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s must be %s", te.Field, te.Type.Kind())
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "json: unknown field ") {
		return "unknown argument " + strings.TrimPrefix(msg, "json: unknown field ")
	}
	return "malformed JSON"
}

// checkOrg refuses an org argument that names another org than the
// credential's (SPEC §7: optional with one org).
func checkOrg(args json.RawMessage, orgID string) error {
	var a struct {
		Org *string `json:"org"`
	}
	if !bytes.Contains(args, []byte(`"org"`)) {
		return nil // the usual case costs no decode
	}
	if err := json.Unmarshal(args, &a); err != nil || a.Org == nil || *a.Org == "" {
		return nil // malformed arguments are refused by the tool's own decode
	}
	if *a.Org != orgID {
		return refusal{code: "wrong_org", field: "org", detail: fmt.Sprintf(
			"this credential acts for org %s only; leave org out or give that id", orgID)}
	}
	return nil
}

// text checks a string argument's length (in characters) and encoding.
func text(field, v string, min, max int) error {
	if !utf8.ValidString(v) {
		return invalid(field, field+" must be valid UTF-8")
	}
	n := utf8.RuneCountInString(v)
	if n < min || n > max {
		if min > 0 && n == 0 {
			return invalid(field, field+" is required")
		}
		return invalid(field, fmt.Sprintf("%s must be at most %d characters", field, max))
	}
	return nil
}

// object checks that a free-form argument is a JSON object (or absent).
func object(field string, v json.RawMessage) error {
	b := bytes.TrimSpace(v)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) || b[0] == '{' {
		return nil
	}
	return invalid(field, field+" must be a JSON object")
}

// objectOrNil is v, or nil for an absent or null object.
func objectOrNil(v json.RawMessage) json.RawMessage {
	b := bytes.TrimSpace(v)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil
	}
	return b
}

// callArgs are the arguments check_permission and request_approval share.
type callArgs struct {
	Org         string          `json:"org"`
	Tool        string          `json:"tool"`
	Tenant      string          `json:"tenant"`
	Resource    string          `json:"resource"`
	Method      string          `json:"method"`
	Parameters  json.RawMessage `json:"parameters"`
	Context     json.RawMessage `json:"context"`
	ReferenceID string          `json:"reference_id"`
}

func (a *callArgs) call() (runtime.Call, error) {
	for _, f := range [...]struct {
		name     string
		v        string
		min, max int
	}{{"tool", a.Tool, 1, maxNameLen}, {"tenant", a.Tenant, 0, maxNameLen}, {"resource", a.Resource, 0, maxNameLen},
		{"method", a.Method, 0, maxNameLen}, {"reference_id", a.ReferenceID, 0, maxNameLen}} {
		if err := text(f.name, f.v, f.min, f.max); err != nil {
			return runtime.Call{}, err
		}
	}
	if err := object("parameters", a.Parameters); err != nil {
		return runtime.Call{}, err
	}
	if err := object("context", a.Context); err != nil {
		return runtime.Call{}, err
	}
	return runtime.Call{Tool: a.Tool, Tenant: a.Tenant, Resource: a.Resource, Method: a.Method,
		Parameters: objectOrNil(a.Parameters), Context: objectOrNil(a.Context), ReferenceID: a.ReferenceID}, nil
}

func (c *connector) check(ctx context.Context, caller runtime.Caller, args json.RawMessage) (any, error) {
	var a struct {
		callArgs
		Reason string `json:"reason"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	call, err := a.call()
	if err != nil {
		return nil, err
	}
	if err := text("reason", a.Reason, 0, maxReasonLen); err != nil {
		return nil, err
	}
	return c.d.Runtime.Check(ctx, caller, &runtime.CheckRequest{Call: call, Reason: a.Reason, Discover: true})
}

func (c *connector) requestApproval(ctx context.Context, caller runtime.Caller, args json.RawMessage) (any, error) {
	var a struct {
		callArgs
		Reasoning      string `json:"reasoning"`
		TimeoutSeconds *int64 `json:"timeout_seconds"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	call, err := a.call()
	if err != nil {
		return nil, err
	}
	if err := text("reasoning", a.Reasoning, 1, maxReasonLen); err != nil {
		return nil, err
	}
	return c.d.Runtime.RequestApproval(ctx, caller, &runtime.ApprovalRequest{Call: call, Reasoning: a.Reasoning,
		TimeoutSeconds: a.TimeoutSeconds})
}

// approvalStatus is an approval as check_approval_status and
// list_pending_approvals show it: without the stored parameters and context
// (the agent sent them; reviewers read them).
type approvalStatus struct {
	ID             string             `json:"id"`
	Reference      string             `json:"reference"`
	Status         string             `json:"status"`
	Level          int                `json:"level"`
	Levels         int                `json:"levels"`
	Tool           string             `json:"tool"`
	Tenant         string             `json:"tenant,omitempty"`
	Resource       string             `json:"resource,omitempty"`
	Method         string             `json:"method,omitempty"`
	ReferenceID    string             `json:"reference_id,omitempty"`
	ExpiresAt      time.Time          `json:"expires_at"`
	CreatedAt      time.Time          `json:"created_at"`
	DecidedAt      *time.Time         `json:"decided_at,omitempty"`
	Decisions      []runtime.Decision `json:"decisions"`
	Token          string             `json:"token,omitempty"`
	TokenExpiresAt *time.Time         `json:"token_expires_at,omitempty"`
}

func statusOf(a runtime.Approval) approvalStatus {
	return approvalStatus{ID: a.ID, Reference: a.Reference, Status: a.Status, Level: a.Level, Levels: a.Levels,
		Tool: a.Tool, Tenant: a.Tenant, Resource: a.Resource, Method: a.Method, ReferenceID: a.ReferenceID,
		ExpiresAt: a.ExpiresAt, CreatedAt: a.CreatedAt, DecidedAt: a.DecidedAt, Decisions: a.Decisions,
		Token: a.Token, TokenExpiresAt: a.TokenExpiresAt}
}

func (c *connector) approvalStatus(ctx context.Context, caller runtime.Caller, args json.RawMessage) (any, error) {
	var a struct {
		Org       string `json:"org"`
		Reference string `json:"reference"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if err := text("reference", a.Reference, 1, maxNameLen); err != nil {
		return nil, err
	}
	ap, err := c.d.Runtime.GetApproval(ctx, caller, a.Reference, true)
	if err != nil {
		return nil, err
	}
	return statusOf(ap), nil
}

func (c *connector) listPending(ctx context.Context, caller runtime.Caller, args json.RawMessage) (any, error) {
	var a struct {
		Org    string `json:"org"`
		Tool   string `json:"tool"`
		Limit  int    `json:"limit"`
		Cursor string `json:"cursor"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if err := text("tool", a.Tool, 0, maxNameLen); err != nil {
		return nil, err
	}
	if a.Limit == 0 {
		a.Limit = defaultPage
	}
	if a.Limit < 1 || a.Limit > maxPage {
		return nil, invalid("limit", fmt.Sprintf("limit must be 1 … %d", maxPage))
	}
	q := runtime.ApprovalQuery{Status: "pending", Tool: a.Tool, Limit: a.Limit}
	if a.Cursor != "" {
		pos, err := decodeApprovalCursor(a.Cursor)
		if err != nil {
			return nil, err
		}
		q.Before = &pos
	}
	page, err := c.d.Runtime.ListApprovals(ctx, caller, q)
	if err != nil {
		return nil, err
	}
	out := struct {
		Approvals  []approvalStatus `json:"approvals"`
		NextCursor string           `json:"next_cursor,omitempty"`
	}{Approvals: make([]approvalStatus, 0, len(page.Items))}
	for _, ap := range page.Items {
		out.Approvals = append(out.Approvals, statusOf(ap))
	}
	if page.Next != nil {
		out.NextCursor = encodeCursor(page.Next.CreatedAt.UTC().Format(time.RFC3339Nano) + "/" + page.Next.ID)
	}
	return out, nil
}

func (c *connector) mint(ctx context.Context, caller runtime.Caller, args json.RawMessage) (any, error) {
	var a struct {
		Org        string `json:"org"`
		CheckID    string `json:"check_id"`
		ApprovalID string `json:"approval_id"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if err := text("check_id", a.CheckID, 0, maxNameLen); err != nil {
		return nil, err
	}
	if err := text("approval_id", a.ApprovalID, 0, maxNameLen); err != nil {
		return nil, err
	}
	return c.d.Runtime.Mint(ctx, caller, runtime.MintRequest{CheckID: a.CheckID, ApprovalID: a.ApprovalID})
}

func (c *connector) listTools(ctx context.Context, caller runtime.Caller, args json.RawMessage) (any, error) {
	var a struct {
		Org    string `json:"org"`
		Limit  int    `json:"limit"`
		Cursor string `json:"cursor"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Limit == 0 {
		a.Limit = maxPage
	}
	if a.Limit < 1 || a.Limit > maxPage {
		return nil, invalid("limit", fmt.Sprintf("limit must be 1 … %d", maxPage))
	}
	after := ""
	if a.Cursor != "" {
		pos, err := decodeCursor(a.Cursor)
		if err != nil {
			return nil, err
		}
		after = pos
	}
	tools, next, err := c.d.Runtime.ListTools(ctx, caller.OrgID, after, a.Limit)
	if err != nil {
		return nil, err
	}
	out := struct {
		Tools      []runtime.ToolSummary `json:"tools"`
		NextCursor string                `json:"next_cursor,omitempty"`
	}{Tools: tools, NextCursor: encodeCursor(next)}
	return out, nil
}

// Cursors are opaque to clients: base64url of an internal position.
func encodeCursor(pos string) string {
	if pos == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(pos))
}

func decodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) == 0 || len(b) > 200 || !runtime.Storable(string(b)) {
		return "", invalid("cursor", "cursor is not one this tool returned")
	}
	return string(b), nil
}

func decodeApprovalCursor(c string) (runtime.ApprovalPosition, error) {
	pos, err := decodeCursor(c)
	if err != nil {
		return runtime.ApprovalPosition{}, err
	}
	ts, id, ok := strings.Cut(pos, "/")
	at, perr := time.Parse(time.RFC3339Nano, ts)
	if !ok || id == "" || perr != nil {
		return runtime.ApprovalPosition{}, invalid("cursor", "cursor is not one this tool returned")
	}
	return runtime.ApprovalPosition{CreatedAt: at, ID: id}, nil
}
