// Package mcpjourney holds the walk a new user takes to connect an MCP
// client to `make dev`, as a test against the same stack `go run ./dev`
// starts (package devstack), in this process: a person signs up on the
// dashboard in a real headless Chromium (an e-mail code from the dev
// mailbox, a passkey on the DevTools virtual authenticator), creates an org
// and registers a tool; the official go-sdk MCP client, given nothing but
// the /mcp URL, discovers the authorization server, registers itself
// (RFC 7591) and sends the person's browser to sign in with the passkey and
// consent; the agent then checks permissions, sees an unknown tool become a
// draft on the dashboard, requests approvals that the person approves and
// denies in the browser, and gets its execution token only for the approved
// one.
//
// The test is skipped when no Chromium is installed. Set
// OAKALLOW_WALK_URL=http://localhost:8080 to walk a running `make dev`
// instead of starting a stack, and OAKALLOW_SCREENSHOTS=dir to keep a
// screenshot of each page the person sees.
package mcpjourney
