package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/api/oauth"
	"oakallow/api/passkeys"
	"oakallow/store"
)

// Passkeys (SPEC §8, issue 9): enrollment, discoverable sign-in, removal,
// recovery codes. The WebAuthn work is in package passkeys; this file maps
// it to operations and sessions. Passkey MFA is mandatory: an
// enrollment-only session (started with an e-mail or recovery code) becomes
// full only once a passkey verified it.

const tagPasskeys = "Passkeys"

// passkeyProblem maps a refusal of the relying party to a problem.
func passkeyProblem(ctx context.Context, e *passkeys.Error) *Problem {
	status := http.StatusUnprocessableEntity
	switch e.Kind {
	case passkeys.Unauthenticated:
		status = http.StatusUnauthorized
	case passkeys.Forbidden:
		status = http.StatusForbidden
	case passkeys.Conflict:
		status = http.StatusConflict
	case passkeys.NotFound:
		status = http.StatusNotFound
	}
	p := problem(status, e.Code, e.Msg)
	p.RequestID = requestIDFrom(ctx)
	return p
}

type passkeyOptionsOutput struct {
	Body passkeys.Options
}

// passkeyOptionsInput is a request for ceremony options: its client's
// address is counted against the passkey options limits.
type passkeyOptionsInput struct {
	Caller callerFacts
}

// passkeyOptionsLimited spends one ceremony of the client's budgets
// (LimitsConfig.PasskeyOptionsPerIP, PasskeyOptionsAll): every options call
// stores a ceremony row until it is finished or expires.
func (s *Server) passkeyOptionsLimited(ctx context.Context, c callerFacts) *Problem {
	_, p := s.admitWrite(ctx, s.limits.passkeyOptions, s.limits.clientIP(c.hctx), "passkey ceremonies started")
	return p
}

type finishEnrollmentInput struct {
	Body struct {
		_          struct{}   `additionalProperties:"false"`
		CeremonyID string     `json:"ceremony_id" minLength:"1" maxLength:"100" doc:"From the options."`
		Credential jsonObject `json:"credential" doc:"The PublicKeyCredential from navigator.credentials.create(), JSON-encoded (toJSON())."`
		Name       string     `json:"name,omitempty" maxLength:"100" doc:"A name for the passkey (\"laptop\", \"phone\")."`
		// Confirmation is required once the account has a passkey.
		Confirmation *passkeyAssertion `json:"confirmation,omitempty" doc:"When the account has a passkey already: an existing passkey's assertion for the options of POST /v1/me/passkeys/add-options."`
	}
}

type finishEnrollmentOutput struct {
	SetCookie []http.Cookie `header:"Set-Cookie" doc:"For an enrollment-only browser session: its new, full session cookie."`
	Body      struct {
		passkeys.Enrolled
		Session *SessionInfo `json:"session,omitempty" doc:"Set when this enrollment made an enrollment-only session full: the session under its new token (the old one stops working)."`
	}
}

// callerFacts captures the request a public operation serves, so its
// handler can learn the client's address (rate limits, the session's
// device) the way the authenticator does.
type callerFacts struct{ hctx huma.Context }

// Resolve implements huma.Resolver.
func (c *callerFacts) Resolve(ctx huma.Context) []error {
	c.hctx = ctx
	return nil
}

type passkeySignInInput struct {
	Caller callerFacts
	Body   struct {
		_          struct{}   `additionalProperties:"false"`
		CeremonyID string     `json:"ceremony_id" minLength:"1" maxLength:"100" doc:"From the options."`
		Credential jsonObject `json:"credential" doc:"The PublicKeyCredential from navigator.credentials.get(), JSON-encoded (toJSON())."`
		Client     string     `json:"client,omitempty" enum:"browser,app" default:"browser" doc:"browser: the session is set as a cookie; app: the token is in the answer."`
	}
}

type recoveryInput struct {
	Caller callerFacts
	Body   struct {
		_      struct{} `additionalProperties:"false"`
		Email  string   `json:"email" minLength:"3" maxLength:"320" doc:"The account's e-mail address."`
		Code   string   `json:"code" minLength:"1" maxLength:"100" doc:"One unused recovery code (case, spaces and hyphens do not matter)."`
		Client string   `json:"client,omitempty" enum:"browser,app" default:"browser" doc:"browser or app, as for sign-in."`
	}
}

type listPasskeysOutput struct {
	Body struct {
		Items             []passkeys.Passkey `json:"items" doc:"Your passkeys, oldest first."`
		RecoveryCodesLeft int                `json:"recovery_codes_left" doc:"How many of your recovery codes are unused."`
	}
}

// passkeyAssertion is a passkey's assertion confirming one account change:
// the ceremony its confirmation options started and the authenticator's
// answer. Bodies carrying one are optional in the schema so that a call
// without one is told what it lacks (401 passkey_assertion_required), not
// only that a body is missing.
type passkeyAssertion struct {
	_          struct{}   `additionalProperties:"false"`
	CeremonyID string     `json:"ceremony_id,omitempty" maxLength:"100" doc:"The ceremony_id of this change's confirmation options."`
	Credential jsonObject `json:"credential,omitempty" doc:"The PublicKeyCredential from navigator.credentials.get() for those options, JSON-encoded (toJSON())."`
}

// confirmation is the assertion a, for the caller's session, as the
// relying party takes it — or a 401 passkey_assertion_required problem
// saying where the options come from when a is missing or incomplete.
func (a *passkeyAssertion) confirmation(ctx context.Context, what, optionsPath string) (passkeys.Confirmation, *Problem) {
	if a == nil || a.CeremonyID == "" || len(a.Credential) == 0 {
		return passkeys.Confirmation{}, problem(http.StatusUnauthorized, CodePasskeyAssertionNeeded,
			what+" needs a passkey assertion: get options from POST "+optionsPath+" and send ceremony_id and credential")
	}
	return passkeys.Confirmation{SessionID: mustPrincipal(ctx).SessionID, CeremonyID: a.CeremonyID, Response: a.Credential}, nil
}

type regenerateCodesInput struct {
	Body *passkeyAssertion
}

type removePasskeyInput struct {
	ID   string `path:"id" maxLength:"64" doc:"Passkey id (pk_…)."`
	Body *passkeyAssertion
}

type removeOptionsInput struct {
	Caller callerFacts
	ID     string `path:"id" maxLength:"64" doc:"Passkey id (pk_…)."`
}

// confirmOptions starts a confirmation ceremony for the caller with begin,
// spending one of the client's passkey options budgets first.
func (s *Server) confirmOptions(ctx context.Context, caller callerFacts,
	begin func(p Principal) (passkeys.Options, error)) (*passkeyOptionsOutput, error) {
	if pr := s.passkeyOptionsLimited(ctx, caller); pr != nil {
		return nil, pr
	}
	o, err := begin(mustPrincipal(ctx))
	if err != nil {
		return nil, toProblem(ctx, s.log, err)
	}
	return &passkeyOptionsOutput{Body: o}, nil
}

type recoveryCodesOutput struct {
	Body struct {
		Codes []string `json:"recovery_codes" doc:"10 new single-use recovery codes, shown this once; the old ones no longer work."`
	}
}

var passkeyErrors = []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusUnprocessableEntity}

// errNoPasskeys answers passkey operations on a server whose public URL
// cannot host passkeys.
func errNoPasskeys() *Problem {
	return problem(http.StatusServiceUnavailable, "passkeys_unavailable", noPasskeysDetail)
}

const noPasskeysDetail = "passkeys are not available on this server: its public URL must be https (or http://localhost)"

func registerPasskeys(api huma.API, s *Server) {
	if s.rp == nil {
		for _, op := range []struct{ id, method, path, access string }{
			{"passkey-sign-in-options", http.MethodPost, "/v1/auth/passkey/options", accessPublic},
			{"passkey-sign-in", http.MethodPost, "/v1/auth/passkey", accessPublic},
			{"recovery-sign-in", http.MethodPost, "/v1/auth/recovery", accessPublic},
			{"passkey-enrollment-options", http.MethodPost, "/v1/me/passkeys/options", accessEnrollment},
			{"enroll-passkey", http.MethodPost, "/v1/me/passkeys", accessEnrollment},
			{"list-passkeys", http.MethodGet, "/v1/me/passkeys", accessSelf},
			{"add-passkey-options", http.MethodPost, "/v1/me/passkeys/add-options", accessSelf},
			{"remove-passkey-options", http.MethodPost, "/v1/me/passkeys/{id}/remove-options", accessSelf},
			{"recovery-codes-options", http.MethodPost, "/v1/me/recovery-codes/options", accessSelf},
			{"regenerate-recovery-codes", http.MethodPost, "/v1/me/recovery-codes", accessSelf},
		} {
			huma.Register(api, withAccess(huma.Operation{OperationID: op.id, Method: op.method, Path: op.path,
				Summary: "Passkeys (unavailable)", Description: noPasskeysDetail, Tags: []string{tagPasskeys},
				Errors: []int{http.StatusServiceUnavailable}}, op.access),
				func(context.Context, *struct{}) (*struct{}, error) { return nil, errNoPasskeys() })
		}
		return
	}
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "passkey-sign-in-options", Method: http.MethodPost, Path: "/v1/auth/passkey/options",
		Summary: "Start a passkey sign-in",
		Description: "Options for navigator.credentials.get() for a discoverable (usernameless) sign-in: the authenticator offers " +
			"the passkeys it holds for this site. Finish with POST /v1/auth/passkey within 5 minutes. Each start is kept " +
			"until it expires, so starts are limited per client address and for all addresses together (429 rate_limited " +
			"with Retry-After past a limit).",
		Tags: []string{tagPasskeys}, Errors: []int{http.StatusTooManyRequests, http.StatusServiceUnavailable},
	}, accessPublic), func(ctx context.Context, in *passkeyOptionsInput) (*passkeyOptionsOutput, error) {
		// Public and stateful: without a bound, one address — or a flood
		// from many — could fill the ceremony table faster than it is
		// swept. The budgets are in memory, so a refused start costs no
		// database write.
		if pr := s.passkeyOptionsLimited(ctx, in.Caller); pr != nil {
			return nil, pr
		}
		o, err := s.rp.BeginSignIn(ctx)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &passkeyOptionsOutput{Body: o}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "passkey-sign-in", Method: http.MethodPost, Path: "/v1/auth/passkey",
		Summary: "Sign in with a passkey",
		Description: "Verifies the assertion (user verification required; a passkey whose signature counter went backwards " +
			"is refused as possibly cloned) and starts a full session.",
		Tags: []string{tagPasskeys}, Errors: passkeyErrors,
	}, accessPublic), func(ctx context.Context, in *passkeySignInInput) (*sessionOutput, error) {
		ua, ip := s.clientOf(in.Caller.hctx)
		if pr := s.authLimited(ip); pr != nil {
			return nil, pr
		}
		who, err := s.rp.FinishSignIn(ctx, in.Body.CeremonyID, in.Body.Credential)
		if err != nil {
			s.authFailedAt(ip, err)
			return nil, toProblem(ctx, s.log, err)
		}
		return s.signedIn(ctx, newSession{UserID: who.UserID, Full: true, Method: sessionMethodPasskey,
			Client: in.Body.Client, UserAgent: ua, IP: ip}, false)
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "recovery-sign-in", Method: http.MethodPost, Path: "/v1/auth/recovery",
		Summary: "Sign in with a recovery code",
		Description: "Spends one recovery code, revokes every passkey of the account (the lost one may be in someone else's " +
			"hands), every other session and every MCP client the person authorized, and starts an enrollment-only session: " +
			"enroll a new passkey next. The other recovery codes stay valid.",
		Tags: []string{tagPasskeys}, Errors: passkeyErrors,
	}, accessPublic), func(ctx context.Context, in *recoveryInput) (*sessionOutput, error) {
		ua, ip := s.clientOf(in.Caller.hctx)
		if pr := s.authLimited(ip); pr != nil {
			return nil, pr
		}
		who, err := s.rp.RedeemRecoveryCode(ctx, in.Body.Email, in.Body.Code)
		if err != nil {
			s.authFailedAt(ip, err)
			return nil, toProblem(ctx, s.log, err)
		}
		// Whoever holds the lost passkey may hold a session, or have
		// authorized an MCP client, too: all of them end.
		return s.signedIn(ctx, newSession{UserID: who.UserID, Method: sessionMethodRecoveryCode,
			Client: in.Body.Client, UserAgent: ua, IP: ip}, true)
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "passkey-enrollment-options", Method: http.MethodPost, Path: "/v1/me/passkeys/options",
		Summary: "Start enrolling a passkey",
		Description: "Options for navigator.credentials.create(). An enrollment-only session may call it only while the " +
			"account has no passkey: whoever has one must sign in with it before adding another. Limited like sign-in options.",
		Tags: []string{tagPasskeys}, Errors: append(passkeyErrors, http.StatusTooManyRequests),
	}, accessEnrollment), func(ctx context.Context, in *passkeyOptionsInput) (*passkeyOptionsOutput, error) {
		if pr := s.passkeyOptionsLimited(ctx, in.Caller); pr != nil {
			return nil, pr
		}
		p := mustPrincipal(ctx)
		if p.Enrollment {
			has, err := s.rp.HasPasskey(ctx, p.UserID)
			if err != nil {
				return nil, toProblem(ctx, s.log, err)
			}
			if has {
				return nil, problem(http.StatusForbidden, CodePasskeyRequired,
					"this account already has a passkey: sign in with it (POST /v1/auth/passkey) to add another")
			}
		}
		o, err := s.rp.BeginEnrollment(ctx, p.UserID)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &passkeyOptionsOutput{Body: o}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "enroll-passkey", Method: http.MethodPost, Path: "/v1/me/passkeys",
		Summary: "Enroll a passkey",
		Description: "Verifies the new passkey (user verification required) and stores it. The first enrollment answers with " +
			"10 recovery codes, shown this once. An enrollment-only session becomes full, under a new token. A passkey added " +
			"to an account that has one needs an existing passkey's assertion made for it (confirmation, from POST " +
			"/v1/me/passkeys/add-options; 401 passkey_assertion_required without one): a session alone, perhaps a stolen " +
			"cookie, never adds a passkey.",
		Tags: []string{tagPasskeys}, DefaultStatus: http.StatusCreated, Errors: append(passkeyErrors, http.StatusConflict),
	}, accessEnrollment), func(ctx context.Context, in *finishEnrollmentInput) (*finishEnrollmentOutput, error) {
		p := mustPrincipal(ctx)
		var e passkeys.Enrolled
		var err error
		switch {
		case p.Enrollment:
			// Options may have been taken before another session enrolled
			// the account's first passkey: check again when finishing.
			e, err = s.rp.FinishFirstEnrollment(ctx, p.UserID, in.Body.CeremonyID, in.Body.Credential, in.Body.Name)
		case in.Body.Confirmation != nil:
			c, pr := in.Body.Confirmation.confirmation(ctx, "adding a passkey", "/v1/me/passkeys/add-options")
			if pr != nil {
				return nil, pr
			}
			e, err = s.rp.FinishConfirmedEnrollment(ctx, p.UserID, c, in.Body.CeremonyID, in.Body.Credential, in.Body.Name)
		default:
			// Only the account's first passkey: the relying party answers
			// 401 passkey_assertion_required if it has one.
			e, err = s.rp.FinishEnrollment(ctx, p.UserID, in.Body.CeremonyID, in.Body.Credential, in.Body.Name)
		}
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &finishEnrollmentOutput{}
		out.Body.Enrolled = e
		if p.Enrollment {
			var is issuedSession
			if err := s.inTx(ctx, func(q *store.Queries) error {
				var err error
				is, err = s.upgradeSession(ctx, q, p.SessionID)
				return err
			}); err != nil {
				return nil, toProblem(ctx, s.log, err)
			}
			ans := s.sessionAnswer(is)
			out.SetCookie, out.Body.Session = ans.SetCookie, &ans.Body
		}
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-passkeys", Method: http.MethodGet, Path: "/v1/me/passkeys",
		Summary: "List my passkeys", Description: "Your passkeys and how many recovery codes you have left.",
		Tags: []string{tagPasskeys}, Errors: sessionErrors,
	}, accessSelf), func(ctx context.Context, _ *struct{}) (*listPasskeysOutput, error) {
		p := mustPrincipal(ctx)
		items, err := s.rp.ListPasskeys(ctx, p.UserID)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		left, err := s.rp.RecoveryCodesLeft(ctx, p.UserID)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &listPasskeysOutput{}
		out.Body.Items, out.Body.RecoveryCodesLeft = items, left
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "remove-passkey", Method: http.MethodDelete, Path: "/v1/me/passkeys/{id}",
		Summary: "Remove a passkey",
		Description: "Removes one of your passkeys — never the last one (409 last_passkey) — with your passkey's assertion " +
			"made for removing this one: get options from POST /v1/me/passkeys/{id}/remove-options (401 " +
			"passkey_assertion_required without one). A session alone never removes a passkey.",
		Tags: []string{tagPasskeys}, DefaultStatus: http.StatusNoContent,
		Errors: append(passkeyErrors, http.StatusNotFound, http.StatusConflict),
	}, accessSelf), func(ctx context.Context, in *removePasskeyInput) (*struct{}, error) {
		c, pr := in.Body.confirmation(ctx, "removing a passkey", "/v1/me/passkeys/"+in.ID+"/remove-options")
		if pr != nil {
			return nil, pr
		}
		if err := s.rp.RemovePasskey(ctx, mustPrincipal(ctx).UserID, in.ID, c); err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &struct{}{}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "add-passkey-options", Method: http.MethodPost, Path: "/v1/me/passkeys/add-options",
		Summary: "Start confirming a new passkey",
		Description: "Options for navigator.credentials.get() whose challenge binds adding a passkey, you and this session: " +
			"an account that has a passkey gets another only with an existing passkey's assertion for these options " +
			"(confirmation of POST /v1/me/passkeys, within 5 minutes). Limited like the other passkey options.",
		Tags: []string{tagPasskeys}, Errors: append(passkeyErrors, http.StatusTooManyRequests),
	}, accessSelf), func(ctx context.Context, in *passkeyOptionsInput) (*passkeyOptionsOutput, error) {
		return s.confirmOptions(ctx, in.Caller, func(p Principal) (passkeys.Options, error) {
			return s.rp.BeginAddPasskey(ctx, p.UserID, p.SessionID)
		})
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "remove-passkey-options", Method: http.MethodPost, Path: "/v1/me/passkeys/{id}/remove-options",
		Summary: "Start confirming a passkey's removal",
		Description: "Options for navigator.credentials.get() whose challenge binds removing this passkey, you and this " +
			"session (DELETE /v1/me/passkeys/{id} within 5 minutes). A passkey that is not yours (404 not_found) or is " +
			"your only one (409 last_passkey) is refused here already, before you are asked to touch your authenticator. " +
			"Limited like the other passkey options.",
		Tags: []string{tagPasskeys}, Errors: append(passkeyErrors, http.StatusNotFound, http.StatusConflict, http.StatusTooManyRequests),
	}, accessSelf), func(ctx context.Context, in *removeOptionsInput) (*passkeyOptionsOutput, error) {
		return s.confirmOptions(ctx, in.Caller, func(p Principal) (passkeys.Options, error) {
			return s.rp.BeginRemovePasskey(ctx, p.UserID, p.SessionID, in.ID)
		})
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "recovery-codes-options", Method: http.MethodPost, Path: "/v1/me/recovery-codes/options",
		Summary: "Start confirming new recovery codes",
		Description: "Options for navigator.credentials.get() whose challenge binds this change, you and this session: new " +
			"recovery codes are made only with your passkey's assertion for them (POST /v1/me/recovery-codes within 5 " +
			"minutes), never on a session alone. Limited like the other passkey options.",
		Tags: []string{tagPasskeys}, Errors: append(passkeyErrors, http.StatusTooManyRequests),
	}, accessSelf), func(ctx context.Context, in *passkeyOptionsInput) (*passkeyOptionsOutput, error) {
		return s.confirmOptions(ctx, in.Caller, func(p Principal) (passkeys.Options, error) {
			return s.rp.BeginRecoveryCodes(ctx, p.UserID, p.SessionID)
		})
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "regenerate-recovery-codes", Method: http.MethodPost, Path: "/v1/me/recovery-codes",
		Summary: "Regenerate recovery codes",
		Description: "Replaces all your recovery codes with 10 new ones, shown this once. A recovery code signs in to the " +
			"account whatever becomes of its passkeys and sessions, so this needs your passkey: get options from POST " +
			"/v1/me/recovery-codes/options and send the assertion (401 passkey_assertion_required without one).",
		Tags: []string{tagPasskeys}, Errors: passkeyErrors,
	}, accessSelf), func(ctx context.Context, in *regenerateCodesInput) (*recoveryCodesOutput, error) {
		c, pr := in.Body.confirmation(ctx, "new recovery codes", "/v1/me/recovery-codes/options")
		if pr != nil {
			return nil, pr
		}
		codes, err := s.rp.RegenerateRecoveryCodes(ctx, mustPrincipal(ctx).UserID, c.SessionID, c.CeremonyID, c.Response)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &recoveryCodesOutput{}
		out.Body.Codes = codes
		return out, nil
	})
}

// authLimited refuses a sign-in attempt from an address past its budget of
// failed authentications (the budget the authenticator keeps for keys and
// sessions), before anything is verified.
func (s *Server) authLimited(ip netip.Addr) *Problem {
	if !s.limits.authIP.Active() {
		return nil
	}
	if v := s.limits.authIP.Check(ip, s.deps.Now()); v.Limited {
		p := problem(http.StatusTooManyRequests, CodeRateLimited,
			fmt.Sprintf("too many failed authentications from this address; retry after %d s", v.RetryAfterSeconds()))
		p.headers = http.Header{"Retry-After": []string{strconv.Itoa(v.RetryAfterSeconds())}}
		return p
	}
	return nil
}

// authFailedAt counts a refused sign-in against the client's address; a
// database outage is no failure of the client's.
func (s *Server) authFailedAt(ip netip.Addr, err error) {
	var pe *passkeys.Error
	if errors.As(err, &pe) && pe.Kind == passkeys.Unauthenticated {
		s.limits.authIP.Fail(ip, s.deps.Now())
	}
}

// signedIn starts the session of a verified sign-in (after revoking every
// other session of the person, and every MCP client they authorized, when
// revokeOthers: an account recovery) and answers it.
func (s *Server) signedIn(ctx context.Context, n newSession, revokeOthers bool) (*sessionOutput, error) {
	var is issuedSession
	err := s.inTx(ctx, func(q *store.Queries) error {
		if revokeOthers {
			s.sessions.forgetUser(n.UserID)
			if _, err := q.RevokeUserSessions(ctx, store.RevokeUserSessionsParams{UserID: n.UserID, Now: s.now()}); err != nil {
				return err
			}
			// Whether or not the OAuth server is on now: grants made while
			// it was would work again when it is back on.
			if err := oauth.RevokeUserGrants(ctx, q, s.now(), requestIDFrom(ctx), n.UserID, "account_recovered"); err != nil {
				return err
			}
		}
		var err error
		is, err = s.startSession(ctx, q, n)
		return err
	})
	if err != nil {
		return nil, toProblem(ctx, s.log, err)
	}
	return s.sessionAnswer(is), nil
}
