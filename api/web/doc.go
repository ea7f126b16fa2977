// Package web is the dashboard (SPEC §10, issue 10): server-rendered pages
// embedded in the binary, for reviewers and admins.
//
// The dashboard is a client of the REST API, called in-process: every page
// and form sends the browser's session cookie to the same operation an app
// or a script would call (GET /v1/approvals, POST /v1/auth/email/start, …)
// through the API's own handler, and renders its answer. Who may see or do
// what, the org a session acts in, validation, rate limits and audit are
// therefore decided in one place, the API, and the dashboard cannot drift
// from it. The cost is one JSON encoding and decoding per call, a few
// microseconds next to the database round trip each call makes anyway.
//
// Pages are html/template views over one layout: the standard library's
// contextual auto-escaping, no code generator (templ would add a generate
// step and a tool to every build), and the views stay plain HTML that a
// reviewer of a security product can read.
//
// Browser security: a strict Content-Security-Policy (no inline script or
// style, Trusted Types, frame-ancestors 'none'), cross-origin form posts
// refused by the server's http.CrossOriginProtection (which every route,
// these pages included, passes through), no secret ever in a URL (sign-in
// attempt tokens travel in form bodies, sessions in an HttpOnly cookie).
// The only scripts are small hand-written files in static/: live updates
// of the approvals queue over server-sent events (live.js), and the
// WebAuthn ceremonies (webauthn.js) — passkey sign-in, enrollment and the
// passkey step-up that confirms a decision — which carry the API's options
// to navigator.credentials and the authenticator's answer back in a form
// post; the API verifies it. A session started with an e-mail or recovery
// code reaches nothing but passkey enrollment until a passkey confirms it.
package web
