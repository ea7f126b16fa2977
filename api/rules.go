package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/resolver"
	"oakallow/store"
)

// Rule maps a key (tenant?, resource?, tool?, method?) to a permission.
type Rule struct {
	ID          string    `json:"id" doc:"Rule id (rule_…)."`
	TenantID    *string   `json:"tenant_id" doc:"Id of the tenant the rule is scoped to; null for an org-wide rule."`
	Tenant      *string   `json:"tenant" doc:"Name of that tenant."`
	ResourceID  *string   `json:"resource_id" doc:"Id of the resource in the key; null when the key has none."`
	Resource    *string   `json:"resource" doc:"Name of that resource."`
	ToolID      *string   `json:"tool_id" doc:"Id of the tool in the key; null: the rule applies to every tool."`
	Tool        *string   `json:"tool" doc:"Name of that tool."`
	Method      *string   `json:"method" doc:"Method in the key, normalised (trimmed, Unicode NFC, case-folded) like the methods of checks; null when the key has none."`
	Permission  string    `json:"permission" enum:"allowed,requires_approval,disabled" doc:"The verdict when this rule is the first match."`
	Description string    `json:"description" doc:"Free-form description."`
	Level       int       `json:"level" minimum:"1" maximum:"8" doc:"The chain level the rule sits at (1–8, within its scope)."`
	LevelName   string    `json:"level_name" doc:"Stable name of that level, e.g. tenant_tool_method or org_wildcard."`
	Scope       string    `json:"scope" enum:"tenant,org" doc:"tenant: walked only for checks naming the tenant, before every org rule."`
	CreatedAt   time.Time `json:"created_at" doc:"When the rule was created."`
	UpdatedAt   time.Time `json:"updated_at" doc:"When the rule last changed."`
}

// ruleShapes are the eight key shapes of SPEC §2 in chain order: index i is
// level i+1, within the tenant scope and again within the org scope.
var ruleShapes = [8]struct {
	resource, tool, method bool
	tenantName, orgName    string
}{
	{true, true, true, resolver.LevelNameTenantResourceToolMethod, resolver.LevelNameOrgResourceToolMethod},
	{true, true, false, resolver.LevelNameTenantResourceTool, resolver.LevelNameOrgResourceTool},
	{false, true, true, resolver.LevelNameTenantToolMethod, resolver.LevelNameOrgToolMethod},
	{false, true, false, resolver.LevelNameTenantTool, resolver.LevelNameOrgTool},
	{true, false, true, resolver.LevelNameTenantResourceMethod, resolver.LevelNameOrgResourceMethod},
	{true, false, false, resolver.LevelNameTenantResource, resolver.LevelNameOrgResource},
	{false, false, true, resolver.LevelNameTenantMethod, resolver.LevelNameOrgMethod},
	{false, false, false, resolver.LevelNameTenantWildcard, resolver.LevelNameOrgWildcard},
}

// ruleLevel returns the level, level name and scope of a rule key with
// these parts set.
func ruleLevel(tenant, resource, tool, method bool) (int, string, string) {
	for i, sh := range ruleShapes {
		if sh.resource == resource && sh.tool == tool && sh.method == method {
			if tenant {
				return i + 1, sh.tenantName, "tenant"
			}
			return i + 1, sh.orgName, "org"
		}
	}
	panic("api: ruleShapes does not cover every key shape")
}

func ruleView(r store.Rule, tenant, resource, tool *string) Rule {
	level, name, scope := ruleLevel(r.TenantID != nil, r.ResourceID != nil, r.ToolID != nil, r.Method != nil)
	return Rule{
		ID: r.ID, TenantID: r.TenantID, Tenant: tenant, ResourceID: r.ResourceID, Resource: resource,
		ToolID: r.ToolID, Tool: tool, Method: r.Method, Permission: r.Permission, Description: r.Description,
		Level: level, LevelName: name, Scope: scope, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
}

// ruleAudit records a rule's key by name and id, its verdict and level.
func ruleAudit(v Rule) map[string]any {
	return map[string]any{
		"tenant": v.Tenant, "tenant_id": v.TenantID, "resource": v.Resource, "resource_id": v.ResourceID,
		"tool": v.Tool, "tool_id": v.ToolID, "method": v.Method, "permission": v.Permission,
		"description": v.Description, "level": v.Level, "level_name": v.LevelName,
	}
}

func derefOr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

type ruleRefInput struct {
	ID string `path:"id" maxLength:"200" doc:"Rule id."`
}

type ruleOutput struct {
	Body Rule
}

type ruleCreateRequest struct {
	_           struct{}       `additionalProperties:"false"`
	Tenant      *string        `json:"tenant,omitempty" minLength:"1" maxLength:"200" doc:"Tenant name or id; absent makes an org-wide rule."`
	Resource    *string        `json:"resource,omitempty" minLength:"1" maxLength:"200" doc:"Resource name or id; absent: any resource."`
	Tool        *string        `json:"tool,omitempty" minLength:"1" maxLength:"200" doc:"Tool name or id; absent: every tool."`
	Method      *string        `json:"method,omitempty" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters" doc:"Method; stored normalised (trimmed, Unicode NFC, case-folded) as checks' methods are, so DELETE also matches delete. Absent: any method." example:"send"`
	Permission  permissionName `json:"permission" doc:"The verdict when this rule is the first match."`
	Description string         `json:"description,omitempty" maxLength:"2000" doc:"Free-form description."`
}

type ruleUpdateRequest struct {
	_           struct{}         `additionalProperties:"false"`
	Tenant      nullable[string] `json:"tenant,omitempty" minLength:"1" maxLength:"200" doc:"Tenant name or id; null makes the rule org-wide."`
	Resource    nullable[string] `json:"resource,omitempty" minLength:"1" maxLength:"200" doc:"Resource name or id; null removes the resource from the key."`
	Tool        nullable[string] `json:"tool,omitempty" minLength:"1" maxLength:"200" doc:"Tool name or id; null makes the rule apply to every tool."`
	Method      nullable[string] `json:"method,omitempty" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters" doc:"Method; null removes it from the key."`
	Permission  *permissionName  `json:"permission,omitempty" doc:"New verdict."`
	Description *string          `json:"description,omitempty" maxLength:"2000" doc:"New description."`
}

type ruleCreateInput struct {
	IdempotencyHeader
	Body ruleCreateRequest
}

type ruleUpdateInput struct {
	IdempotencyHeader
	ID   string `path:"id" maxLength:"200" doc:"Rule id."`
	Body ruleUpdateRequest
}

type ruleDeleteInput struct {
	IdempotencyHeader
	ID string `path:"id" maxLength:"200" doc:"Rule id."`
}

type listRulesOutput struct {
	Body struct {
		Items      []Rule `json:"items" doc:"Rules, in a stable order."`
		NextCursor string `json:"next_cursor,omitempty" doc:"Pass as cursor for the next page; absent on the last page."`
	}
}

// ruleKeyRefs are the key parts of a rule as the caller named them.
type ruleKeyRefs struct {
	tenant, resource, tool *string
}

// ruleKey is a resolved key: ids for the store, names for the answer.
type ruleKey struct {
	tenantID, tenant, resourceID, resource, toolID, tool, method *string
}

// resolveRuleKey looks up the named tenant, resource and tool in the org;
// one it does not have is a 422 on the field that named it.
func resolveRuleKey(ctx context.Context, q *store.Queries, orgID string, refs ruleKeyRefs) (ruleKey, error) {
	var k ruleKey
	if r := refs.tenant; r != nil {
		t, err := q.GetTenant(ctx, store.GetTenantParams{OrgID: orgID, Ref: nameRef(*r)})
		if err != nil {
			return k, missingRef(err, "body.tenant", "tenant", *r)
		}
		k.tenantID, k.tenant = &t.ID, &t.Name
	}
	if r := refs.resource; r != nil {
		res, err := q.GetResource(ctx, store.GetResourceParams{OrgID: orgID, Ref: nameRef(*r)})
		if err != nil {
			return k, missingRef(err, "body.resource", "resource", *r)
		}
		k.resourceID, k.resource = &res.ID, &res.Name
	}
	if r := refs.tool; r != nil {
		t, err := q.GetTool(ctx, store.GetToolParams{OrgID: orgID, Ref: *r})
		if err != nil {
			return k, missingRef(err, "body.tool", "tool", *r)
		}
		k.toolID, k.tool = &t.ID, &t.Name
	}
	return k, nil
}

func missingRef(err error, location, what, ref string) error {
	if errors.Is(err, store.ErrNotFound) {
		return fieldProblem(location, fmt.Sprintf("no %s %q in this org", what, ref), ref)
	}
	return err
}

// duplicateRule is the 409 for a key that another rule holds; it names that
// rule when it can be found (the failed transaction cannot be used, so the
// lookup runs on the pool).
func (s *Server) duplicateRule(ctx context.Context, orgID string, k ruleKey) error {
	msg := "a rule with exactly this key (tenant, resource, tool, method) already exists"
	id, err := s.deps.Store.FindRuleByKey(ctx, store.FindRuleByKeyParams{OrgID: orgID,
		TenantID: k.tenantID, ResourceID: k.resourceID, ToolID: k.toolID, Method: k.method})
	if err == nil {
		msg = fmt.Sprintf("rule %s already has exactly this key (tenant, resource, tool, method); update or delete it instead", id)
	}
	return problem(http.StatusConflict, CodeConflict, msg)
}

func registerRules(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "create-rule", Method: http.MethodPost, Path: "/v1/rules",
		Summary: "Create a rule",
		Description: "Adds a permission rule. Tenant, resource and tool are named by name or id and must exist in the org. " +
			"At most one rule per exact key (409 otherwise). The rule takes effect on every replica within a second.",
		Tags: []string{tagRules}, DefaultStatus: http.StatusCreated, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *ruleCreateInput) (*writeOutput[Rule], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "create-rule", in.Body, http.StatusCreated,
			func(ctx context.Context, p Principal) (Rule, error) { return s.createRule(ctx, p, &in.Body) })
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-rules", Method: http.MethodGet, Path: "/v1/rules",
		Summary: "List rules", Description: "The org's rules with the names in their keys and their levels, cursor-paginated.",
		Tags: []string{tagRules}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *PageParams) (*listRulesOutput, error) {
		p := mustPrincipal(ctx)
		after, err := in.after("rule")
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		rows, err := s.deps.Store.ListRuleViews(ctx, store.ListRuleViewsParams{OrgID: p.OrgID, After: after, RowLimit: in.rowLimit()})
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &listRulesOutput{}
		out.Body.Items, out.Body.NextCursor = page(*in, "rule", rows,
			func(r store.ListRuleViewsRow) string { return r.Rule.ID },
			func(r store.ListRuleViewsRow) Rule { return ruleView(r.Rule, r.TenantName, r.ResourceName, r.ToolName) })
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-rule", Method: http.MethodGet, Path: "/v1/rules/{id}",
		Summary: "Get a rule", Description: "One rule, by id.",
		Tags: []string{tagRules}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *ruleRefInput) (*ruleOutput, error) {
		if err := lookupRef("rule", in.ID); err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		r, err := s.deps.Store.GetRuleView(ctx, store.GetRuleViewParams{OrgID: mustPrincipal(ctx).OrgID, ID: in.ID})
		if err != nil {
			return nil, toProblem(ctx, s.log, notFoundIf(err, "rule", in.ID))
		}
		return &ruleOutput{Body: ruleView(r.Rule, r.TenantName, r.ResourceName, r.ToolName)}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "update-rule", Method: http.MethodPatch, Path: "/v1/rules/{id}",
		Summary: "Update a rule",
		Description: "Changes the fields that are present in the body; null removes a part of the key. " +
			"A key another rule holds is refused (409).",
		Tags: []string{tagRules}, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *ruleUpdateInput) (*writeOutput[Rule], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "update-rule:"+in.ID, in.Body, http.StatusOK,
			func(ctx context.Context, p Principal) (Rule, error) { return s.updateRule(ctx, p, in.ID, &in.Body) })
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "delete-rule", Method: http.MethodDelete, Path: "/v1/rules/{id}",
		Summary: "Delete a rule", Description: "Removes the rule; checks fall through to the next level.",
		Tags: []string{tagRules}, DefaultStatus: http.StatusNoContent, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *ruleDeleteInput) (*deleteOutput, error) {
		return manageDelete(ctx, s, in.IdempotencyKey, "delete-rule:"+in.ID,
			func(ctx context.Context, p Principal) error { return s.deleteRule(ctx, p, in.ID) })
	})
}

func (s *Server) createRule(ctx context.Context, p Principal, b *ruleCreateRequest) (Rule, error) {
	method, err := optionalName("body.method", b.Method)
	if err != nil {
		return Rule{}, err
	}
	now := s.now()
	var out Rule
	var key ruleKey
	err = s.inTx(ctx, func(q *store.Queries) error {
		var err error
		key, err = resolveRuleKey(ctx, q, p.OrgID, ruleKeyRefs{tenant: b.Tenant, resource: b.Resource, tool: b.Tool})
		if err != nil {
			return err
		}
		key.method = method
		r, err := q.CreateRule(ctx, store.CreateRuleParams{ID: store.NewID("rule"), OrgID: p.OrgID,
			TenantID: key.tenantID, ResourceID: key.resourceID, ToolID: key.toolID, Method: key.method,
			Permission: string(b.Permission), Description: b.Description, CreatedAt: now})
		if err != nil {
			return err
		}
		out = ruleView(r, key.tenant, key.resource, key.tool)
		return s.recordChange(ctx, q, p, now, change{kind: kindRuleCreated, subject: r.ID,
			tool: derefOr(key.tool), tenant: derefOr(key.tenant), details: ruleAudit(out), policy: true})
	})
	if errors.Is(err, store.ErrConflict) {
		err = s.duplicateRule(ctx, p.OrgID, key)
	}
	return out, err
}

// updateRule applies a PATCH. A key another rule holds is a 409 naming it.
func (s *Server) updateRule(ctx context.Context, p Principal, id string, b *ruleUpdateRequest) (Rule, error) {
	if err := lookupRef("rule", id); err != nil {
		return Rule{}, err
	}
	method, err := optionalName("body.method", b.Method.ptr())
	if err != nil {
		return Rule{}, err
	}
	now := s.now()
	var out Rule
	var key ruleKey
	err = s.inTx(ctx, func(q *store.Queries) error {
		if _, err := q.LockRule(ctx, store.LockRuleParams{OrgID: p.OrgID, ID: id}); err != nil {
			return notFoundIf(err, "rule", id)
		}
		cur, err := q.GetRuleView(ctx, store.GetRuleViewParams{OrgID: p.OrgID, ID: id})
		if err != nil {
			return err
		}
		r := cur.Rule
		key = ruleKey{tenantID: r.TenantID, tenant: cur.TenantName, resourceID: r.ResourceID, resource: cur.ResourceName,
			toolID: r.ToolID, tool: cur.ToolName, method: r.Method}
		// Resolve only the parts the body names; the others keep their ids.
		named, err := resolveRuleKey(ctx, q, p.OrgID, ruleKeyRefs{tenant: b.Tenant.ptr(), resource: b.Resource.ptr(), tool: b.Tool.ptr()})
		if err != nil {
			return err
		}
		if b.Tenant.Sent {
			key.tenantID, key.tenant = named.tenantID, named.tenant
		}
		if b.Resource.Sent {
			key.resourceID, key.resource = named.resourceID, named.resource
		}
		if b.Tool.Sent {
			key.toolID, key.tool = named.toolID, named.tool
		}
		if b.Method.Sent {
			key.method = method
		}
		next := store.UpdateRuleParams{OrgID: p.OrgID, ID: r.ID, TenantID: key.tenantID, ResourceID: key.resourceID,
			ToolID: key.toolID, Method: key.method, Permission: r.Permission, Description: r.Description, UpdatedAt: now}
		if b.Permission != nil {
			next.Permission = string(*b.Permission)
		}
		setString(&next.Description, b.Description)

		changed := fieldChanges{}
		changed.note("tenant", cur.TenantName, key.tenant)
		changed.note("resource", cur.ResourceName, key.resource)
		changed.note("tool", cur.ToolName, key.tool)
		changed.note("method", r.Method, key.method)
		changed.note("permission", r.Permission, next.Permission)
		changed.note("description", r.Description, next.Description)
		old := ruleView(r, cur.TenantName, cur.ResourceName, cur.ToolName)
		if len(changed) == 0 {
			out = old
			return nil
		}
		if r, err = q.UpdateRule(ctx, next); err != nil {
			return err
		}
		out = ruleView(r, key.tenant, key.resource, key.tool)
		changed.note("level_name", old.LevelName, out.LevelName)
		details := ruleAudit(out)
		details["changed"] = changed
		return s.recordChange(ctx, q, p, now, change{kind: kindRuleUpdated, subject: r.ID,
			tool: derefOr(out.Tool), tenant: derefOr(out.Tenant), details: details, policy: true})
	})
	if errors.Is(err, store.ErrConflict) {
		err = s.duplicateRule(ctx, p.OrgID, key)
	}
	return out, err
}

func (s *Server) deleteRule(ctx context.Context, p Principal, id string) error {
	if err := lookupRef("rule", id); err != nil {
		return err
	}
	now := s.now()
	return s.inTx(ctx, func(q *store.Queries) error {
		if _, err := q.LockRule(ctx, store.LockRuleParams{OrgID: p.OrgID, ID: id}); err != nil {
			return notFoundIf(err, "rule", id)
		}
		r, err := q.GetRuleView(ctx, store.GetRuleViewParams{OrgID: p.OrgID, ID: id})
		if err != nil {
			return err
		}
		if _, err := q.DeleteRule(ctx, store.DeleteRuleParams{OrgID: p.OrgID, ID: id}); err != nil {
			return err
		}
		v := ruleView(r.Rule, r.TenantName, r.ResourceName, r.ToolName)
		return s.recordChange(ctx, q, p, now, change{kind: kindRuleDeleted, subject: id,
			tool: derefOr(v.Tool), tenant: derefOr(v.Tenant), details: ruleAudit(v), policy: true})
	})
}
