package api

import (
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"oakallow/api/mcp"
)

// mcpPath is where the MCP connector answers (Streamable HTTP, SPEC §7).
const mcpPath = "/mcp"

// mcpOperation stands for /mcp in the authenticator chain, which reads the
// access level from the operation.
var mcpOperation = huma.Operation{OperationID: "mcp", Method: http.MethodPost, Path: mcpPath,
	Metadata: map[string]any{"access": accessMCP}}

// newConnector builds the MCP connector over the runtime core (Start).
func (s *Server) newConnector() (http.Handler, error) {
	return mcp.NewHandler(mcp.Config{Version: Version}, mcp.Deps{Runtime: s.rt, Logger: s.log, RequestID: requestIDFrom})
}

// serveMCP authenticates an MCP request through the same authenticator chain
// as every REST operation (rate limits on failures included; a refusal is
// the same problem document), then hands it to the connector with the
// caller's identity and scopes.
func (s *Server) serveMCP(w http.ResponseWriter, r *http.Request) {
	ctx := humago.NewContext(&mcpOperation, r, s.mcpWriter(w, r))
	s.authenticate(ctx, func(ctx huma.Context) {
		p := mustPrincipal(ctx.Context())
		if s.insufficientScope(w, r, p) {
			return
		}
		id := mcp.Identity{Caller: p.caller(), Scopes: mcpScopes(p)}
		s.mcp.ServeHTTP(w, r.WithContext(mcp.WithIdentity(ctx.Context(), id)))
	})
}
