package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"oakallow/store"
)

// maxTokenBody bounds a token or revocation request.
const maxTokenBody = 8 << 10

// verifierPattern is a PKCE code verifier (RFC 7636 §4.1).
var verifierPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// tokenAnswer is the RFC 6749 §5.1 answer.
type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
}

// tokenError is an RFC 6749 §5.2 error of the token endpoint.
type tokenError struct {
	status     int
	code, desc string
}

func (e *tokenError) Error() string { return e.code + ": " + e.desc }

func invalidGrant(desc string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: "invalid_grant", desc: desc}
}

// readForm parses an application/x-www-form-urlencoded body of at most
// maxTokenBody bytes with every parameter at most once.
func readForm(w http.ResponseWriter, r *http.Request) (map[string]string, *tokenError) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return nil, &tokenError{http.StatusBadRequest, "invalid_request", "send the parameters as application/x-www-form-urlencoded"}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTokenBody))
	if err != nil {
		return nil, &tokenError{http.StatusRequestEntityTooLarge, "invalid_request", fmt.Sprintf("the request is at most %d bytes", maxTokenBody)}
	}
	vs, err := url.ParseQuery(string(raw))
	if err != nil {
		return nil, &tokenError{http.StatusBadRequest, "invalid_request", "the request body is not form-encoded"}
	}
	p, dup := singleParams(vs)
	if dup != "" {
		return nil, &tokenError{http.StatusBadRequest, "invalid_request", "parameter " + clip(dup, 40) + " is repeated"}
	}
	return p, nil
}

// clientOf authenticates a public client (RFC 6749 §2.3, §3.2.1): its
// client_id in the body, or as the user name of HTTP Basic with an empty
// password (what clients that default to client_secret_basic send). A
// secret is refused: none was ever issued.
func (s *Server) clientOf(ctx context.Context, r *http.Request, p map[string]string) (store.OauthClient, *tokenError) {
	id := p["client_id"]
	if u, pw, ok := r.BasicAuth(); ok {
		u, _ = url.QueryUnescape(u)
		if pw != "" || (id != "" && id != u) {
			return store.OauthClient{}, &tokenError{http.StatusUnauthorized, "invalid_client", "this server issues no client secrets: send client_id alone"}
		}
		id = u
	}
	if p["client_secret"] != "" {
		return store.OauthClient{}, &tokenError{http.StatusUnauthorized, "invalid_client", "this server issues no client secrets: send client_id alone"}
	}
	if id == "" {
		return store.OauthClient{}, &tokenError{http.StatusUnauthorized, "invalid_client", "client_id is required"}
	}
	if !validID(id) {
		return store.OauthClient{}, &tokenError{http.StatusUnauthorized, "invalid_client", "unknown client"}
	}
	c, err := s.d.Store.GetOAuthClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.OauthClient{}, &tokenError{http.StatusUnauthorized, "invalid_client", "unknown client"}
	}
	if err != nil {
		return store.OauthClient{}, &tokenError{status: http.StatusInternalServerError, desc: err.Error()}
	}
	return c, nil
}

// token is the token endpoint (RFC 6749 §3.2).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	p, terr := readForm(w, r)
	var out tokenAnswer
	if terr == nil {
		var c store.OauthClient
		if c, terr = s.clientOf(r.Context(), r, p); terr == nil {
			switch p["grant_type"] {
			case "authorization_code":
				out, terr = s.exchangeCode(r.Context(), c, p)
			case "refresh_token":
				out, terr = s.refresh(r.Context(), c, p)
			case "":
				terr = &tokenError{http.StatusBadRequest, "invalid_request", "grant_type is required"}
			default:
				// No password, implicit or client credentials grant (OAuth 2.1 §10).
				terr = &tokenError{http.StatusBadRequest, "unsupported_grant_type",
					"only the authorization_code and refresh_token grants are supported"}
			}
		}
	}
	if terr != nil {
		s.writeTokenError(w, r, terr)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// writeTokenError answers an RFC 6749 §5.2 error; an internal one is
// logged and answered server_error.
func (s *Server) writeTokenError(w http.ResponseWriter, r *http.Request, terr *tokenError) {
	if terr.status >= 500 {
		s.internal(w, r, terr)
		return
	}
	writeError(w, terr.status, terr.code, terr.desc)
}

// checkResource enforces RFC 8707 §2.2: a resource named at the token
// endpoint must be the one the grant is for.
func checkResource(p map[string]string, granted string) *tokenError {
	if res, ok := p["resource"]; ok && res != granted {
		return &tokenError{http.StatusBadRequest, "invalid_target", "the grant is for the resource " + granted}
	}
	return nil
}

// exchangeCode is the authorization code grant (RFC 6749 §4.1.3, RFC 7636 §4.6).
func (s *Server) exchangeCode(ctx context.Context, c store.OauthClient, p map[string]string) (tokenAnswer, *tokenError) {
	code, verifier := p["code"], p["code_verifier"]
	if code == "" || len(code) > 128 {
		return tokenAnswer{}, &tokenError{http.StatusBadRequest, "invalid_request", "code is required"}
	}
	if verifier == "" {
		return tokenAnswer{}, &tokenError{http.StatusBadRequest, "invalid_request", "code_verifier is required (PKCE)"}
	}
	if !verifierPattern.MatchString(verifier) {
		return tokenAnswer{}, &tokenError{http.StatusBadRequest, "invalid_request", "code_verifier must be 43 to 128 unreserved characters (RFC 7636 §4.1)"}
	}
	now := s.d.Now()
	h := hashOf(code)
	// The code is spent by this statement, committed on its own whatever
	// follows: a code works once (RFC 6749 §4.1.2), even if this exchange
	// then fails.
	row, err := s.d.Store.UseOAuthCode(ctx, store.UseOAuthCodeParams{Now: &now, CodeHash: h})
	if errors.Is(err, store.ErrNotFound) {
		return tokenAnswer{}, s.codeReused(ctx, c, h)
	}
	if err != nil {
		return tokenAnswer{}, &tokenError{status: http.StatusInternalServerError, desc: err.Error()}
	}
	// The code must be live, issued to this client, for this redirect URI
	// (when the client repeats it: it must be identical), with a verifier
	// whose S256 is the challenge, compared in constant time.
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	switch {
	case !row.ExpiresAt.After(now):
		return tokenAnswer{}, invalidGrant("the code expired")
	case row.ClientID != c.ID:
		return tokenAnswer{}, invalidGrant("the code was issued to another client")
	case row.RevokedAt != nil:
		return tokenAnswer{}, invalidGrant("the grant was revoked")
	case p["redirect_uri"] != "" && p["redirect_uri"] != row.RedirectUri:
		return tokenAnswer{}, invalidGrant("redirect_uri differs from the authorization request's")
	case subtle.ConstantTimeCompare([]byte(challenge), []byte(row.CodeChallenge)) != 1:
		return tokenAnswer{}, invalidGrant("code_verifier does not match the code_challenge")
	}
	if terr := checkResource(p, row.Resource); terr != nil {
		return tokenAnswer{}, terr
	}
	g := grant{id: row.GrantID, clientID: row.ClientID, userID: row.UserID, orgID: row.OrgID, teamID: row.TeamID, scopes: row.Scopes}
	return s.issue(ctx, g, row.Scopes, KindTokenIssued)
}

// codeReused answers a code that is unknown or already spent. A spent one
// means two parties hold it: every token of its grant is revoked (RFC 6749
// §4.1.2: "the authorization server … SHOULD revoke … all tokens
// previously issued based on that authorization code").
func (s *Server) codeReused(ctx context.Context, c store.OauthClient, h []byte) *tokenError {
	grantID, err := s.d.Store.GetOAuthCodeGrant(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return invalidGrant("unknown code")
	}
	if err != nil {
		return &tokenError{status: http.StatusInternalServerError, desc: err.Error()}
	}
	if err := s.revokeGrant(ctx, grantID, "code_reused", KindCodeReused, actorClient, c.ID); err != nil {
		return &tokenError{status: http.StatusInternalServerError, desc: err.Error()}
	}
	return invalidGrant("the code was already used; every token issued from it is revoked")
}

// refresh is the refresh token grant (RFC 6749 §6) with rotation: the
// presented token is spent and a new one issued; presenting a spent one
// revokes the whole grant (OAuth 2.1 §4.3.1).
func (s *Server) refresh(ctx context.Context, c store.OauthClient, p map[string]string) (tokenAnswer, *tokenError) {
	tok := p["refresh_token"]
	if tok == "" || len(tok) > 128 {
		return tokenAnswer{}, &tokenError{http.StatusBadRequest, "invalid_request", "refresh_token is required"}
	}
	now := s.d.Now()
	h := hashOf(tok)
	row, err := s.d.Store.UseRefreshToken(ctx, store.UseRefreshTokenParams{Now: &now, TokenHash: h})
	if errors.Is(err, store.ErrNotFound) {
		t, err := s.d.Store.GetOAuthToken(ctx, h)
		if errors.Is(err, store.ErrNotFound) || err == nil && t.Kind != "refresh" {
			return tokenAnswer{}, invalidGrant("unknown refresh token")
		}
		if err != nil {
			return tokenAnswer{}, &tokenError{status: http.StatusInternalServerError, desc: err.Error()}
		}
		if err := s.revokeGrant(ctx, t.GrantID, "refresh_reused", KindRefreshReused, actorClient, c.ID); err != nil {
			return tokenAnswer{}, &tokenError{status: http.StatusInternalServerError, desc: err.Error()}
		}
		return tokenAnswer{}, invalidGrant("the refresh token was already used; the grant is revoked")
	}
	if err != nil {
		return tokenAnswer{}, &tokenError{status: http.StatusInternalServerError, desc: err.Error()}
	}
	switch {
	case row.ClientID != c.ID:
		return tokenAnswer{}, invalidGrant("the refresh token was issued to another client")
	case row.RevokedAt != nil:
		return tokenAnswer{}, invalidGrant("the grant was revoked")
	case !row.ExpiresAt.After(now):
		return tokenAnswer{}, invalidGrant("the refresh token expired")
	}
	// The person must still belong to the org they consented for (the
	// access token is refused otherwise; say so here, before issuing one).
	orgs, err := s.d.Store.ListUserOrgs(ctx, row.UserID)
	if err != nil {
		return tokenAnswer{}, &tokenError{status: http.StatusInternalServerError, desc: err.Error()}
	}
	if !slices.ContainsFunc(orgs, func(o store.ListUserOrgsRow) bool { return o.ID == row.OrgID }) {
		return tokenAnswer{}, invalidGrant("the person who authorized this client no longer belongs to its org")
	}
	if terr := checkResource(p, row.Resource); terr != nil {
		return tokenAnswer{}, terr
	}
	// A narrower scope may be asked for the new access token (RFC 6749 §6);
	// never a wider one.
	scopes := row.Scopes
	if sc, ok := p["scope"]; ok {
		asked, _, err := parseScope(sc)
		if err != nil || slices.ContainsFunc(asked, func(v string) bool { return !slices.Contains(row.Scopes, v) }) {
			return tokenAnswer{}, &tokenError{http.StatusBadRequest, "invalid_scope", "scope may only narrow the granted " + strings.Join(row.Scopes, " ")}
		}
		scopes = asked
	}
	g := grant{id: row.GrantID, clientID: row.ClientID, userID: row.UserID, orgID: row.OrgID, teamID: row.TeamID, scopes: row.Scopes}
	return s.issue(ctx, g, scopes, KindTokenRefreshed)
}

type grant struct {
	id, clientID, userID, orgID, teamID string
	scopes                              []string
}

// issue creates an access token with scopes and a refresh token with the
// grant's scopes, and audits it as kind. The grant is recorded to work
// until the refresh token expires in the same transaction, so the sweep
// never deletes a grant that can still be refreshed (endedGrantAge).
func (s *Server) issue(ctx context.Context, g grant, scopes []string, kind string) (tokenAnswer, *tokenError) {
	now := s.d.Now()
	at, ah := newSecret(accessPrefix)
	rt, rh := newSecret(refreshPrefix)
	err := s.d.Store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		if err := q.ExtendOAuthGrant(ctx, store.ExtendOAuthGrantParams{ID: g.id, ExpiresAt: now.Add(s.cfg.RefreshTTL)}); err != nil {
			return fmt.Errorf("extend grant: %w", err)
		}
		if err := q.CreateOAuthToken(ctx, store.CreateOAuthTokenParams{TokenHash: ah, GrantID: g.id, Kind: "access",
			Scopes: scopes, CreatedAt: now, ExpiresAt: now.Add(s.cfg.AccessTTL)}); err != nil {
			return fmt.Errorf("create access token: %w", err)
		}
		if err := q.CreateOAuthToken(ctx, store.CreateOAuthTokenParams{TokenHash: rh, GrantID: g.id, Kind: "refresh",
			Scopes: g.scopes, CreatedAt: now, ExpiresAt: now.Add(s.cfg.RefreshTTL)}); err != nil {
			return fmt.Errorf("create refresh token: %w", err)
		}
		return s.audit(ctx, q, audit{kind: kind, orgID: g.orgID, teamID: g.teamID, actorKind: actorClient, actorID: g.clientID,
			subject: g.id, outcome: "issued", details: map[string]any{"user_id": g.userID, "scopes": scopes,
				"expires_at": now.Add(s.cfg.AccessTTL).UTC().Format(time.RFC3339)}})
	})
	if err != nil {
		return tokenAnswer{}, &tokenError{status: http.StatusInternalServerError, desc: err.Error()}
	}
	return tokenAnswer{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(s.cfg.AccessTTL / time.Second),
		RefreshToken: rt, Scope: strings.Join(scopes, " ")}, nil
}

// revokeGrant revokes a grant and every code and token of it, and audits
// it as kind (once: revoking a revoked grant records nothing).
func (s *Server) revokeGrant(ctx context.Context, grantID, reason, kind, actorKind, actorID string) error {
	now := s.d.Now()
	return s.d.Store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		g, err := q.RevokeOAuthGrant(ctx, store.RevokeOAuthGrantParams{Now: &now, Reason: reason, ID: grantID})
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("revoke grant: %w", err)
		}
		return s.audit(ctx, q, revokedAudit(g, reason, kind, actorKind, actorID))
	})
}

// RevokeUserGrants revokes every standing grant of the person userID — and
// with each, its refresh token and access tokens — in the caller's
// transaction q, at now, auditing each as revoked for reason (requestID:
// the request that does it, "" for none). Account recovery calls it:
// whoever held the lost passkey may have authorized a client. It needs no
// Server: grants made while the authorization server was on are revoked
// even when it is off now (a public URL that is no longer https), or they
// would work again when it is back on.
func RevokeUserGrants(ctx context.Context, q *store.Queries, now time.Time, requestID, userID, reason string) error {
	gs, err := q.RevokeUserOAuthGrants(ctx, store.RevokeUserOAuthGrantsParams{Now: &now, Reason: reason, UserID: userID})
	if err != nil {
		return fmt.Errorf("revoke grants of a person: %w", err)
	}
	for _, g := range gs {
		if err := writeAudit(ctx, q, now, requestID, revokedAudit(store.RevokeOAuthGrantRow(g), reason, KindRevoked, actorUser, userID)); err != nil {
			return err
		}
	}
	return nil
}

// revokedAudit is the audit entry of the revocation of grant g as kind.
func revokedAudit(g store.RevokeOAuthGrantRow, reason, kind, actorKind, actorID string) audit {
	return audit{kind: kind, orgID: g.OrgID, teamID: g.TeamID, actorKind: actorKind, actorID: actorID,
		subject: g.ID, outcome: "revoked", details: map[string]any{"client_id": g.ClientID, "user_id": g.UserID, "reason": reason}}
}

// revoke is the revocation endpoint (RFC 7009 §2). Revoking either token
// of a grant revokes the grant: its refresh token and every access token
// (§2.1 allows both). An unknown token, or one of another client, is
// answered 200 all the same (§2.2), so the endpoint tells nobody which
// tokens exist.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	p, terr := readForm(w, r)
	var c store.OauthClient
	if terr == nil {
		c, terr = s.clientOf(r.Context(), r, p)
	}
	if terr == nil && p["token"] == "" {
		terr = &tokenError{http.StatusBadRequest, "invalid_request", "token is required"}
	}
	if terr != nil {
		s.writeTokenError(w, r, terr)
		return
	}
	if len(p["token"]) <= 128 {
		t, err := s.d.Store.GetOAuthToken(r.Context(), hashOf(p["token"]))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.internal(w, r, err)
			return
		}
		if err == nil && t.ClientID == c.ID {
			if err := s.revokeGrant(r.Context(), t.GrantID, "revoked_by_client", KindRevoked, actorClient, c.ID); err != nil {
				s.internal(w, r, err)
				return
			}
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// Principal is what an access token authenticates: the person who
// consented, acting in the org they chose, through a client, with scopes.
type Principal struct {
	GrantID, ClientID, UserID, OrgID, TeamID string
	Scopes                                   []string
}

// ErrInvalidToken: the access token is unknown, expired, revoked, for
// another resource, or its person no longer belongs to the org.
var ErrInvalidToken = errors.New("oauth: invalid access token")

// IsAccessToken reports whether a bearer value is one of this server's
// access tokens (by its prefix).
func IsAccessToken(v string) bool { return strings.HasPrefix(v, accessPrefix) }

// Authenticate resolves an access token presented to the resource at
// resourceURL (RFC 8707 §2: a token is accepted only by the resource it
// was issued for).
func (s *Server) Authenticate(ctx context.Context, token string) (Principal, error) {
	if !IsAccessToken(token) || len(token) > 128 {
		return Principal{}, ErrInvalidToken
	}
	row, err := s.d.Store.AuthenticateOAuthToken(ctx, store.AuthenticateOAuthTokenParams{TokenHash: hashOf(token), Now: s.d.Now()})
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrInvalidToken
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate access token: %w", err)
	}
	if row.Resource != s.cfg.Resource() {
		return Principal{}, ErrInvalidToken
	}
	if now := s.d.Now(); row.LastUsedAt == nil || row.LastUsedAt.Before(now.Add(-grantUseResolution)) {
		// When a client was last used is shown to the org's admins; a write
		// a minute per grant is enough for that. Best effort: the request
		// is not refused for a failure to record it.
		if err := s.d.Store.TouchOAuthGrant(ctx, store.TouchOAuthGrantParams{ID: row.GrantID, Now: &now,
			StaleBefore: ptrTime(now.Add(-grantUseResolution))}); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "record an OAuth grant's use", "request_id", s.d.RequestID(ctx), "err", err)
		}
	}
	return Principal{GrantID: row.GrantID, ClientID: row.ClientID, UserID: row.UserID, OrgID: row.OrgID,
		TeamID: row.TeamID, Scopes: row.Scopes}, nil
}

// grantUseResolution is how precisely a grant's last use is recorded.
const grantUseResolution = time.Minute

func ptrTime(t time.Time) *time.Time { return &t }

// ErrGrantNotFound: no standing grant of that id in the org.
var ErrGrantNotFound = errors.New("oauth: no such connected client in this org")

// Connection is a client connected to an org: one standing grant, with a
// token that still works.
type Connection struct {
	GrantID      string     `json:"id" doc:"The grant's id (grt_…): one person's consent for this client in this org. Revoke by it."`
	ClientID     string     `json:"client_id" doc:"The client's id (cli_…)."`
	ClientName   string     `json:"client_name" doc:"The name the client registered with (unverified)."`
	ClientURI    string     `json:"client_uri,omitempty" doc:"The client's home page, as it registered it (unverified)."`
	RedirectURIs []string   `json:"redirect_uris" doc:"Where the client registered to receive authorization codes."`
	UserID       string     `json:"authorized_by" doc:"User id of the person who authorized it."`
	UserEmail    string     `json:"authorized_by_email" doc:"Their e-mail address."`
	Scopes       []string   `json:"scopes" doc:"The scopes granted (mcp:read, mcp:write)."`
	CreatedAt    time.Time  `json:"authorized_at" doc:"When it was authorized."`
	LastUsedAt   *time.Time `json:"last_used_at,omitempty" doc:"When it last called /mcp (to the minute); absent: never."`
}

// ConnectionPosition is where a page of ListConnections starts: after the
// connection authorized at AuthorizedAt with grant GrantID (the previous
// page's last).
type ConnectionPosition struct {
	AuthorizedAt time.Time
	GrantID      string
}

// ListConnections lists up to limit clients connected to org, newest first
// (after before, when not nil): its standing grants with a token that still
// works.
func (s *Server) ListConnections(ctx context.Context, orgID string, before *ConnectionPosition, limit int32) ([]Connection, error) {
	p := store.ListOrgOAuthGrantsParams{OrgID: orgID, Now: s.d.Now(), RowLimit: limit}
	if before != nil {
		p.BeforeCreated, p.BeforeID = &before.AuthorizedAt, before.GrantID
	}
	rows, err := s.d.Store.ListOrgOAuthGrants(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("list connected clients: %w", err)
	}
	out := make([]Connection, 0, len(rows))
	for _, r := range rows {
		out = append(out, Connection{GrantID: r.ID, ClientID: r.ClientID, ClientName: r.ClientName, ClientURI: r.ClientUri,
			RedirectURIs: r.RedirectUris, UserID: r.UserID, UserEmail: r.UserEmail, Scopes: r.Scopes, CreatedAt: r.CreatedAt,
			LastUsedAt: r.LastUsedAt})
	}
	return out, nil
}

// RevokeConnection revokes the grant grantID of org orgID for the person
// userID (an owner or admin of the org), in q's transaction: its refresh
// token and every access token stop working with the commit — the next
// call to /mcp with one is refused with 401 — and it is audited as
// oauth.revoked. ErrGrantNotFound: no standing grant of that id in the org.
func (s *Server) RevokeConnection(ctx context.Context, q *store.Queries, orgID, grantID, userID string, details map[string]any) error {
	if !validID(grantID) {
		return ErrGrantNotFound
	}
	now := s.d.Now()
	g, err := q.RevokeOrgOAuthGrant(ctx, store.RevokeOrgOAuthGrantParams{Now: &now, Reason: "revoked_by_admin", ID: grantID, OrgID: orgID})
	if errors.Is(err, store.ErrNotFound) {
		return ErrGrantNotFound
	}
	if err != nil {
		return fmt.Errorf("revoke grant: %w", err)
	}
	a := audit{kind: KindRevoked, orgID: g.OrgID, teamID: g.TeamID, actorKind: actorUser, actorID: userID,
		subject: g.ID, outcome: "revoked", details: map[string]any{"client_id": g.ClientID, "user_id": g.UserID, "reason": "revoked_by_admin"}}
	for k, v := range details {
		a.details[k] = v
	}
	return s.audit(ctx, q, a)
}
