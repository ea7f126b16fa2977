package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/api/oauth"
	"oakallow/store"
)

// Connected MCP clients (SPEC §7): the OAuth clients people of the team
// authorized to act in an org through /mcp. Owners and admins list them and
// revoke them, as they do API keys and agent identities. A revocation ends
// the grant, and with it its refresh token and every access token: access
// tokens are looked up in PostgreSQL on every call, so the next call to /mcp
// with one is refused with 401 on every replica.

const tagConnections = "MCP clients"

type listConnectionsInput struct {
	OrgID string `path:"org_id" maxLength:"64" doc:"Org id (org_…)."`
	PageParams
}

type connectionsOutput struct {
	Body struct {
		Items      []oauth.Connection `json:"items" doc:"Clients connected to the org, newest first: each a person's standing authorization with a token that still works."`
		NextCursor string             `json:"next_cursor,omitempty" doc:"Pass as cursor for the next (older) page; absent on the last page."`
	}
}

// connectionCursorKind tags the list's cursors (encodeTimeCursor).
const connectionCursorKind = "mcp_client"

type connectionRefInput struct {
	IdempotencyHeader
	OrgID   string `path:"org_id" maxLength:"64" doc:"Org id (org_…)."`
	GrantID string `path:"grant_id" maxLength:"64" doc:"The connection's id (grt_…) from the list."`
}

func registerConnections(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-mcp-clients", Method: http.MethodGet, Path: "/v1/orgs/{org_id}/mcp-clients",
		Summary: "List connected MCP clients",
		Description: "The OAuth clients connected to the org's MCP connector, newest first, cursor-paginated: who authorized " +
			"each, when, with which scopes, its redirect URIs and when it last called /mcp. Owners and admins.",
		Tags: []string{tagConnections}, Errors: append(teamErrors, http.StatusBadRequest),
	}, accessTeamAdmin), func(ctx context.Context, in *listConnectionsInput) (*connectionsOutput, error) {
		out := &connectionsOutput{}
		out.Body.Items = []oauth.Connection{}
		var before *oauth.ConnectionPosition
		if in.Cursor != "" {
			at, id, err := decodeTimeCursor(in.Cursor, connectionCursorKind)
			if err != nil {
				return nil, err
			}
			before = &oauth.ConnectionPosition{AuthorizedAt: at, GrantID: id}
		}
		if s.oauth == nil {
			return out, nil // no authorization server: nothing can be connected
		}
		items, err := s.oauth.ListConnections(ctx, mustPrincipal(ctx).OrgID, before, in.rowLimit())
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		n := min(len(items), in.Limit)
		out.Body.Items = items[:n]
		if len(items) > in.Limit {
			last := items[n-1]
			out.Body.NextCursor = encodeTimeCursor(connectionCursorKind, last.CreatedAt, last.GrantID)
		}
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "revoke-mcp-client", Method: http.MethodDelete, Path: "/v1/orgs/{org_id}/mcp-clients/{grant_id}",
		Summary: "Revoke a connected MCP client",
		Description: "Ends the person's authorization of the client in this org: its refresh token and every access token stop " +
			"working at once (the next call to /mcp with one answers 401). Audited as oauth.revoked. The client must be " +
			"authorized again to come back. Owners and admins.",
		Tags: []string{tagConnections}, Errors: append(teamErrors, http.StatusNotFound), DefaultStatus: http.StatusNoContent,
	}, accessTeamAdmin), func(ctx context.Context, in *connectionRefInput) (*deleteOutput, error) {
		return manageDelete(ctx, s, in.IdempotencyKey, "revoke-mcp-client:"+in.OrgID+":"+in.GrantID, func(ctx context.Context, p Principal) error {
			if s.oauth == nil {
				return problem(http.StatusNotFound, CodeNotFound, "no such connected client in this org")
			}
			err := s.inTx(ctx, func(q *store.Queries) error {
				return s.oauth.RevokeConnection(ctx, q, p.OrgID, in.GrantID, p.UserID, map[string]any{"session_id": p.SessionID})
			})
			if errors.Is(err, oauth.ErrGrantNotFound) {
				return problem(http.StatusNotFound, CodeNotFound, "no such connected client in this org (or it was revoked already)")
			}
			return err
		})
	})
}
