package mcp

import (
	"context"
	"slices"

	"oakallow/api/runtime"
)

// Scopes a credential may grant on the connector (SPEC §7).
const (
	// ScopeRead: list tools, read approvals, read the resources (all free).
	ScopeRead = "mcp:read"
	// ScopeWrite: the billable calls — check_permission, request_approval,
	// mint_token.
	ScopeWrite = "mcp:write"
)

// Identity is the authenticated caller of an MCP request: its org and
// credential (as the audit log names them) and the scopes it was granted.
type Identity struct {
	Caller runtime.Caller
	Scopes []string
}

// can reports whether the identity was granted scope.
func (id Identity) can(scope string) bool { return slices.Contains(id.Scopes, scope) }

type identityKey struct{}

// WithIdentity returns ctx carrying the request's identity; the serving
// surface calls it after authenticating the request.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

func identityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}
