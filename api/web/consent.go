package web

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The consent page of the MCP connector's OAuth authorization server
// (api/oauth): after the person signed in with a passkey, it shows what an
// application asks for and lets them pick the org and the scopes, or deny.
// Like every page it only calls the API: GET /v1/oauth/requests/{id} (which
// binds the form's CSRF token to this session) and POST …/decision, whose
// answer is where the browser goes next.

// consentRequest is GET /v1/oauth/requests/{id}.
type consentRequest struct {
	ID         string    `json:"id"`
	ClientID   string    `json:"client_id"`
	ClientName string    `json:"client_name"`
	ClientURI  string    `json:"client_uri"`
	RedirectTo string    `json:"redirect_to"`
	Scopes     []string  `json:"scopes"`
	Resource   string    `json:"resource"`
	CSRF       string    `json:"csrf"`
	ExpiresAt  time.Time `json:"expires_at"`
	Orgs       []struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		TeamName string `json:"team_name"`
	} `json:"orgs"`
}

type consentPage struct {
	R                 consentRequest
	CanRead, CanWrite bool
}

func (d *Dashboard) registerConsent(mux *http.ServeMux) {
	mux.HandleFunc("GET /oauth/consent/{id}", d.consentPage)
	mux.HandleFunc("POST /oauth/consent/{id}", d.consentDecide)
}

// validRequestID keeps the path segment to an id's characters before it is
// put in an API path.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (d *Dashboard) consentPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !validRequestID(id) {
		d.problemPage(w, r, nil, &problem{Status: http.StatusNotFound, Detail: "No such authorization request."})
		return
	}
	m := d.person(w, r)
	if m == nil {
		return
	}
	var cr consentRequest
	a, err := d.call(r.Context(), r, http.MethodGet, "/v1/oauth/requests/"+id, nil, nil, &cr)
	if err != nil {
		d.log.ErrorContext(r.Context(), "read authorization request", "err", err)
		d.fail(w, r)
		return
	}
	if a.problem != nil {
		d.problemPage(w, r, m, a.problem)
		return
	}
	page := consentPage{R: cr, CanRead: slices.Contains(cr.Scopes, "mcp:read"), CanWrite: slices.Contains(cr.Scopes, "mcp:write")}
	// The answer is a redirect to the application: CSP form-action governs
	// where a form submission may end up after redirects, so the page allows
	// the application's redirect origin, and nothing else.
	d.render(consentCSP{ResponseWriter: w, origin: cr.RedirectTo}, r, http.StatusOK, "consent",
		view{Title: "Authorize an application", Me: m, Data: page})
}

func (d *Dashboard) consentDecide(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !validRequestID(id) {
		d.problemPage(w, r, nil, &problem{Status: http.StatusNotFound, Detail: "No such authorization request."})
		return
	}
	if err := r.ParseForm(); err != nil {
		d.problemPage(w, r, nil, &problem{Status: http.StatusBadRequest, Detail: "The form could not be read."})
		return
	}
	body := map[string]any{"csrf": r.PostForm.Get("csrf"), "decision": r.PostForm.Get("decision")}
	if body["decision"] == "approve" {
		body["org_id"] = r.PostForm.Get("org")
		body["scopes"] = strings.Fields(r.PostForm.Get("scopes"))
	}
	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	a, err := d.call(r.Context(), r, http.MethodPost, "/v1/oauth/requests/"+id+"/decision", nil, body, &out)
	if err != nil {
		d.log.ErrorContext(r.Context(), "answer authorization request", "err", err)
		d.fail(w, r)
		return
	}
	if a.problem != nil {
		if a.status == http.StatusUnauthorized {
			http.Redirect(w, r, "/sign-in?"+url.Values{"next": {"/oauth/consent/" + id}}.Encode(), http.StatusSeeOther)
			return
		}
		d.problemPage(w, r, nil, a.problem)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, out.RedirectTo, http.StatusSeeOther)
}

// consentCSP widens the page's form-action to the application's redirect
// origin (scheme://host[:port] from a registered redirect URI; anything
// that is not plainly one is left out, and the browser then refuses the
// redirect rather than the page allowing more).
type consentCSP struct {
	http.ResponseWriter
	origin string
}

func (c consentCSP) WriteHeader(status int) {
	if plainOrigin(c.origin) {
		h := c.Header()
		h.Set("Content-Security-Policy", strings.Replace(h.Get("Content-Security-Policy"),
			"form-action 'self'", "form-action 'self' "+c.origin, 1))
	}
	c.ResponseWriter.WriteHeader(status)
}

func plainOrigin(o string) bool {
	rest, ok := strings.CutPrefix(o, "https://")
	if !ok {
		rest, ok = strings.CutPrefix(o, "http://")
	}
	if !ok || rest == "" || len(rest) > 300 {
		return false
	}
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-:[]", c)) {
			return false
		}
	}
	return true
}
