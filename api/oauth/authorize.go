package oauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"oakallow/store"
)

// Bounds of an authorization request.
const (
	maxQueryLen = 8 << 10
	maxStateLen = 1024
	maxScopeLen = 200
)

// unknownClient is the authorization page of a client_id this server does
// not know: never registered, or swept (a registration unused for a day).
const unknownClient = "This client is not registered with this server. A registration that is not used within a day is deleted: the application must register again."

// codeChallengePattern is a base64url SHA-256 without padding (RFC 7636 §4.2).
var codeChallengePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// parseScope reads a scope parameter (RFC 6749 §3.3): space-delimited
// scopes of this server, each once; none means all of them (the person
// narrows them on the consent page).
func parseScope(v string) ([]string, bool, error) {
	if len(v) > maxScopeLen {
		return nil, false, fmt.Errorf("scope is at most %d characters", maxScopeLen)
	}
	fields := strings.Fields(v)
	if len(fields) == 0 {
		return slices.Clone(supportedScopes), true, nil
	}
	var out []string
	for _, f := range fields {
		if !slices.Contains(supportedScopes, f) {
			return nil, false, fmt.Errorf("unknown scope %q: this server grants %s", clip(f, 40), strings.Join(supportedScopes, " and "))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	// Always in the canonical order, so equal grants compare equal.
	slices.SortFunc(out, func(a, b string) int { return slices.Index(supportedScopes, a) - slices.Index(supportedScopes, b) })
	return out, false, nil
}

func clip(v string, n int) string {
	if len(v) > n {
		return v[:n] + "…"
	}
	return v
}

// validID reports whether v can be one of our ids (a client's, a
// request's): a prefix, an underscore and letters or digits, at most 64
// bytes. Anything else is unknown without asking the database.
func validID(v string) bool {
	if len(v) < 3 || len(v) > 64 {
		return false
	}
	for _, c := range []byte(v) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// singleParams refuses a parameter sent more than once (RFC 6749 §3.1,
// §3.2: "Request and response parameters MUST NOT be included more than
// once") and returns the first value of each.
func singleParams(vs url.Values) (map[string]string, string) {
	out := make(map[string]string, len(vs))
	for k, v := range vs {
		if len(v) > 1 {
			return nil, k
		}
		out[k] = v[0]
	}
	return out, ""
}

// authorize is the authorization endpoint (RFC 6749 §4.1.1 with RFC 7636
// and RFC 8707). A valid request is kept server-side and the browser goes to
// the consent page; a request that cannot be trusted to redirect (unknown
// client, redirect URI not registered) is answered here, never redirected
// (§4.1.2.1).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	// Anyone may call this endpoint and a valid request is stored: the
	// client's address, and all of them together, have a budget. The
	// refusal is a page, not a redirect: nothing of the request has been
	// checked yet, so it cannot be trusted to redirect (§4.1.2.1).
	if secs, why := s.d.AdmitAuthorization(r); secs > 0 {
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Retry-After", strconv.Itoa(secs))
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = fmt.Fprintf(w, "error: rate_limited\n%s.\nNothing was authorized; start again from the application in %d s.\n", why, secs)
		return
	}
	if len(r.URL.RawQuery) > maxQueryLen {
		authorizePage(w, http.StatusRequestURITooLong, "The authorization request is too long.")
		return
	}
	vs, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		authorizePage(w, http.StatusBadRequest, "The authorization request is malformed.")
		return
	}
	p, dup := singleParams(vs)
	if dup == "client_id" || dup == "redirect_uri" {
		authorizePage(w, http.StatusBadRequest, "The authorization request repeats "+dup+".")
		return
	}
	clientID, redirectURI := vs.Get("client_id"), vs.Get("redirect_uri")
	if !validID(clientID) {
		authorizePage(w, http.StatusBadRequest, "The authorization request names no client (client_id).")
		return
	}
	client, err := s.d.Store.GetOAuthClient(r.Context(), clientID)
	if errors.Is(err, store.ErrNotFound) {
		authorizePage(w, http.StatusBadRequest, unknownClient)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	// Exact string match against a registered URI (OAuth 2.1 §4.1.1,
	// §7.5.3): no prefix, no normalisation, no wildcard, except the port of
	// a loopback IP URI (redirectRegistered). redirect_uri is required, so
	// the code can never go anywhere the client did not name.
	if redirectURI == "" || !redirectRegistered(client.RedirectUris, redirectURI) {
		authorizePage(w, http.StatusBadRequest, "The redirect URI is not one this client registered.")
		return
	}
	state := vs.Get("state")
	// The state is echoed back and stored until consent: bounded, and text
	// PostgreSQL can hold.
	badState := len(state) > maxStateLen || !utf8.ValidString(state) || strings.ContainsRune(state, 0)
	fail := func(code, desc string) {
		if badState {
			state = ""
		}
		http.Redirect(w, r, s.redirectTo(redirectURI, url.Values{"error": {code}, "error_description": {desc}}, state), http.StatusSeeOther)
	}
	switch {
	case dup != "":
		fail("invalid_request", "parameter "+clip(dup, 40)+" is repeated")
		return
	case badState:
		fail("invalid_request", fmt.Sprintf("state must be at most %d bytes of UTF-8 text", maxStateLen))
		return
	case p["response_type"] != "code":
		// No implicit grant (OAuth 2.1 §10.1), no hybrid types.
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case p["code_challenge"] == "":
		// PKCE is required of every client (OAuth 2.1 §4.1.1).
		fail("invalid_request", "code_challenge is required (PKCE with S256)")
		return
	case p["code_challenge_method"] != "S256":
		// An absent method means plain (RFC 7636 §4.3), which is refused.
		fail("invalid_request", "code_challenge_method must be S256; plain is not supported")
		return
	case !codeChallengePattern.MatchString(p["code_challenge"]):
		fail("invalid_request", "code_challenge must be the base64url SHA-256 of the verifier (43 characters)")
		return
	}
	scopes, _, err := parseScope(p["scope"])
	if err != nil {
		fail("invalid_scope", err.Error())
		return
	}
	// RFC 8707 §2: the resource the token is for; the only one is /mcp, and
	// a request naming none gets it.
	if res, ok := p["resource"]; ok && res != s.cfg.Resource() {
		fail("invalid_target", "the only resource of this server is "+s.cfg.Resource())
		return
	}
	now := s.d.Now()
	id := store.NewID("oar")
	if err := s.d.Store.CreateOAuthRequest(r.Context(), store.CreateOAuthRequestParams{ID: id, ClientID: client.ID,
		RedirectUri: redirectURI, State: state, CodeChallenge: p["code_challenge"], Scopes: scopes,
		Resource: s.cfg.Resource(), CreatedAt: now, ExpiresAt: now.Add(s.cfg.RequestTTL)}); errors.Is(err, store.ErrReferenced) {
		// The sweep deleted the client since it was read (Sweep).
		authorizePage(w, http.StatusBadRequest, unknownClient)
		return
	} else if err != nil {
		s.internal(w, r, fmt.Errorf("create authorization request: %w", err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, ConsentPath+id, http.StatusSeeOther)
}

// redirectTo is the client's redirect URI with the response parameters
// added to its query (RFC 6749 §4.1.2), the state echoed and the issuer
// named (RFC 9207 §2).
func (s *Server) redirectTo(redirectURI string, params url.Values, state string) string {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return redirectURI // registered URIs always parse
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", s.cfg.Issuer)
	u.RawQuery = q.Encode()
	return u.String()
}

// authorizePage answers an authorization request that must not be
// redirected: a short page for the person in the browser.
func authorizePage(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\nThe application that sent you here is misconfigured; nothing was authorized.\n"))
}

// Errors of the consent step.
var (
	// ErrRequestNotFound: no such authorization request waiting for consent
	// (unknown, expired, or already answered).
	ErrRequestNotFound = errors.New("oauth: authorization request not found or expired")
	// ErrCSRF: the consent form was not the one shown to this session.
	ErrCSRF = errors.New("oauth: consent form token does not match")
	// ErrNotMember: the chosen org is not one of the person's.
	ErrNotMember = errors.New("oauth: not a member of the chosen org")
	// ErrScope: the chosen scopes are empty or beyond the request's.
	ErrScope = errors.New("oauth: scopes must be a non-empty subset of those requested")
)

// ConsentOrg is an org a person may grant access to.
type ConsentOrg struct {
	ID       string `json:"id" doc:"Org id."`
	Name     string `json:"name" doc:"Org name."`
	TeamName string `json:"team_name" doc:"The org's team."`
}

// ConsentRequest is what the consent page shows.
type ConsentRequest struct {
	ID         string       `json:"id" doc:"The authorization request's id."`
	ClientID   string       `json:"client_id" doc:"The client asking for access."`
	ClientName string       `json:"client_name" doc:"The name the client registered with (unverified)."`
	ClientURI  string       `json:"client_uri,omitempty" doc:"The client's home page, as it registered it (unverified)."`
	RedirectTo string       `json:"redirect_to" doc:"Where the answer goes: the redirect URI's scheme, host and port."`
	Scopes     []string     `json:"scopes" doc:"Scopes the client asked for."`
	Resource   string       `json:"resource" doc:"The resource the token will be bound to (RFC 8707)."`
	Orgs       []ConsentOrg `json:"orgs" doc:"Orgs the person may grant access to."`
	CSRF       string       `json:"csrf" doc:"The consent form's token, bound to this session; send it back with the answer."`
	ExpiresAt  time.Time    `json:"expires_at" doc:"The consent must be given before this."`
}

// Consent returns the request for the consent page of the person signed in
// with session sessionID, and binds a fresh form token to that session.
func (s *Server) Consent(ctx context.Context, requestID, userID, sessionID string) (ConsentRequest, error) {
	if !validID(requestID) {
		return ConsentRequest{}, ErrRequestNotFound
	}
	now := s.d.Now()
	req, err := s.d.Store.GetOAuthRequest(ctx, store.GetOAuthRequestParams{ID: requestID, Now: now})
	if errors.Is(err, store.ErrNotFound) {
		return ConsentRequest{}, ErrRequestNotFound
	}
	if err != nil {
		return ConsentRequest{}, fmt.Errorf("read authorization request: %w", err)
	}
	orgs, err := s.d.Store.ListUserOrgs(ctx, userID)
	if err != nil {
		return ConsentRequest{}, fmt.Errorf("list orgs: %w", err)
	}
	csrf, h := newSecret("")
	if _, err := s.d.Store.BindOAuthRequest(ctx, store.BindOAuthRequestParams{SessionID: &sessionID, CsrfHash: h,
		ID: requestID, Now: now}); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ConsentRequest{}, ErrRequestNotFound
		}
		return ConsentRequest{}, fmt.Errorf("bind consent form: %w", err)
	}
	out := ConsentRequest{ID: req.ID, ClientID: req.ClientID, ClientName: req.ClientName, ClientURI: req.ClientUri,
		RedirectTo: origin(req.RedirectUri), Scopes: req.Scopes, Resource: req.Resource, CSRF: csrf, ExpiresAt: req.ExpiresAt,
		Orgs: make([]ConsentOrg, 0, len(orgs))}
	for _, o := range orgs {
		out.Orgs = append(out.Orgs, ConsentOrg{ID: o.ID, Name: o.Name, TeamName: o.TeamName})
	}
	return out, nil
}

func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// Decision is a person's answer on the consent page.
type Decision struct {
	RequestID, UserID, SessionID, CSRF string
	Approve                            bool
	OrgID                              string
	Scopes                             []string
}

// Decide records the person's answer and returns where to send the
// browser: the client's redirect URI with a code (approved) or with
// error=access_denied (RFC 6749 §4.1.2.1), the state and the issuer.
func (s *Server) Decide(ctx context.Context, d Decision) (string, error) {
	if !validID(d.RequestID) {
		return "", ErrRequestNotFound
	}
	now := s.d.Now()
	req, err := s.d.Store.GetOAuthRequest(ctx, store.GetOAuthRequestParams{ID: d.RequestID, Now: now})
	if errors.Is(err, store.ErrNotFound) {
		return "", ErrRequestNotFound
	}
	if err != nil {
		return "", fmt.Errorf("read authorization request: %w", err)
	}
	// The form must be the one this session was shown: same session, and
	// the token compared in constant time.
	if req.SessionID == nil || *req.SessionID != d.SessionID || len(req.CsrfHash) != 32 ||
		subtle.ConstantTimeCompare(hashOf(d.CSRF), req.CsrfHash) != 1 {
		return "", ErrCSRF
	}
	var org store.ListUserOrgsRow
	var scopes []string
	if d.Approve {
		scopes, _, err = parseScope(strings.Join(d.Scopes, " "))
		if err != nil || len(d.Scopes) == 0 {
			return "", ErrScope
		}
		for _, sc := range scopes {
			if !slices.Contains(req.Scopes, sc) {
				return "", ErrScope
			}
		}
		orgs, err := s.d.Store.ListUserOrgs(ctx, d.UserID)
		if err != nil {
			return "", fmt.Errorf("list orgs: %w", err)
		}
		i := slices.IndexFunc(orgs, func(o store.ListUserOrgsRow) bool { return o.ID == d.OrgID })
		if i < 0 {
			return "", ErrNotMember
		}
		org = orgs[i]
	}
	var to string
	err = s.d.Store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		if _, err := q.DecideOAuthRequest(ctx, store.DecideOAuthRequestParams{Now: &now, ID: req.ID, SessionID: &d.SessionID}); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return ErrRequestNotFound
			}
			return fmt.Errorf("decide authorization request: %w", err)
		}
		if !d.Approve {
			to = s.redirectTo(req.RedirectUri, url.Values{"error": {"access_denied"},
				"error_description": {"the person declined to authorize this client"}}, req.State)
			return s.audit(ctx, q, audit{kind: KindDenied, actorKind: actorUser, actorID: d.UserID, subject: req.ClientID,
				outcome: "denied", details: map[string]any{"client_name": req.ClientName, "request_id": req.ID}})
		}
		// Until its code is exchanged, the grant works as long as the code
		// (the exchange extends it: issue).
		grantID := store.NewID("grt")
		if err := q.CreateOAuthGrant(ctx, store.CreateOAuthGrantParams{ID: grantID, ClientID: req.ClientID, UserID: d.UserID,
			OrgID: org.ID, TeamID: org.TeamID, Scopes: scopes, Resource: req.Resource, CreatedAt: now,
			ExpiresAt: now.Add(s.cfg.CodeTTL)}); err != nil {
			return fmt.Errorf("create grant: %w", err)
		}
		code, h := newSecret(codePrefix)
		if err := q.CreateOAuthCode(ctx, store.CreateOAuthCodeParams{CodeHash: h, GrantID: grantID, RedirectUri: req.RedirectUri,
			CodeChallenge: req.CodeChallenge, CreatedAt: now, ExpiresAt: now.Add(s.cfg.CodeTTL)}); err != nil {
			return fmt.Errorf("create code: %w", err)
		}
		to = s.redirectTo(req.RedirectUri, url.Values{"code": {code}}, req.State)
		return s.audit(ctx, q, audit{kind: KindAuthorized, orgID: org.ID, teamID: org.TeamID, actorKind: actorUser, actorID: d.UserID,
			subject: grantID, outcome: "authorized", details: map[string]any{"client_id": req.ClientID,
				"client_name": req.ClientName, "scopes": scopes, "resource": req.Resource}})
	})
	return to, err
}
