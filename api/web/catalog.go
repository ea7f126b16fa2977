package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// listPageSize is how many rows a list page shows; lists page on, so a
// page costs the same for an org of ten or ten thousand rules.
const listPageSize = 50

// rule is a rule as GET /v1/rules lists it.
type rule struct {
	ID          string  `json:"id"`
	Tenant      *string `json:"tenant"`
	Resource    *string `json:"resource"`
	Tool        *string `json:"tool"`
	Method      *string `json:"method"`
	Permission  string  `json:"permission"`
	Description string  `json:"description"`
	Level       int     `json:"level"`
	LevelName   string  `json:"level_name"`
	Scope       string  `json:"scope"`
}

func (d *Dashboard) rulesSpec() adminPage {
	return adminPage{name: "rules", title: "Rules", load: func(w http.ResponseWriter, r *http.Request, m *me) (any, bool) {
		var l pageList[rule]
		ok := d.adminFetch(w, r, m, "/v1/rules", pageQuery(r, listPageSize), &l)
		return l, ok
	}}
}

func (d *Dashboard) rulesPage(w http.ResponseWriter, r *http.Request) {
	d.adminGet(d.rulesSpec())(w, r)
}

func (d *Dashboard) rulesCreate(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m == nil {
		return
	}
	body := map[string]any{"permission": r.PostForm.Get("permission"), "description": strings.TrimSpace(r.PostForm.Get("description"))}
	for _, f := range []string{"tenant", "resource", "tool", "method"} {
		if v := optional(r, f); v != nil {
			body[f] = *v
		}
	}
	if d.adminSubmit(w, r, m, d.rulesSpec(), http.MethodPost, "/v1/rules", body, nil) {
		doneRedirect(w, r, "/rules", "rule-created")
	}
}

func (d *Dashboard) rulesDelete(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m != nil && d.adminSubmit(w, r, m, d.rulesSpec(), http.MethodDelete, "/v1/rules/"+url.PathEscape(r.PathValue("id")), nil, nil) {
		doneRedirect(w, r, "/rules", "rule-deleted")
	}
}

// explanation is GET /v1/permissions/explain's answer.
type explanation struct {
	Tool       string `json:"tool"`
	Tenant     string `json:"tenant"`
	Resource   string `json:"resource"`
	Method     string `json:"method"`
	Permission string `json:"permission"`
	Level      int    `json:"level"`
	LevelName  string `json:"level_name"`
	Scope      string `json:"scope"`
	RuleID     string `json:"rule_id"`
	Reason     string `json:"reason"`
	Steps      []struct {
		Level     int    `json:"level"`
		LevelName string `json:"level_name"`
		Scope     string `json:"scope"`
		Outcome   string `json:"outcome"`
		Key       *struct {
			Tenant, Resource, Tool, Method string
		} `json:"key"`
		Permission string `json:"permission"`
		RuleID     string `json:"rule_id"`
	} `json:"steps"`
}

// explainRow is one level of an explanation as the page shows it.
type explainRow struct {
	Level, Scope, Label, Outcome, Permission, RuleID string
	Decides, Skipped                                 bool
}

// explainView is the explain page.
type explainView struct {
	Query   url.Values
	Asked   bool
	Answer  *explanation
	Summary string
	Rows    []explainRow
}

// outcomeText says, for people, what a level did for the check.
var outcomeText = map[string]string{
	"decides":             "Answers",
	"no_rule":             "No rule with this key",
	"skipped_no_tenant":   "Skipped: the check names no tenant",
	"skipped_no_resource": "Skipped: the check names no resource",
	"skipped_no_method":   "Skipped: the check carries no method",
	"unset":               "Not set",
	"passed_over_draft":   "Says allowed, passed over: the tool is a draft",
	"not_reached":         "Not reached",
}

// levelLabel is a level's key or fallback in words.
func levelLabel(name string) string {
	switch name {
	case "tool_default":
		return "the tool's default permission"
	case "category_default":
		return "the category's default permission"
	case "tool_approved":
		return "the tool is pre-approved"
	case "fail_safe":
		return "fail-safe: requires approval"
	case "tool_not_registered":
		return "the tool is not registered"
	case "tool_disabled":
		return "the tool is disabled"
	}
	scope, key, _ := strings.Cut(name, "_")
	if key == "wildcard" {
		return scope + " wildcard (every call)"
	}
	return strings.ReplaceAll(key, "_", " + ")
}

func (d *Dashboard) explainPage(w http.ResponseWriter, r *http.Request) {
	m := d.person(w, r)
	if m == nil {
		return
	}
	q := url.Values{}
	for _, f := range []string{"tool", "tenant", "resource", "method"} {
		if v := strings.TrimSpace(r.URL.Query().Get(f)); v != "" {
			q.Set(f, v)
		}
	}
	v := explainView{Query: q, Asked: q.Get("tool") != ""}
	render := func(status int, refusal string) {
		d.render(w, r, status, "explain", view{Title: "Explain a check", Nav: "rules", Me: m, Error: refusal, Data: v})
	}
	if !v.Asked {
		// The form alone; reading the rules needs the same right as explaining.
		if d.adminFetch(w, r, m, "/v1/rules", url.Values{"limit": {"1"}}, &pageList[rule]{}) {
			render(http.StatusOK, "")
		}
		return
	}
	var ex explanation
	a, err := d.call(r.Context(), r, http.MethodGet, "/v1/permissions/explain", q, nil, &ex)
	if err != nil {
		d.log.ErrorContext(r.Context(), "explain", "err", err)
		d.fail(w, r)
		return
	}
	if a.problem != nil {
		if a.status == http.StatusUnprocessableEntity || a.status == http.StatusBadRequest {
			render(a.status, refusalText(a.problem))
			return
		}
		d.problemPage(w, r, m, a.problem)
		return
	}
	v.Answer = &ex
	v.Summary = strings.ReplaceAll(ex.Permission, "_", " ") + ", by " + levelLabel(ex.LevelName)
	if ex.Reason == "tool_draft" {
		v.Summary += " (the tool is a draft, so an allowed fallback was passed over)"
	}
	for _, s := range ex.Steps {
		row := explainRow{Scope: s.Scope, Label: levelLabel(s.LevelName), Outcome: outcomeText[s.Outcome],
			Permission: strings.ReplaceAll(s.Permission, "_", " "), RuleID: s.RuleID, Decides: s.Outcome == "decides",
			Skipped: strings.HasPrefix(s.Outcome, "skipped") || s.Outcome == "not_reached"}
		if s.Level > 0 {
			row.Level = strconv.Itoa(s.Level)
		}
		v.Rows = append(v.Rows, row)
	}
	render(http.StatusOK, "")
}

// tool is a tool as GET /v1/tools lists it.
type tool struct {
	ID                string  `json:"id"`
	Name              string  `json:"name"`
	Description       string  `json:"description"`
	Category          *string `json:"category"`
	RiskLevel         string  `json:"risk_level"`
	ReadOnly          bool    `json:"read_only"`
	Destructive       bool    `json:"destructive"`
	Idempotent        bool    `json:"idempotent"`
	OpenWorld         bool    `json:"open_world"`
	NeedsAnnotations  bool    `json:"needs_annotations"`
	DefaultPermission *string `json:"default_permission"`
	Approved          bool    `json:"approved"`
	Enabled           bool    `json:"enabled"`
	Status            string  `json:"status"`
	CreatedAt         time.Time
}

// toolsView is the tools page.
type toolsView struct {
	Drafts     []tool
	MoreDrafts bool
	Tools      pageList[tool]
}

func (d *Dashboard) toolsSpec() adminPage {
	return adminPage{name: "tools", title: "Tools", load: func(w http.ResponseWriter, r *http.Request, m *me) (any, bool) {
		var v toolsView
		var drafts pageList[tool]
		if !d.adminFetch(w, r, m, "/v1/tools", url.Values{"status": {"draft"}, "limit": {strconv.Itoa(listPageSize)}}, &drafts) {
			return nil, false
		}
		v.Drafts, v.MoreDrafts = drafts.Items, drafts.NextCursor != ""
		ok := d.adminFetch(w, r, m, "/v1/tools", pageQuery(r, listPageSize), &v.Tools)
		return v, ok
	}}
}

func (d *Dashboard) toolsPage(w http.ResponseWriter, r *http.Request) {
	d.adminGet(d.toolsSpec())(w, r)
}

// annotations are the four MCP annotation checkboxes of a tool form.
func annotations(r *http.Request, body map[string]any) {
	for _, f := range []string{"read_only", "destructive", "idempotent", "open_world"} {
		body[f] = r.PostForm.Get(f) != ""
	}
}

func (d *Dashboard) toolsCreate(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m == nil {
		return
	}
	body := map[string]any{"name": strings.TrimSpace(r.PostForm.Get("name")), "description": strings.TrimSpace(r.PostForm.Get("description")),
		"risk_level": r.PostForm.Get("risk_level"), "annotations_acknowledged": r.PostForm.Get("annotations_acknowledged") != "",
		"approved": r.PostForm.Get("approved") != ""}
	annotations(r, body)
	if p := r.PostForm.Get("default_permission"); p != "" {
		body["default_permission"] = p
	}
	if c := optional(r, "category"); c != nil {
		body["category"] = *c
	}
	if s := optional(r, "parameter_schema"); s != nil {
		if !json.Valid([]byte(*s)) {
			d.show(w, r, m, d.toolsSpec(), http.StatusUnprocessableEntity, "The parameter schema is not valid JSON.", r.PostForm)
			return
		}
		body["parameter_schema"] = json.RawMessage(*s)
	}
	if d.adminSubmit(w, r, m, d.toolsSpec(), http.MethodPost, "/v1/tools", body, nil) {
		doneRedirect(w, r, "/tools", "tool-created")
	}
}

// toolsTriage acts on a tool from "Recently Discovered": approve (the
// annotations as reviewed, acknowledged, then activated), annotate (the
// annotations only) or disable.
func (d *Dashboard) toolsTriage(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m == nil {
		return
	}
	path := "/v1/tools/" + url.PathEscape(r.PathValue("id"))
	spec := d.toolsSpec()
	switch r.PostForm.Get("action") {
	case "approve", "annotate":
		body := map[string]any{"annotations_acknowledged": true}
		annotations(r, body)
		if !d.adminSubmit(w, r, m, spec, http.MethodPatch, path, body, nil) {
			return
		}
		if r.PostForm.Get("action") == "annotate" {
			doneRedirect(w, r, "/tools", "tool-annotated")
			return
		}
		if d.adminSubmit(w, r, m, spec, http.MethodPost, path+"/activate", nil, nil) {
			doneRedirect(w, r, "/tools", "tool-approved")
		}
	case "disable":
		if d.adminSubmit(w, r, m, spec, http.MethodPatch, path, map[string]any{"enabled": false}, nil) {
			doneRedirect(w, r, "/tools", "tool-disabled")
		}
	default:
		d.show(w, r, m, spec, http.StatusBadRequest, "Choose approve, save annotations or disable.", nil)
	}
}

// namedKind is a kind of named org object with its own page (tenants,
// resources), served by the same handlers.
type namedKind struct {
	kind, plural, title string
	described           bool // has a description
}

var namedKinds = []namedKind{
	{kind: "tenant", plural: "tenants", title: "Tenants"},
	{kind: "resource", plural: "resources", title: "Resources", described: true},
}

// named is a tenant or resource as listed.
type named struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
}

// namedView is a tenants or resources page.
type namedView struct {
	Kind namedKind
	List pageList[named]
}

// Kind, Plural and Described are read by the template.
func (n namedKind) Kind() string    { return n.kind }
func (n namedKind) Plural() string  { return n.plural }
func (n namedKind) Described() bool { return n.described }

func (d *Dashboard) namedSpec(n namedKind) adminPage {
	return adminPage{name: n.plural, title: n.title, template: "named", load: func(w http.ResponseWriter, r *http.Request, m *me) (any, bool) {
		v := namedView{Kind: n}
		ok := d.adminFetch(w, r, m, "/v1/"+n.plural, pageQuery(r, listPageSize), &v.List)
		return v, ok
	}}
}

func (d *Dashboard) namedPage(n namedKind) http.HandlerFunc { return d.adminGet(d.namedSpec(n)) }

func (d *Dashboard) namedCreate(n namedKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m := d.formPerson(w, r)
		if m == nil {
			return
		}
		body := map[string]any{"name": strings.TrimSpace(r.PostForm.Get("name"))}
		if n.described {
			body["description"] = strings.TrimSpace(r.PostForm.Get("description"))
		}
		if d.adminSubmit(w, r, m, d.namedSpec(n), http.MethodPost, "/v1/"+n.plural, body, nil) {
			doneRedirect(w, r, "/"+n.plural, n.kind+"-created")
		}
	}
}

func (d *Dashboard) namedDelete(n namedKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m := d.formPerson(w, r)
		if m != nil && d.adminSubmit(w, r, m, d.namedSpec(n), http.MethodDelete, "/v1/"+n.plural+"/"+url.PathEscape(r.PathValue("id")), nil, nil) {
			doneRedirect(w, r, "/"+n.plural, n.kind+"-deleted")
		}
	}
}

// apiKey is a key as listed (never the key itself).
type apiKey struct {
	ID             string     `json:"id"`
	Name           string     `json:"name"`
	Prefix         string     `json:"prefix"`
	Tier           string     `json:"tier"`
	CreatedByEmail string     `json:"created_by_email"`
	CreatedAt      time.Time  `json:"created_at"`
	LastUsedAt     *time.Time `json:"last_used_at"`
	RevokedAt      *time.Time `json:"revoked_at"`
}

// keysView is the API keys page; Created is a key just made, shown once.
type keysView struct {
	Org     org
	Keys    []apiKey
	Created *struct {
		Key  string `json:"key"`
		Name string `json:"name"`
		Tier string `json:"tier"`
	}
}

func (d *Dashboard) keysSpec(created *keysView) adminPage {
	return adminPage{name: "keys", title: "API keys", load: func(w http.ResponseWriter, r *http.Request, m *me) (any, bool) {
		var v keysView
		if created != nil {
			v.Created = created.Created
		}
		var ok bool
		v.Org, v.Keys, ok = orgList[apiKey](d, w, r, m, "keys")
		return v, ok
	}}
}

// orgList reads the current org and the list of its credentials at
// /v1/orgs/{org}/kind (keys, agents); false when it answered the request.
func orgList[T any](d *Dashboard, w http.ResponseWriter, r *http.Request, m *me, kind string) (org, []T, bool) {
	o, ok := d.currentOrg(w, r, m)
	if !ok {
		return o, nil, false
	}
	var l pageList[T]
	ok = d.adminFetch(w, r, m, "/v1/orgs/"+url.PathEscape(o.ID)+"/"+kind, nil, &l)
	return o, l.Items, ok
}

// orgRevoke revokes the current org's credential {id} at
// /v1/orgs/{org}/kind/{id} from a form, then redirects to /kind with notice.
func (d *Dashboard) orgRevoke(w http.ResponseWriter, r *http.Request, p adminPage, kind, notice string) {
	m := d.formPerson(w, r)
	if m == nil {
		return
	}
	o, ok := d.currentOrg(w, r, m)
	if ok && d.adminSubmit(w, r, m, p, http.MethodDelete,
		"/v1/orgs/"+url.PathEscape(o.ID)+"/"+kind+"/"+url.PathEscape(r.PathValue("id")), nil, nil) {
		doneRedirect(w, r, "/"+kind, notice)
	}
}

func (d *Dashboard) keysPage(w http.ResponseWriter, r *http.Request) {
	d.adminGet(d.keysSpec(nil))(w, r)
}

// keysCreate makes a key and shows it on this answer only: never in a URL,
// never again (the page is not cached: no-store).
func (d *Dashboard) keysCreate(w http.ResponseWriter, r *http.Request) {
	m := d.formPerson(w, r)
	if m == nil {
		return
	}
	var created keysView
	body := map[string]any{"name": strings.TrimSpace(r.PostForm.Get("name")), "tier": r.PostForm.Get("tier")}
	if d.orgCreate(w, r, m, d.keysSpec(nil), "keys", body, &created.Created) {
		d.show(w, r, m, d.keysSpec(&created), http.StatusCreated, "", nil)
	}
}

// orgCreate creates a credential of the current org at /v1/orgs/{org}/kind
// with body, its answer (holding the secret) into out; false when it
// answered the request.
func (d *Dashboard) orgCreate(w http.ResponseWriter, r *http.Request, m *me, p adminPage, kind string, body, out any) bool {
	o, ok := d.currentOrg(w, r, m)
	return ok && d.adminSubmit(w, r, m, p, http.MethodPost, "/v1/orgs/"+url.PathEscape(o.ID)+"/"+kind, body, out)
}

func (d *Dashboard) keysRevoke(w http.ResponseWriter, r *http.Request) {
	d.orgRevoke(w, r, d.keysSpec(nil), "keys", "key-revoked")
}

// event is an audit log entry as GET /v1/activity lists it.
type event struct {
	ID         string          `json:"id"`
	OccurredAt time.Time       `json:"occurred_at"`
	ActorKind  string          `json:"actor_kind"`
	ActorID    string          `json:"actor_id"`
	Kind       string          `json:"kind"`
	Subject    string          `json:"subject"`
	Outcome    string          `json:"outcome"`
	Tool       string          `json:"tool"`
	Tenant     string          `json:"tenant"`
	Billable   bool            `json:"billable"`
	Details    json.RawMessage `json:"details"`
}

// Summary is the event's details cut for a list row.
func (e event) Summary() string {
	s := string(e.Details)
	if s == "null" || s == "{}" {
		return ""
	}
	if len(s) > 240 {
		s = s[:240] + "…"
	}
	return s
}

// activityView is the activity page: one page of the log and its filters.
type activityView struct {
	Filter url.Values
	List   pageList[event]
	// Next is the address of the next (older) page.
	Next string
}

func (d *Dashboard) activityPage(w http.ResponseWriter, r *http.Request) {
	d.adminGet(adminPage{name: "activity", title: "Activity", load: func(w http.ResponseWriter, r *http.Request, m *me) (any, bool) {
		v := activityView{Filter: url.Values{}}
		q := pageQuery(r, listPageSize)
		for _, f := range []string{"kind", "tool", "tenant", "outcome"} {
			if s := strings.TrimSpace(r.URL.Query().Get(f)); s != "" && len(s) <= 200 {
				v.Filter.Set(f, s)
				q.Set(f, s)
			}
		}
		if !d.adminFetch(w, r, m, "/v1/activity", q, &v.List) {
			return nil, false
		}
		if v.List.NextCursor != "" {
			next := url.Values{"cursor": {v.List.NextCursor}}
			for k, vs := range v.Filter {
				next[k] = vs
			}
			v.Next = "/activity?" + next.Encode()
		}
		return v, true
	}})(w, r)
}
