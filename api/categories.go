package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/store"
)

// Category groups tools; its default permission answers checks of its tools
// at level 10 when nothing more specific does.
type Category struct {
	ID                string    `json:"id" doc:"Category id (cat_…)."`
	Name              string    `json:"name" doc:"Category name, unique in the org."`
	DefaultPermission *string   `json:"default_permission" enum:"allowed,requires_approval,disabled" doc:"Answers checks of the category's tools at level 10; null falls through to the next level."`
	CreatedAt         time.Time `json:"created_at" doc:"When the category was created."`
	UpdatedAt         time.Time `json:"updated_at" doc:"When the category last changed."`
}

func categoryView(c store.Category) Category {
	return Category{ID: c.ID, Name: c.Name, DefaultPermission: c.DefaultPermission, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

type categoryCreateRequest struct {
	_                 struct{}                 `additionalProperties:"false"`
	Name              string                   `json:"name" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters" doc:"Category name, unique in the org." example:"email"`
	DefaultPermission nullable[permissionName] `json:"default_permission,omitempty" doc:"Answers checks of the category's tools at level 10; null or absent falls through."`
}

type categoryUpdateRequest struct {
	_                 struct{}                 `additionalProperties:"false"`
	Name              *string                  `json:"name,omitempty" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters" doc:"New category name. Tools follow the category by id."`
	DefaultPermission nullable[permissionName] `json:"default_permission,omitempty" doc:"New default permission; null clears it."`
}

type categoryRefInput struct {
	ID string `path:"id" maxLength:"200" doc:"Category id or name."`
}

type categoryCreateInput struct {
	IdempotencyHeader
	Body categoryCreateRequest
}

type categoryUpdateInput struct {
	IdempotencyHeader
	ID   string `path:"id" maxLength:"200" doc:"Category id or name."`
	Body categoryUpdateRequest
}

type categoryDeleteInput struct {
	IdempotencyHeader
	ID string `path:"id" maxLength:"200" doc:"Category id or name."`
}

type categoryOutput struct {
	Body Category
}

type listCategoriesOutput struct {
	Body struct {
		Items      []Category `json:"items" doc:"Categories, in a stable order."`
		NextCursor string     `json:"next_cursor,omitempty" doc:"Pass as cursor for the next page; absent on the last page."`
	}
}

func registerCategories(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "create-category", Method: http.MethodPost, Path: "/v1/categories",
		Summary: "Create a category", Description: "Creates a category of tools with an optional default permission.",
		Tags: []string{tagCategories}, DefaultStatus: http.StatusCreated, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *categoryCreateInput) (*writeOutput[Category], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "create-category", in.Body, http.StatusCreated,
			func(ctx context.Context, p Principal) (Category, error) { return s.createCategory(ctx, p, &in.Body) })
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-categories", Method: http.MethodGet, Path: "/v1/categories",
		Summary: "List categories", Description: "The org's tool categories, cursor-paginated.",
		Tags: []string{tagCategories}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *PageParams) (*listCategoriesOutput, error) {
		p := mustPrincipal(ctx)
		after, err := in.after("category")
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		rows, err := s.deps.Store.ListCategories(ctx, store.ListCategoriesParams{OrgID: p.OrgID, After: after, RowLimit: in.rowLimit()})
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &listCategoriesOutput{}
		out.Body.Items, out.Body.NextCursor = page(*in, "category", rows,
			func(c store.Category) string { return c.ID }, categoryView)
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-category", Method: http.MethodGet, Path: "/v1/categories/{id}",
		Summary: "Get a category", Description: "One category, by id or name.",
		Tags: []string{tagCategories}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *categoryRefInput) (*categoryOutput, error) {
		if err := lookupRef("category", in.ID); err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		c, err := s.deps.Store.GetCategory(ctx, store.GetCategoryParams{OrgID: mustPrincipal(ctx).OrgID, Ref: in.ID})
		if err != nil {
			return nil, toProblem(ctx, s.log, notFoundIf(err, "category", in.ID))
		}
		return &categoryOutput{Body: categoryView(c)}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "update-category", Method: http.MethodPatch, Path: "/v1/categories/{id}",
		Summary: "Update a category", Description: "Changes the fields that are present in the body; null clears the default permission.",
		Tags: []string{tagCategories}, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *categoryUpdateInput) (*writeOutput[Category], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "update-category:"+in.ID, in.Body, http.StatusOK,
			func(ctx context.Context, p Principal) (Category, error) {
				return s.updateCategory(ctx, p, in.ID, &in.Body)
			})
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "delete-category", Method: http.MethodDelete, Path: "/v1/categories/{id}",
		Summary:     "Delete a category",
		Description: "Deletes the category; its tools keep existing without a category.",
		Tags:        []string{tagCategories}, DefaultStatus: http.StatusNoContent, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *categoryDeleteInput) (*deleteOutput, error) {
		return manageDelete(ctx, s, in.IdempotencyKey, "delete-category:"+in.ID,
			func(ctx context.Context, p Principal) error { return s.deleteCategory(ctx, p, in.ID) })
	})
}

func (s *Server) createCategory(ctx context.Context, p Principal, b *categoryCreateRequest) (Category, error) {
	now := s.now()
	var out Category
	err := s.inTx(ctx, func(q *store.Queries) error {
		c, err := q.CreateCategory(ctx, store.CreateCategoryParams{ID: store.NewID("cat"), OrgID: p.OrgID,
			Name: b.Name, DefaultPermission: permissionPtr(b.DefaultPermission), CreatedAt: now})
		if err != nil {
			return conflictIf(err, "a category named %q already exists in this org", b.Name)
		}
		out = categoryView(c)
		return s.recordChange(ctx, q, p, now, change{kind: kindCategoryCreated, subject: c.ID,
			details: map[string]any{"name": c.Name, "default_permission": c.DefaultPermission}, policy: true})
	})
	return out, err
}

func (s *Server) updateCategory(ctx context.Context, p Principal, ref string, b *categoryUpdateRequest) (Category, error) {
	if err := lookupRef("category", ref); err != nil {
		return Category{}, err
	}
	now := s.now()
	var out Category
	err := s.inTx(ctx, func(q *store.Queries) error {
		c, err := q.LockCategory(ctx, store.LockCategoryParams{OrgID: p.OrgID, Ref: ref})
		if err != nil {
			return notFoundIf(err, "category", ref)
		}
		next := store.UpdateCategoryParams{OrgID: p.OrgID, ID: c.ID, Name: c.Name, DefaultPermission: c.DefaultPermission, UpdatedAt: now}
		setString(&next.Name, b.Name)
		if b.DefaultPermission.Sent {
			next.DefaultPermission = permissionPtr(b.DefaultPermission)
		}
		changed := fieldChanges{}
		changed.note("name", c.Name, next.Name)
		changed.note("default_permission", c.DefaultPermission, next.DefaultPermission)
		if len(changed) == 0 {
			out = categoryView(c)
			return nil
		}
		c, err = q.UpdateCategory(ctx, next)
		if err != nil {
			return conflictIf(err, "a category named %q already exists in this org", next.Name)
		}
		out = categoryView(c)
		return s.recordChange(ctx, q, p, now, change{kind: kindCategoryUpdated, subject: c.ID,
			details: map[string]any{"name": c.Name, "changed": changed}, policy: true})
	})
	return out, err
}

func (s *Server) deleteCategory(ctx context.Context, p Principal, ref string) error {
	if err := lookupRef("category", ref); err != nil {
		return err
	}
	now := s.now()
	return s.inTx(ctx, func(q *store.Queries) error {
		c, err := q.LockCategory(ctx, store.LockCategoryParams{OrgID: p.OrgID, Ref: ref})
		if err != nil {
			return notFoundIf(err, "category", ref)
		}
		if _, err := q.DeleteCategory(ctx, store.DeleteCategoryParams{OrgID: p.OrgID, ID: c.ID}); err != nil {
			return err
		}
		return s.recordChange(ctx, q, p, now, change{kind: kindCategoryDeleted, subject: c.ID,
			details: map[string]any{"name": c.Name}, policy: true})
	})
}
