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

// withMCPCORS lets browser-based MCP clients on any origin call /mcp: it
// answers preflights itself, before authentication (a preflight carries no
// credentials), and exposes the headers a client must read. The wildcard
// origin never admits credentialed (cookie) requests, and /mcp accepts none.
func withMCPCORS(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Expose-Headers", "Mcp-Session-Id, WWW-Authenticate")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, X-API-Key, Content-Type, Accept, Mcp-Protocol-Version, Mcp-Session-Id, Last-Event-ID")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next(w, r)
	}
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
