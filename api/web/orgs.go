package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// The org switcher. A person may belong to several teams, each with several
// orgs; the dashboard acts in one org at a time, remembered in a cookie
// and sent to the API as X-Oakallow-Org on every call — which checks it
// against the person's memberships each time, so a stale or forged cookie
// gets nothing. Choosing an org is checked the same way before the cookie
// is set.

// scope overrides the org or team an in-process API call names.
type scope struct{ org, team string }

type scopeKey struct{}

// inScope is ctx whose API calls name org or team instead of the chosen org.
func inScope(ctx context.Context, sc scope) context.Context {
	return context.WithValue(ctx, scopeKey{}, sc)
}

func setScope(h http.Header, sc scope) {
	if sc.org != "" {
		h.Set("X-Oakallow-Org", sc.org)
	}
	if sc.team != "" {
		h.Set("X-Oakallow-Team", sc.team)
	}
}

// orgItem is one org of GET /v1/orgs.
type orgItem struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// teamOrgs is one team's orgs on the switcher page.
type teamOrgs struct {
	TeamID string
	Team   string
	Role   string
	Orgs   []orgItem
}

// Manages says whether the person may add an org to the team (the API
// decides again when they do).
func (t teamOrgs) Manages() bool { return t.Role == "owner" || t.Role == "admin" }

// orgsView is the switcher page.
type orgsView struct {
	Teams    []teamOrgs
	Selected string
	Next     string
}

func (d *Dashboard) orgsPage(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	d.showOrgs(w, r, m, http.StatusOK, "", safeNext(r.URL.Query().Get("next")))
}

// showOrgs renders the switcher with every team's orgs read afresh, and a
// refusal of the last form when status ≥ 400.
func (d *Dashboard) showOrgs(w http.ResponseWriter, r *http.Request, m *me, status int, refusal, next string) {
	v := orgsView{Selected: selectedOrg(r), Next: next}
	for _, ms := range m.Memberships {
		var out struct {
			Items []orgItem `json:"items"`
		}
		ctx := inScope(r.Context(), scope{team: ms.TeamID})
		a, err := d.call(ctx, r, http.MethodGet, "/v1/orgs", nil, nil, &out)
		if err != nil {
			d.log.ErrorContext(r.Context(), "list orgs", "err", err)
			d.fail(w, r)
			return
		}
		if a.problem != nil {
			d.problemPage(w, r, m, a.problem)
			return
		}
		v.Teams = append(v.Teams, teamOrgs{TeamID: ms.TeamID, Team: ms.TeamName, Role: ms.Role, Orgs: out.Items})
	}
	d.render(w, r, status, "orgs", view{Title: "Choose an org", Nav: "orgs", Me: m, Error: refusal, Data: v})
}

// createOrg adds an org to one of the person's teams and makes it the one
// the dashboard acts in. A new sign-up's team has no org, and nothing else
// in the dashboard works without one, so this is where a first org is made;
// its next stop is the Quickstart, which sets an empty org up.
func (d *Dashboard) createOrg(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	team, next := r.PostFormValue("team"), safeNext(r.PostFormValue("next"))
	var o orgItem
	// The API checks that the team is the person's and that they manage it.
	a, err := d.call(inScope(r.Context(), scope{team: team}), r, http.MethodPost, "/v1/orgs", nil,
		map[string]string{"name": r.PostFormValue("name")}, &o)
	if err != nil {
		d.log.ErrorContext(r.Context(), "create an org", "err", err)
		d.fail(w, r)
		return
	}
	if a.problem != nil {
		d.showOrgs(w, r, m, formStatus(a.status), a.problem.Detail, next)
		return
	}
	d.setOrgCookie(w, o.ID)
	// A person who came from an application's consent page (which had no
	// org to offer) goes back to it; anyone else sets the new org up.
	if strings.HasPrefix(next, "/oauth/consent/") {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/quickstart", http.StatusSeeOther)
}

// selectOrg remembers the org the person chose, once the API confirmed
// that one of their teams holds it.
func (d *Dashboard) selectOrg(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	org, next := r.PostFormValue("org"), safeNext(r.PostFormValue("next"))
	if !orgID(org) {
		d.render(w, r, http.StatusUnprocessableEntity, "problem", view{Title: "Choose an org", Me: m, Error: "That is not an org id."})
		return
	}
	a, err := d.call(inScope(r.Context(), scope{org: org}), r, http.MethodGet, "/v1/orgs", nil, nil, nil)
	if err != nil {
		d.log.ErrorContext(r.Context(), "check the chosen org", "err", err)
		d.fail(w, r)
		return
	}
	if a.problem != nil {
		d.render(w, r, formStatus(a.status), "problem", view{Title: "Choose an org", Me: m, Error: a.problem.Detail})
		return
	}
	d.setOrgCookie(w, org)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// setOrgCookie remembers org ("" forgets it).
func (d *Dashboard) setOrgCookie(w http.ResponseWriter, org string) {
	c := &http.Cookie{Name: orgCookie, Value: org, Path: "/", HttpOnly: true, Secure: d.cfg.SecureCookies,
		SameSite: http.SameSiteLaxMode, MaxAge: 400 * 24 * 3600}
	if org == "" {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// needsOrg answers a page the API refused for want of an org (the person
// belongs to several, or the remembered one is no longer theirs) with the
// switcher, and reports whether it did.
func (d *Dashboard) needsOrg(w http.ResponseWriter, r *http.Request, p *problem) bool {
	switch {
	case p.Code == "org_required" || p.Code == "team_required":
	case p.Code == "not_a_member" && selectedOrg(r) != "":
		d.setOrgCookie(w, "")
	default:
		return false
	}
	if r.Method != http.MethodGet || r.URL.Path == "/orgs" {
		return false
	}
	http.Redirect(w, r, "/orgs?"+url.Values{"next": {r.URL.Path}}.Encode(), http.StatusSeeOther)
	return true
}
