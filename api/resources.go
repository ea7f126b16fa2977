package api

import (
	"context"
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

type listResourcesOutput struct {
	Body struct {
		Items      []Resource `json:"items" doc:"Resources, in a stable order."`
		NextCursor string     `json:"next_cursor,omitempty" doc:"Pass as cursor for the next page; absent on the last page."`
	}
}

func registerResources(api huma.API, s *Server) {
	registerNamed(api, s, namedObjects[store.Resource, Resource, resourceCreateRequest, resourceUpdateRequest, listResourcesOutput]{
		kind: "resource", plural: "resources", title: "Resource", tag: tagResources,
		createDoc: "Registers a named target that checks and rules may name.",
		listDoc:   "The org's resources, cursor-paginated.",
		updateDoc: "Changes the fields that are present in the body.",
		deleteDoc: "Deletes the resource and every rule that names it.",
		list: func(ctx context.Context, orgID, after string, rowLimit int32) ([]store.Resource, error) {
			return s.deps.Store.ListResources(ctx, store.ListResourcesParams{OrgID: orgID, After: after, RowLimit: rowLimit})
		},
		get: func(ctx context.Context, orgID, ref string) (store.Resource, error) {
			return s.deps.Store.GetResource(ctx, store.GetResourceParams{OrgID: orgID, Ref: nameRef(ref)})
		},
		id:   func(r store.Resource) string { return r.ID },
		view: resourceView,
		listOut: func(items []Resource, next string) *listResourcesOutput {
			out := &listResourcesOutput{}
			out.Body.Items, out.Body.NextCursor = items, next
			return out
		},
		create: s.createResource, update: s.updateResource, delete: s.deleteResource,
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
