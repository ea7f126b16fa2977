package web

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Passkeys in the browser: sign-in with a passkey (discoverable, so no
// address is asked for), enrollment with the recovery codes shown once,
// and sign-in with a recovery code. static/webauthn.js runs the WebAuthn
// ceremony with the options the API hands out and posts the
// authenticator's answer in a form to these handlers, which send it to the
// API in-process; the API verifies it and starts or upgrades the session.

// registerAuth mounts the passkey, recovery, decision and Security routes.
func (d *Dashboard) registerAuth(mux *http.ServeMux) {
	mux.HandleFunc("GET /sign-up", d.signUpPage)
	mux.HandleFunc("POST /sign-in/passkey", d.signInPasskey)
	mux.HandleFunc("GET /sign-in/recovery", d.recoveryPage)
	mux.HandleFunc("POST /sign-in/recovery", d.recoverySignIn)
	mux.HandleFunc("POST /enroll", d.enrollPasskey)
	mux.HandleFunc("POST /approvals/{ref}/decide", d.decide)
	mux.HandleFunc("GET /orgs", d.orgsPage)
	mux.HandleFunc("POST /orgs", d.selectOrg)
	mux.HandleFunc("POST /orgs/new", d.createOrg)
	mux.HandleFunc("GET /security", d.securityGet)
	mux.HandleFunc("POST /security/passkeys/{id}/remove", d.removePasskey)
	mux.HandleFunc("POST /security/recovery-codes", d.regenerateCodes)
	mux.HandleFunc("POST /security/sessions/{id}/revoke", d.revokeSession)
	mux.HandleFunc("POST /security/sessions/revoke-others", d.revokeOtherSessions)
}

// maxCredentialField bounds the authenticator's answer a form may carry (the
// API's own limit on WebAuthn responses is 64 KiB).
const maxCredentialField = 64 << 10

// ceremonyForm is the part of a passkey form filled in by webauthn.js.
type ceremonyForm struct {
	CeremonyID string          `json:"ceremony_id"`
	Credential json.RawMessage `json:"credential"`
}

// readCeremony reads the ceremony id and the authenticator's JSON answer
// from a submitted form; ok is false when either is missing or malformed
// (a browser without JavaScript, or a tampered form).
func readCeremony(r *http.Request) (ceremonyForm, bool) { return readCeremonyFields(r, "") }

// readConfirmation reads the confirming passkey assertion webauthn.js puts
// into a form marked data-confirm (confirm_ceremony_id, confirm_credential)
// as readCeremony reads the main one.
func readConfirmation(r *http.Request) (ceremonyForm, bool) { return readCeremonyFields(r, "confirm_") }

func readCeremonyFields(r *http.Request, prefix string) (ceremonyForm, bool) {
	f := ceremonyForm{CeremonyID: r.PostFormValue(prefix + "ceremony_id")}
	raw := r.PostFormValue(prefix + "credential")
	if f.CeremonyID == "" || len(f.CeremonyID) > 100 || raw == "" || len(raw) > maxCredentialField || !json.Valid([]byte(raw)) {
		return f, false
	}
	f.Credential = json.RawMessage(raw)
	return f, true
}

// callOrFail is call for a handler: when the call itself fails (not an API
// refusal, which is in the answer), the cause is logged as what failed, the
// browser gets the 500 page, and ok is false.
func (d *Dashboard) callOrFail(w http.ResponseWriter, r *http.Request, what, method, path string, in, out any) (*answer, bool) {
	a, err := d.call(r.Context(), r, method, path, nil, in, out)
	if err != nil {
		d.log.ErrorContext(r.Context(), what, "err", err)
		d.fail(w, r)
		return nil, false
	}
	return a, true
}

const noCeremony = "The passkey step did not complete: this page needs JavaScript and a browser that supports passkeys."

// signInPasskey finishes a passkey sign-in and replaces any session the
// browser held (an enrollment-only one, typically) with the full one.
func (d *Dashboard) signInPasskey(w http.ResponseWriter, r *http.Request) {
	f := signInForm{Next: safeNext(r.PostFormValue("next"))}
	c, ok := readCeremony(r)
	if !ok {
		d.render(w, r, http.StatusUnprocessableEntity, "signin", view{Title: "Sign in", Error: noCeremony, Data: f})
		return
	}
	a, ok := d.callOrFail(w, r, "passkey sign-in", http.MethodPost, "/v1/auth/passkey", map[string]any{
		"ceremony_id": c.CeremonyID, "credential": c.Credential, "client": "browser"}, nil)
	if !ok {
		return
	}
	if a.problem != nil {
		d.signInRefused(w, r, a, "signin", "Sign in", f)
		return
	}
	d.endPreviousSession(r)
	passCookies(w, a)
	http.Redirect(w, r, f.Next, http.StatusSeeOther)
}

// endPreviousSession revokes the session the browser signed in with before
// a new sign-in replaced its cookie, so it does not linger until it expires.
func (d *Dashboard) endPreviousSession(r *http.Request) {
	if len(r.Cookies()) == 0 {
		return
	}
	if _, err := d.call(r.Context(), r, http.MethodPost, "/v1/auth/sign-out", nil, nil, nil); err != nil {
		d.log.WarnContext(r.Context(), "end the previous session", "err", err)
	}
}

// recoveryForm is the data of the recovery-code sign-in page. Next is
// where the person was going (same-origin paths only, safeNext): after the
// new passkey is enrolled they land there, as after a passkey sign-in.
type recoveryForm struct {
	Email string
	Next  string
}

func (d *Dashboard) recoveryPage(w http.ResponseWriter, r *http.Request) {
	d.render(w, r, http.StatusOK, "recovery", view{Title: "Sign in with a recovery code",
		Data: recoveryForm{Next: safeNext(r.URL.Query().Get("next"))}})
}

// recoverySignIn spends a recovery code: the API revokes the account's
// passkeys and sessions and starts an enrollment-only session, so the next
// page enrolls a new passkey.
func (d *Dashboard) recoverySignIn(w http.ResponseWriter, r *http.Request) {
	f := recoveryForm{Email: strings.TrimSpace(r.PostFormValue("email")), Next: safeNext(r.PostFormValue("next"))}
	a, ok := d.callOrFail(w, r, "recovery sign-in", http.MethodPost, "/v1/auth/recovery", map[string]string{
		"email": f.Email, "code": strings.TrimSpace(r.PostFormValue("code")), "client": "browser"}, nil)
	if !ok {
		return
	}
	if a.problem != nil {
		d.render(w, r, formStatus(a.status), "recovery", view{Title: "Sign in with a recovery code", Error: a.problem.Detail, Data: f})
		return
	}
	passCookies(w, a)
	http.Redirect(w, r, enrollURL(f.Next), http.StatusSeeOther)
}

// enrolled is POST /v1/me/passkeys's answer.
type enrolled struct {
	RecoveryCodes []string `json:"recovery_codes"`
}

// codesView is the page that shows recovery codes, once.
type codesView struct {
	Codes []string
	// Next is where the person goes on.
	Next string
}

// enrollPasskey finishes enrolling a passkey, from the enrollment page (the
// session becomes full) or the Security page (another passkey). The first
// passkey's recovery codes are shown on the page this answers, and never
// again.
func (d *Dashboard) enrollPasskey(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	page, title, next := "enroll", "Passkey required", safeNext(r.PostFormValue("next"))
	if m.State == "full" {
		page, title, next = "", "Security", "/security"
	}
	c, ok := readCeremony(r)
	if !ok {
		d.enrollRefused(w, r, m, page, title, next, http.StatusUnprocessableEntity, noCeremony)
		return
	}
	in := map[string]any{"ceremony_id": c.CeremonyID, "credential": c.Credential, "name": strings.TrimSpace(r.PostFormValue("name"))}
	if confirm, ok := readConfirmation(r); ok && m.State == "full" {
		// Another passkey: the API adds it only with an existing one's
		// assertion, which webauthn.js got first (data-confirm).
		in["confirmation"] = confirm
	}
	var out enrolled
	a, ok := d.callOrFail(w, r, "enroll passkey", http.MethodPost, "/v1/me/passkeys", in, &out)
	if !ok {
		return
	}
	if a.problem != nil {
		d.enrollRefused(w, r, m, page, title, next, formStatus(a.status), a.problem.Detail)
		return
	}
	passCookies(w, a)
	if len(out.RecoveryCodes) == 0 {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	m.State = "full"
	d.render(w, r, http.StatusOK, "codes", view{Title: "Your recovery codes", Me: m, Data: codesView{Codes: out.RecoveryCodes, Next: next}})
}

// enrollRefused shows the page a passkey was enrolled from again, with why
// it was refused.
func (d *Dashboard) enrollRefused(w http.ResponseWriter, r *http.Request, m *me, page, title, next string, status int, msg string) {
	if page == "" {
		d.securityPage(w, r, m, status, msg)
		return
	}
	d.render(w, r, status, page, view{Title: title, Me: m, Error: msg, Data: enrollView{Next: next}})
}
