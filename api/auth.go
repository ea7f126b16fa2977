package api

// Authentication and authorization: the one middleware every operation passes.
//
// The authenticator chain yields one Principal per request:
//
//  1. An API key — X-API-Key, or Authorization: Bearer with a value that is not
//     a session token — looked up in the in-memory KeyCache (one SHA-256 and
//     one map lookup; the check path is benchmarked, so nothing is added here).
//  2. A session of a person — Authorization: Bearer oak_ses_… (mobile and
//     other clients) or, when no credential header is sent, the session cookie
//     (browsers) — looked up in PostgreSQL (sessions.go).
//  3. An agent identity — Authorization: Bearer oak_agent_… (or X-API-Key)
//     — looked up in the same KeyCache as API keys (checked first: before
//     any other bearer token kind), yielding a Principal of kind
//     PrincipalAgent. Requirements with agents set accept it: the runtime
//     endpoints, reading approvals, and /mcp.
//  4. An OAuth access token (api/oauth), told apart by its prefix in
//     credentialOf, yielding a Principal of kind PrincipalOAuth with the
//     scopes it was granted (/mcp only).
//
// Each operation declares an access level (withAccess); requirements maps it
// to the key tiers and session roles it admits, which is also what
// /openapi.json shows as the operation's security requirements with scopes.
//
// Passkey MFA is mandatory (SPEC §8): a session started by an e-mail code or
// a recovery code is enrollment-only and reaches only operations declared
// with accessEnrollment (passkey enrollment, sign-out, /v1/me) until a passkey
// verified it. For the passkey endpoints (passkeys.go and friends):
//
//   - declare enrollment operations with accessEnrollment; their handler
//     reads the session with mustPrincipal(ctx) (Kind PrincipalUser,
//     UserID, SessionID, Enrollment true for an enrollment-only session).
//     A user who already has a passkey must prove it before adding another:
//     an e-mail code alone must never yield a full session.
//   - s.startSession(ctx, q, newSession{UserID, Full: true, Method:
//     sessionMethodPasskey, …}) starts a full session after a passkey sign-in
//     (and with Full: false, Method: sessionMethodRecoveryCode after a
//     recovery code); s.upgradeSession(ctx, q, sessionID) makes an
//     enrollment-only session full after the enrollment, under a new token.
//     Both return an issuedSession; answer with s.sessionAnswer(issued),
//     which sets the cookie (browsers) or carries the token (apps).
//   - s.auditIdentity records the identity event (enrollment, recovery …).

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/api/oauth"
)

// Access levels an operation declares in its metadata under "access".
const (
	// accessPublic needs no credentials (health, docs, sign-in).
	accessPublic = "public"
	// accessRuntime: standard keys only (billable runtime calls).
	accessRuntime = "runtime"
	// accessRuntimeRead: standard keys only, free reads of runtime data.
	accessRuntimeRead = "runtime_read"
	// accessManageRead: management keys, standard keys (read-only), and
	// owner/admin sessions in the selected org.
	accessManageRead = "manage_read"
	// accessManageWrite: management keys and owner/admin sessions in the
	// selected org.
	accessManageWrite = "manage_write"
	// accessManageWriteKey: management keys only — writes whose records
	// name the key that made them (the Slack install).
	accessManageWriteKey = "manage_write_key"
	// accessApprovalsRead: any key of the org, and every member's session
	// (reviewers see the approvals of their team's orgs).
	accessApprovalsRead = "approvals_read"
	// accessReview: every member's full session in the selected org, never a
	// key (asking for a decision's passkey options).
	accessReview = "review"
	// accessDecide: management keys (when the org allows it) and every
	// member's session in the selected org (with a passkey assertion) — the handler
	// checks the org setting.
	accessDecide = "decide"
	// accessTeamAdmin: owner/admin sessions of the selected team, never a
	// key (orgs, API keys, invitations, roles: SPEC §3).
	accessTeamAdmin = "team_admin"
	// accessTeamRead: every member's session of the selected team.
	accessTeamRead = "team_read"
	// accessSelf: any full session, about the signed-in person (sessions).
	accessSelf = "self"
	// accessEnrollment: any session, enrollment-only ones too: passkey
	// enrollment, sign-out, /v1/me.
	accessEnrollment = "enrollment"
	// accessMCP: the MCP connector (/mcp): standard keys (mcp:read and
	// mcp:write), management keys (mcp:read) and OAuth access tokens (the
	// scopes granted, oauth.go); agent identities join them.
	accessMCP = "mcp"
)

// Session roles (memberships.role).
const (
	RoleOwner    = "owner"
	RoleAdmin    = "admin"
	RoleReviewer = "reviewer"
)

// scope is what an operation needs of a session beyond being signed in.
type scope int

const (
	scopeNone scope = iota // no team or org (the person's own things)
	scopeTeam              // a team: X-Oakallow-Team, the selected org's team, or the only one
	scopeOrg               // an org: X-Oakallow-Org (or path org_id), or the only one
)

// requirement is who may call an operation of an access level.
type requirement struct {
	tiers      []string // API key tiers
	agents     bool     // agent identities
	roles      []string // roles of full sessions
	enrollment bool     // enrollment-only sessions too
	scope      scope
}

var (
	allRoles   = []string{RoleOwner, RoleAdmin, RoleReviewer}
	adminRoles = []string{RoleOwner, RoleAdmin}
)

var requirements = map[string]requirement{
	accessRuntime:        {tiers: []string{TierStandard}, agents: true},
	accessRuntimeRead:    {tiers: []string{TierStandard}, agents: true},
	accessManageRead:     {tiers: []string{TierManagement, TierStandard}, roles: adminRoles, scope: scopeOrg},
	accessManageWrite:    {tiers: []string{TierManagement}, roles: adminRoles, scope: scopeOrg},
	accessManageWriteKey: {tiers: []string{TierManagement}},
	accessApprovalsRead:  {tiers: []string{TierManagement, TierStandard}, agents: true, roles: allRoles, scope: scopeOrg},
	accessDecide:         {tiers: []string{TierManagement}, roles: allRoles, scope: scopeOrg},
	accessReview:         {roles: allRoles, scope: scopeOrg},
	accessTeamAdmin:      {roles: adminRoles, scope: scopeTeam},
	accessTeamRead:       {roles: allRoles, scope: scopeTeam},
	accessSelf:           {roles: allRoles},
	accessEnrollment:     {roles: allRoles, enrollment: true},
	accessMCP:            {tiers: []string{TierManagement, TierStandard}, agents: true},
}

// Security schemes in the OpenAPI document. Scopes name key tiers (apiKey)
// and session roles (session, sessionToken; "enrollment" for operations an
// enrollment-only session may call).
const (
	securityScheme        = "apiKey"
	securitySessionCookie = "session"
	securitySessionToken  = "sessionToken"
	securityAgent         = "agent"
	scopeEnrollment       = "enrollment"
)

// withAccess sets an operation's declared security and access level.
func withAccess(op huma.Operation, access string) huma.Operation {
	if op.Metadata == nil {
		op.Metadata = map[string]any{}
	}
	op.Metadata["access"] = access
	if access != accessPublic {
		req, ok := requirements[access]
		if !ok {
			panic("api: unknown access level " + access)
		}
		op.Security = securityOf(req)
		if !slices.Contains(op.Errors, http.StatusTooManyRequests) {
			// Any caller with a key can meet a rate limit (see limits.go).
			op.Errors = append(op.Errors, http.StatusTooManyRequests)
		}
	}
	if op.MaxBodyBytes == 0 {
		op.MaxBodyBytes = maxBodyBytes
	}
	return op
}

// securityOf is the OpenAPI security requirement of req: alternatives, each
// a scheme with the scopes it must carry.
func securityOf(req requirement) []map[string][]string {
	var sec []map[string][]string
	if len(req.tiers) > 0 {
		sec = append(sec, map[string][]string{securityScheme: slices.Clone(req.tiers)})
	}
	if req.agents {
		sec = append(sec, map[string][]string{securityAgent: {}})
	}
	if len(req.roles) > 0 {
		roles := slices.Clone(req.roles)
		if req.enrollment {
			roles = append(roles, scopeEnrollment)
		}
		sec = append(sec, map[string][]string{securitySessionCookie: roles},
			map[string][]string{securitySessionToken: slices.Clone(roles)})
	}
	return sec
}

// Credential kinds a request can present.
const (
	credAPIKey = iota
	credSession
	credSessionCookie
	credOAuth
)

// credentialOf returns what the request presents: X-API-Key is always an
// API key; a bearer token is a session token by its prefix and an API key
// otherwise (so a malformed bearer still fails as an unknown key, counted
// by the per-key limits); with neither header, the session cookie. No
// credential at all is an empty API key, refused like an unknown one.
func (s *Server) credentialOf(ctx huma.Context) (int, string) {
	if k := ctx.Header("X-API-Key"); k != "" {
		return credAPIKey, strings.TrimSpace(k)
	}
	if a := ctx.Header("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		v := strings.TrimSpace(a[7:])
		if strings.HasPrefix(v, sessionTokenPrefix) {
			return credSession, v
		}
		// API keys and agent identities (oak_agent_…) share the key cache,
		// looked up below; OAuth access tokens have a prefix of their own.
		if oauth.IsAccessToken(v) {
			return credOAuth, v
		}
		return credAPIKey, v
	}
	if c := s.sessionCookie(ctx); c != "" {
		return credSessionCookie, c
	}
	return credAPIKey, ""
}

// authenticate is the one place API security is enforced: it resolves the
// caller and checks the operation's declared access level against the key
// tier or the session's role. An operation that declares nothing is refused
// (fail closed).
func (s *Server) authenticate(ctx huma.Context, next func(huma.Context)) {
	access, _ := ctx.Operation().Metadata["access"].(string)
	if access == accessPublic {
		next(ctx)
		return
	}
	if access == "" {
		huma.WriteErr(s.api, ctx, http.StatusInternalServerError, "operation declares no access level")
		return
	}
	kind, raw := s.credentialOf(ctx)
	// An address past its budget of failures is refused before its key is
	// looked at, a correct key too: otherwise a guesser would still learn
	// from every attempt. While no address is held back (Active is one
	// atomic load) a request pays for nothing more, not even finding out
	// where it comes from.
	var ip netip.Addr
	ipKnown := false
	if s.limits.authIP.Active() {
		ip, ipKnown = s.limits.clientIP(ctx), true
		if v := s.limits.authIP.Check(ip, s.deps.Now()); v.Limited {
			s.refuse(ctx, limitAuthFailuresPerIP, v, limited{ip: ip}, "too many failed authentications from this address")
			return
		}
	}
	if kind != credAPIKey {
		if !ipKnown {
			ip = s.limits.clientIP(ctx)
		}
		if kind == credOAuth {
			s.authenticateOAuth(ctx, next, access, raw, ip)
			return
		}
		s.authenticateSession(ctx, next, access, raw, ip)
		return
	}
	p, ok := s.keys.Lookup(raw)
	if !ok {
		if !ipKnown {
			ip = s.limits.clientIP(ctx)
		}
		s.authFailed(ctx, raw, ip)
		return
	}
	allowed := false
	switch {
	case p.Kind == PrincipalAgent:
		allowed = requirements[access].agents
	case access == accessRuntime, access == accessRuntimeRead:
		allowed = p.Tier == TierStandard
	case access == accessManageRead, access == accessApprovalsRead, access == accessMCP:
		allowed = true
	case access == accessManageWrite, access == accessManageWriteKey, access == accessDecide:
		allowed = p.Tier == TierManagement
	}
	if !allowed {
		msg := "this endpoint needs a standard (runtime) key"
		switch access {
		case accessManageWrite, accessManageWriteKey, accessDecide, accessManageRead:
			msg = "this endpoint needs a management key"
		case accessTeamAdmin, accessTeamRead, accessSelf, accessEnrollment, accessReview:
			msg = "this endpoint needs a signed-in person's session, not an API key"
		}
		if p.Kind == PrincipalAgent {
			msg = "agent identities call the runtime endpoints and /mcp only; they never change setup or decide"
		}
		writeProblem(s.api, ctx, problem(http.StatusForbidden, CodeWrongKeyTier, msg))
		return
	}
	next(huma.WithValue(ctx, principalKey, p))
}

func writeProblem(api huma.API, ctx huma.Context, p *Problem) {
	p.RequestID = requestIDFrom(ctx.Context())
	ctx.SetHeader("Content-Type", "application/problem+json")
	for k, vs := range p.headers {
		for _, v := range vs {
			ctx.AppendHeader(k, v)
		}
	}
	ctx.SetStatus(p.Status)
	_ = api.Marshal(ctx.BodyWriter(), "application/json", p)
}

// mustPrincipal returns the authenticated caller; authenticate guarantees it
// exists for every non-public operation.
func mustPrincipal(ctx context.Context) Principal {
	p, ok := principalFrom(ctx)
	if !ok {
		panic("api: operation reached without a principal; authenticate middleware missing")
	}
	return p
}

// countRequests counts every operation's answers by status class.
func (s *Server) countRequests(ctx huma.Context, next func(huma.Context)) {
	next(ctx)
	s.metrics.requests.WithLabelValues(ctx.Operation().OperationID, statusClass(ctx.Status())).Inc()
}
