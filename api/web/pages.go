package web

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"oakallow/api/runtime"
)

// me is the signed-in person (GET /v1/me).
type me struct {
	UserID      string `json:"user_id"`
	Email       string `json:"email"`
	Name        string `json:"name"`
	SessionID   string `json:"session_id"`
	State       string `json:"state"`
	Memberships []struct {
		TeamID   string `json:"team_id"`
		TeamName string `json:"team_name"`
		Role     string `json:"role"`
		Orgs     []org  `json:"orgs"`
	} `json:"memberships"`
}

// currentOrg is the org the dashboard acts in, as the API picks it: the
// chosen one when it is among the person's orgs, else their only org; nil
// when there is none to pick.
func (m *me) currentOrg(selected string) *org {
	var only *org
	n := 0
	for i := range m.Memberships {
		for j := range m.Memberships[i].Orgs {
			o := &m.Memberships[i].Orgs[j]
			if o.ID == selected {
				return o
			}
			only = o
			n++
		}
	}
	if n == 1 {
		return only
	}
	return nil
}

// orgCookie remembers the org the dashboard acts in (not a secret: an org
// id; the API checks it against the person's memberships on every call).
const orgCookie = "oakallow_org"

// selectedOrg is the org chosen in the dashboard, or "" (the person's only org).
func selectedOrg(r *http.Request) string {
	c, err := r.Cookie(orgCookie)
	if err != nil || !orgID(c.Value) {
		return ""
	}
	return c.Value
}

// orgID reports whether s has an org id's shape.
func orgID(s string) bool {
	if len(s) > 64 || !strings.HasPrefix(s, "org_") {
		return false
	}
	for _, ch := range s {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_') {
			return false
		}
	}
	return true
}

// safeNext is where to go after signing in: a path on this site, never
// another origin ("//evil", "/\evil"), else the approvals queue.
func safeNext(next string) string {
	if len(next) == 0 || len(next) > 512 || next[0] != '/' || len(next) > 1 && (next[1] == '/' || next[1] == '\\') {
		return "/approvals"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/approvals"
	}
	return u.EscapedPath()
}

// person is the signed-in person; otherwise it answers the request itself
// (to the sign-in page, or to passkey enrollment for an enrollment-only
// session) and returns nil.
func (d *Dashboard) person(w http.ResponseWriter, r *http.Request) *me {
	var m me
	a, err := d.call(r.Context(), r, http.MethodGet, "/v1/me", nil, nil, &m)
	if err != nil {
		d.log.ErrorContext(r.Context(), "read the signed-in person", "err", err)
		d.fail(w, r)
		return nil
	}
	if a.problem != nil {
		if a.status == http.StatusUnauthorized {
			http.Redirect(w, r, "/sign-in?"+url.Values{"next": {r.URL.Path}}.Encode(), http.StatusSeeOther)
			return nil
		}
		d.problemPage(w, r, nil, a.problem)
		return nil
	}
	if m.State != "full" && r.URL.Path != "/enroll" {
		next := "/approvals"
		if r.Method == http.MethodGet {
			next = r.URL.Path
		}
		http.Redirect(w, r, enrollURL(next), http.StatusSeeOther)
		return nil
	}
	return &m
}

// problemPage shows an API problem as a page with its status.
func (d *Dashboard) problemPage(w http.ResponseWriter, r *http.Request, m *me, p *problem) {
	if d.needsOrg(w, r, p) {
		return
	}
	msg := p.Detail
	if msg == "" {
		msg = http.StatusText(p.Status)
	}
	if p.Status >= 500 {
		msg = "The server could not answer. Try again in a moment."
	}
	d.render(w, r, p.Status, "problem", view{Title: http.StatusText(p.Status), Me: m, Error: msg})
}

func (d *Dashboard) home(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/approvals", http.StatusSeeOther)
}

// signInForm is the data of the sign-in pages.
type signInForm struct {
	Email   string
	Next    string
	Attempt string // the e-mail code attempt: a secret, kept in the form body only
	// Invitation is the token of an invitation link (sign-up); Name the
	// name the invited person gives.
	Invitation string
	Name       string
	// OpenSignUp and DevMailbox are the dashboard's settings of the same
	// names (Config).
	OpenSignUp bool
	DevMailbox string
}

// signInForm is a sign-in form with the dashboard's settings filled in.
func (d *Dashboard) signInForm(f signInForm) signInForm {
	f.OpenSignUp, f.DevMailbox = d.cfg.OpenSignUp, d.cfg.DevMailbox
	return f
}

func (d *Dashboard) signInPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	var m me
	if a, err := d.call(r.Context(), r, http.MethodGet, "/v1/me", nil, nil, &m); err == nil && a.problem == nil {
		if m.State == "full" {
			http.Redirect(w, r, next, http.StatusSeeOther)
		} else {
			http.Redirect(w, r, "/enroll", http.StatusSeeOther)
		}
		return
	}
	d.render(w, r, http.StatusOK, "signin", view{Title: "Sign in", Data: d.signInForm(signInForm{Next: next})})
}

// signUpPage is where an invitation link leads (/sign-up?invitation=…): the
// e-mail code form, carrying the invitation in its body from here on.
func (d *Dashboard) signUpPage(w http.ResponseWriter, r *http.Request) {
	inv := r.URL.Query().Get("invitation")
	if inv == "" || len(inv) > 100 {
		http.Redirect(w, r, "/sign-in", http.StatusSeeOther)
		return
	}
	d.render(w, r, http.StatusOK, "signin", view{Title: "Sign up", Data: d.signInForm(signInForm{Next: "/approvals", Invitation: inv})})
}

func (d *Dashboard) signInStart(w http.ResponseWriter, r *http.Request) {
	f := signInForm{Email: strings.TrimSpace(r.PostFormValue("email")), Next: safeNext(r.PostFormValue("next")),
		Invitation: r.PostFormValue("invitation"), Name: strings.TrimSpace(r.PostFormValue("name"))}
	var out struct {
		Attempt string `json:"attempt"`
	}
	in := map[string]string{"email": f.Email}
	if f.Invitation != "" {
		in["invitation"] = f.Invitation
	}
	a, err := d.call(r.Context(), r, http.MethodPost, "/v1/auth/email/start", nil, in, &out)
	if err != nil {
		d.log.ErrorContext(r.Context(), "start e-mail sign-in", "err", err)
		d.fail(w, r)
		return
	}
	if a.problem != nil {
		d.signInRefused(w, r, a, "signin", "Sign in", f)
		return
	}
	f.Attempt = out.Attempt
	d.render(w, r, http.StatusOK, "code", view{Title: "Enter your code", Data: d.signInForm(f)})
}

// signInRefused shows a sign-in form again with the API's refusal: the
// API's 4xx, else 502.
func (d *Dashboard) signInRefused(w http.ResponseWriter, r *http.Request, a *answer, page, title string, f signInForm) {
	d.render(w, r, formStatus(a.status), page, view{Title: title, Error: a.problem.Detail, Data: d.signInForm(f)})
}

// formStatus is the status of a form page re-shown after the API refused
// its input: the API's 4xx, else 502.
func formStatus(status int) int {
	if status >= 400 && status < 500 {
		return status
	}
	return http.StatusBadGateway
}

func (d *Dashboard) signInCode(w http.ResponseWriter, r *http.Request) {
	f := signInForm{Email: r.PostFormValue("email"), Next: safeNext(r.PostFormValue("next")), Attempt: r.PostFormValue("attempt"),
		Name: strings.TrimSpace(r.PostFormValue("name"))}
	var out struct {
		State string `json:"state"`
	}
	in := map[string]string{"attempt": f.Attempt, "code": strings.TrimSpace(r.PostFormValue("code")), "client": "browser"}
	if f.Name != "" {
		in["name"] = f.Name
	}
	a, err := d.call(r.Context(), r, http.MethodPost, "/v1/auth/email/verify", nil, in, &out)
	if err != nil {
		d.log.ErrorContext(r.Context(), "verify e-mail code", "err", err)
		d.fail(w, r)
		return
	}
	if a.problem != nil {
		d.signInRefused(w, r, a, "code", "Enter your code", f)
		return
	}
	passCookies(w, a)
	if out.State != "full" {
		http.Redirect(w, r, enrollURL(f.Next), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, f.Next, http.StatusSeeOther)
}

// enrollURL is the passkey enrollment page, which goes on to next once a
// passkey confirms the session: an alert's link followed by someone whose
// first sign-in is an e-mail code still ends at the approval it names.
func enrollURL(next string) string {
	if next = safeNext(next); next == "/approvals" {
		return "/enroll"
	}
	return "/enroll?" + url.Values{"next": {next}}.Encode()
}

func (d *Dashboard) signOut(w http.ResponseWriter, r *http.Request) {
	a, err := d.call(r.Context(), r, http.MethodPost, "/v1/auth/sign-out", nil, nil, nil)
	if err != nil {
		d.log.ErrorContext(r.Context(), "sign out", "err", err)
		d.fail(w, r)
		return
	}
	passCookies(w, a)
	http.Redirect(w, r, "/sign-in", http.StatusSeeOther)
}

func (d *Dashboard) enrollPage(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	next := safeNext(r.URL.Query().Get("next"))
	if m.State == "full" {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	d.render(w, r, http.StatusOK, "enroll", view{Title: "Passkey required", Me: m, Data: enrollView{Next: next}})
}

// enrollView is the enrollment page's data.
type enrollView struct {
	// Next is where the person goes once a passkey confirms the session.
	Next string
}

// approvalList is GET /v1/approvals's answer.
type approvalList struct {
	Items []runtime.Approval `json:"items"`
}

// queueView is the pending queue (also sent, re-rendered, to live pages).
type queueView struct {
	Pending []runtime.Approval
	Now     time.Time
}

// approvalsView is the approvals page.
type approvalsView struct {
	Queue  queueView
	Recent []runtime.Approval
}

// maxQueue is how many pending approvals the queue shows (the API's page limit).
const maxQueue = 200

func (d *Dashboard) listApprovals(r *http.Request, status string, limit int) (*answer, []runtime.Approval, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if status != "" {
		q.Set("status", status)
	}
	var out approvalList
	a, err := d.call(r.Context(), r, http.MethodGet, "/v1/approvals", q, nil, &out)
	return a, out.Items, err
}

func (d *Dashboard) approvalsPage(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	a, pending, err := d.listApprovals(r, "pending", maxQueue)
	if err == nil && a.problem == nil {
		v := approvalsView{Queue: queueView{Pending: pending, Now: d.cfg.Now()}}
		// Each ended status on its own: a list of any status would hold
		// only pending ones while more than its page wait.
		for _, status := range []string{"approved", "denied", "expired"} {
			var ended []runtime.Approval
			if a, ended, err = d.listApprovals(r, status, maxRecent); err != nil || a.problem != nil {
				break
			}
			v.Recent = append(v.Recent, ended...)
		}
		if err == nil && a.problem == nil {
			slices.SortFunc(v.Recent, func(x, y runtime.Approval) int { return endedAt(y).Compare(endedAt(x)) })
			v.Recent = v.Recent[:min(len(v.Recent), maxRecent)]
			d.render(w, r, http.StatusOK, "approvals", view{Title: "Approvals", Nav: "approvals", Me: m, Data: v})
			return
		}
	}
	if err != nil {
		d.log.ErrorContext(r.Context(), "list approvals", "err", err)
		d.fail(w, r)
		return
	}
	d.problemPage(w, r, m, a.problem)
}

// maxRecent is how many ended approvals the approvals page shows.
const maxRecent = 20

// endedAt is when an approval ended (its creation when the time is unknown).
func endedAt(a runtime.Approval) time.Time {
	if a.DecidedAt != nil {
		return *a.DecidedAt
	}
	return a.CreatedAt
}

// approvalView is one approval's page.
type approvalView struct {
	A          runtime.Approval
	Now        time.Time
	Parameters string
	Context    string
	Evidence   []evidenceItem
	// Org is the org the page acts in, for the decide form's API calls
	// ("" when the person's only org).
	Org  string
	Form decideForm
}

func (d *Dashboard) approvalPage(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	d.showApproval(w, r, m, r.PathValue("ref"), http.StatusOK, "", decideForm{})
}

// showApproval renders the approval ref with status, msg as the problem to
// show (a refused decision) and the decide form as it was sent.
func (d *Dashboard) showApproval(w http.ResponseWriter, r *http.Request, m *me, ref string, status int, msg string, f decideForm) {
	v := approvalView{Org: selectedOrg(r), Form: f}
	path := "/v1/approvals/" + url.PathEscape(ref)
	a, err := d.call(r.Context(), r, http.MethodGet, path, nil, nil, &v.A)
	if err != nil {
		d.log.ErrorContext(r.Context(), "read approval", "err", err)
		d.fail(w, r)
		return
	}
	if a.problem != nil {
		if a.status == http.StatusNotFound {
			a.problem.Detail = "No approval with that reference in your org."
		}
		d.problemPage(w, r, m, a.problem)
		return
	}
	v.Now = d.cfg.Now()
	v.Parameters, v.Context = indentJSON(v.A.Parameters), indentJSON(v.A.Context)
	if len(v.A.Decisions) > 0 {
		var ev struct {
			Items []evidenceItem `json:"items"`
		}
		if ea, err := d.call(r.Context(), r, http.MethodGet, path+"/evidence", nil, nil, &ev); err == nil && ea.problem == nil {
			v.Evidence = ev.Items
		}
	}
	d.render(w, r, status, "approval", view{Title: v.A.Reference, Nav: "approvals", Me: m, Error: msg, Data: v})
}

// indentJSON is raw JSON laid out for reading ("" for none).
func indentJSON(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}
