package api

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
)

// Tenants, resources and categories are named objects of an org, each managed by the same
// five operations: create, list, get (by id or name), update and delete. registerNamed
// registers them for one kind from a namedObjects description; each kind keeps its own
// request and answer types (their tags are its OpenAPI documentation) and its own writes.

// namedObjects describes one kind of named org object for registerNamed. R is its store
// row, V its answer, C and U its create and update request bodies, L its list answer.
type namedObjects[R, V, C, U, L any] struct {
	kind   string // "tenant": operation ids, summaries, cursors and not-found messages
	plural string // "tenants": the path /v1/<plural> and the list's operation id
	title  string // "Tenant": documents the {id} parameter
	tag    string
	// The operations' descriptions (get's is the same for every kind).
	createDoc, listDoc, updateDoc, deleteDoc string

	list    func(ctx context.Context, orgID, after string, rowLimit int32) ([]R, error)
	get     func(ctx context.Context, orgID, ref string) (R, error)
	id      func(R) string
	view    func(R) V
	listOut func(items []V, nextCursor string) *L
	create  func(ctx context.Context, p Principal, body *C) (V, error)
	update  func(ctx context.Context, p Principal, ref string, body *U) (V, error)
	delete  func(ctx context.Context, p Principal, ref string) error
}

// namedCreateInput is the input of create-<kind>.
type namedCreateInput[C any] struct {
	IdempotencyHeader
	Body C
}

// The {id} parameter's doc is set per kind by describeID: a tag cannot vary with a type
// parameter.

type namedRefInput struct {
	ID string `path:"id" maxLength:"200" doc:"Id or name."`
}

type namedUpdateInput[U any] struct {
	IdempotencyHeader
	ID   string `path:"id" maxLength:"200" doc:"Id or name."`
	Body U
}

type namedDeleteInput struct {
	IdempotencyHeader
	ID string `path:"id" maxLength:"200" doc:"Id or name."`
}

// namedOutput is the answer of get-<kind>.
type namedOutput[V any] struct {
	Body V
}

func registerNamed[R, V, C, U, L any](api huma.API, s *Server, n namedObjects[R, V, C, U, L]) {
	path, item := "/v1/"+n.plural, "/v1/"+n.plural+"/{id}"
	idDoc := n.title + " id or name."

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "create-" + n.kind, Method: http.MethodPost, Path: path,
		Summary: "Create a " + n.kind, Description: n.createDoc,
		Tags: []string{n.tag}, DefaultStatus: http.StatusCreated, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *namedCreateInput[C]) (*writeOutput[V], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "create-"+n.kind, in.Body, http.StatusCreated,
			func(ctx context.Context, p Principal) (V, error) { return n.create(ctx, p, &in.Body) })
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-" + n.plural, Method: http.MethodGet, Path: path,
		Summary: "List " + n.plural, Description: n.listDoc,
		Tags: []string{n.tag}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *PageParams) (*L, error) {
		after, err := in.after(n.kind)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		rows, err := n.list(ctx, mustPrincipal(ctx).OrgID, after, in.rowLimit())
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return n.listOut(page(*in, n.kind, rows, n.id, n.view)), nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-" + n.kind, Method: http.MethodGet, Path: item,
		Summary: "Get a " + n.kind, Description: "One " + n.kind + ", by id or name.",
		Tags: []string{n.tag}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *namedRefInput) (*namedOutput[V], error) {
		if err := lookupRef(n.kind, in.ID); err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		r, err := n.get(ctx, mustPrincipal(ctx).OrgID, in.ID)
		if err != nil {
			return nil, toProblem(ctx, s.log, notFoundIf(err, n.kind, in.ID))
		}
		return &namedOutput[V]{Body: n.view(r)}, nil
	})
	describeID(api, http.MethodGet, item, idDoc)

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "update-" + n.kind, Method: http.MethodPatch, Path: item,
		Summary: "Update a " + n.kind, Description: n.updateDoc,
		Tags: []string{n.tag}, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *namedUpdateInput[U]) (*writeOutput[V], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "update-"+n.kind+":"+in.ID, in.Body, http.StatusOK,
			func(ctx context.Context, p Principal) (V, error) { return n.update(ctx, p, in.ID, &in.Body) })
	})
	describeID(api, http.MethodPatch, item, idDoc)

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "delete-" + n.kind, Method: http.MethodDelete, Path: item,
		Summary: "Delete a " + n.kind, Description: n.deleteDoc,
		Tags: []string{n.tag}, DefaultStatus: http.StatusNoContent, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *namedDeleteInput) (*deleteOutput, error) {
		return manageDelete(ctx, s, in.IdempotencyKey, "delete-"+n.kind+":"+in.ID,
			func(ctx context.Context, p Principal) error { return n.delete(ctx, p, in.ID) })
	})
	describeID(api, http.MethodDelete, item, idDoc)
}

// describeID documents the {id} path parameter of the operation registered at method and
// path.
func describeID(api huma.API, method, path, doc string) {
	item := api.OpenAPI().Paths[path]
	op := map[string]*huma.Operation{http.MethodGet: item.Get, http.MethodPatch: item.Patch, http.MethodDelete: item.Delete}[method]
	for _, p := range op.Parameters {
		if p.Name == "id" && p.In == "path" {
			p.Description = doc
			if p.Schema != nil {
				p.Schema.Description = doc
			}
		}
	}
}
