package mcp

import "encoding/json"

// writeTools are the tools that need ScopeWrite (from the definitions, so
// the two cannot drift).
var writeTools = func() map[string]bool {
	m := map[string]bool{}
	for _, d := range (*connector)(nil).toolDefs() {
		if d.write {
			m[d.tool.Name] = true
		}
	}
	return m
}()

// RequiredScope is the scope a JSON-RPC request body needs: ScopeWrite for a
// tools/call of a billable tool, ScopeRead for anything else (a body that is
// not one JSON-RPC request is left to the SDK to refuse). The serving
// surface calls it to answer an OAuth token that lacks the scope with an
// HTTP 403 challenge before the request reaches the connector.
func RequiredScope(body []byte) string {
	var req struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &req) != nil || req.Method != "tools/call" || !writeTools[req.Params.Name] {
		return ScopeRead
	}
	return ScopeWrite
}
