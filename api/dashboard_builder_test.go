package api

import (
	"context"
	"html"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// catalogNames is what a seed must carry over: every kind's names, and the
// rules' keys and verdicts.
func (e *testEnv) catalogNames() map[string][]string {
	e.t.Helper()
	out := map[string][]string{}
	for _, kind := range []string{"categories", "tenants", "resources"} {
		for _, it := range expect[listOutputBody[map[string]any]](e, http.StatusOK, http.MethodGet, "/v1/"+kind+"?limit=200", e.boot.ManagementKey, nil).Items {
			out[kind] = append(out[kind], it["name"].(string)+"|"+str(it["description"])+"|"+str(it["default_permission"]))
		}
	}
	for _, t := range expect[listOutputBody[Tool]](e, http.StatusOK, http.MethodGet, "/v1/tools?limit=200", e.boot.ManagementKey, nil).Items {
		out["tools"] = append(out["tools"], strings.Join([]string{t.Name, t.Description, derefOr(t.Category), t.RiskLevel, t.Status,
			derefOr(t.DefaultPermission), string(t.ParameterSchema), strings.Repeat("A", b2i(t.Approved)), strings.Repeat("R", b2i(t.ReadOnly)),
			strings.Repeat("D", b2i(t.Destructive)), strings.Repeat("E", b2i(t.Enabled)), strings.Repeat("K", b2i(t.AnnotationsAcknowledged))}, "|"))
	}
	for _, r := range expect[listOutputBody[Rule]](e, http.StatusOK, http.MethodGet, "/v1/rules?limit=200", e.boot.ManagementKey, nil).Items {
		out["rules"] = append(out["rules"], strings.Join([]string{derefOr(r.Tenant), derefOr(r.Resource), derefOr(r.Tool), derefOr(r.Method), r.Permission, r.Description}, "|"))
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// run runs a generated script with env and requires it to succeed.
func runScript(t *testing.T, interpreter, script string, env ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "script")
	require.NoError(t, os.WriteFile(path, []byte(script), 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, interpreter, path)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", interpreter, script, out)
	return string(out)
}

// testDashboardBuilder: the API Builder's seed scripts, in bash and in
// Python, recreate the org's catalog in another org against the running
// server, twice without harm; names that look like shell or Python code
// stay names; the check-and-approval snippets run and leave a pending
// approval.
func testDashboardBuilder(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	owner := e.signIn(e.person(RoleOwner), true).Token
	mk := e.boot.ManagementKey
	trap := t.TempDir()
	evil := `x'; touch ` + trap + `/sh1; echo '$(touch ` + trap + `/sh2)` + "`touch " + trap + `/sh3` + "`\"\"\")\nimport os; os.mknod('" + trap + `/py1')`
	e.want(http.StatusCreated, http.MethodPost, "/v1/categories", mk, map[string]any{"name": "mail", "default_permission": "requires_approval"})
	e.want(http.StatusCreated, http.MethodPost, "/v1/tenants", mk, map[string]any{"name": "acme"})
	e.want(http.StatusCreated, http.MethodPost, "/v1/tenants", mk, map[string]any{"name": "o'hara & sons"})
	e.want(http.StatusCreated, http.MethodPost, "/v1/resources", mk, map[string]any{"name": "billing-db", "description": evil})
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{"name": "send_email", "category": "mail", "approved": true,
		"destructive": false, "annotations_acknowledged": true, "description": "Sends one e-mail"})
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{"name": "query_db", "risk_level": "high", "read_only": true,
		"annotations_acknowledged": true, "default_permission": "requires_approval",
		"parameter_schema": map[string]any{"type": "object", "properties": map[string]any{"sql": map[string]any{"type": "string"}}, "required": []string{"sql"}}})
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{"name": "triaged_draft", "status": "draft", "annotations_acknowledged": true})
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{"name": "untriaged", "status": "draft", "annotations_acknowledged": true})
	e.want(http.StatusOK, http.MethodPatch, "/v1/tools/untriaged", mk, map[string]any{"annotations_acknowledged": false})
	e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk, map[string]any{"tenant": "acme", "tool": "send_email", "method": "send", "permission": "disabled", "description": evil})
	e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk, map[string]any{"tenant": "o'hara & sons", "resource": "billing-db", "permission": "allowed"})
	e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk, map[string]any{"tool": "query_db", "method": "read", "permission": "allowed"})
	e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk, map[string]any{"tool": "untriaged", "permission": "allowed"})
	want := e.catalogNames()
	// The untriaged draft and its rule are left out: registering it would
	// claim a review nobody made.
	want["tools"] = slices.DeleteFunc(want["tools"], func(s string) bool { return strings.HasPrefix(s, "untriaged|") })
	want["rules"] = slices.DeleteFunc(want["rules"], func(s string) bool { return strings.Contains(s, "|untriaged|") })

	status, _, page := e.page("/builder", owner)
	require.Equal(t, http.StatusOK, status, page)
	require.Contains(t, page, "1 draft tools awaiting triage")
	script := func(id string) string {
		m := regexp.MustCompile(`(?s)<pre class="json script" tabindex="0" id="` + id + `">(.*?)</pre>`).FindStringSubmatch(page)
		require.NotNil(t, m, "no %s on the page", id)
		return html.UnescapeString(m[1])
	}
	download := func(path string) string {
		status, h, body := e.page(path, owner)
		require.Equal(t, http.StatusOK, status, body)
		require.Contains(t, h.Get("Content-Disposition"), "attachment")
		return body
	}
	bashSeed, pySeed := download("/builder/seed.sh"), download("/builder/seed.py")
	require.Equal(t, script("bash-seed"), bashSeed, "the page shows what the download holds")
	require.Equal(t, script("python-seed"), pySeed)

	into := func(target *testEnv) []string {
		return []string{"OAKALLOW_URL=" + e.base, "OAKALLOW_MANAGEMENT_KEY=" + target.boot.ManagementKey}
	}
	b := s.org(t)
	out := runScript(t, "bash", bashSeed, into(b)...)
	require.Contains(t, out, "done")
	require.Equal(t, want, b.catalogNames())
	out = runScript(t, "bash", bashSeed, into(b)...)
	require.Contains(t, out, "exists  /v1/rules (kept)", "a second run keeps what is there")
	require.Equal(t, want, b.catalogNames())

	python, err := exec.LookPath("python3")
	if err == nil {
		c := s.org(t)
		runScript(t, python, pySeed, into(c)...)
		require.Equal(t, want, c.catalogNames())
		runScript(t, python, pySeed, into(c)...)
		require.Equal(t, want, c.catalogNames())
	}
	entries, err := os.ReadDir(trap)
	require.NoError(t, err)
	require.Empty(t, entries, "text from the org ran as code")

	// The snippets check a call, request an approval with a standard key and
	// wait, as an agent polls, for the decision: approved, they print the
	// execution token; denied, none.
	e.allowDecide(true)
	key := []string{"OAKALLOW_URL=" + e.base, "OAKALLOW_KEY=" + e.boot.StandardKey}
	out = runDecided(t, e, "bash", script("bash-call"), "approve", key...)
	require.Contains(t, out, `"permission":"requires_approval","level":10,"level_name":"category_default"`)
	require.Contains(t, out, `"status":"pending"`)
	require.Regexp(t, `\nstatus: approved\nexecution token: oak_tok_[A-Za-z0-9_.-]+\n$`, out)
	out = runDecided(t, e, "bash", script("bash-call"), "deny", key...)
	require.Regexp(t, `\nstatus: denied\n$`, out)
	if python != "" {
		out = runDecided(t, e, python, script("python-call"), "approve", key...)
		require.Regexp(t, `check: requires_approval at level 10 category_default\napproval: REF-[0-9A-Z-]+ pending\n`, out)
		require.Regexp(t, `\nstatus: approved\nexecution token: oak_tok_[A-Za-z0-9_.-]+\n$`, out)
	}
	if python == "" {
		t.Log("python3 is not installed: the Python scripts were not run")
	}
}

// runDecided runs a check-and-approval snippet, which waits for the
// decision: once it names its approval, that approval is decided with the
// org's management key; the snippet must then end by itself, successfully.
func runDecided(t *testing.T, e *testEnv, interpreter, script, decision string, env ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "script")
	require.NoError(t, os.WriteFile(path, []byte(script), 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, interpreter, path)
	cmd.Env = append(os.Environ(), env...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	var ref []string
	require.Eventually(t, func() bool {
		ref = regexp.MustCompile(`/approvals/(REF-[0-9A-Z-]+)\n`).FindStringSubmatch(out.String())
		return ref != nil
	}, hangDeadline, 20*time.Millisecond, "the snippet never named its approval")
	a := expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+ref[1], e.boot.StandardKey, nil)
	require.Equal(t, "pending", a.Status, "the snippet waits while the approval is pending")
	expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+a.ID+"/decide", e.boot.ManagementKey,
		map[string]any{"decision": decision})
	require.NoError(t, cmd.Wait(), "%s %s:\n%s", interpreter, script, out.String())
	return out.String()
}
