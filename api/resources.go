package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/store"
)

// Resource is a named target inside the org (a database, a mailbox, a
// repository…) that checks and rules may name.
type Resource struct {
	ID          string    `json:"id" doc:"Resource id (res_…)."`
	Name        string    `json:"name" doc:"Resource name, unique in the org; checks name resources by it."`
	Description string    `json:"description" doc:"Free-form description."`
	CreatedAt   time.Time `json:"created_at" doc:"When the resource was created."`
	UpdatedAt   time.Time `json:"updated_at" doc:"When the resource last changed."`
}

func resourceView(r store.Resource) Resource {
	return Resource{ID: r.ID, Name: r.Name, Description: r.Description, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

type resourceCreateRequest struct {
	_           struct{} `additionalProperties:"false"`
	Name        string   `json:"name" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters" doc:"Resource name, unique in the org." example:"billing-db"`
	Description string   `json:"description,omitempty" maxLength:"2000" doc:"Free-form description."`
}

type resourceUpdateRequest struct {
	_           struct{} `additionalProperties:"false"`
	Name        *string  `json:"name,omitempty" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters" doc:"New resource name. Rules follow the resource by id."`
	Description *string  `json:"description,omitempty" maxLength:"2000" doc:"New description."`
}

type resourceRefInput struct {
	ID string `path:"id" maxLength:"200" doc:"Resource id or name."`
}

type resourceCreateInput struct {
	IdempotencyHeader
	Body resourceCreateRequest
}

type resourceUpdateInput struct {
	IdempotencyHeader
	ID   string `path:"id" maxLength:"200" doc:"Resource id or name."`
	Body resourceUpdateRequest
}

type resourceDeleteInput struct {
	IdempotencyHeader
	ID string `path:"id" maxLength:"200" doc:"Resource id or name."`
}

type resourceOutput struct {
	Body Resource
}

type listResourcesOutput struct {
	Body struct {
		Items      []Resource `json:"items" doc:"Resources, in a stable order."`
		NextCursor string     `json:"next_cursor,omitempty" doc:"Pass as cursor for the next page; absent on the last page."`
	}
}

func registerResources(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "create-resource", Method: http.MethodPost, Path: "/v1/resources",
		Summary: "Create a resource", Description: "Registers a named target that checks and rules may name.",
		Tags: []string{tagResources}, DefaultStatus: http.StatusCreated, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *resourceCreateInput) (*writeOutput[Resource], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "create-resource", in.Body, http.StatusCreated,
			func(ctx context.Context, p Principal) (Resource, error) { return s.createResource(ctx, p, &in.Body) })
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-resources", Method: http.MethodGet, Path: "/v1/resources",
		Summary: "List resources", Description: "The org's resources, cursor-paginated.",
		Tags: []string{tagResources}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *PageParams) (*listResourcesOutput, error) {
		p := mustPrincipal(ctx)
		after, err := in.after("resource")
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		rows, err := s.deps.Store.ListResources(ctx, store.ListResourcesParams{OrgID: p.OrgID, After: after, RowLimit: in.rowLimit()})
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &listResourcesOutput{}
		out.Body.Items, out.Body.NextCursor = page(*in, "resource", rows,
			func(r store.Resource) string { return r.ID }, resourceView)
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-resource", Method: http.MethodGet, Path: "/v1/resources/{id}",
		Summary: "Get a resource", Description: "One resource, by id or name.",
		Tags: []string{tagResources}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *resourceRefInput) (*resourceOutput, error) {
		if err := lookupRef("resource", in.ID); err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		r, err := s.deps.Store.GetResource(ctx, store.GetResourceParams{OrgID: mustPrincipal(ctx).OrgID, Ref: nameRef(in.ID)})
		if err != nil {
			return nil, toProblem(ctx, s.log, notFoundIf(err, "resource", in.ID))
		}
		return &resourceOutput{Body: resourceView(r)}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "update-resource", Method: http.MethodPatch, Path: "/v1/resources/{id}",
		Summary: "Update a resource", Description: "Changes the fields that are present in the body.",
		Tags: []string{tagResources}, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *resourceUpdateInput) (*writeOutput[Resource], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "update-resource:"+in.ID, in.Body, http.StatusOK,
			func(ctx context.Context, p Principal) (Resource, error) {
				return s.updateResource(ctx, p, in.ID, &in.Body)
			})
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "delete-resource", Method: http.MethodDelete, Path: "/v1/resources/{id}",
		Summary: "Delete a resource", Description: "Deletes the resource and every rule that names it.",
		Tags: []string{tagResources}, DefaultStatus: http.StatusNoContent, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *resourceDeleteInput) (*deleteOutput, error) {
		return manageDelete(ctx, s, in.IdempotencyKey, "delete-resource:"+in.ID,
			func(ctx context.Context, p Principal) error { return s.deleteResource(ctx, p, in.ID) })
	})
}

func (s *Server) createResource(ctx context.Context, p Principal, b *resourceCreateRequest) (Resource, error) {
	name, err := normalizedName("body.name", b.Name)
	if err != nil {
		return Resource{}, err
	}
	now := s.now()
	var out Resource
	err = s.inTx(ctx, func(q *store.Queries) error {
		r, err := q.CreateResource(ctx, store.CreateResourceParams{ID: store.NewID("res"), OrgID: p.OrgID,
			Name: name, Description: b.Description, CreatedAt: now})
		if err != nil {
			return conflictIf(err, "a resource named %q already exists in this org", name)
		}
		out = resourceView(r)
		return s.recordChange(ctx, q, p, now, change{kind: kindResourceCreated, subject: r.ID,
			details: map[string]any{"name": r.Name, "description": r.Description}, policy: true})
	})
	return out, err
}

func (s *Server) updateResource(ctx context.Context, p Principal, ref string, b *resourceUpdateRequest) (Resource, error) {
	if err := lookupRef("resource", ref); err != nil {
		return Resource{}, err
	}
	newName, err := optionalName("body.name", b.Name)
	if err != nil {
		return Resource{}, err
	}
	now := s.now()
	var out Resource
	err = s.inTx(ctx, func(q *store.Queries) error {
		r, err := q.LockResource(ctx, store.LockResourceParams{OrgID: p.OrgID, Ref: nameRef(ref)})
		if err != nil {
			return notFoundIf(err, "resource", ref)
		}
		next := store.UpdateResourceParams{OrgID: p.OrgID, ID: r.ID, Name: r.Name, Description: r.Description, UpdatedAt: now}
		setString(&next.Name, newName)
		setString(&next.Description, b.Description)
		changed := fieldChanges{}
		changed.note("name", r.Name, next.Name)
		changed.note("description", r.Description, next.Description)
		if len(changed) == 0 {
			out = resourceView(r)
			return nil
		}
		r, err = q.UpdateResource(ctx, next)
		if err != nil {
			return conflictIf(err, "a resource named %q already exists in this org", next.Name)
		}
		out = resourceView(r)
		return s.recordChange(ctx, q, p, now, change{kind: kindResourceUpdated, subject: r.ID,
			details: map[string]any{"name": r.Name, "changed": changed}, policy: true})
	})
	return out, err
}

func (s *Server) deleteResource(ctx context.Context, p Principal, ref string) error {
	if err := lookupRef("resource", ref); err != nil {
		return err
	}
	now := s.now()
	return s.inTx(ctx, func(q *store.Queries) error {
		r, err := q.LockResource(ctx, store.LockResourceParams{OrgID: p.OrgID, Ref: nameRef(ref)})
		if err != nil {
			return notFoundIf(err, "resource", ref)
		}
		n, err := q.CountRulesReferencing(ctx, store.CountRulesReferencingParams{OrgID: p.OrgID, Ref: r.ID})
		if err != nil {
			return err
		}
		if _, err := q.DeleteResource(ctx, store.DeleteResourceParams{OrgID: p.OrgID, ID: r.ID}); err != nil {
			return err
		}
		return s.recordChange(ctx, q, p, now, change{kind: kindResourceDeleted, subject: r.ID,
			details: map[string]any{"name": r.Name, "rules_deleted": n}, policy: true})
	})
}
