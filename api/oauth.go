package api

// The OAuth 2.1 authorization server of the MCP connector (api/oauth) on this
// server: its endpoints on the mux, its access tokens as a link of the
// authenticator chain (for /mcp only), the RFC 9728 / RFC 6750 challenges of
// /mcp, and the two operations the consent page (api/web) calls.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"oakallow/api/mcp"
	"oakallow/api/oauth"
)

// PrincipalOAuth is the kind of a caller authenticated by an OAuth access
// token: KeyID is its grant (one person, one client, one org), UserID the
// person who consented, Scopes what they granted.
const PrincipalOAuth = "oauth"

// Problem codes of the consent operations.
const (
	CodeOAuthRequestNotFound = "oauth_request_not_found"
	CodeConsentCSRF          = "consent_csrf_failed"
	CodeInsufficientScope    = "insufficient_scope"
	CodeOAuthTokenOnlyForMCP = "oauth_token_only_for_mcp"
)

// newOAuth builds the authorization server and mounts its endpoints.
func (s *Server) newOAuth() error {
	srv, err := oauth.New(oauth.Config{Issuer: s.cfg.PublicURL, RegisterLimit: s.cfg.OAuthRegistrationsPerIP},
		oauth.Deps{Store: s.deps.Store, Logger: s.log, Now: s.deps.Now, RequestID: requestIDFrom,
			ClientIP: func(r *http.Request) netip.Addr {
				return s.limits.clientIP(humago.NewContext(nil, r, nil))
			},
			AdmitAuthorization: func(r *http.Request) (int, string) {
				ip := s.limits.clientIP(humago.NewContext(nil, r, nil))
				secs, p := s.admitWrite(r.Context(), s.limits.authorize, ip, "authorization requests")
				if p == nil {
					return 0, ""
				}
				return secs, p.Detail
			}})
	if errors.Is(err, oauth.ErrIssuer) {
		// Derived from a PublicURL that cannot host it (plain http elsewhere
		// than on this machine): /mcp takes API keys only — fail closed, and say why.
		s.log.Warn("the MCP connector's OAuth server is off: OAKALLOW_PUBLIC_URL must be https (or http on localhost)", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	s.oauth = srv
	srv.Register(s.mux)
	for _, p := range oauth.CrossOriginPaths() {
		// These endpoints read no cookie; browser-based MCP clients call
		// them from their own origin.
		s.csrf.AddInsecureBypassPattern(p)
	}
	registerOAuthConsent(s.api, s)
	return nil
}

// authenticateOAuth is the OAuth access token link of the authenticator
// chain: such a token is accepted by /mcp alone (RFC 8707: it is bound to
// that resource).
func (s *Server) authenticateOAuth(ctx huma.Context, next func(huma.Context), access, raw string, ip netip.Addr) {
	if s.oauth == nil {
		s.authFailed(ctx, raw, ip)
		return
	}
	if access != accessMCP {
		writeProblem(s.api, ctx, problem(http.StatusForbidden, CodeOAuthTokenOnlyForMCP,
			"OAuth access tokens are accepted by /mcp only; use an API key here"))
		return
	}
	op, err := s.oauth.Authenticate(ctx.Context(), raw)
	if errors.Is(err, oauth.ErrInvalidToken) {
		s.limits.authIP.Fail(ip, s.deps.Now())
		writeProblem(s.api, ctx, problem(http.StatusUnauthorized, CodeInvalidKey, "unknown, expired or revoked access token"))
		return
	}
	if err != nil {
		writeProblem(s.api, ctx, toProblem(ctx.Context(), s.log, err).(*Problem))
		return
	}
	next(huma.WithValue(ctx, principalKey, Principal{Kind: PrincipalOAuth, KeyID: op.GrantID, UserID: op.UserID,
		OrgID: op.OrgID, TeamID: op.TeamID, Granted: op.Scopes}))
}

// challengeWriter adds the RFC 9728 §5.1 challenge to a 401 of /mcp, so a
// client that has no token (or a dead one) discovers the authorization server.
// The challenge is built only for a 401, not for every call that succeeds.
type challengeWriter struct {
	http.ResponseWriter
	oauth *oauth.Server
	code  string
}

func (c challengeWriter) WriteHeader(status int) {
	if status == http.StatusUnauthorized {
		c.Header().Set("WWW-Authenticate", c.oauth.Challenge(c.code, ""))
	}
	c.ResponseWriter.WriteHeader(status)
}

// mcpWriter is the writer /mcp authenticates with.
func (s *Server) mcpWriter(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	if s.oauth == nil {
		return w
	}
	code := ""
	if r.Header.Get("Authorization") != "" || r.Header.Get("X-API-Key") != "" {
		code = "invalid_token"
	}
	return challengeWriter{ResponseWriter: w, oauth: s.oauth, code: code}
}

// mcpScopes are the MCP scopes of a principal.
func mcpScopes(p Principal) []string {
	if p.Kind == PrincipalOAuth {
		return p.Granted
	}
	sc := []string{mcp.ScopeRead}
	if p.Kind == PrincipalAgent || p.Kind == PrincipalAPIKey && p.Tier == TierStandard {
		sc = append(sc, mcp.ScopeWrite)
	}
	return sc
}

// insufficientScope answers a tool call that an OAuth token's scopes do not
// cover with 403 and the RFC 6750 §3.1 insufficient_scope challenge, so the
// client can ask the person for more (step-up authorization). Other
// credentials cannot be widened: they get the connector's tool error.
func (s *Server) insufficientScope(w http.ResponseWriter, r *http.Request, p Principal) bool {
	if p.Kind != PrincipalOAuth || slices.Contains(p.Granted, mcp.ScopeWrite) || r.Body == nil {
		return false
	}
	body, err := io.ReadAll(r.Body) // bounded by withBodyLimit
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil || mcp.RequiredScope(body) != mcp.ScopeWrite {
		return false
	}
	w.Header().Set("WWW-Authenticate", s.oauth.Challenge("insufficient_scope", mcp.ScopeRead+" "+mcp.ScopeWrite))
	pr := problem(http.StatusForbidden, CodeInsufficientScope, "this tool needs the mcp:write scope, which this token was not granted")
	pr.RequestID = requestIDFrom(r.Context())
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(http.StatusForbidden)
	_ = s.api.Marshal(w, "application/json", pr)
	return true
}

const tagOAuth = "OAuth consent"

type consentInput struct {
	ID string `path:"id" maxLength:"64" doc:"The authorization request's id (from the consent page's URL)."`
}

type consentOutput struct {
	Body oauth.ConsentRequest
}

type decisionInput struct {
	ID   string `path:"id" maxLength:"64" doc:"The authorization request's id."`
	Body struct {
		CSRF     string   `json:"csrf" minLength:"1" maxLength:"100" doc:"The token GET returned with the request."`
		Decision string   `json:"decision" enum:"approve,deny" doc:"approve or deny."`
		OrgID    string   `json:"org_id,omitempty" maxLength:"64" doc:"The org the client will act in (approve)."`
		Scopes   []string `json:"scopes,omitempty" maxItems:"2" doc:"The scopes granted (approve): mcp:read and/or mcp:write, among those requested."`
	}
}

type decisionOutput struct {
	Body struct {
		RedirectTo string `json:"redirect_to" doc:"Send the browser here: the client's redirect URI with the code, or with error=access_denied."`
	}
}

// oauthProblem maps the consent step's errors to problems.
func oauthProblem(ctx context.Context, s *Server, err error) error {
	switch {
	case errors.Is(err, oauth.ErrRequestNotFound):
		return problem(http.StatusNotFound, CodeOAuthRequestNotFound, "this authorization request does not exist, expired or was answered; start again from the application")
	case errors.Is(err, oauth.ErrCSRF):
		return problem(http.StatusForbidden, CodeConsentCSRF, "this consent form was not shown to this session; reload the page")
	case errors.Is(err, oauth.ErrNotMember):
		return problem(http.StatusForbidden, CodeNotAMember, "you are not a member of that org")
	case errors.Is(err, oauth.ErrScope):
		return problem(http.StatusUnprocessableEntity, CodeValidationFailed, "grant at least one of the scopes the application asked for, and no other")
	}
	return toProblem(ctx, s.log, err)
}

func registerOAuthConsent(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-oauth-consent", Method: http.MethodGet, Path: "/v1/oauth/requests/{id}",
		Summary: "Read an authorization request", Description: "What an MCP client asks to be authorized for, the orgs you may grant, and the consent form's token (bound to this session).",
		Tags: []string{tagOAuth}, Errors: append(sessionErrors, http.StatusNotFound),
	}, accessSelf), func(ctx context.Context, in *consentInput) (*consentOutput, error) {
		p := mustPrincipal(ctx)
		cr, err := s.oauth.Consent(ctx, in.ID, p.UserID, p.SessionID)
		if err != nil {
			return nil, oauthProblem(ctx, s, err)
		}
		return &consentOutput{Body: cr}, nil
	})
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "decide-oauth-consent", Method: http.MethodPost, Path: "/v1/oauth/requests/{id}/decision",
		Summary: "Answer an authorization request", Description: "Approve (with the org and scopes granted) or deny an MCP client's authorization request; answers where to send the browser.",
		Tags: []string{tagOAuth}, Errors: append(sessionErrors, http.StatusNotFound, http.StatusUnprocessableEntity),
	}, accessSelf), func(ctx context.Context, in *decisionInput) (*decisionOutput, error) {
		p := mustPrincipal(ctx)
		to, err := s.oauth.Decide(ctx, oauth.Decision{RequestID: in.ID, UserID: p.UserID, SessionID: p.SessionID,
			CSRF: in.Body.CSRF, Approve: in.Body.Decision == "approve", OrgID: strings.TrimSpace(in.Body.OrgID), Scopes: in.Body.Scopes})
		if err != nil {
			return nil, oauthProblem(ctx, s, err)
		}
		out := &decisionOutput{}
		out.Body.RedirectTo = to
		return out, nil
	})
}
