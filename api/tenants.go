package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/store"
)

// Tenant is one of the org's customers; rules may be scoped to it.
type Tenant struct {
	ID        string    `json:"id" doc:"Tenant id (ten_…)."`
	Name      string    `json:"name" doc:"Tenant name, unique in the org; checks name tenants by it."`
	CreatedAt time.Time `json:"created_at" doc:"When the tenant was created."`
	UpdatedAt time.Time `json:"updated_at" doc:"When the tenant last changed."`
}

func tenantView(t store.Tenant) Tenant {
	return Tenant{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
}

type tenantCreateRequest struct {
	_    struct{} `additionalProperties:"false"`
	Name string   `json:"name" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters" doc:"Tenant name, unique in the org. Stored normalised (trimmed, Unicode NFC, case-folded), as checks name it; invisible characters are refused." example:"acme-corp"`
}

type tenantUpdateRequest struct {
	_    struct{} `additionalProperties:"false"`
	Name *string  `json:"name,omitempty" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters" doc:"New tenant name. Rules follow the tenant by id."`
}

type tenantRefInput struct {
	ID string `path:"id" maxLength:"200" doc:"Tenant id or name."`
}

type tenantCreateInput struct {
	IdempotencyHeader
	Body tenantCreateRequest
}

type tenantUpdateInput struct {
	IdempotencyHeader
	ID   string `path:"id" maxLength:"200" doc:"Tenant id or name."`
	Body tenantUpdateRequest
}

type tenantDeleteInput struct {
	IdempotencyHeader
	ID string `path:"id" maxLength:"200" doc:"Tenant id or name."`
}

type tenantOutput struct {
	Body Tenant
}

type listTenantsOutput struct {
	Body struct {
		Items      []Tenant `json:"items" doc:"Tenants, in a stable order."`
		NextCursor string   `json:"next_cursor,omitempty" doc:"Pass as cursor for the next page; absent on the last page."`
	}
}

func registerTenants(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "create-tenant", Method: http.MethodPost, Path: "/v1/tenants",
		Summary: "Create a tenant", Description: "Registers one of the org's customers, so rules can be scoped to it.",
		Tags: []string{tagTenants}, DefaultStatus: http.StatusCreated, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *tenantCreateInput) (*writeOutput[Tenant], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "create-tenant", in.Body, http.StatusCreated,
			func(ctx context.Context, p Principal) (Tenant, error) { return s.createTenant(ctx, p, &in.Body) })
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-tenants", Method: http.MethodGet, Path: "/v1/tenants",
		Summary: "List tenants", Description: "The org's tenants, cursor-paginated.",
		Tags: []string{tagTenants}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *PageParams) (*listTenantsOutput, error) {
		p := mustPrincipal(ctx)
		after, err := in.after("tenant")
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		rows, err := s.deps.Store.ListTenants(ctx, store.ListTenantsParams{OrgID: p.OrgID, After: after, RowLimit: in.rowLimit()})
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &listTenantsOutput{}
		out.Body.Items, out.Body.NextCursor = page(*in, "tenant", rows,
			func(t store.Tenant) string { return t.ID }, tenantView)
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-tenant", Method: http.MethodGet, Path: "/v1/tenants/{id}",
		Summary: "Get a tenant", Description: "One tenant, by id or name.",
		Tags: []string{tagTenants}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *tenantRefInput) (*tenantOutput, error) {
		if err := lookupRef("tenant", in.ID); err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		t, err := s.deps.Store.GetTenant(ctx, store.GetTenantParams{OrgID: mustPrincipal(ctx).OrgID, Ref: nameRef(in.ID)})
		if err != nil {
			return nil, toProblem(ctx, s.log, notFoundIf(err, "tenant", in.ID))
		}
		return &tenantOutput{Body: tenantView(t)}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "update-tenant", Method: http.MethodPatch, Path: "/v1/tenants/{id}",
		Summary: "Update a tenant", Description: "Changes the fields that are present in the body.",
		Tags: []string{tagTenants}, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *tenantUpdateInput) (*writeOutput[Tenant], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "update-tenant:"+in.ID, in.Body, http.StatusOK,
			func(ctx context.Context, p Principal) (Tenant, error) { return s.updateTenant(ctx, p, in.ID, &in.Body) })
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "delete-tenant", Method: http.MethodDelete, Path: "/v1/tenants/{id}",
		Summary:     "Delete a tenant",
		Description: "Deletes the tenant and every rule scoped to it. A tenant that approval requests refer to cannot be deleted (409).",
		Tags:        []string{tagTenants}, DefaultStatus: http.StatusNoContent, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *tenantDeleteInput) (*deleteOutput, error) {
		return manageDelete(ctx, s, in.IdempotencyKey, "delete-tenant:"+in.ID,
			func(ctx context.Context, p Principal) error { return s.deleteTenant(ctx, p, in.ID) })
	})
}

func (s *Server) createTenant(ctx context.Context, p Principal, b *tenantCreateRequest) (Tenant, error) {
	name, err := normalizedName("body.name", b.Name)
	if err != nil {
		return Tenant{}, err
	}
	now := s.now()
	var out Tenant
	err = s.inTx(ctx, func(q *store.Queries) error {
		t, err := q.CreateTenant(ctx, store.CreateTenantParams{ID: store.NewID("ten"), OrgID: p.OrgID, Name: name, CreatedAt: now})
		if err != nil {
			return conflictIf(err, "a tenant named %q already exists in this org", name)
		}
		out = tenantView(t)
		return s.recordChange(ctx, q, p, now, change{kind: kindTenantCreated, subject: t.ID, tenant: t.Name,
			details: map[string]any{"name": t.Name}, policy: true})
	})
	return out, err
}

func (s *Server) updateTenant(ctx context.Context, p Principal, ref string, b *tenantUpdateRequest) (Tenant, error) {
	if err := lookupRef("tenant", ref); err != nil {
		return Tenant{}, err
	}
	newName, err := optionalName("body.name", b.Name)
	if err != nil {
		return Tenant{}, err
	}
	now := s.now()
	var out Tenant
	err = s.inTx(ctx, func(q *store.Queries) error {
		t, err := q.LockTenant(ctx, store.LockTenantParams{OrgID: p.OrgID, Ref: nameRef(ref)})
		if err != nil {
			return notFoundIf(err, "tenant", ref)
		}
		name := t.Name
		setString(&name, newName)
		changed := fieldChanges{}
		changed.note("name", t.Name, name)
		if len(changed) == 0 {
			out = tenantView(t)
			return nil
		}
		t, err = q.UpdateTenant(ctx, store.UpdateTenantParams{OrgID: p.OrgID, ID: t.ID, Name: name, UpdatedAt: now})
		if err != nil {
			return conflictIf(err, "a tenant named %q already exists in this org", name)
		}
		out = tenantView(t)
		return s.recordChange(ctx, q, p, now, change{kind: kindTenantUpdated, subject: t.ID, tenant: t.Name,
			details: map[string]any{"name": t.Name, "changed": changed}, policy: true})
	})
	return out, err
}

func (s *Server) deleteTenant(ctx context.Context, p Principal, ref string) error {
	if err := lookupRef("tenant", ref); err != nil {
		return err
	}
	now := s.now()
	return s.inTx(ctx, func(q *store.Queries) error {
		t, err := q.LockTenant(ctx, store.LockTenantParams{OrgID: p.OrgID, Ref: nameRef(ref)})
		if err != nil {
			return notFoundIf(err, "tenant", ref)
		}
		n, err := q.CountRulesReferencing(ctx, store.CountRulesReferencingParams{OrgID: p.OrgID, Ref: t.ID})
		if err != nil {
			return err
		}
		if _, err := q.DeleteTenant(ctx, store.DeleteTenantParams{OrgID: p.OrgID, ID: t.ID}); err != nil {
			return referencedIf(err, "tenant %q has approval requests; it cannot be deleted", t.Name)
		}
		return s.recordChange(ctx, q, p, now, change{kind: kindTenantDeleted, subject: t.ID, tenant: t.Name,
			details: map[string]any{"name": t.Name, "rules_deleted": n}, policy: true})
	})
}
