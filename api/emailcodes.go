package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/mail"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/danielgtaylor/huma/v2"

	oakmail "oakallow/api/mail"
	"oakallow/api/ratelimit"
	"oakallow/store"
)

// Sign-up and sign-in by e-mail one-time code (SPEC §8, issue 9 item 2).
//
// POST /v1/auth/email/start creates a sign-in attempt and mails a 6-digit
// code; the client gets the attempt token. POST /v1/auth/email/verify
// presents both. The code is bound to its attempt: the database keeps
// SHA-256(attempt token) to find it and SHA-256(attempt token ":" code) to
// check it, so neither it nor a backup can finish an attempt. A code lives 5
// minutes, is used once, and allows 5 tries. Attempts are limited per
// address and per client address in PostgreSQL (auth_limits), so the limits
// hold across replicas. An address that may not sign in here gets the same
// answer as one that may, and no mail.
//
// A verified code yields an enrollment-only session: passkey MFA is
// mandatory, so a code alone never reaches anything but passkey enrollment.

const (
	attemptTokenPrefix = "oak_att_"
	attemptTokenLen    = len(attemptTokenPrefix) + 43
	codeLife           = 5 * time.Minute
	codeMaxTries       = 5
)

// Attempt purposes (sign_in_attempts.purpose).
const (
	purposeSignIn     = "sign_in"
	purposeSignUp     = "sign_up"
	purposeInvitation = "invitation"
	purposeNone       = "none"
)

// Attempt-limit scopes (auth_limits.scope).
const (
	limitCodesPerAddress  = "codes_per_address"
	limitCodesPerIP       = "codes_per_ip"
	limitCodeFailuresByIP = "code_failures_per_ip"
)

// Stable problem codes of e-mail sign-in.
const (
	CodeInvalidCode        = "invalid_code"
	CodeInvalidInvitation  = "invalid_invitation"
	CodeMailUnavailable    = "mail_unavailable"
	CodeMailNotConfigured  = "mail_not_configured"
	kindSignInCodeSent     = "sign_in.code_sent"
	kindUserSignedUp       = "user.signed_up"
	kindInvitationAccepted = "invitation.accepted"
)

// AccountsConfig configures sign-up, sign-in and invitations.
type AccountsConfig struct {
	// OpenSignUp lets anyone sign up with an e-mail address, which creates a
	// new team (the hosted product). Off (the default), only invited people
	// and existing users can sign in; `oakallow bootstrap` invites the first
	// owner.
	OpenSignUp bool
	// CodesPerAddress limits codes mailed to one address. Default 5 per 15 min.
	CodesPerAddress ratelimit.Limit
	// CodesPerIP limits codes asked for from one client address. Default 20 per 15 min.
	CodesPerIP ratelimit.Limit
	// CodeFailuresPerIP limits wrong codes from one client address; past it,
	// every verification from there is refused. Default 30 per 15 min.
	CodeFailuresPerIP ratelimit.Limit
	// InvitationTTL is how long an invitation can be accepted. Default 7 days.
	InvitationTTL time.Duration
}

// Validate fills defaults and checks values.
func (c *AccountsConfig) Validate() error {
	for _, f := range []struct {
		name string
		l    *ratelimit.Limit
		def  ratelimit.Limit
	}{
		{"CodesPerAddress", &c.CodesPerAddress, ratelimit.Limit{N: 5, Per: 15 * time.Minute}},
		{"CodesPerIP", &c.CodesPerIP, ratelimit.Limit{N: 20, Per: 15 * time.Minute}},
		{"CodeFailuresPerIP", &c.CodeFailuresPerIP, ratelimit.Limit{N: 30, Per: 15 * time.Minute}},
	} {
		if *f.l == (ratelimit.Limit{}) {
			*f.l = f.def
		}
		if err := f.l.Validate(); err != nil {
			return fmt.Errorf("api: Accounts.%s: %w", f.name, err)
		}
	}
	if c.InvitationTTL == 0 {
		c.InvitationTTL = 7 * 24 * time.Hour
	}
	if c.InvitationTTL < time.Hour || c.InvitationTTL > 90*24*time.Hour {
		return errors.New("api: Accounts.InvitationTTL must be between 1 hour and 90 days")
	}
	return nil
}

// normalizeEmail returns the address in the form it is stored and compared
// in (trimmed, lower case), or false for anything but a bare address.
func normalizeEmail(raw string) (string, bool) {
	v := strings.TrimSpace(raw)
	if len(v) < 3 || len(v) > 320 || strings.Count(v, "@") != 1 {
		return "", false
	}
	for _, r := range v {
		if unicode.IsControl(r) || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) {
			return "", false
		}
	}
	a, err := mail.ParseAddress(v)
	if err != nil || a.Name != "" || a.Address != v {
		return "", false
	}
	local, domain, _ := strings.Cut(v, "@")
	if local == "" || !strings.Contains(domain, ".") && domain != "localhost" {
		return "", false
	}
	return strings.ToLower(v), true
}

// newAttemptToken returns a fresh attempt token and its SHA-256.
func newAttemptToken() (string, [32]byte) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := attemptTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return tok, sha256.Sum256([]byte(tok))
}

// newCode returns 6 uniformly random digits.
func newCode() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		panic("crypto/rand: " + err.Error()) // never on supported platforms
	}
	return fmt.Sprintf("%06d", n.Int64())
}

// codeHash binds a code to its attempt.
func codeHash(token, code string) [32]byte {
	return sha256.Sum256([]byte(token + ":" + code))
}

// subjectOf is the auth_limits subject of a value (an address, an IP).
func subjectOf(v string) []byte {
	h := sha256.Sum256([]byte(v))
	return h[:]
}

// hitLimit counts one event against limit; it reports a refusal (with the
// seconds until the window ends) once the count exceeds the limit.
func (s *Server) hitLimit(ctx context.Context, scope string, subject []byte, l ratelimit.Limit) (bool, int, error) {
	if l.Off {
		return false, 0, nil
	}
	now := s.now()
	r, err := s.deps.Store.HitAuthLimit(ctx, store.HitAuthLimitParams{Scope: scope, Subject: subject, Now: now, WindowCutoff: now.Add(-l.Per)})
	if err != nil {
		return false, 0, fmt.Errorf("attempt limit %s: %w", scope, err)
	}
	return int(r.Count) > l.N, retryAfter(r.WindowStart.Add(l.Per), now), nil
}

// overLimit reports whether limit is already exhausted, without counting.
func (s *Server) overLimit(ctx context.Context, scope string, subject []byte, l ratelimit.Limit) (bool, int, error) {
	if l.Off {
		return false, 0, nil
	}
	now := s.now()
	r, err := s.deps.Store.GetAuthLimit(ctx, store.GetAuthLimitParams{Scope: scope, Subject: subject, WindowCutoff: now.Add(-l.Per)})
	if errors.Is(err, store.ErrNotFound) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("attempt limit %s: %w", scope, err)
	}
	return int(r.Count) >= l.N, retryAfter(r.WindowStart.Add(l.Per), now), nil
}

func retryAfter(until, now time.Time) int {
	return max(1, int(until.Sub(now).Seconds()+0.999))
}

// limitedProblem is the 429 of an attempt limit.
func limitedProblem(secs int, detail string) *Problem {
	p := problem(http.StatusTooManyRequests, CodeRateLimited, fmt.Sprintf("%s; retry after %d s", detail, secs))
	p.headers = http.Header{"Retry-After": []string{strconv.Itoa(secs)}}
	return p
}

// clientKey carries the client's address and User-Agent from withClient to
// the sign-in handlers.
type clientKey struct{}

type clientInfo struct {
	ip        netip.Addr
	userAgent string
}

// withClient is the sign-in operations' middleware: it records the client.
func (s *Server) withClient(ctx huma.Context, next func(huma.Context)) {
	ua, ip := s.clientOf(ctx)
	next(huma.WithValue(ctx, clientKey{}, clientInfo{ip: ip, userAgent: ua}))
}

func requestClient(ctx context.Context) clientInfo {
	c, _ := ctx.Value(clientKey{}).(clientInfo)
	return c
}

type emailStartInput struct {
	Body struct {
		_          struct{} `additionalProperties:"false"`
		Email      string   `json:"email" minLength:"3" maxLength:"320" doc:"Your e-mail address." example:"ada@example.com"`
		Invitation string   `json:"invitation,omitempty" maxLength:"100" doc:"The invitation token (oak_inv_…) from an invitation link, to join its team."`
	}
}

// EmailStarted is the answer to a code request.
type EmailStarted struct {
	Attempt   string    `json:"attempt" doc:"The attempt token (oak_att_…): send it with the code to /v1/auth/email/verify. The code only works with it."`
	ExpiresAt time.Time `json:"expires_at" doc:"When the code expires (5 minutes)."`
}

type emailStartOutput struct {
	Status int
	Body   EmailStarted
}

type emailVerifyInput struct {
	Body struct {
		_        struct{} `additionalProperties:"false"`
		Attempt  string   `json:"attempt" minLength:"1" maxLength:"100" doc:"The attempt token from /v1/auth/email/start."`
		Code     string   `json:"code" minLength:"1" maxLength:"12" doc:"The 6-digit code from the e-mail." example:"042137"`
		Client   string   `json:"client,omitempty" enum:"browser,app" default:"browser" doc:"browser: the session is set as an HttpOnly cookie. app: the session token is in the answer (send it as Authorization: Bearer)."`
		Name     string   `json:"name,omitempty" maxLength:"200" doc:"Your name, when signing up."`
		TeamName string   `json:"team_name,omitempty" maxLength:"200" doc:"The new team's name, when signing up without an invitation (default: your name or address)."`
	}
}

const tagAuth = "Sign-in"

func registerEmailCodes(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "email-sign-in-start", Method: http.MethodPost, Path: "/v1/auth/email/start",
		Summary: "Ask for an e-mail sign-in code",
		Description: "Mails a 6-digit code to the address, valid for 5 minutes, and answers the attempt token it is bound to. " +
			"Signs in an existing user, accepts an invitation (with `invitation`), or signs up a new team when the server allows open sign-up. " +
			"The answer is the same whether or not the address may sign in. Limited per address and per client address.",
		Tags: []string{tagAuth}, Errors: []int{http.StatusForbidden, http.StatusTooManyRequests, http.StatusServiceUnavailable},
		DefaultStatus: http.StatusAccepted, Middlewares: huma.Middlewares{s.withClient},
	}, accessPublic), func(ctx context.Context, in *emailStartInput) (*emailStartOutput, error) {
		out, err := s.startEmailSignIn(ctx, in.Body.Email, in.Body.Invitation)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &emailStartOutput{Status: http.StatusAccepted, Body: out}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "email-sign-in-verify", Method: http.MethodPost, Path: "/v1/auth/email/verify",
		Summary: "Sign in with an e-mail code",
		Description: "Checks the code against its attempt and starts an enrollment-only session: enroll a passkey (or sign in with one) " +
			"before anything else works. A wrong, expired or used code is 401 invalid_code and changes nothing; an attempt allows 5 tries.",
		Tags: []string{tagAuth}, Errors: []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests},
		Middlewares: huma.Middlewares{s.withClient},
	}, accessPublic), func(ctx context.Context, in *emailVerifyInput) (*sessionOutput, error) {
		is, err := s.verifyEmailCode(ctx, in)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return s.sessionAnswer(is), nil
	})
}

// startEmailSignIn creates an attempt and mails its code.
func (s *Server) startEmailSignIn(ctx context.Context, rawEmail, invitation string) (EmailStarted, error) {
	if s.deps.Mailer == nil {
		return EmailStarted{}, problem(http.StatusServiceUnavailable, CodeMailNotConfigured, "this server has no mail delivery configured (OAKALLOW_SMTP_HOST)")
	}
	email, ok := normalizeEmail(rawEmail)
	if !ok {
		return EmailStarted{}, problem(http.StatusUnprocessableEntity, CodeValidationFailed, "email must be a bare e-mail address",
			&huma.ErrorDetail{Location: "body.email", Message: "not an e-mail address", Value: rawEmail})
	}
	client := requestClient(ctx)
	acfg := s.cfg.Accounts
	if over, secs, err := s.hitLimit(ctx, limitCodesPerIP, subjectOf(addrString(client.ip)), acfg.CodesPerIP); err != nil || over {
		if err != nil {
			return EmailStarted{}, err
		}
		return EmailStarted{}, limitedProblem(secs, "too many sign-in codes asked for from this address")
	}
	if over, secs, err := s.hitLimit(ctx, limitCodesPerAddress, subjectOf(email), acfg.CodesPerAddress); err != nil || over {
		if err != nil {
			return EmailStarted{}, err
		}
		return EmailStarted{}, limitedProblem(secs, "too many sign-in codes for this e-mail address")
	}
	now := s.now()
	att := store.CreateSignInAttemptParams{ID: store.NewID("att"), Email: email, ClientIp: addrString(client.ip),
		CreatedAt: now, ExpiresAt: now.Add(codeLife)}
	var teamID string
	switch {
	case invitation != "":
		h := sha256.Sum256([]byte(invitation))
		inv, err := s.deps.Store.GetOpenInvitationByHash(ctx, store.GetOpenInvitationByHashParams{TokenHash: h[:], Now: now})
		if errors.Is(err, store.ErrNotFound) || err == nil && !strings.EqualFold(inv.Email, email) {
			return EmailStarted{}, problem(http.StatusForbidden, CodeInvalidInvitation,
				"the invitation is unknown, expired, used or revoked, or was sent to another address")
		}
		if err != nil {
			return EmailStarted{}, err
		}
		att.Purpose, att.InvitationID, teamID = purposeInvitation, &inv.ID, inv.TeamID
	default:
		u, err := s.deps.Store.GetUserByEmail(ctx, email)
		switch {
		case err == nil:
			att.Purpose, att.UserID = purposeSignIn, &u.ID
		case !errors.Is(err, store.ErrNotFound):
			return EmailStarted{}, err
		case acfg.OpenSignUp:
			att.Purpose = purposeSignUp
		default:
			att.Purpose = purposeNone
		}
	}
	tok, th := newAttemptToken()
	code := newCode()
	if att.Purpose == purposeNone {
		code = newCode() + "x" // never mailed and never a valid code: the attempt cannot succeed
	}
	ch := codeHash(tok, code)
	att.TokenHash, att.CodeHash = th[:], ch[:]
	err := s.inTx(ctx, func(q *store.Queries) error {
		if err := q.CreateSignInAttempt(ctx, att); err != nil {
			return err
		}
		if att.Purpose == purposeNone {
			return nil
		}
		actor := ""
		if att.UserID != nil {
			actor = *att.UserID
		}
		return s.auditIdentity(ctx, q, identityEvent{Kind: kindSignInCodeSent, TeamID: teamID, ActorID: actor, Subject: att.ID,
			Outcome: att.Purpose, Details: map[string]any{"client_ip": att.ClientIp}})
	})
	if err != nil {
		return EmailStarted{}, err
	}
	if att.Purpose != purposeNone {
		if err := s.deps.Mailer.Send(ctx, codeMessage(email, code, att.Purpose)); err != nil {
			s.log.WarnContext(ctx, "mail a sign-in code", "request_id", requestIDFrom(ctx), "attempt", att.ID, "err", err)
			return EmailStarted{}, problem(http.StatusServiceUnavailable, CodeMailUnavailable, "the code could not be mailed; try again shortly")
		}
	}
	return EmailStarted{Attempt: tok, ExpiresAt: att.ExpiresAt}, nil
}

// codeMessage is the mail carrying a code.
func codeMessage(to, code, purpose string) oakmail.Message {
	what := "sign in to oakallow"
	if purpose != purposeSignIn {
		what = "finish signing up to oakallow"
	}
	return oakmail.Message{To: to, Subject: "Your oakallow code: " + code,
		Text: fmt.Sprintf("Your code to %s is\n\n    %s\n\nIt works once, for 5 minutes, in the window that asked for it.\n"+
			"If you did not ask for it, ignore this message: nobody can use it without that window.\n", what, code)}
}

// invalidCode is the one answer to every code that does not sign in.
func invalidCode() *Problem {
	return problem(http.StatusUnauthorized, CodeInvalidCode, "wrong, expired or already used code; ask for a new one after 5 wrong tries")
}

// verifyEmailCode checks a code and starts the session it earns.
func (s *Server) verifyEmailCode(ctx context.Context, in *emailVerifyInput) (issuedSession, error) {
	client := requestClient(ctx)
	ipSubject := subjectOf(addrString(client.ip))
	acfg := s.cfg.Accounts
	if over, secs, err := s.overLimit(ctx, limitCodeFailuresByIP, ipSubject, acfg.CodeFailuresPerIP); err != nil || over {
		if err != nil {
			return issuedSession{}, err
		}
		return issuedSession{}, limitedProblem(secs, "too many wrong codes from this address")
	}
	tok, code := in.Body.Attempt, in.Body.Code
	if len(tok) != attemptTokenLen || !strings.HasPrefix(tok, attemptTokenPrefix) {
		return issuedSession{}, s.codeFailed(ctx, ipSubject, nil, "malformed_attempt")
	}
	now := s.now()
	th := sha256.Sum256([]byte(tok))
	att, err := s.deps.Store.TrySignInAttempt(ctx, store.TrySignInAttemptParams{TokenHash: th[:], Now: now, MaxTries: codeMaxTries})
	if errors.Is(err, store.ErrNotFound) {
		return issuedSession{}, s.codeFailed(ctx, ipSubject, nil, "no_live_attempt")
	}
	if err != nil {
		return issuedSession{}, err
	}
	want := codeHash(tok, code)
	if subtle.ConstantTimeCompare(want[:], att.CodeHash) != 1 || att.Purpose == purposeNone {
		return issuedSession{}, s.codeFailed(ctx, ipSubject, &att, "wrong_code")
	}
	var is issuedSession
	err = s.inTx(ctx, func(q *store.Queries) error {
		if _, err := q.ConsumeSignInAttempt(ctx, store.ConsumeSignInAttemptParams{ID: att.ID, Now: now}); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return invalidCode() // a concurrent verify used it
			}
			return err
		}
		userID, err := s.personFor(ctx, q, att, in.Body.Name, in.Body.TeamName, now)
		if err != nil {
			return err
		}
		is, err = s.startSession(ctx, q, newSession{UserID: userID, Method: sessionMethodEmailCode, Client: in.Body.Client,
			UserAgent: client.userAgent, IP: client.ip})
		return err
	})
	return is, err
}

// personFor finds or creates the person an attempt signs in, and joins the
// team of its invitation.
func (s *Server) personFor(ctx context.Context, q *store.Queries, att store.SignInAttempt, name, teamName string, now time.Time) (string, error) {
	switch att.Purpose {
	case purposeSignIn:
		u, err := q.GetUser(ctx, *att.UserID)
		if err != nil || u.Status != "active" {
			return "", invalidCode()
		}
		return u.ID, nil
	case purposeSignUp:
		userID, err := s.findOrCreateUser(ctx, q, att.Email, name, now)
		if err != nil {
			return "", err
		}
		teamID := store.NewID("team")
		if teamName = strings.TrimSpace(teamName); teamName == "" {
			teamName = strings.TrimSpace(name)
		}
		if teamName == "" {
			teamName = att.Email
		}
		if err := createTeam(ctx, q, teamID, clip(teamName, 200), now); err != nil {
			return "", err
		}
		if _, err := q.AddMembership(ctx, store.AddMembershipParams{TeamID: teamID, UserID: userID, Role: RoleOwner, CreatedAt: now}); err != nil {
			return "", err
		}
		return userID, s.auditIdentity(ctx, q, identityEvent{Kind: kindUserSignedUp, TeamID: teamID, ActorID: userID,
			Subject: userID, Outcome: RoleOwner})
	case purposeInvitation:
		userID, err := s.findOrCreateUser(ctx, q, att.Email, name, now)
		if err != nil {
			return "", err
		}
		inv, err := q.AcceptInvitation(ctx, store.AcceptInvitationParams{ID: *att.InvitationID, UserID: &userID, Now: now})
		if errors.Is(err, store.ErrNotFound) {
			return "", problem(http.StatusForbidden, CodeInvalidInvitation, "the invitation was used, revoked or expired meanwhile")
		}
		if err != nil {
			return "", err
		}
		role, err := q.AddMembership(ctx, store.AddMembershipParams{TeamID: inv.TeamID, UserID: userID, Role: inv.Role, CreatedAt: now})
		if err != nil {
			return "", err
		}
		return userID, s.auditIdentity(ctx, q, identityEvent{Kind: kindInvitationAccepted, TeamID: inv.TeamID, ActorID: userID,
			Subject: *att.InvitationID, Outcome: role})
	}
	return "", invalidCode()
}

// findOrCreateUser returns the active user with the address, creating one.
func (s *Server) findOrCreateUser(ctx context.Context, q *store.Queries, email, name string, now time.Time) (string, error) {
	u, err := q.GetUserByEmail(ctx, email)
	if err == nil {
		return u.ID, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	id := store.NewID("usr")
	if err := q.CreateUser(ctx, store.CreateUserParams{ID: id, Email: email, Name: clip(strings.TrimSpace(name), 200), CreatedAt: now}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return "", invalidCode() // the same address signed up concurrently; sign in instead
		}
		return "", err
	}
	return id, nil
}

// codeFailed counts a failed verification against the client address,
// audits it, and answers invalid_code.
func (s *Server) codeFailed(ctx context.Context, ipSubject []byte, att *store.SignInAttempt, reason string) error {
	if _, _, err := s.hitLimit(ctx, limitCodeFailuresByIP, ipSubject, s.cfg.Accounts.CodeFailuresPerIP); err != nil {
		return err
	}
	ev := identityEvent{Kind: kindSignInFailed, Outcome: reason, Details: map[string]any{"client_ip": addrString(requestClient(ctx).ip)}}
	if att != nil {
		ev.Subject = att.ID
		if att.UserID != nil {
			ev.ActorID = *att.UserID
		}
		ev.Details["tries"] = att.Tries
	}
	if err := s.inTx(ctx, func(q *store.Queries) error { return s.auditIdentity(ctx, q, ev) }); err != nil {
		return err
	}
	return invalidCode()
}

// sweepSignInLoop deletes spent attempts, old attempt-limit windows and
// expired passkey ceremonies every hour until ctx ends (any replica may; the deletes are idempotent).
func (s *Server) sweepSignInLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.sweepSignIn(ctx)
	}
}

// sweepSignIn deletes what sign-in leaves behind once it can no longer be
// used: attempts and limit windows a day old, and expired passkey
// ceremonies — every public POST /v1/auth/passkey/options adds one, and an
// abandoned one would otherwise stay for ever.
func (s *Server) sweepSignIn(ctx context.Context) {
	cutoff := s.now().Add(-24 * time.Hour)
	if err := s.deps.Store.SweepSignInAttempts(ctx, cutoff); err != nil && ctx.Err() == nil {
		s.log.Warn("sweep sign-in attempts", "err", err)
	}
	if err := s.deps.Store.SweepAuthLimits(ctx, cutoff); err != nil && ctx.Err() == nil {
		s.log.Warn("sweep attempt limits", "err", err)
	}
	if s.rp != nil {
		if _, err := s.rp.SweepCeremonies(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("sweep passkey ceremonies", "err", err)
		}
	}
}

// Invitation token shape: oak_inv_ + 43 base64url characters.
const invitationTokenPrefix = "oak_inv_"

// newInvitationToken returns a fresh invitation token and its SHA-256.
func newInvitationToken() (string, [32]byte) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := invitationTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return tok, sha256.Sum256([]byte(tok))
}

// invitationMessage is the mail carrying an invitation link.
func invitationMessage(to, role, link string, expires time.Time) oakmail.Message {
	return oakmail.Message{To: to, Subject: "You are invited to an oakallow team",
		Text: fmt.Sprintf("You are invited to join a team on oakallow as %s.\n\nSign up here (the link works until %s):\n\n    %s\n\n"+
			"You will get a sign-in code at this address, then enroll a passkey.\n", role, expires.UTC().Format(time.RFC1123), link)}
}
