package api

import (
	"context"
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

type listCategoriesOutput struct {
	Body struct {
		Items      []Category `json:"items" doc:"Categories, in a stable order."`
		NextCursor string     `json:"next_cursor,omitempty" doc:"Pass as cursor for the next page; absent on the last page."`
	}
}

func registerCategories(api huma.API, s *Server) {
	registerNamed(api, s, namedObjects[store.Category, Category, categoryCreateRequest, categoryUpdateRequest, listCategoriesOutput]{
		kind: "category", plural: "categories", title: "Category", tag: tagCategories,
		createDoc: "Creates a category of tools with an optional default permission.",
		listDoc:   "The org's tool categories, cursor-paginated.",
		updateDoc: "Changes the fields that are present in the body; null clears the default permission.",
		deleteDoc: "Deletes the category; its tools keep existing without a category.",
		list: func(ctx context.Context, orgID, after string, rowLimit int32) ([]store.Category, error) {
			return s.deps.Store.ListCategories(ctx, store.ListCategoriesParams{OrgID: orgID, After: after, RowLimit: rowLimit})
		},
		get: func(ctx context.Context, orgID, ref string) (store.Category, error) {
			return s.deps.Store.GetCategory(ctx, store.GetCategoryParams{OrgID: orgID, Ref: ref})
		},
		id:   func(c store.Category) string { return c.ID },
		view: categoryView,
		listOut: func(items []Category, next string) *listCategoriesOutput {
			out := &listCategoriesOutput{}
			out.Body.Items, out.Body.NextCursor = items, next
			return out
		},
		create: s.createCategory, update: s.updateCategory, delete: s.deleteCategory,
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
