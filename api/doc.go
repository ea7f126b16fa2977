// Package api is oakallow's HTTP API: huma v2 operations (one file per
// resource), the API-key authentication middleware, the one mapping from
// domain errors to RFC 9457 problems, health endpoints and the server's
// lifecycle.
//
// Security is declared on each operation (OpenAPI `security` plus the
// required key tier in its metadata) and enforced in one huma middleware,
// authenticate, so an operation cannot forget it: an operation without a
// declared tier is refused at registration.
package api
