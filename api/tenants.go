package api

import (
	"context"
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

type listTenantsOutput struct {
	Body struct {
		Items      []Tenant `json:"items" doc:"Tenants, in a stable order."`
		NextCursor string   `json:"next_cursor,omitempty" doc:"Pass as cursor for the next page; absent on the last page."`
	}
}

func registerTenants(api huma.API, s *Server) {
	registerNamed(api, s, namedObjects[store.Tenant, Tenant, tenantCreateRequest, tenantUpdateRequest, listTenantsOutput]{
		kind: "tenant", plural: "tenants", title: "Tenant", tag: tagTenants,
		createDoc: "Registers one of the org's customers, so rules can be scoped to it.",
		listDoc:   "The org's tenants, cursor-paginated.",
		updateDoc: "Changes the fields that are present in the body.",
		deleteDoc: "Deletes the tenant and every rule scoped to it. A tenant that approval requests refer to cannot be deleted (409).",
		list: func(ctx context.Context, orgID, after string, rowLimit int32) ([]store.Tenant, error) {
			return s.deps.Store.ListTenants(ctx, store.ListTenantsParams{OrgID: orgID, After: after, RowLimit: rowLimit})
		},
		get: func(ctx context.Context, orgID, ref string) (store.Tenant, error) {
			return s.deps.Store.GetTenant(ctx, store.GetTenantParams{OrgID: orgID, Ref: nameRef(ref)})
		},
		id:   func(t store.Tenant) string { return t.ID },
		view: tenantView,
		listOut: func(items []Tenant, next string) *listTenantsOutput {
			out := &listTenantsOutput{}
			out.Body.Items, out.Body.NextCursor = items, next
			return out
		},
		create: s.createTenant, update: s.updateTenant, delete: s.deleteTenant,
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
