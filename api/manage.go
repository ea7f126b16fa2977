package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"oakallow/api/runtime"
	"oakallow/store"
)

// The management API: CRUD for the org's catalog (tenants, categories,
// resources, tools, rules) and its settings. Management keys write; standard
// keys may read. Every change is one transaction holding the write, its
// audit event and, when the compiled policy depends on it, the change
// notification that makes every replica recompile the org.

// registerManagement registers the management (catalog) operations.
func registerManagement(api huma.API, s *Server) {
	registerTenants(api, s)
	registerCategories(api, s)
	registerResources(api, s)
	registerTools(api, s)
	registerRules(api, s)
	registerExplain(api, s)
	registerSettings(api, s)
}

// Tags of the management operations in the OpenAPI document.
const (
	tagTenants    = "Tenants"
	tagCategories = "Categories"
	tagResources  = "Resources"
	tagTools      = "Tools"
	tagRules      = "Rules"
	tagSettings   = "Settings"
)

// Error statuses documented on management operations.
var (
	manageReadErrors  = []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound, http.StatusUnprocessableEntity}
	manageWriteErrors = []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity}
)

// PageParams are the cursor-pagination query parameters of the management
// list operations.
type PageParams struct {
	Cursor string `query:"cursor" maxLength:"300" doc:"next_cursor of the previous page; omit for the first page."`
	Limit  int    `query:"limit" minimum:"1" maximum:"200" default:"50" doc:"Page size (1–200)."`
}

// after decodes the cursor of a list of kind into the id the page starts
// after. A cursor of another list is refused like a forged one.
func (pp PageParams) after(kind string) (string, error) {
	pos, err := decodeCursor(pp.Cursor)
	if err != nil || pos == "" {
		return "", err
	}
	id, ok := strings.CutPrefix(pos, kind+":")
	if !ok || id == "" || !storable(id) {
		return "", problem(http.StatusBadRequest, CodeBadRequest, "cursor is not one this list returned")
	}
	return id, nil
}

// rowLimit is the query limit: one more row than the page, to learn whether
// another page follows without a count.
func (pp PageParams) rowLimit() int32 { return int32(pp.Limit) + 1 }

// page cuts rows (fetched with rowLimit) to the page size, converts them,
// and returns the cursor of the next page ("" on the last page).
func page[R, V any](pp PageParams, kind string, rows []R, id func(R) string, view func(R) V) ([]V, string) {
	n := min(len(rows), pp.Limit)
	items := make([]V, 0, n)
	for _, r := range rows[:n] {
		items = append(items, view(r))
	}
	if len(rows) > pp.Limit {
		return items, encodeCursor(kind + ":" + id(rows[n-1]))
	}
	return items, ""
}

// writeOutput is the answer to a management write that returns the object:
// its status (201 or 200), and whether it is the replayed answer to an
// earlier request with the same Idempotency-Key.
type writeOutput[T any] struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
	Body     T
}

// deleteOutput is the (bodiless, 204) answer to a management delete.
type deleteOutput struct {
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
}

// manageWrite runs a management write once per Idempotency-Key (SPEC §3)
// and answers it with status. scope names the operation and its target; req
// is the request body, part of the request hash.
func manageWrite[T any](ctx context.Context, s *Server, key, scope string, req any, status int,
	fn func(ctx context.Context, p Principal) (T, error)) (*writeOutput[T], error) {
	ctx, pw := trackPolicyChanges(ctx)
	st, body, replayed, err := idempotent(ctx, s, key, scope, req, func(ctx context.Context) (int, T, error) {
		v, err := fn(ctx, mustPrincipal(ctx))
		return status, v, err
	})
	if err != nil {
		return nil, err
	}
	s.awaitPolicyChanges(ctx, pw)
	return &writeOutput[T]{Status: st, Replayed: replayedHeader(replayed), Body: body}, nil
}

// manageDelete is manageWrite for deletes, which answer 204.
func manageDelete(ctx context.Context, s *Server, key, scope string, fn func(ctx context.Context, p Principal) error) (*deleteOutput, error) {
	ctx, pw := trackPolicyChanges(ctx)
	_, _, replayed, err := idempotent(ctx, s, key, scope, struct{}{}, func(ctx context.Context) (int, struct{}, error) {
		return http.StatusNoContent, struct{}{}, fn(ctx, mustPrincipal(ctx))
	})
	if err != nil {
		return nil, err
	}
	s.awaitPolicyChanges(ctx, pw)
	return &deleteOutput{Replayed: replayedHeader(replayed)}, nil
}

// policyChanges records the orgs whose policy a management write changed,
// and the transaction that changed each (recordChange adds to it), so the
// write is answered only once this replica serves the new policy.
type policyChanges struct {
	mu      sync.Mutex
	changes []policyChange
}

type policyChange struct {
	org string
	xid uint64
}

type policyChangesKey struct{}

// trackPolicyChanges returns ctx carrying a fresh policyChanges.
func trackPolicyChanges(ctx context.Context) (context.Context, *policyChanges) {
	pw := &policyChanges{}
	return context.WithValue(ctx, policyChangesKey{}, pw), pw
}

func (pw *policyChanges) add(org string, xid uint64) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pc := policyChange{org, xid}
	if !slices.Contains(pw.changes, pc) {
		pw.changes = append(pw.changes, pc)
	}
}

// maxPolicyWait bounds how long a committed write waits for this replica
// to load the policy it changed (a load that fails drops the policy, which
// also ends the wait, so this only guards against a hung database).
const maxPolicyWait = 10 * time.Second

// awaitPolicyChanges returns once this replica serves the policy changes
// the write committed (read your writes; see PolicyCache.AwaitChange). The
// write has committed, so nothing here turns it into an error.
func (s *Server) awaitPolicyChanges(ctx context.Context, pw *policyChanges) {
	pw.mu.Lock()
	changes := pw.changes
	pw.mu.Unlock()
	if len(changes) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, maxPolicyWait)
	defer cancel()
	for _, pc := range changes {
		if err := s.policies.AwaitChange(ctx, pc.org, pc.xid); err != nil && errors.Is(err, context.DeadlineExceeded) {
			s.log.WarnContext(ctx, "write answered before this replica loaded the policy it changed",
				"request_id", requestIDFrom(ctx), "org", pc.org, "err", err)
		}
	}
}

// nullable is a request field that may be omitted (leave unchanged), sent
// as null (clear it) or sent with a value. Huma validates it with the schema
// of T, made nullable.
type nullable[T any] struct {
	Sent  bool
	Null  bool
	Value T
}

// UnmarshalJSON records that the field was sent, and whether as null.
func (n *nullable[T]) UnmarshalJSON(b []byte) error {
	n.Sent = true
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		n.Null = true
		var zero T
		n.Value = zero
		return nil
	}
	n.Null = false
	return json.Unmarshal(b, &n.Value)
}

// Schema is the schema of T that also accepts null.
func (n nullable[T]) Schema(r huma.Registry) *huma.Schema {
	s := r.Schema(reflect.TypeFor[T](), true, "")
	if s.Type == "" {
		return s // no type constraint: null is already accepted
	}
	c := *s
	c.Nullable = true
	if c.Enum != nil {
		c.Enum = append(append([]any(nil), c.Enum...), nil)
	}
	return &c
}

// ptr returns the value as a pointer, nil when omitted or null.
func (n nullable[T]) ptr() *T {
	if !n.Sent || n.Null {
		return nil
	}
	v := n.Value
	return &v
}

// permissionName is a permission on the wire: allowed, requires_approval or
// disabled.
type permissionName string

// Schema documents the three permissions.
func (permissionName) Schema(huma.Registry) *huma.Schema {
	return &huma.Schema{Type: huma.TypeString, Enum: []any{"allowed", "requires_approval", "disabled"}}
}

// permissionPtr converts a nullable permission to the store's form.
func permissionPtr(n nullable[permissionName]) *string {
	if p := n.ptr(); p != nil {
		s := string(*p)
		return &s
	}
	return nil
}

// clampTimeout clamps an approval timeout to 60 s … 7 d (SPEC §1: clamped,
// not refused); the stored value is what the answer reports.
func clampTimeout(sec int64) int32 { return runtime.ClampTimeout(sec) }

// fieldProblem is a 422 validation_failed naming the offending field, e.g.
// location "body.category".
func fieldProblem(location, message string, value any) *Problem {
	return problem(http.StatusUnprocessableEntity, CodeValidationFailed, message,
		&huma.ErrorDetail{Location: location, Message: message, Value: value})
}

// conflictIf turns a unique violation into a 409 with a useful message; any
// other error passes through unchanged.
func conflictIf(err error, format string, args ...any) error {
	if errors.Is(err, store.ErrConflict) {
		return problem(http.StatusConflict, CodeConflict, fmt.Sprintf(format, args...))
	}
	return err
}

// referencedIf turns a foreign-key violation (the object is still referred
// to) into a 409 with a useful message.
func referencedIf(err error, format string, args ...any) error {
	if errors.Is(err, store.ErrReferenced) {
		return problem(http.StatusConflict, CodeConflict, fmt.Sprintf(format, args...))
	}
	return err
}

// notFound is the 404 for an object the org does not have (another org's
// objects are equally invisible).
func notFound(what, ref string) *Problem {
	return problem(http.StatusNotFound, CodeNotFound, fmt.Sprintf("no %s %q in this org", what, ref))
}

// notFoundIf turns store.ErrNotFound into notFound.
func notFoundIf(err error, what, ref string) error {
	if errors.Is(err, store.ErrNotFound) {
		return notFound(what, ref)
	}
	return err
}

// change is one audited management change.
type change struct {
	kind    string // audit kind, e.g. "tool.created"
	subject string // id of the changed object
	tool    string // tool name, for activity filters
	tenant  string // tenant name, for activity filters
	details map[string]any
	// policy: the org's compiled policy depends on the change, so every
	// replica must recompile it.
	policy bool
}

// Audit event kinds of the management API.
const (
	kindTenantCreated   = "tenant.created"
	kindTenantUpdated   = "tenant.updated"
	kindTenantDeleted   = "tenant.deleted"
	kindCategoryCreated = "category.created"
	kindCategoryUpdated = "category.updated"
	kindCategoryDeleted = "category.deleted"
	kindResourceCreated = "resource.created"
	kindResourceUpdated = "resource.updated"
	kindResourceDeleted = "resource.deleted"
	kindToolCreated     = "tool.created"
	kindToolUpdated     = "tool.updated"
	kindToolActivated   = "tool.activated"
	kindToolDeleted     = "tool.deleted"
	kindRuleCreated     = "rule.created"
	kindRuleUpdated     = "rule.updated"
	kindRuleDeleted     = "rule.deleted"
	kindSettingsUpdated = "settings.updated"
)

// recordChange writes the change's audit event and, for policy changes, the
// notification, on q — the caller's transaction, so both commit with the
// write or not at all.
func (s *Server) recordChange(ctx context.Context, q *store.Queries, p Principal, now time.Time, c change) error {
	xid, err := runtime.RecordChange(ctx, q, p.caller(), now, runtime.Change{Kind: c.kind, Subject: c.subject,
		Tool: c.tool, Tenant: c.tenant, Details: c.details, Policy: c.policy})
	if err != nil {
		return err
	}
	if pw, ok := ctx.Value(policyChangesKey{}).(*policyChanges); ok && c.policy {
		pw.add(p.OrgID, xid)
	}
	return nil
}

// inTx runs fn in one transaction.
func (s *Server) inTx(ctx context.Context, fn func(q *store.Queries) error) error {
	return s.deps.Store.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error { return fn(q) })
}

// now is the server clock in UTC.
func (s *Server) now() time.Time { return s.deps.Now().UTC() }

// fieldChanges collects the fields a PATCH changed, old and new value, for
// the audit event. Unchanged fields are left out.
type fieldChanges map[string]any

type fieldChange struct {
	From any `json:"from"`
	To   any `json:"to"`
}

// note records field when from and to differ (compared as JSON, so a nil
// pointer equals null and pointers compare by value).
func (fc fieldChanges) note(field string, from, to any) {
	a, errA := json.Marshal(from)
	b, errB := json.Marshal(to)
	if errA == nil && errB == nil && bytes.Equal(a, b) {
		return
	}
	fc[field] = fieldChange{From: from, To: to}
}

// noteOpaque records that field changed without recording its content (large
// or sensitive values).
func (fc fieldChanges) noteOpaque(field string, changed bool) {
	if changed {
		fc[field] = "changed"
	}
}
