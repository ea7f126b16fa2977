package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/resolver"
)

func TestRuleLevels(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk := e.boot.ManagementKey
	tenant := decodeAs[Tenant](t, e.want(http.StatusCreated, http.MethodPost, "/v1/tenants", mk, map[string]any{"name": "acme"}))
	res := decodeAs[Resource](t, e.want(http.StatusCreated, http.MethodPost, "/v1/resources", mk, map[string]any{"name": "db"}))
	tool := decodeAs[Tool](t, e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{"name": "query", "annotations_acknowledged": true}))

	// Every key shape, with the level SPEC §2 gives it. Key parts are named
	// by name for tenant scope and by id for org scope.
	cases := []struct {
		name                           string
		tenant, resource, tool, method bool
		level                          int
		levelName                      string
	}{
		{"tenant+resource+tool+method", true, true, true, true, 1, resolver.LevelNameTenantResourceToolMethod},
		{"tenant+resource+tool", true, true, true, false, 2, resolver.LevelNameTenantResourceTool},
		{"tenant+tool+method", true, false, true, true, 3, resolver.LevelNameTenantToolMethod},
		{"tenant+tool", true, false, true, false, 4, resolver.LevelNameTenantTool},
		{"tenant+resource+method", true, true, false, true, 5, resolver.LevelNameTenantResourceMethod},
		{"tenant+resource", true, true, false, false, 6, resolver.LevelNameTenantResource},
		{"tenant+method", true, false, false, true, 7, resolver.LevelNameTenantMethod},
		{"tenant wildcard", true, false, false, false, 8, resolver.LevelNameTenantWildcard},
		{"resource+tool+method", false, true, true, true, 1, resolver.LevelNameOrgResourceToolMethod},
		{"resource+tool", false, true, true, false, 2, resolver.LevelNameOrgResourceTool},
		{"tool+method", false, false, true, true, 3, resolver.LevelNameOrgToolMethod},
		{"tool", false, false, true, false, 4, resolver.LevelNameOrgTool},
		{"resource+method", false, true, false, true, 5, resolver.LevelNameOrgResourceMethod},
		{"resource", false, true, false, false, 6, resolver.LevelNameOrgResource},
		{"method", false, false, false, true, 7, resolver.LevelNameOrgMethod},
		{"org wildcard", false, false, false, false, 8, resolver.LevelNameOrgWildcard},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := map[string]any{"permission": "requires_approval", "description": c.name}
			ref := func(name, id string) string {
				if c.tenant {
					return name
				}
				return id
			}
			if c.tenant {
				body["tenant"] = "acme"
			}
			if c.resource {
				body["resource"] = ref("db", res.ID)
			}
			if c.tool {
				body["tool"] = ref("query", tool.ID)
			}
			if c.method {
				body["method"] = "read"
			}
			r := decodeAs[Rule](t, e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk, body))
			require.Equal(t, c.level, r.Level)
			require.Equal(t, c.levelName, r.LevelName)
			wantScope := "org"
			if c.tenant {
				wantScope = "tenant"
				require.Equal(t, tenant.ID, *r.TenantID)
				require.Equal(t, "acme", *r.Tenant)
			} else {
				require.Nil(t, r.TenantID)
				require.Nil(t, r.Tenant)
			}
			require.Equal(t, wantScope, r.Scope)
			if c.resource {
				require.Equal(t, res.ID, *r.ResourceID)
				require.Equal(t, "db", *r.Resource)
			} else {
				require.Nil(t, r.ResourceID)
			}
			if c.tool {
				require.Equal(t, tool.ID, *r.ToolID)
				require.Equal(t, "query", *r.Tool)
			} else {
				require.Nil(t, r.ToolID)
			}
			if c.method {
				require.Equal(t, "read", *r.Method)
			} else {
				require.Nil(t, r.Method)
			}
			got := decodeAs[Rule](t, e.want(http.StatusOK, http.MethodGet, "/v1/rules/"+r.ID, e.boot.StandardKey, nil))
			require.Equal(t, r, got)

			// The same key again is a conflict that names the rule holding it.
			p := requireProblem(t, e.want(http.StatusConflict, http.MethodPost, "/v1/rules", mk, body), CodeConflict, "")
			require.Contains(t, p.Detail, r.ID)
		})
	}
	list := decodeAs[struct{ Items []Rule }](t, e.want(http.StatusOK, http.MethodGet, "/v1/rules?limit=200", mk, nil))
	require.Len(t, list.Items, len(cases))
}

func TestRuleCRUD(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk, org := e.boot.ManagementKey, e.boot.OrgID
	e.want(http.StatusCreated, http.MethodPost, "/v1/tenants", mk, map[string]any{"name": "acme"})
	e.want(http.StatusCreated, http.MethodPost, "/v1/resources", mk, map[string]any{"name": "inbox"})
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{"name": "send_email", "annotations_acknowledged": true})

	for _, c := range []struct {
		name     string
		body     map[string]any
		location string
	}{
		{"unknown tenant", map[string]any{"tenant": "globex", "permission": "allowed"}, "body.tenant"},
		{"unknown resource", map[string]any{"resource": "outbox", "permission": "allowed"}, "body.resource"},
		{"unknown tool", map[string]any{"tool": "send_fax", "permission": "allowed"}, "body.tool"},
		{"missing permission", map[string]any{"tool": "send_email"}, "body"},
	} {
		t.Run(c.name, func(t *testing.T) {
			requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPost, "/v1/rules", mk, c.body), CodeValidationFailed, c.location)
		})
	}

	r := decodeAs[Rule](t, e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk,
		map[string]any{"tenant": "acme", "tool": "send_email", "method": "send", "permission": "requires_approval", "description": "ask first"}))
	require.Equal(t, 3, r.Level)
	other := decodeAs[Rule](t, e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk,
		map[string]any{"tool": "send_email", "permission": "allowed"}))

	// Methods are normalised: "SEND " is the same key as send.
	dup := requireProblem(t, e.want(http.StatusConflict, http.MethodPost, "/v1/rules", mk,
		map[string]any{"tenant": "ACME", "tool": "send_email", "method": "SEND ", "permission": "disabled"}), CodeConflict, "")
	require.Contains(t, dup.Detail, r.ID)

	updated := decodeAs[Rule](t, e.want(http.StatusOK, http.MethodPatch, "/v1/rules/"+r.ID, mk,
		map[string]any{"permission": "disabled", "resource": "inbox"}))
	require.Equal(t, "disabled", updated.Permission)
	require.Equal(t, "ask first", updated.Description)
	require.Equal(t, "inbox", *updated.Resource)
	require.Equal(t, 1, updated.Level)
	require.Equal(t, resolver.LevelNameTenantResourceToolMethod, updated.LevelName)

	// Moving the rule onto the key another rule holds is refused and names
	// that rule; the rule stays as it was.
	p := requireProblem(t, e.want(http.StatusConflict, http.MethodPatch, "/v1/rules/"+r.ID, mk,
		map[string]any{"tenant": nil, "method": nil, "resource": nil}), CodeConflict, "")
	require.Contains(t, p.Detail, other.ID)
	got := decodeAs[Rule](t, e.want(http.StatusOK, http.MethodGet, "/v1/rules/"+r.ID, mk, nil))
	require.Equal(t, updated, got)
	requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPatch, "/v1/rules/"+r.ID, mk,
		map[string]any{"tool": "send_fax"}), CodeValidationFailed, "body.tool")

	updated = decodeAs[Rule](t, e.want(http.StatusOK, http.MethodPatch, "/v1/rules/"+r.ID, mk,
		map[string]any{"tenant": nil, "resource": nil}))
	require.Nil(t, updated.Tenant)
	require.Nil(t, updated.Resource)
	require.Equal(t, "send_email", *updated.Tool)
	require.Equal(t, "send", *updated.Method)
	require.Equal(t, "org", updated.Scope)
	require.Equal(t, 3, updated.Level)

	requireProblem(t, e.want(http.StatusNotFound, http.MethodPatch, "/v1/rules/rule_doesnotexist", mk,
		map[string]any{"permission": "allowed"}), CodeNotFound, "")
	e.want(http.StatusNoContent, http.MethodDelete, "/v1/rules/"+r.ID, mk, nil)
	requireProblem(t, e.want(http.StatusNotFound, http.MethodGet, "/v1/rules/"+r.ID, mk, nil), CodeNotFound, "")
	requireProblem(t, e.want(http.StatusNotFound, http.MethodDelete, "/v1/rules/"+r.ID, mk, nil), CodeNotFound, "")

	created := e.audits(org, kindRuleCreated, r.ID)
	require.Len(t, created, 1)
	require.Equal(t, "send_email", created[0].Tool)
	require.Equal(t, "acme", created[0].Tenant)
	require.Equal(t, "requires_approval", created[0].Details["permission"])
	require.Equal(t, "send", created[0].Details["method"])
	updates := e.audits(org, kindRuleUpdated, r.ID)
	require.Len(t, updates, 2, "refused updates are not recorded")
	require.Equal(t, map[string]any{
		"permission": map[string]any{"from": "requires_approval", "to": "disabled"},
		"resource":   map[string]any{"from": nil, "to": "inbox"},
		"level_name": map[string]any{"from": resolver.LevelNameTenantToolMethod, "to": resolver.LevelNameTenantResourceToolMethod},
	}, updates[0].Details["changed"])
	deleted := e.audits(org, kindRuleDeleted, r.ID)
	require.Len(t, deleted, 1)
	require.Equal(t, "disabled", deleted[0].Details["permission"])
}

func TestRuleChangesVerdict(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk, org := e.boot.ManagementKey, e.boot.OrgID
	ctx := context.Background()
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{"name": "deploy", "annotations_acknowledged": true})

	// Load the org's policy, so what follows must arrive by notification;
	// the listener shows each change was announced.
	l := e.listenChanges()
	pol, err := e.srv.policies.Get(ctx, org)
	require.NoError(t, err)
	in := resolver.Input{Tool: "deploy", Method: "ship"}
	d := pol.index.Decide(in)
	require.Equal(t, resolver.RequiresApproval, d.Permission)
	require.Equal(t, resolver.LevelNameFailSafe, d.LevelName)

	decidesSoon := func(what string, ok func(resolver.Decision) bool) {
		t.Helper()
		var last resolver.Decision
		require.Eventually(t, func() bool {
			p, err := e.srv.policies.Get(ctx, org)
			if err != nil {
				return false
			}
			last = p.index.Decide(in)
			return ok(last)
		}, hangDeadline, 5*time.Millisecond, "%s: last decision %+v", what, last)
	}

	rule := decodeAs[Rule](t, e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk,
		map[string]any{"tool": "deploy", "method": "ship", "permission": "allowed"}))
	l.expect("policy:"+org, "rule created")
	decidesSoon("rule created", func(d resolver.Decision) bool {
		return d.Permission == resolver.Allowed && d.RuleID == rule.ID && d.Level == 3 && d.Scope == resolver.ScopeOrg
	})

	e.want(http.StatusOK, http.MethodPatch, "/v1/rules/"+rule.ID, mk, map[string]any{"permission": "disabled"})
	l.expect("policy:"+org, "rule updated")
	decidesSoon("rule updated", func(d resolver.Decision) bool {
		return d.Permission == resolver.Disabled && d.RuleID == rule.ID
	})

	e.want(http.StatusNoContent, http.MethodDelete, "/v1/rules/"+rule.ID, mk, nil)
	l.expect("policy:"+org, "rule deleted")
	decidesSoon("rule deleted", func(d resolver.Decision) bool {
		return d.LevelName == resolver.LevelNameFailSafe
	})

	// Tool and category changes reach the policy the same way.
	e.want(http.StatusCreated, http.MethodPost, "/v1/categories", mk, map[string]any{"name": "ops", "default_permission": "disabled"})
	e.want(http.StatusOK, http.MethodPatch, "/v1/tools/deploy", mk, map[string]any{"category": "ops"})
	decidesSoon("category assigned", func(d resolver.Decision) bool {
		return d.Permission == resolver.Disabled && d.LevelName == resolver.LevelNameCategoryDefault
	})
	e.want(http.StatusOK, http.MethodPatch, "/v1/tools/deploy", mk, map[string]any{"default_permission": "allowed"})
	decidesSoon("tool default set", func(d resolver.Decision) bool {
		return d.Permission == resolver.Allowed && d.LevelName == resolver.LevelNameToolDefault
	})
	e.want(http.StatusOK, http.MethodPatch, "/v1/tools/deploy", mk, map[string]any{"name": "release"})
	decidesSoon("tool renamed", func(d resolver.Decision) bool {
		return d.Reason == resolver.ReasonToolNotRegistered
	})
}
