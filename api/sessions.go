package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/store"
)

// Sessions of people (SPEC §8, issue 9): opaque tokens, stored as SHA-256,
// with an idle and an absolute expiry, listed as devices and revocable. A
// browser holds its token in an HttpOnly cookie; other clients (the mobile
// app, scripts) receive it once and send it as Authorization: Bearer.
// Each replica caches the sessions it authenticated (sessioncache.go); a
// change notification ends a revoked session on every replica within
// moments.

// SessionsConfig configures sessions of people.
type SessionsConfig struct {
	// Idle ends a session that has not been used for this long. Default 12 h.
	Idle time.Duration
	// Absolute ends every session this long after it started, used or not.
	// Default 14 days.
	Absolute time.Duration
	// Enrollment is the absolute life of an enrollment-only session (signed
	// in with an e-mail or recovery code, no passkey yet). Default 1 h.
	Enrollment time.Duration
	// CacheEntries bounds the sessions each replica keeps in memory
	// (sessioncache.go); 0 means 10,000, negative turns the cache off (every
	// request reads PostgreSQL).
	CacheEntries int
	// CacheTTL is how long a cached session answers before PostgreSQL is
	// asked again, also when no change notification came (they are what
	// ends an entry early). Default 30 s; at most a quarter of Idle.
	CacheTTL time.Duration
}

// Validate fills defaults and checks values.
func (c *SessionsConfig) Validate() error {
	if c.Idle == 0 {
		c.Idle = 12 * time.Hour
	}
	if c.Absolute == 0 {
		c.Absolute = 14 * 24 * time.Hour
	}
	if c.Enrollment == 0 {
		c.Enrollment = time.Hour
	}
	if c.CacheEntries == 0 {
		c.CacheEntries = 10_000
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = min(30*time.Second, c.Idle/4)
	}
	if c.Idle < time.Minute || c.Absolute < c.Idle || c.Enrollment < time.Minute {
		return errors.New("api: sessions need Idle ≥ 1 min, Absolute ≥ Idle and Enrollment ≥ 1 min")
	}
	if c.CacheTTL < 0 || c.CacheTTL > c.Idle/4 {
		return errors.New("api: the session cache's TTL must be between 0 and a quarter of Idle")
	}
	return nil
}

// Session token shape: oak_ses_ + 43 base64url characters (32 random bytes).
const (
	sessionTokenPrefix = "oak_ses_"
	sessionTokenLen    = len(sessionTokenPrefix) + 43
)

// Session cookie names. Over https the __Host- prefix makes browsers refuse
// a cookie set by a subdomain or without Secure and Path=/ (RFC 6265bis
// §4.1.3.2); on http://localhost, where Secure cannot be, the plain name.
const (
	sessionCookieSecure = "__Host-oakallow_session"
	sessionCookiePlain  = "oakallow_session"
)

// Session states and how they started.
const (
	sessionStateEnrollment = "enrollment"
	sessionStateFull       = "full"

	sessionMethodEmailCode    = "email_code"
	sessionMethodPasskey      = "passkey"
	sessionMethodRecoveryCode = "recovery_code"

	sessionClientBrowser = "browser"
	sessionClientApp     = "app"
)

// Headers that select the org or team of a session's request.
const (
	headerOrg  = "X-Oakallow-Org"
	headerTeam = "X-Oakallow-Team"
)

// sessionTouchEvery bounds how often a session's last use is written: once a
// minute is precise enough for idle expiry and the device list, and keeps
// reads free of writes.
const sessionTouchEvery = time.Minute

// Stable problem codes of sessions.
const (
	CodeInvalidSession   = "invalid_session"
	CodePasskeyRequired  = "passkey_required"
	CodeInsufficientRole = "insufficient_role"
	CodeOrgRequired      = "org_required"
	CodeTeamRequired     = "team_required"
	CodeNotAMember       = "not_a_member"
	CodeCrossOrigin      = "cross_origin_refused"
)

// Audit kinds of identity events.
const (
	kindSessionStarted  = "session.started"
	kindSessionUpgraded = "session.upgraded"
	kindSessionRevoked  = "session.revoked"
	kindSignInFailed    = "sign_in.failed"
)

// newSessionToken returns a fresh token and its SHA-256.
func newSessionToken() (string, [32]byte) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	tok := sessionTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return tok, sha256.Sum256([]byte(tok))
}

// wellFormedSessionToken reports whether raw has a session token's shape, so
// nothing else is hashed and looked up.
func wellFormedSessionToken(raw string) bool {
	if len(raw) != sessionTokenLen || !strings.HasPrefix(raw, sessionTokenPrefix) {
		return false
	}
	for i := len(sessionTokenPrefix); i < len(raw); i++ {
		c := raw[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// cookieSecure reports whether the session cookie is Secure: always, except
// when the server's public URL is plain http on the local machine.
func cookieSecure(publicURL string) bool {
	u, err := url.Parse(publicURL)
	if err != nil || u.Scheme != "http" {
		return true
	}
	h := u.Hostname()
	if h == "localhost" {
		return false
	}
	a, err := netip.ParseAddr(h)
	return err != nil || !a.IsLoopback()
}

func (s *Server) sessionCookieName() string {
	if s.secureCookies {
		return sessionCookieSecure
	}
	return sessionCookiePlain
}

// sessionCookie is the session token from the request's cookie, or "".
// It scans the Cookie header for the one name instead of parsing every
// cookie (net/http's parser allocates per cookie, on every request of a
// browser); a quoted value is unquoted (RFC 6265 §4.1.1). The value is
// checked by wellFormedSessionToken before use.
func (s *Server) sessionCookie(ctx huma.Context) string {
	return cookieValue(ctx.Header("Cookie"), s.sessionCookieName())
}

// cookieValue is the value of the first cookie named name in a Cookie
// header ("name=value; other=…"), or "".
func cookieValue(header, name string) string {
	for header != "" {
		var part string
		part, header, _ = strings.Cut(header, ";")
		part = strings.TrimSpace(part)
		if v, ok := strings.CutPrefix(part, name); ok && strings.HasPrefix(v, "=") {
			v = v[1:]
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v
		}
	}
	return ""
}

// cookieFor is the Set-Cookie of a session token (empty token: the cookie
// is cleared). HttpOnly keeps it from scripts, SameSite=Lax from cross-site
// writes; CSRF is also refused by http.CrossOriginProtection (Handler).
func (s *Server) cookieFor(token string, expires time.Time) http.Cookie {
	c := http.Cookie{Name: s.sessionCookieName(), Value: token, Path: "/", HttpOnly: true,
		Secure: s.secureCookies, SameSite: http.SameSiteLaxMode}
	if token == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires.UTC()
	}
	return c
}

// authenticateSession is the session link of the authenticator chain.
func (s *Server) authenticateSession(ctx huma.Context, next func(huma.Context), access, raw string, ip netip.Addr) {
	req := requirements[access]
	if len(req.roles) == 0 {
		// Key-only operations: a session is the wrong kind of credential.
		s.sessionFailed(ctx, ip, http.StatusForbidden, CodeWrongKeyTier, "this endpoint needs an API key, not a session")
		return
	}
	if !wellFormedSessionToken(raw) {
		s.sessionFailed(ctx, ip, http.StatusUnauthorized, CodeInvalidSession, "missing, expired or revoked session")
		return
	}
	// An org in the path (/v1/orgs/{org_id}/…) is the one the operation
	// acts on, so it selects the scope; otherwise the headers do.
	orgID, teamID := ctx.Param("org_id"), ctx.Header(headerTeam)
	if orgID == "" {
		orgID = ctx.Header(headerOrg)
	}
	if len(orgID) > 64 || len(teamID) > 64 {
		writeProblem(s.api, ctx, problem(http.StatusBadRequest, CodeBadRequest, "org and team ids are at most 64 characters"))
		return
	}
	now := s.now()
	rows, pr := s.sessionRows(ctx, sessionKey{hash: sha256.Sum256([]byte(raw)), org: orgID, team: teamID}, now, ip)
	if pr != nil {
		writeProblem(s.api, ctx, pr)
		return
	}
	if rows == nil {
		s.sessionFailed(ctx, ip, http.StatusUnauthorized, CodeInvalidSession, "missing, expired or revoked session")
		return
	}
	r := rows[0]
	p := Principal{Kind: PrincipalUser, UserID: r.UserID, SessionID: r.ID, Enrollment: r.State != sessionStateFull}
	if p.Enrollment && !req.enrollment {
		writeProblem(s.api, ctx, problem(http.StatusForbidden, CodePasskeyRequired,
			"enroll a passkey (or sign in with one) first: this session may only enroll a passkey and sign out"))
		return
	}
	if req.scope != scopeNone {
		var pr *Problem
		p, pr = selectScope(p, req, rows, orgID, teamID)
		if pr != nil {
			writeProblem(s.api, ctx, pr)
			return
		}
	}
	next(huma.WithValue(ctx, principalKey, p))
}

// sessionRows is AuthenticateSession's answer for k: from this replica's
// cache (marking the use there), or from PostgreSQL — recording the use
// when due and caching the answer. nil rows: no live session has the token.
func (s *Server) sessionRows(ctx huma.Context, k sessionKey, now time.Time, ip netip.Addr) ([]store.AuthenticateSessionRow, *Problem) {
	ns := now.UnixNano()
	if e := s.sessions.get(k, ns, s.cfg.Sessions.Idle); e != nil {
		e.used(ns, ip, ctx.Header("User-Agent"))
		return e.rows, nil
	}
	gen := s.sessions.generation()
	rows, err := s.deps.Store.AuthenticateSession(ctx.Context(), store.AuthenticateSessionParams{
		TokenHash: k.hash[:], Now: now, IdleCutoff: now.Add(-s.cfg.Sessions.Idle), OrgID: k.org, TeamID: k.team})
	if err != nil {
		return nil, toProblem(ctx.Context(), s.log, err).(*Problem)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	r := rows[0]
	seen := r.LastSeenAt
	if now.Sub(seen) >= sessionTouchEvery {
		if err := s.deps.Store.TouchSession(ctx.Context(), store.TouchSessionParams{ID: r.ID, Now: now,
			Ip: addrString(ip), UserAgent: clip(ctx.Header("User-Agent"), 512)}); err != nil {
			return nil, toProblem(ctx.Context(), s.log, err).(*Problem)
		}
		seen = now
	}
	e := &sessionEntry{rows: rows, expires: r.ExpiresAt.UnixNano(), fresh: now.Add(s.cfg.Sessions.CacheTTL).UnixNano()}
	e.seen.Store(seen.UnixNano())
	e.written.Store(seen.UnixNano())
	s.sessions.put(k, e, gen, ns)
	return rows, nil
}

// selectScope picks the team (and org) of a session's request from the rows
// of AuthenticateSession, and checks the person's role there.
func selectScope(p Principal, req requirement, rows []store.AuthenticateSessionRow, orgID, teamID string) (Principal, *Problem) {
	r := rows[0]
	switch {
	case r.TeamID == "" && teamID != "":
		return p, problem(http.StatusForbidden, CodeNotAMember, "you are not a member of that team")
	case r.TeamID == "":
		return p, problem(http.StatusForbidden, CodeNotAMember, "you are not a member of any team")
	case orgID != "" && r.OrgID == "":
		return p, problem(http.StatusForbidden, CodeNotAMember, "no org with that id among your teams' orgs")
	case orgID == "" && teamID == "" && r.Teams > 1:
		if req.scope == scopeOrg {
			return p, problem(http.StatusBadRequest, CodeOrgRequired, "you belong to several teams: name the org with the "+headerOrg+" header")
		}
		return p, problem(http.StatusBadRequest, CodeTeamRequired, "you belong to several teams: name one with the "+headerTeam+" header (or an org with "+headerOrg+")")
	}
	p.TeamID, p.Role, p.OrgID = r.TeamID, r.Role, r.OrgID
	if req.scope == scopeOrg && p.OrgID == "" {
		if r.TeamOrgs != 1 {
			return p, problem(http.StatusBadRequest, CodeOrgRequired, "name the org with the "+headerOrg+" header")
		}
		p.OrgID = r.FirstOrg
	}
	for _, role := range req.roles {
		if role == p.Role {
			return p, nil
		}
	}
	return p, problem(http.StatusForbidden, CodeInsufficientRole, fmt.Sprintf("your role (%s) may not do this; it needs %s",
		p.Role, strings.Join(req.roles, " or ")))
}

// sessionFailed refuses a request whose session is missing or unusable,
// counting it against the client address like a failed key.
func (s *Server) sessionFailed(ctx huma.Context, ip netip.Addr, status int, code, detail string) {
	if status == http.StatusUnauthorized {
		s.limits.authIP.Fail(ip, s.deps.Now())
	}
	writeProblem(s.api, ctx, problem(status, code, detail))
}

// clip cuts s to at most n bytes of valid UTF-8.
func clip(v string, n int) string {
	if len(v) > n {
		v = v[:n]
	}
	return strings.ToValidUTF8(v, "")
}

// newSession describes a session to start.
type newSession struct {
	UserID string
	// Full: the person proved a passkey now; otherwise the session is
	// enrollment-only.
	Full bool
	// Method is sessionMethodEmailCode, sessionMethodPasskey or
	// sessionMethodRecoveryCode.
	Method string
	// Client is sessionClientBrowser (cookie) or sessionClientApp (token in
	// the answer, sent as a bearer).
	Client    string
	UserAgent string
	IP        netip.Addr
}

// issuedSession is a session just started (or upgraded), with its token —
// which exists only here.
type issuedSession struct {
	ID        string
	UserID    string
	Token     string
	State     string
	Client    string
	ExpiresAt time.Time
}

// startSession starts a session for a person, on q (the caller's
// transaction), and audits it.
func (s *Server) startSession(ctx context.Context, q *store.Queries, n newSession) (issuedSession, error) {
	now := s.now()
	tok, h := newSessionToken()
	st, life := sessionStateEnrollment, s.cfg.Sessions.Enrollment
	if n.Full {
		st, life = sessionStateFull, s.cfg.Sessions.Absolute
	}
	if n.Client != sessionClientApp {
		n.Client = sessionClientBrowser
	}
	is := issuedSession{ID: store.NewID("ses"), UserID: n.UserID, Token: tok, State: st, Client: n.Client, ExpiresAt: now.Add(life)}
	if err := q.CreateSession(ctx, store.CreateSessionParams{ID: is.ID, UserID: n.UserID, TokenHash: h[:], State: st,
		Method: n.Method, Client: n.Client, UserAgent: clip(n.UserAgent, 512), Ip: addrString(n.IP),
		CreatedAt: now, ExpiresAt: is.ExpiresAt}); err != nil {
		return issuedSession{}, fmt.Errorf("start session: %w", err)
	}
	err := s.auditIdentity(ctx, q, identityEvent{Kind: kindSessionStarted, ActorID: n.UserID,
		Subject: is.ID, Outcome: st, Details: map[string]any{"method": n.Method, "client": n.Client, "client_ip": addrString(n.IP)}})
	return is, err
}

// upgradeSession makes an enrollment-only session full after a passkey
// verified it (enrollment, or a passkey sign-in within it), under a new
// token: the old token stops working.
func (s *Server) upgradeSession(ctx context.Context, q *store.Queries, sessionID string) (issuedSession, error) {
	now := s.now()
	tok, h := newSessionToken()
	r, err := q.UpgradeSession(ctx, store.UpgradeSessionParams{ID: sessionID, TokenHash: h[:], Method: sessionMethodPasskey, Now: now})
	if err != nil {
		return issuedSession{}, fmt.Errorf("upgrade session: %w", err)
	}
	s.sessions.forgetUser(r.UserID)
	// The absolute expiry stays the enrollment's: a full life starts with a
	// sign-in, and this one began with a code.
	exp, err := q.GetSessionExpiry(ctx, sessionID)
	if err != nil {
		return issuedSession{}, fmt.Errorf("upgrade session: %w", err)
	}
	err = s.auditIdentity(ctx, q, identityEvent{Kind: kindSessionUpgraded, ActorID: r.UserID, Subject: sessionID, Outcome: sessionStateFull})
	return issuedSession{ID: r.ID, UserID: r.UserID, Token: tok, State: sessionStateFull, Client: r.Client, ExpiresAt: exp}, err
}

// SessionInfo is the answer to a sign-in: the session, and its token for
// clients that are not browsers.
type SessionInfo struct {
	SessionID string    `json:"session_id" doc:"The session's id (as listed under GET /v1/sessions)."`
	State     string    `json:"state" enum:"enrollment,full" doc:"full, or enrollment: the session may only enroll a passkey and sign out until a passkey verified it."`
	ExpiresAt time.Time `json:"expires_at" doc:"When the session ends at the latest (it also ends after a period without use)."`
	Token     string    `json:"session_token,omitempty" doc:"Only for client \"app\": the session token, shown once. Send it as Authorization: Bearer. Browsers get an HttpOnly cookie instead."`
}

// sessionOutput is the answer of an operation that starts or upgrades a session.
type sessionOutput struct {
	SetCookie []http.Cookie `header:"Set-Cookie" doc:"The session cookie (browser clients)."`
	Body      SessionInfo
}

// sessionAnswer is the answer carrying an issued session: a cookie for a
// browser, the token in the body for an app.
func (s *Server) sessionAnswer(is issuedSession) *sessionOutput {
	out := &sessionOutput{Body: SessionInfo{SessionID: is.ID, State: is.State, ExpiresAt: is.ExpiresAt}}
	if is.Client == sessionClientApp {
		out.Body.Token = is.Token
	} else {
		out.SetCookie = []http.Cookie{s.cookieFor(is.Token, is.ExpiresAt)}
	}
	return out
}

// identityEvent is an audit entry about people: sign-ins, sessions,
// memberships, keys.
type identityEvent struct {
	Kind  string
	OrgID string
	// TeamID is the team the event happened in. An event about a known
	// person in no org and no team (a sign-in, a session) is written once
	// in each of the person's teams, for its owners and admins to see.
	TeamID  string
	ActorID string // the person who acted ("" when nobody is known, e.g. a failed sign-in)
	Subject string
	Outcome string
	Details map[string]any
}

// auditIdentity writes ev on q (the caller's transaction, so it commits with
// the change). Details never hold codes, tokens or keys.
func (s *Server) auditIdentity(ctx context.Context, q *store.Queries, ev identityEvent) error {
	if ev.Details == nil {
		ev.Details = map[string]any{}
	}
	if rid := requestIDFrom(ctx); rid != "" {
		ev.Details["request_id"] = rid
	}
	raw, err := json.Marshal(ev.Details)
	if err != nil {
		return fmt.Errorf("encode audit details of %s: %w", ev.Kind, err)
	}
	actorKind := PrincipalUser
	if ev.ActorID == "" {
		actorKind = actorClientIP
	}
	row := store.InsertAuditEventParams{ID: store.NewID("evt"), OrgID: ev.OrgID, TeamID: ev.TeamID,
		OccurredAt: s.now(), ActorKind: actorKind, ActorID: ev.ActorID, Kind: ev.Kind, Subject: ev.Subject,
		Outcome: ev.Outcome, Details: raw}
	if ev.OrgID == "" && ev.TeamID == "" && ev.ActorID != "" {
		err = q.InsertPersonAuditEvent(ctx, ev.ActorID, row)
	} else {
		err = q.InsertAuditEvent(ctx, row)
	}
	if err != nil {
		return fmt.Errorf("audit %s: %w", ev.Kind, err)
	}
	return nil
}

// Device is one of the signed-in person's sessions.
type Device struct {
	ID         string    `json:"id" doc:"Session id."`
	Current    bool      `json:"current" doc:"True for the session making this request."`
	State      string    `json:"state" enum:"enrollment,full" doc:"full, or enrollment (may only enroll a passkey)."`
	Method     string    `json:"method" enum:"email_code,passkey,recovery_code" doc:"How the session was signed in."`
	Client     string    `json:"client" enum:"browser,app" doc:"browser (cookie) or app (bearer token)."`
	UserAgent  string    `json:"user_agent" doc:"The client's User-Agent when last seen."`
	IP         string    `json:"ip" doc:"The client's address when last seen."`
	CreatedAt  time.Time `json:"created_at" doc:"When the session was signed in."`
	LastSeenAt time.Time `json:"last_seen_at" doc:"When it was last used (to the minute)."`
	ExpiresAt  time.Time `json:"expires_at" doc:"When it ends at the latest."`
}

// Me is the signed-in person.
type Me struct {
	UserID      string       `json:"user_id" doc:"The person's user id."`
	Email       string       `json:"email" doc:"E-mail address."`
	Name        string       `json:"name" doc:"Display name."`
	SessionID   string       `json:"session_id" doc:"This session's id."`
	State       string       `json:"state" enum:"enrollment,full" doc:"enrollment: enroll a passkey before anything else works."`
	Memberships []Membership `json:"memberships" doc:"The teams the person belongs to, with their role in each."`
}

// Membership is a person's role in a team.
type Membership struct {
	TeamID   string    `json:"team_id" doc:"Team id."`
	TeamName string    `json:"team_name" doc:"Team name."`
	Role     string    `json:"role" enum:"owner,admin,reviewer" doc:"owner and admin manage the team; reviewer sees and decides approvals."`
	Since    time.Time `json:"since" doc:"When the person joined the team."`
	Orgs     []OrgRef  `json:"orgs" doc:"The team's orgs by name: what X-Oakallow-Org may name."`
}

// OrgRef names an org.
type OrgRef struct {
	ID   string `json:"id" doc:"Org id (org_…)."`
	Name string `json:"name" doc:"Org name."`
}

type meOutput struct{ Body Me }

type devicesOutput struct {
	Body struct {
		Items []Device `json:"items" doc:"The person's live sessions, most recently used first."`
	}
}

type sessionRefInput struct {
	ID string `path:"id" maxLength:"64" doc:"Session id (ses_…)."`
}

type signOutOutput struct {
	SetCookie []http.Cookie `header:"Set-Cookie" doc:"Clears the session cookie."`
}

type revokeOthersOutput struct {
	Body struct {
		Revoked int `json:"revoked" doc:"How many other sessions were revoked."`
	}
}

const tagSessions = "Sessions"

var sessionErrors = []int{http.StatusUnauthorized, http.StatusForbidden}

func registerSessions(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-me", Method: http.MethodGet, Path: "/v1/me",
		Summary: "The signed-in person", Description: "Who is signed in, this session's state and the person's teams with their orgs. An enrollment-only session may call it.",
		Tags: []string{tagSessions}, Errors: sessionErrors,
	}, accessEnrollment), func(ctx context.Context, _ *struct{}) (*meOutput, error) {
		p := mustPrincipal(ctx)
		u, err := s.deps.Store.GetUser(ctx, p.UserID)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		ms, err := s.deps.Store.ListUserMemberships(ctx, p.UserID)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &meOutput{Body: Me{UserID: u.ID, Email: u.Email, Name: u.Name, SessionID: p.SessionID,
			State: sessionStateFull, Memberships: make([]Membership, 0, len(ms))}}
		if p.Enrollment {
			out.Body.State = sessionStateEnrollment
		}
		orgs, err := s.deps.Store.ListUserOrgs(ctx, p.UserID)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		for _, m := range ms {
			own := Membership{TeamID: m.TeamID, TeamName: m.TeamName, Role: m.Role, Since: m.CreatedAt, Orgs: []OrgRef{}}
			for _, o := range orgs {
				if o.TeamID == m.TeamID {
					own.Orgs = append(own.Orgs, OrgRef{ID: o.ID, Name: o.Name})
				}
			}
			out.Body.Memberships = append(out.Body.Memberships, own)
		}
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "sign-out", Method: http.MethodPost, Path: "/v1/auth/sign-out",
		Summary: "Sign out", Description: "Revokes this session and clears its cookie.",
		Tags: []string{tagSessions}, Errors: sessionErrors, DefaultStatus: http.StatusNoContent,
	}, accessEnrollment), func(ctx context.Context, _ *struct{}) (*signOutOutput, error) {
		p := mustPrincipal(ctx)
		if err := s.revokeSessions(ctx, p, p.SessionID, "sign_out"); err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &signOutOutput{SetCookie: []http.Cookie{s.cookieFor("", time.Time{})}}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-sessions", Method: http.MethodGet, Path: "/v1/sessions",
		Summary: "List my sessions", Description: "The signed-in person's live sessions (devices).",
		Tags: []string{tagSessions}, Errors: sessionErrors,
	}, accessSelf), func(ctx context.Context, _ *struct{}) (*devicesOutput, error) {
		p := mustPrincipal(ctx)
		now := s.now()
		rows, err := s.deps.Store.ListUserSessions(ctx, store.ListUserSessionsParams{UserID: p.UserID, Now: now,
			IdleCutoff: now.Add(-s.cfg.Sessions.Idle)})
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &devicesOutput{}
		out.Body.Items = make([]Device, 0, len(rows))
		for _, r := range rows {
			out.Body.Items = append(out.Body.Items, Device{ID: r.ID, Current: r.ID == p.SessionID, State: r.State,
				Method: r.Method, Client: r.Client, UserAgent: r.UserAgent, IP: r.Ip, CreatedAt: r.CreatedAt,
				LastSeenAt: r.LastSeenAt, ExpiresAt: r.ExpiresAt})
		}
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "revoke-session", Method: http.MethodDelete, Path: "/v1/sessions/{id}",
		Summary: "Revoke a session", Description: "Signs one of your sessions out, on every replica at once. Revoking the current one signs you out.",
		Tags: []string{tagSessions}, Errors: append(sessionErrors, http.StatusNotFound), DefaultStatus: http.StatusNoContent,
	}, accessSelf), func(ctx context.Context, in *sessionRefInput) (*signOutOutput, error) {
		p := mustPrincipal(ctx)
		if err := s.revokeSessions(ctx, p, in.ID, "revoked"); err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &signOutOutput{}
		if in.ID == p.SessionID {
			out.SetCookie = []http.Cookie{s.cookieFor("", time.Time{})}
		}
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "revoke-other-sessions", Method: http.MethodPost, Path: "/v1/sessions/revoke-others",
		Summary: "Revoke all other sessions", Description: "Signs out every session of yours except this one.",
		Tags: []string{tagSessions}, Errors: sessionErrors,
	}, accessSelf), func(ctx context.Context, _ *struct{}) (*revokeOthersOutput, error) {
		p := mustPrincipal(ctx)
		out := &revokeOthersOutput{}
		err := s.inTx(ctx, func(q *store.Queries) error {
			s.sessions.forgetUser(p.UserID)
			ids, err := q.RevokeOtherSessions(ctx, store.RevokeOtherSessionsParams{UserID: p.UserID, Keep: p.SessionID, Now: s.now()})
			if err != nil {
				return err
			}
			out.Body.Revoked = len(ids)
			for _, id := range ids {
				if err := s.auditIdentity(ctx, q, identityEvent{Kind: kindSessionRevoked, ActorID: p.UserID, Subject: id,
					Outcome: "revoked_by_other", Details: map[string]any{"by_session": p.SessionID}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return out, nil
	})
}

// revokeSessions revokes one of p's sessions and audits it.
func (s *Server) revokeSessions(ctx context.Context, p Principal, id, outcome string) error {
	return s.inTx(ctx, func(q *store.Queries) error {
		s.sessions.forgetUser(p.UserID)
		if _, err := q.RevokeSession(ctx, store.RevokeSessionParams{ID: id, UserID: p.UserID, Now: s.now()}); err != nil {
			return err
		}
		return s.auditIdentity(ctx, q, identityEvent{Kind: kindSessionRevoked, ActorID: p.UserID, Subject: id, Outcome: outcome,
			Details: map[string]any{"by_session": p.SessionID}})
	})
}

// clientOf is the client facts a new session records.
func (s *Server) clientOf(ctx huma.Context) (string, netip.Addr) {
	return clip(ctx.Header("User-Agent"), 512), s.limits.clientIP(ctx)
}

// publicOrigin is the scheme://host[:port] of the public URL.
func publicOrigin(publicURL string) string {
	u, err := url.Parse(publicURL)
	if err != nil {
		return publicURL
	}
	return u.Scheme + "://" + u.Host
}

// withCSRF refuses cross-origin unsafe requests from browsers (Go's
// http.CrossOriginProtection: Sec-Fetch-Site, else Origin against Host),
// with a problem answer. Requests without those headers — API clients,
// tool servers, webhooks — pass: they carry no ambient cookie.
func (s *Server) withCSRF(next http.Handler) http.Handler {
	return s.csrf.Handler(next)
}

// csrfDenied answers a refused cross-origin request.
func csrfDenied(w http.ResponseWriter, r *http.Request) {
	p := problem(http.StatusForbidden, CodeCrossOrigin, "cross-origin request refused: send it from the dashboard's own origin")
	p.RequestID = requestIDFrom(r.Context())
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
