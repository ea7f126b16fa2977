package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The admin pages (rules, tools, tenants, resources, API keys, activity,
// settings, team, billing, quickstart, API builder) follow one pattern: a
// GET renders the page from API reads; a form POSTs to the page's own path
// plus an action, which makes one or two API calls and then either
// redirects back (303, so a reload does not repeat it) with a fixed notice,
// or — when the API refused the input or the answer holds a secret shown
// once — renders the page again with the refusal or the secret. Who may do
// what is the API's answer: a reviewer gets the API's 403 as the page.

// registerManage mounts the admin pages.
func (d *Dashboard) registerManage(mux *http.ServeMux) {
	mux.HandleFunc("GET /rules", d.rulesPage)
	mux.HandleFunc("POST /rules", d.rulesCreate)
	mux.HandleFunc("POST /rules/{id}/delete", d.rulesDelete)
	mux.HandleFunc("GET /rules/explain", d.explainPage)
	mux.HandleFunc("GET /tools", d.toolsPage)
	mux.HandleFunc("POST /tools", d.toolsCreate)
	mux.HandleFunc("POST /tools/{id}/triage", d.toolsTriage)
	for _, n := range namedKinds {
		mux.HandleFunc("GET /"+n.plural, d.namedPage(n))
		mux.HandleFunc("POST /"+n.plural, d.namedCreate(n))
		mux.HandleFunc("POST /"+n.plural+"/{id}/delete", d.namedDelete(n))
	}
	mux.HandleFunc("GET /keys", d.keysPage)
	mux.HandleFunc("POST /keys", d.keysCreate)
	mux.HandleFunc("POST /keys/{id}/revoke", d.keysRevoke)
	mux.HandleFunc("GET /agents", d.agentsPage)
	mux.HandleFunc("POST /agents", d.agentsCreate)
	mux.HandleFunc("POST /agents/{id}/revoke", d.agentsRevoke)
	mux.HandleFunc("GET /mcp-clients", d.connectionsPage)
	mux.HandleFunc("POST /mcp-clients/{id}/revoke", d.connectionsRevoke)
	mux.HandleFunc("GET /activity", d.activityPage)
	d.registerSetup(mux)
	d.registerAccount(mux)
}

// Manages says whether the person is an owner or admin of some team: the
// admin pages are offered in the navigation (the API still decides, per
// org, whether each page may be read).
func (m *me) Manages() bool {
	for _, ms := range m.Memberships {
		if ms.Role == "owner" || ms.Role == "admin" {
			return true
		}
	}
	return false
}

// adminData is what an admin page's template receives as .Data.
type adminData struct {
	// Page is the page's own data.
	Page any
	// Notice confirms the last form's success (a fixed text, never data
	// from the URL).
	Notice string
	// Form is the refused form's input, to fill the form again.
	Form url.Values
}

// Value is the refused form's value of a field ("" when none).
func (a adminData) Value(name string) string { return a.Form.Get(name) }

// Checked is whether the refused form had the checkbox ticked.
func (a adminData) Checked(name string) bool { return a.Form.Get(name) != "" }

// adminPage describes one admin page: its template, title, navigation
// entry, and how its data is read from the API (load answers the request
// itself and returns false when it cannot).
type adminPage struct {
	name, title string
	// template is the page's template when not name.
	template string
	load     func(w http.ResponseWriter, r *http.Request, m *me) (any, bool)
}

// notices are the confirmations a redirect after a form may name.
var notices = map[string]string{
	"rule-created": "Rule created.", "rule-deleted": "Rule deleted.",
	"tool-created": "Tool registered.", "tool-approved": "Tool approved: it is active now.",
	"tool-annotated": "Annotations saved and acknowledged.", "tool-disabled": "Tool disabled: every check of it answers disabled.",
	"tenant-created": "Tenant created.", "tenant-deleted": "Tenant deleted.",
	"resource-created": "Resource created.", "resource-deleted": "Resource deleted.",
	"key-revoked":        "Key revoked: it stops working within a second.",
	"agent-revoked":      "Agent revoked: its credential stops working within a second.",
	"mcp-client-revoked": "Client revoked: its access and refresh tokens no longer work.",
	"settings-saved":     "Settings saved.", "channel-created": "Channel added.", "channel-deleted": "Channel removed.",
	"slack-installed": "Slack added: the new channel is listed under Alert channels.",
	"invited":         "Invitation sent.", "invitation-revoked": "Invitation revoked.", "role-changed": "Role changed.",
	"member-removed": "Member removed.", "group-saved": "Approver group saved.",
}

// show renders an admin page: its data read afresh, with a notice (from
// the redirect's done=) or a refusal (status ≥ 400, with the refused form).
func (d *Dashboard) show(w http.ResponseWriter, r *http.Request, m *me, p adminPage, status int, refusal string, form url.Values) {
	data, ok := p.load(w, r, m)
	if !ok {
		return
	}
	tmpl := p.name
	if p.template != "" {
		tmpl = p.template
	}
	d.render(w, r, status, tmpl, view{Title: p.title, Nav: p.name, Me: m, Error: refusal,
		Data: adminData{Page: data, Notice: notices[r.URL.Query().Get("done")], Form: form}})
}

// adminGet serves an admin page's GET.
func (d *Dashboard) adminGet(p adminPage) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if m := d.person(w, r); m != nil {
			d.show(w, r, m, p, http.StatusOK, "", nil)
		}
	}
}

// adminFetch reads an API resource into out for a page; when the API refuses
// (a reviewer asking for an admin page: 403) or fails, it answers the
// request with that problem and returns false.
func (d *Dashboard) adminFetch(w http.ResponseWriter, r *http.Request, m *me, path string, q url.Values, out any) bool {
	a, err := d.call(r.Context(), r, http.MethodGet, path, q, nil, out)
	if err != nil {
		d.log.ErrorContext(r.Context(), "read for a page", "path", path, "err", err)
		d.fail(w, r)
		return false
	}
	if a.problem != nil {
		d.problemPage(w, r, m, a.problem)
		return false
	}
	return true
}

// adminSubmit makes a form's API call. It returns false after answering the
// request itself: the page again with the API's refusal (4xx), or a
// failure. A 404 of the thing acted on is a refusal too.
func (d *Dashboard) adminSubmit(w http.ResponseWriter, r *http.Request, m *me, p adminPage, method, path string, in, out any) bool {
	a, err := d.call(r.Context(), r, method, path, nil, in, out)
	if err != nil {
		d.log.ErrorContext(r.Context(), "form call", "path", path, "err", err)
		d.fail(w, r)
		return false
	}
	if a.problem == nil {
		return true
	}
	if a.status == http.StatusUnauthorized || a.status == http.StatusForbidden || a.status >= 500 {
		d.problemPage(w, r, m, a.problem)
		return false
	}
	d.show(w, r, m, p, formStatus(a.status), refusalText(a.problem), r.PostForm)
	return false
}

// refusalText is an API refusal as a sentence: its detail and, for
// validation problems, what was wrong with which field (at most three).
func refusalText(p *problem) string {
	msg := p.Detail
	if msg == "" {
		msg = http.StatusText(p.Status)
	}
	n := 0
	for _, e := range p.Errors {
		if n == 3 {
			break
		}
		// A field problem of the API repeats its detail as the field's
		// message: say it once.
		if e.Message == p.Detail {
			continue
		}
		sep := "; "
		if n == 0 {
			sep = ": "
		}
		n++
		field := strings.TrimPrefix(strings.TrimPrefix(e.Location, "body."), "query.")
		if field == "" || strings.Contains(e.Message, field) {
			msg += sep + e.Message
		} else {
			msg += sep + field + " " + e.Message
		}
	}
	return msg
}

// doneRedirect redirects after a successful form to path with a notice.
func doneRedirect(w http.ResponseWriter, r *http.Request, path, notice string) {
	http.Redirect(w, r, path+"?done="+url.QueryEscape(notice), http.StatusSeeOther)
}

// formPerson is the signed-in person for a form POST, with the form
// parsed (bounded by the server's body limit).
func (d *Dashboard) formPerson(w http.ResponseWriter, r *http.Request) *me {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		d.render(w, r, http.StatusRequestEntityTooLarge, "problem", view{Title: "Form too large", Error: "The form could not be read."})
		return nil
	}
	return d.person(w, r)
}

// maxFormBytes bounds a form's body: the largest is a tool's parameter
// schema (the API takes at most 32 KiB of it).
const maxFormBytes = 128 << 10

// optional is a form field as an optional JSON string (nil when empty).
func optional(r *http.Request, name string) *string {
	v := strings.TrimSpace(r.PostForm.Get(name))
	if v == "" {
		return nil
	}
	return &v
}

// pageList is one page of an API list.
type pageList[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// pageQuery is the API query of a paged list page: the browser's cursor
// (opaque, checked by the API) and a bounded page size.
func pageQuery(r *http.Request, limit int) url.Values {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if c := r.URL.Query().Get("cursor"); c != "" && len(c) <= 300 {
		q.Set("cursor", c)
	}
	return q
}

// currentOrg is the org the dashboard acts in: the chosen one, else the
// team's only org. ok is false (the request answered) when there is none
// to act in.
func (d *Dashboard) currentOrg(w http.ResponseWriter, r *http.Request, m *me) (org, bool) {
	// GET /v1/me, which every page reads first, lists the person's orgs:
	// no second call. The API still checks the org on every call.
	if o := m.currentOrg(selectedOrg(r)); o != nil {
		return *o, true
	}
	d.problemPage(w, r, m, &problem{Status: http.StatusConflict, Code: "org_required", Detail: "Choose an org first: your team has several."})
	return org{}, false
}

// org is an org as GET /v1/orgs lists it.
type org struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}
