package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The API Builder turns the org's real catalog (categories, tenants,
// resources, tools, rules — read through the same list operations as every
// other page) into seed scripts that recreate it in another org, in bash
// with curl and in Python with the standard library only, plus snippets
// that make a check and request an approval. Everything taken from the org
// reaches the scripts as data, never as code: JSON bodies single-quoted for
// the shell, one JSON document parsed by Python, comments cleaned of line
// breaks. A tool name such as `x'; rm -rf ~; '` stays a tool name.

// registerSetup mounts the Quickstart and the API Builder.
func (d *Dashboard) registerSetup(mux *http.ServeMux) {
	mux.HandleFunc("GET /quickstart", d.quickstartPage)
	mux.HandleFunc("GET /builder", d.builderPage)
	mux.HandleFunc("GET /builder/seed.sh", d.builderDownload("bash"))
	mux.HandleFunc("GET /builder/seed.py", d.builderDownload("python"))
}

// Bounds of a seed script: the page shows one API page of each kind; a
// download pages through up to maxSeedItems of each.
const (
	seedPreviewItems = 200
	maxSeedItems     = 20000
)

// seedCatalog is the org's catalog as seed bodies, in creation order, each
// encoded once as the JSON its create operation takes: both scripts and
// the page carry the same bytes.
type seedCatalog struct {
	Categories, Tenants, Resources, Tools, Rules []json.RawMessage
	// Skipped says what was left out and why (comments of the scripts).
	Skipped []string
	// Sample is the tool the check and approval snippets use ("" when the
	// org has no active tool).
	Sample, SampleMethod string
}

// Seed bodies: struct fields encode several times faster than maps, and
// omitempty leaves out what the create operations default.
type (
	seedCategoryBody struct {
		Name              string  `json:"name"`
		DefaultPermission *string `json:"default_permission,omitempty"`
	}
	seedNamedBody struct {
		Name        string `json:"name"`
		Description string `json:"description,omitempty"`
	}
	seedToolBody struct {
		Name                    string          `json:"name"`
		Description             string          `json:"description,omitempty"`
		Category                *string         `json:"category,omitempty"`
		RiskLevel               string          `json:"risk_level"`
		ReadOnly                bool            `json:"read_only"`
		Destructive             bool            `json:"destructive"`
		Idempotent              bool            `json:"idempotent"`
		OpenWorld               bool            `json:"open_world"`
		AnnotationsAcknowledged bool            `json:"annotations_acknowledged"`
		DefaultPermission       *string         `json:"default_permission,omitempty"`
		Approved                bool            `json:"approved"`
		Enabled                 bool            `json:"enabled"`
		Status                  string          `json:"status"`
		RequiresSecondApproval  bool            `json:"requires_second_approval"`
		ParameterSchema         json.RawMessage `json:"parameter_schema,omitempty"`
		ApprovalTimeoutSeconds  *int64          `json:"approval_timeout_seconds,omitempty"`
	}
	seedRuleBody struct {
		Tenant      *string `json:"tenant,omitempty"`
		Resource    *string `json:"resource,omitempty"`
		Tool        *string `json:"tool,omitempty"`
		Method      *string `json:"method,omitempty"`
		Permission  string  `json:"permission"`
		Description string  `json:"description,omitempty"`
	}
)

// seedJSON is a seed body as compact JSON.
func seedJSON(v any) json.RawMessage {
	raw, err := json.Marshal(v)
	if err != nil {
		panic("web: seed body is not JSON: " + err.Error()) // plain structs and decoded JSON always encode
	}
	return raw
}

// document is the whole catalog as one JSON object of arrays by kind.
func (c *seedCatalog) document() []byte {
	n := 16 * len(seedKinds)
	for _, kind := range seedKinds {
		for _, it := range c.part(kind) {
			n += len(it) + 1
		}
	}
	b := make([]byte, 0, n)
	for i, kind := range seedKinds {
		b = append(b, ',')
		if i == 0 {
			b[0] = '{'
		}
		b = append(b, '"')
		b = append(b, kind...)
		b = append(b, `":[`...)
		for j, it := range c.part(kind) {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, it...)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// readAll pages through an API list, at most limit items; more is whether
// the list held more than that.
func readAll[T any](d *Dashboard, w http.ResponseWriter, r *http.Request, m *me, path string, extra url.Values, limit int) (items []T, more, ok bool) {
	q := url.Values{"limit": {strconv.Itoa(min(limit, 200))}}
	for k, v := range extra {
		q[k] = v
	}
	for {
		var p pageList[T]
		if !d.adminFetch(w, r, m, path, q, &p) {
			return nil, false, false
		}
		items = append(items, p.Items...)
		if p.NextCursor == "" {
			return items, false, true
		}
		if len(items) >= limit {
			return items, true, true
		}
		q.Set("cursor", p.NextCursor)
	}
}

// seedTool is a tool as the builder reads it.
type seedTool struct {
	tool
	ParameterSchema         json.RawMessage `json:"parameter_schema"`
	AnnotationsAcknowledged bool            `json:"annotations_acknowledged"`
	RequiresSecondApproval  bool            `json:"requires_second_approval"`
	ApprovalTimeoutSeconds  *int64          `json:"approval_timeout_seconds"`
}

// catalog reads the org's catalog, at most limit items of each kind.
func (d *Dashboard) catalog(w http.ResponseWriter, r *http.Request, m *me, limit int) (*seedCatalog, bool) {
	c := &seedCatalog{}
	cut := func(kind string, more bool) {
		if more {
			c.Skipped = append(c.Skipped, fmt.Sprintf("the org has more than %d %s: only the first %d are here (download the script for up to %d)", limit, kind, limit, maxSeedItems))
		}
	}
	cats, more, ok := readAll[struct {
		Name              string  `json:"name"`
		DefaultPermission *string `json:"default_permission"`
	}](d, w, r, m, "/v1/categories", nil, limit)
	if !ok {
		return nil, false
	}
	cut("categories", more)
	for _, x := range cats {
		c.Categories = append(c.Categories, seedJSON(seedCategoryBody{Name: x.Name, DefaultPermission: x.DefaultPermission}))
	}
	for _, kind := range []string{"tenants", "resources"} {
		list, more, ok := readAll[named](d, w, r, m, "/v1/"+kind, nil, limit)
		if !ok {
			return nil, false
		}
		cut(kind, more)
		for _, x := range list {
			if kind == "tenants" {
				c.Tenants = append(c.Tenants, seedJSON(seedNamedBody{Name: x.Name}))
			} else {
				c.Resources = append(c.Resources, seedJSON(seedNamedBody{Name: x.Name, Description: x.Description}))
			}
		}
	}
	tools, more, ok := readAll[seedTool](d, w, r, m, "/v1/tools", nil, limit)
	if !ok {
		return nil, false
	}
	cut("tools", more)
	left := map[string]bool{}
	for _, t := range tools {
		if !t.AnnotationsAcknowledged {
			// Registration needs acknowledged annotations; claiming them
			// for a tool nobody triaged would be false.
			left[t.Name] = true
			continue
		}
		schema := len(t.ParameterSchema) > 0 && string(t.ParameterSchema) != "null"
		b := seedToolBody{Name: t.Name, Description: t.Description, Category: t.Category, RiskLevel: t.RiskLevel,
			ReadOnly: t.ReadOnly, Destructive: t.Destructive, Idempotent: t.Idempotent, OpenWorld: t.OpenWorld,
			AnnotationsAcknowledged: true, DefaultPermission: t.DefaultPermission, Approved: t.Approved, Enabled: t.Enabled,
			Status: t.Status, RequiresSecondApproval: t.RequiresSecondApproval, ApprovalTimeoutSeconds: t.ApprovalTimeoutSeconds}
		if schema {
			b.ParameterSchema = t.ParameterSchema
		}
		c.Tools = append(c.Tools, seedJSON(b))
		if c.Sample == "" && t.Enabled && t.Status == "active" && !schema {
			c.Sample = t.Name
		}
	}
	if len(left) > 0 {
		c.Skipped = append(c.Skipped, fmt.Sprintf("%d draft tools awaiting triage (annotations not acknowledged) and their rules are left out", len(left)))
	}
	rules, more, ok := readAll[rule](d, w, r, m, "/v1/rules", nil, limit)
	if !ok {
		return nil, false
	}
	cut("rules", more)
	for _, x := range rules {
		if x.Tool != nil && left[*x.Tool] {
			continue
		}
		c.Rules = append(c.Rules, seedJSON(seedRuleBody{Tenant: x.Tenant, Resource: x.Resource, Tool: x.Tool, Method: x.Method,
			Permission: x.Permission, Description: x.Description}))
		if x.Tool != nil && *x.Tool == c.Sample && x.Method != nil && c.SampleMethod == "" && x.Permission != "disabled" {
			c.SampleMethod = *x.Method
		}
	}
	return c, true
}

// seedKinds are the catalog's parts in the order they must be created
// (tools name categories; rules name tenants, resources and tools).
var seedKinds = []string{"categories", "tenants", "resources", "tools", "rules"}

func (c *seedCatalog) part(kind string) []json.RawMessage {
	switch kind {
	case "categories":
		return c.Categories
	case "tenants":
		return c.Tenants
	case "resources":
		return c.Resources
	case "tools":
		return c.Tools
	default:
		return c.Rules
	}
}

// commentSafe is text for a script comment: no line break or other
// control character can end the comment.
func commentSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0x85 || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

// shellQuote is s as one single-quoted shell word.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// writeShellQuoted writes raw as one single-quoted shell word, as
// shellQuote does, without copying it first.
func writeShellQuoted(b *strings.Builder, raw []byte) {
	b.WriteByte('\'')
	for _, c := range raw {
		if c == '\'' {
			b.WriteString(`'\''`)
		} else {
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
}

// jsonText is v as compact JSON.
func jsonText(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		panic("web: seed body is not JSON: " + err.Error()) // maps of decoded JSON always encode
	}
	return string(raw)
}

// scriptHeader is the comment block at the top of both scripts.
func scriptHeader(o org, c *seedCatalog, at time.Time, usage string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by oakallow's API Builder from org %s (%s) on %s.\n", commentSafe(o.Name), o.ID, at.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "# Recreates its %d categories, %d tenants, %d resources, %d tools and %d rules in the org of a management key.\n",
		len(c.Categories), len(c.Tenants), len(c.Resources), len(c.Tools), len(c.Rules))
	b.WriteString("# Objects that already exist there (409) are kept, so running it twice is safe.\n")
	for _, s := range c.Skipped {
		b.WriteString("# Note: " + commentSafe(s) + ".\n")
	}
	b.WriteString("#\n# Run: " + usage + "\n")
	return b.String()
}

// bashSeed is the seed script in bash with curl.
func bashSeed(base string, o org, c *seedCatalog, at time.Time) string {
	var b strings.Builder
	b.WriteString("#!/usr/bin/env bash\n")
	b.WriteString(scriptHeader(o, c, at, "OAKALLOW_MANAGEMENT_KEY=oak_live_… bash seed.sh   (OAKALLOW_URL overrides the endpoint)"))
	b.WriteString(`set -euo pipefail
[ -n "${OAKALLOW_URL:-}" ] || OAKALLOW_URL=` + shellQuote(base) + `
: "${OAKALLOW_MANAGEMENT_KEY:?set OAKALLOW_MANAGEMENT_KEY to a management key of the org to seed}"
answer="$(mktemp)"
trap 'rm -f "$answer"' EXIT

# create PATH JSON: POST one object; 409 (it exists) is fine, anything else stops.
create() {
  local status
  status="$(curl -sS -o "$answer" -w '%{http_code}' -X POST "$OAKALLOW_URL$1" \
    -H "X-API-Key: $OAKALLOW_MANAGEMENT_KEY" -H 'Content-Type: application/json' --data-binary "$2")"
  case "$status" in
    2??) echo "created $1" ;;
    409) echo "exists  $1 (kept)" ;;
    *) echo "failed  $1: HTTP $status" >&2; cat "$answer" >&2; echo >&2; exit 1 ;;
  esac
}
`)
	for _, kind := range seedKinds {
		items := c.part(kind)
		if len(items) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n# %s\n", kind)
		for _, it := range items {
			b.WriteString("create /v1/" + kind + " ")
			writeShellQuoted(&b, it)
			b.WriteByte('\n')
		}
	}
	b.WriteString("\necho \"done: the catalog is in the org of this key\"\n")
	return b.String()
}

// pythonSeed is the seed script in Python 3, standard library only.
func pythonSeed(base string, o org, c *seedCatalog, at time.Time) string {
	var b strings.Builder
	b.WriteString("#!/usr/bin/env python3\n")
	b.WriteString(scriptHeader(o, c, at, "OAKALLOW_MANAGEMENT_KEY=oak_live_… python3 seed.py   (OAKALLOW_URL overrides the endpoint)"))
	b.WriteString(`import json
import os
import sys
import urllib.error
import urllib.request

URL = os.environ.get("OAKALLOW_URL", ` + jsonText(base) + `).rstrip("/")
KEY = os.environ.get("OAKALLOW_MANAGEMENT_KEY")
if not KEY:
    sys.exit("set OAKALLOW_MANAGEMENT_KEY to a management key of the org to seed")

# The catalog, as the API's create operations take it.
SEED = json.loads(` + jsonText(string(c.document())) + `)


def create(path, body):
    """POST one object; 409 (it exists) is fine, anything else stops."""
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30):
            print("created", path)
    except urllib.error.HTTPError as err:
        if err.code == 409:
            print("exists ", path, "(kept)")
            return
        sys.exit("failed  %s: HTTP %d %s" % (path, err.code, err.read().decode("utf-8", "replace")))


for kind in ("categories", "tenants", "resources", "tools", "rules"):
    for body in SEED[kind]:
        create("/v1/" + kind, body)
print("done: the catalog is in the org of this key")
`)
	return b.String()
}

// sampleCall is the check and approval request of the snippets.
func sampleCall(c *seedCatalog) (check, approval map[string]any) {
	check = map[string]any{"tool": c.Sample, "parameters": map[string]any{}, "reason": "Try oakallow from the API Builder"}
	if c.SampleMethod != "" {
		check["method"] = c.SampleMethod
	}
	approval = map[string]any{"tool": c.Sample, "parameters": map[string]any{}, "reasoning": "Try an approval from the API Builder"}
	if c.SampleMethod != "" {
		approval["method"] = c.SampleMethod
	}
	return check, approval
}

// bashCall is the check-and-approval snippet in bash with curl.
func bashCall(base string, c *seedCatalog) string {
	check, approval := sampleCall(c)
	return `#!/usr/bin/env bash
# A permission check and an approval request with a standard key; waits for
# the reviewer's decision and prints the execution token once approved.
# Run: OAKALLOW_KEY=oak_live_… bash call.sh
set -euo pipefail
[ -n "${OAKALLOW_URL:-}" ] || OAKALLOW_URL=` + shellQuote(base) + `
: "${OAKALLOW_KEY:?set OAKALLOW_KEY to a standard key}"
call() { curl -sS --fail-with-body -X "$1" "$OAKALLOW_URL$2" -H "X-API-Key: $OAKALLOW_KEY" -H 'Content-Type: application/json' ${3:+--data-binary "$3"}; }

echo "check:"
call POST /v1/permissions/check ` + shellQuote(jsonText(check)) + `
echo
echo "approval:"
approval="$(call POST /v1/approvals ` + shellQuote(jsonText(approval)) + `)"
echo "$approval"
ref="$(printf '%s' "$approval" | sed -n 's/.*"reference":"\([^"]*\)".*/\1/p')"
echo "A reviewer decides it at $OAKALLOW_URL/approvals/$ref"
echo "waiting for the decision (as an agent would poll; Ctrl-C stops waiting, the approval stays open)…"
# Approved without a token yet: the token is still being minted, so poll on.
while [[ "$approval" == *'"status":"pending"'* || ( "$approval" == *'"status":"approved"'* && "$approval" != *'"token":'* ) ]]; do
  sleep 2; approval="$(call GET "/v1/approvals/$ref")"
done
status="$(printf '%s' "$approval" | sed -n 's/.*"status":"\([^"]*\)".*/\1/p')"
token="$(printf '%s' "$approval" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')"
echo "status: $status"
if [ -n "$token" ]; then echo "execution token: $token"; fi
`
}

// pythonCall is the check-and-approval snippet in Python.
func pythonCall(base string, c *seedCatalog) string {
	check, approval := sampleCall(c)
	return `#!/usr/bin/env python3
# A permission check and an approval request with a standard key; waits for
# the reviewer's decision and prints the execution token once approved.
# Run: OAKALLOW_KEY=oak_live_… python3 call.py
import json
import os
import sys
import time
import urllib.request

URL = os.environ.get("OAKALLOW_URL", ` + jsonText(base) + `).rstrip("/")
KEY = os.environ.get("OAKALLOW_KEY") or sys.exit("set OAKALLOW_KEY to a standard key")


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method,
                                 headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


verdict = call("POST", "/v1/permissions/check", json.loads(` + jsonText(jsonText(check)) + `))
print("check:", verdict["permission"], "at level", verdict["level"], verdict["level_name"])
approval = call("POST", "/v1/approvals", json.loads(` + jsonText(jsonText(approval)) + `))
print("approval:", approval["reference"], approval["status"])
print("A reviewer decides it at %s/approvals/%s" % (URL, approval["reference"]))
print("waiting for the decision (as an agent would poll; Ctrl-C stops waiting, the approval stays open)...", flush=True)
# Approved without a token yet: the token is still being minted, so poll on.
while approval["status"] == "pending" or (approval["status"] == "approved" and not approval.get("token")):
    time.sleep(2)
    approval = call("GET", "/v1/approvals/" + approval["reference"])
print("status:", approval["status"])
if approval.get("token"):
    print("execution token:", approval["token"])
`
}

// builderView is the API Builder page.
type builderView struct {
	Org                  org
	Counts               string
	Skipped              []string
	BashSeed, PythonSeed string
	BashCall, PythonCall string
	HasSample            bool
}

func (d *Dashboard) builderPage(w http.ResponseWriter, r *http.Request) {
	d.adminGet(adminPage{name: "builder", title: "API Builder", load: func(w http.ResponseWriter, r *http.Request, m *me) (any, bool) {
		o, ok := d.currentOrg(w, r, m)
		if !ok {
			return nil, false
		}
		c, ok := d.catalog(w, r, m, seedPreviewItems)
		if !ok {
			return nil, false
		}
		now, base := d.cfg.Now(), d.cfg.PublicURL
		return builderView{Org: o, Skipped: c.Skipped, HasSample: c.Sample != "",
			Counts: fmt.Sprintf("%d categories, %d tenants, %d resources, %d tools, %d rules",
				len(c.Categories), len(c.Tenants), len(c.Resources), len(c.Tools), len(c.Rules)),
			BashSeed: bashSeed(base, o, c, now), PythonSeed: pythonSeed(base, o, c, now),
			BashCall: bashCall(base, c), PythonCall: pythonCall(base, c)}, true
	}})(w, r)
}

// builderDownload serves a whole seed script as a file.
func (d *Dashboard) builderDownload(lang string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m := d.person(w, r)
		if m == nil {
			return
		}
		o, ok := d.currentOrg(w, r, m)
		if !ok {
			return
		}
		c, ok := d.catalog(w, r, m, maxSeedItems)
		if !ok {
			return
		}
		script, name := bashSeed(d.cfg.PublicURL, o, c, d.cfg.Now()), "seed.sh"
		if lang == "python" {
			script, name = pythonSeed(d.cfg.PublicURL, o, c, d.cfg.Now()), "seed.py"
		}
		pageHeaders(w)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
		_, _ = w.Write([]byte(script))
	}
}

// quickstartView is the Quickstart page.
type quickstartView struct {
	Org      org
	Endpoint string
	// Keys are the org's working keys (prefixes only: a key is shown
	// once, when it is created).
	Keys                             []apiKey
	Register, Check, Approve, Status string
}

func (d *Dashboard) quickstartPage(w http.ResponseWriter, r *http.Request) {
	d.adminGet(adminPage{name: "quickstart", title: "Quickstart", load: func(w http.ResponseWriter, r *http.Request, m *me) (any, bool) {
		o, ok := d.currentOrg(w, r, m)
		if !ok {
			return nil, false
		}
		var keys pageList[apiKey]
		if !d.adminFetch(w, r, m, "/v1/orgs/"+url.PathEscape(o.ID)+"/keys", nil, &keys) {
			return nil, false
		}
		base := d.cfg.PublicURL
		v := quickstartView{Org: o, Endpoint: base}
		for _, k := range keys.Items {
			if k.RevokedAt == nil {
				v.Keys = append(v.Keys, k)
			}
		}
		v.Register = "export OAKALLOW_URL=" + shellQuote(base) + "\nexport OAKALLOW_MANAGEMENT_KEY=oak_live_…   # a management key from API keys\n" +
			`curl -sS -X POST "$OAKALLOW_URL/v1/tools" -H "X-API-Key: $OAKALLOW_MANAGEMENT_KEY" -H 'Content-Type: application/json' \` + "\n" +
			`  --data-binary '{"name":"send_email","risk_level":"medium","destructive":false,"open_world":true,"annotations_acknowledged":true}'`
		v.Check = "export OAKALLOW_KEY=oak_live_…   # a standard key from API keys\n" +
			`curl -sS -X POST "$OAKALLOW_URL/v1/permissions/check" -H "X-API-Key: $OAKALLOW_KEY" -H 'Content-Type: application/json' \` + "\n" +
			`  --data-binary '{"tool":"send_email","method":"send","parameters":{"to":"customer-7"},"reason":"Order confirmation"}'`
		v.Approve = `curl -sS -X POST "$OAKALLOW_URL/v1/approvals" -H "X-API-Key: $OAKALLOW_KEY" -H 'Content-Type: application/json' \` + "\n" +
			`  --data-binary '{"tool":"send_email","method":"send","parameters":{"to":"customer-7"},"reasoning":"Refund e-mail needs a person"}'`
		v.Status = `curl -sS "$OAKALLOW_URL/v1/approvals/REF-XXXXXXXX-XXXX" -H "X-API-Key: $OAKALLOW_KEY"`
		return v, true
	}})(w, r)
}
