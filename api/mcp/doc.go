// Package mcp is oakallow's MCP connector (SPEC §7): a Streamable HTTP
// endpoint built on the official Go SDK (github.com/modelcontextprotocol/go-sdk)
// that offers agents the runtime — list_my_tools, check_permission,
// request_approval, list_pending_approvals, check_approval_status and
// mint_token — and the resources oakallow://status and oakallow://credits.
//
// Every tool calls the same runtime core (api/runtime) as the REST API, so
// billing, audit, schema validation, parameter binding and scrubbing are
// exactly those of REST. Deciding an approval is not offered: the connector
// can never decide. Runtime errors become tool errors in one place
// (toolError): the model sees a stable code and a safe message, never an
// internal error's text.
//
// Authentication is the serving surface's: it authenticates each HTTP request
// and attaches an Identity (WithIdentity) before the request reaches
// Handler. The server is stateless (each POST is complete in itself, no
// session to pin to a replica) and answers application/json, which suits a
// load balancer in front of several replicas.
package mcp
