// Package oauth is the OAuth 2.1 authorization server of the MCP connector
// (SPEC §7, issue 12), on the same host as the API and on its PostgreSQL
// store.
//
// What it supports, and the RFC section each part enforces:
//
//   - Authorization server metadata (RFC 8414) at
//     /.well-known/oauth-authorization-server, and the issuer in every
//     authorization response (RFC 9207).
//   - Protected resource metadata (RFC 9728) for /mcp at
//     /.well-known/oauth-protected-resource/mcp (and at the root path).
//   - Dynamic client registration (RFC 7591) of public clients only
//     (token_endpoint_auth_method none), rate-limited per client address
//     across replicas, with redirect URIs that are https, or http on a
//     loopback host (RFC 8252 §7.3). Grants are swept (Sweep) 30 days
//     after they ended — revoked, or every token expired — and then
//     registrations nobody uses: without a grant a day after registering.
//   - Authorization requests limited per client address and for all
//     addresses together (Deps.AdmitAuthorization): each valid one is
//     stored until it is answered or expires, and swept after.
//   - The authorization code grant with PKCE S256 only (RFC 7636; no plain
//     method, no implicit or password grant: OAuth 2.1), exact redirect URI
//     match (any port on a loopback IP literal, RFC 8252 §7.3), and a consent step on our own pages after a passkey sign-in where
//     the person picks the org and the scopes mcp:read / mcp:write.
//   - Codes that live 60 s and work once; a second exchange revokes every
//     token the code yielded (RFC 6749 §4.1.2, OAuth 2.1 §4.1.3).
//   - Refresh tokens rotated on every use; presenting a used one revokes the
//     whole grant (OAuth 2.1 §4.3.1, the "family").
//   - Token revocation (RFC 7009).
//   - Resource indicators (RFC 8707): every token is bound to the /mcp
//     resource; a request without one gets it, one naming anything else is
//     refused with invalid_target.
//
// Codes and tokens are opaque random strings (oak_ac_, oak_at_, oak_rt_); only
// their SHA-256 is stored. Every registration, consent, issuance, refresh,
// reuse and revocation is written to the audit log.
//
// No library: the maintained Go servers (ory/fosite, zitadel/oidc) bring
// their own storage model and cover neither RFC 9728 nor RFC 8707 together
// with RFC 7591, and what this server needs of them — S256 (one SHA-256 and
// a constant-time compare), random opaque tokens, form parsing — is a few
// lines of the standard library. The protocol steps are small and each names
// the sentence of the RFC it enforces.
package oauth
