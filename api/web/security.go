package web

import (
	"net/http"
	"net/url"
	"time"
)

// The Security page: the signed-in person's passkeys (add, remove — never
// the last, the API refuses that — each confirmed with a passkey), recovery
// codes (regenerate, confirmed with a passkey, shown once) and sessions,
// i.e. devices (revoke one, or all others).

// passkeyItem is one passkey as GET /v1/me/passkeys lists it.
type passkeyItem struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	Synced     bool       `json:"synced"`
}

// device is one session as GET /v1/sessions lists it.
type device struct {
	ID         string    `json:"id"`
	Current    bool      `json:"current"`
	State      string    `json:"state"`
	Method     string    `json:"method"`
	Client     string    `json:"client"`
	UserAgent  string    `json:"user_agent"`
	IP         string    `json:"ip"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
}

// securityView is the Security page.
type securityView struct {
	Passkeys          []passkeyItem
	RecoveryCodesLeft int
	Devices           []device
}

func (d *Dashboard) securityGet(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	d.securityPage(w, r, m, http.StatusOK, "")
}

// securityPage renders the Security page with status, and msg as the
// problem to show (after a refused change).
func (d *Dashboard) securityPage(w http.ResponseWriter, r *http.Request, m *me, status int, msg string) {
	var v securityView
	var pk struct {
		Items             []passkeyItem `json:"items"`
		RecoveryCodesLeft int           `json:"recovery_codes_left"`
	}
	var ds struct {
		Items []device `json:"items"`
	}
	for _, c := range []struct {
		path string
		out  any
	}{{"/v1/me/passkeys", &pk}, {"/v1/sessions", &ds}} {
		a, ok := d.callOrFail(w, r, "read the security page", http.MethodGet, c.path, nil, c.out)
		if !ok {
			return
		}
		if a.problem != nil {
			d.problemPage(w, r, m, a.problem)
			return
		}
	}
	v.Passkeys, v.RecoveryCodesLeft, v.Devices = pk.Items, pk.RecoveryCodesLeft, ds.Items
	d.render(w, r, status, "security", view{Title: "Security", Nav: "security", Me: m, Error: msg, Data: v})
}

// securityChange sends one change of the Security page to the API and, when
// it was refused, shows the page again with why; it reports whether the
// change was made. Session cookies of the answer reach the browser.
func (d *Dashboard) securityChange(w http.ResponseWriter, r *http.Request, m *me, method, path string, in, out any) bool {
	a, ok := d.callOrFail(w, r, "change security", method, path, in, out)
	if !ok {
		return false
	}
	if a.problem != nil {
		d.securityPage(w, r, m, formStatus(a.status), a.problem.Detail)
		return false
	}
	passCookies(w, a)
	return true
}

func (d *Dashboard) removePasskey(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	// Removing a passkey takes the assertion webauthn.js got for removing
	// this very one: a session alone must not strip the owner's passkeys.
	c, ok := readCeremony(r)
	if !ok {
		d.securityPage(w, r, m, http.StatusUnprocessableEntity, noCeremony)
		return
	}
	if d.securityChange(w, r, m, http.MethodDelete, "/v1/me/passkeys/"+url.PathEscape(r.PathValue("id")), c, nil) {
		http.Redirect(w, r, "/security", http.StatusSeeOther)
	}
}

func (d *Dashboard) regenerateCodes(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	// New codes sign in to the account for good: the API makes them only
	// with the passkey assertion webauthn.js got for this change.
	c, ok := readCeremony(r)
	if !ok {
		d.securityPage(w, r, m, http.StatusUnprocessableEntity, noCeremony)
		return
	}
	var out struct {
		Codes []string `json:"recovery_codes"`
	}
	in := map[string]any{"ceremony_id": c.CeremonyID, "credential": c.Credential}
	if d.securityChange(w, r, m, http.MethodPost, "/v1/me/recovery-codes", in, &out) {
		d.render(w, r, http.StatusOK, "codes", view{Title: "Your new recovery codes", Nav: "security", Me: m,
			Data: codesView{Codes: out.Codes, Next: "/security"}})
	}
}

func (d *Dashboard) revokeSession(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	id := r.PathValue("id")
	if !d.securityChange(w, r, m, http.MethodDelete, "/v1/sessions/"+url.PathEscape(id), nil, nil) {
		return
	}
	if id == m.SessionID {
		http.Redirect(w, r, "/sign-in", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/security", http.StatusSeeOther)
}

func (d *Dashboard) revokeOtherSessions(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	if d.securityChange(w, r, m, http.MethodPost, "/v1/sessions/revoke-others", nil, nil) {
		http.Redirect(w, r, "/security", http.StatusSeeOther)
	}
}
