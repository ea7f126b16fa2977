package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/store"
)

// Tool is a tool in the org's catalog: what agents may ask to run.
type Tool struct {
	ID                      string          `json:"id" doc:"Tool id (tool_…)."`
	Name                    string          `json:"name" doc:"Tool name, unique in the org; checks name tools by it."`
	Description             string          `json:"description" doc:"Free-form description."`
	Category                *string         `json:"category" doc:"Name of the tool's category; null for none."`
	CategoryID              *string         `json:"category_id" doc:"Id of the tool's category; null for none."`
	RiskLevel               string          `json:"risk_level" enum:"low,medium,high,critical" doc:"How much harm a wrong call can do."`
	ParameterSchema         json.RawMessage `json:"parameter_schema" doc:"JSON Schema (draft 2020-12 unless it says otherwise) that runtime parameters must satisfy; null: parameters are not validated."`
	ReadOnly                bool            `json:"read_only" doc:"MCP annotation readOnlyHint: the tool does not modify its environment."`
	Destructive             bool            `json:"destructive" doc:"MCP annotation destructiveHint: the tool may perform destructive updates."`
	Idempotent              bool            `json:"idempotent" doc:"MCP annotation idempotentHint: repeating a call with the same arguments has no further effect."`
	OpenWorld               bool            `json:"open_world" doc:"MCP annotation openWorldHint: the tool interacts with external entities."`
	AnnotationsAcknowledged bool            `json:"annotations_acknowledged" doc:"A person or the integrating developer reviewed the four annotations."`
	NeedsAnnotations        bool            `json:"needs_annotations" doc:"True while the annotations are not acknowledged (typically a draft auto-registered over MCP)."`
	DefaultPermission       *string         `json:"default_permission" enum:"allowed,requires_approval,disabled" doc:"Answers checks of this tool at level 9; null falls through."`
	Approved                bool            `json:"approved" doc:"Pre-approved: answers allowed at level 11 when nothing more specific decided."`
	Enabled                 bool            `json:"enabled" doc:"False: every check of the tool answers disabled."`
	Status                  string          `json:"status" enum:"active,draft" doc:"draft: discovered automatically and not yet triaged; never allowed through levels 9–11."`
	RequiresSecondApproval  bool            `json:"requires_second_approval" doc:"Approvals of this tool need a second decision by the Approval 2 group."`
	ApprovalTimeoutSeconds  *int32          `json:"approval_timeout_seconds" doc:"Per-tool approval timeout in seconds; null uses the org's setting."`
	CreatedAt               time.Time       `json:"created_at" doc:"When the tool was registered."`
	UpdatedAt               time.Time       `json:"updated_at" doc:"When the tool last changed."`
}

func toolView(t store.Tool, category *string) Tool {
	schema := t.ParameterSchema
	if len(schema) == 0 || bytes.Equal(schema, []byte("null")) {
		schema = nil
	}
	return Tool{
		ID: t.ID, Name: t.Name, Description: t.Description, Category: category, CategoryID: t.CategoryID,
		RiskLevel: t.RiskLevel, ParameterSchema: schema, ReadOnly: t.ReadOnly, Destructive: t.Destructive,
		Idempotent: t.Idempotent, OpenWorld: t.OpenWorld, AnnotationsAcknowledged: t.AnnotationsAcknowledged,
		NeedsAnnotations: !t.AnnotationsAcknowledged, DefaultPermission: t.DefaultPermission,
		Approved: t.Approved, Enabled: t.Enabled, Status: t.Status,
		RequiresSecondApproval: t.RequiresSecondApproval, ApprovalTimeoutSeconds: t.ApprovalTimeoutSeconds,
		CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
	}
}

// toolAudit is what a tool's creation records: every setting, and whether it
// has a parameter schema (not the schema itself, which may be large).
func toolAudit(v Tool) map[string]any {
	return map[string]any{
		"name": v.Name, "category": v.Category, "risk_level": v.RiskLevel,
		"parameter_schema": v.ParameterSchema != nil, "read_only": v.ReadOnly, "destructive": v.Destructive,
		"idempotent": v.Idempotent, "open_world": v.OpenWorld, "annotations_acknowledged": v.AnnotationsAcknowledged,
		"default_permission": v.DefaultPermission, "approved": v.Approved, "enabled": v.Enabled, "status": v.Status,
		"requires_second_approval": v.RequiresSecondApproval, "approval_timeout_seconds": v.ApprovalTimeoutSeconds,
	}
}

const msgAnnotationsRequired = "registration refused: review the tool's MCP annotations (read_only, destructive, idempotent, open_world) and send annotations_acknowledged: true"

type toolRefInput struct {
	ID string `path:"id" maxLength:"200" doc:"Tool id or name."`
}

type toolWriteInput struct {
	IdempotencyHeader
	ID string `path:"id" maxLength:"200" doc:"Tool id or name."`
}

type toolOutput struct {
	Body Tool
}

type toolCreateInput struct {
	IdempotencyHeader
	Body toolCreateRequest
}

type toolUpdateInput struct {
	IdempotencyHeader
	ID   string `path:"id" maxLength:"200" doc:"Tool id or name."`
	Body toolUpdateRequest
}

type toolCreateRequest struct {
	_                       struct{}                 `additionalProperties:"false"`
	Name                    string                   `json:"name" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters" doc:"Tool name, unique in the org." example:"send_email"`
	Description             string                   `json:"description,omitempty" maxLength:"2000" doc:"Free-form description."`
	Category                *string                  `json:"category,omitempty" minLength:"1" maxLength:"200" doc:"Category name or id; it must exist in the org."`
	RiskLevel               string                   `json:"risk_level,omitempty" enum:"low,medium,high,critical" default:"medium" doc:"How much harm a wrong call can do."`
	ParameterSchema         json.RawMessage          `json:"parameter_schema,omitempty" doc:"JSON Schema for the tool's parameters (draft 2020-12 unless $schema says otherwise, at most 32 KiB, 64 levels of nested objects and arrays, 1,000 objects and arrays, and 10,000 subschemas with every $ref followed; no external, recursive or dynamic $ref). Runtime parameters are validated against it."`
	ReadOnly                bool                     `json:"read_only,omitempty" default:"false" doc:"MCP annotation readOnlyHint."`
	Destructive             *bool                    `json:"destructive,omitempty" default:"true" doc:"MCP annotation destructiveHint (MCP default true)."`
	Idempotent              bool                     `json:"idempotent,omitempty" default:"false" doc:"MCP annotation idempotentHint."`
	OpenWorld               *bool                    `json:"open_world,omitempty" default:"true" doc:"MCP annotation openWorldHint (MCP default true)."`
	AnnotationsAcknowledged bool                     `json:"annotations_acknowledged,omitempty" doc:"Must be true: the caller reviewed the four annotations. Registration is refused otherwise."`
	DefaultPermission       nullable[permissionName] `json:"default_permission,omitempty" doc:"Answers checks of this tool at level 9; null or absent falls through."`
	Approved                bool                     `json:"approved,omitempty" default:"false" doc:"Pre-approved: answers allowed at level 11."`
	Enabled                 *bool                    `json:"enabled,omitempty" default:"true" doc:"False: every check of the tool answers disabled."`
	Status                  string                   `json:"status,omitempty" enum:"active,draft" default:"active" doc:"active, or draft to register it untriaged."`
	RequiresSecondApproval  bool                     `json:"requires_second_approval,omitempty" default:"false" doc:"Approvals need a second decision by the Approval 2 group."`
	ApprovalTimeoutSeconds  *int64                   `json:"approval_timeout_seconds,omitempty" minimum:"1" maximum:"9007199254740991" doc:"Per-tool approval timeout in seconds, clamped to 60…604800; absent uses the org's setting."`
}

type toolUpdateRequest struct {
	_                       struct{}                  `additionalProperties:"false"`
	Name                    *string                   `json:"name,omitempty" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters" doc:"New tool name. Rules follow the tool by id."`
	Description             *string                   `json:"description,omitempty" maxLength:"2000" doc:"New description."`
	Category                nullable[string]          `json:"category,omitempty" minLength:"1" maxLength:"200" doc:"Category name or id; null removes the category."`
	RiskLevel               *string                   `json:"risk_level,omitempty" enum:"low,medium,high,critical" doc:"New risk level."`
	ParameterSchema         nullable[json.RawMessage] `json:"parameter_schema,omitempty" doc:"New parameter JSON Schema (same limits as on registration); null removes it."`
	ReadOnly                *bool                     `json:"read_only,omitempty" doc:"MCP annotation readOnlyHint."`
	Destructive             *bool                     `json:"destructive,omitempty" doc:"MCP annotation destructiveHint."`
	Idempotent              *bool                     `json:"idempotent,omitempty" doc:"MCP annotation idempotentHint."`
	OpenWorld               *bool                     `json:"open_world,omitempty" doc:"MCP annotation openWorldHint."`
	AnnotationsAcknowledged *bool                     `json:"annotations_acknowledged,omitempty" doc:"Acknowledge the annotations. An active tool's acknowledgement cannot be withdrawn (set status draft in the same request)."`
	DefaultPermission       nullable[permissionName]  `json:"default_permission,omitempty" doc:"New level-9 permission; null clears it."`
	Approved                *bool                     `json:"approved,omitempty" doc:"Pre-approved flag."`
	Enabled                 *bool                     `json:"enabled,omitempty" doc:"Enabled flag."`
	Status                  *string                   `json:"status,omitempty" enum:"active,draft" doc:"active needs acknowledged annotations."`
	RequiresSecondApproval  *bool                     `json:"requires_second_approval,omitempty" doc:"Second-approval flag."`
	ApprovalTimeoutSeconds  nullable[int64]           `json:"approval_timeout_seconds,omitempty" minimum:"1" maximum:"9007199254740991" doc:"Per-tool approval timeout in seconds, clamped to 60…604800; null uses the org's setting."`
}

type listToolsInput struct {
	PageParams
	Status string `query:"status" enum:"draft,active" doc:"Only tools with this status, e.g. draft to triage auto-registered tools."`
}

type listToolsOutput struct {
	Body struct {
		Items      []Tool `json:"items" doc:"Tools, in a stable order."`
		NextCursor string `json:"next_cursor,omitempty" doc:"Pass as cursor for the next page (with the same status filter); absent on the last page."`
	}
}

func registerTools(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "create-tool", Method: http.MethodPost, Path: "/v1/tools",
		Summary: "Register a tool",
		Description: "Adds a tool to the org's catalog. Refused (422) unless annotations_acknowledged is true; " +
			"a parameter_schema must compile as a JSON Schema.",
		Tags: []string{tagTools}, DefaultStatus: http.StatusCreated, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *toolCreateInput) (*writeOutput[Tool], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "create-tool", in.Body, http.StatusCreated,
			func(ctx context.Context, p Principal) (Tool, error) { return s.createTool(ctx, p, &in.Body) })
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-tools", Method: http.MethodGet, Path: "/v1/tools",
		Summary: "List tools", Description: "The org's tools, cursor-paginated; filter by status=draft to triage auto-registered tools.",
		Tags: []string{tagTools}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *listToolsInput) (*listToolsOutput, error) {
		p := mustPrincipal(ctx)
		after, err := in.after("tool")
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		rows, err := s.deps.Store.ListToolViews(ctx, store.ListToolViewsParams{OrgID: p.OrgID, After: after,
			Status: in.Status, RowLimit: in.rowLimit()})
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &listToolsOutput{}
		out.Body.Items, out.Body.NextCursor = page(in.PageParams, "tool", rows,
			func(r store.ListToolViewsRow) string { return r.Tool.ID },
			func(r store.ListToolViewsRow) Tool { return toolView(r.Tool, r.CategoryName) })
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-tool", Method: http.MethodGet, Path: "/v1/tools/{id}",
		Summary: "Get a tool", Description: "One tool, by id or name.",
		Tags: []string{tagTools}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *toolRefInput) (*toolOutput, error) {
		if err := lookupRef("tool", in.ID); err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		r, err := s.deps.Store.GetToolView(ctx, store.GetToolViewParams{OrgID: mustPrincipal(ctx).OrgID, Ref: in.ID})
		if err != nil {
			return nil, toProblem(ctx, s.log, notFoundIf(err, "tool", in.ID))
		}
		return &toolOutput{Body: toolView(r.Tool, r.CategoryName)}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "update-tool", Method: http.MethodPatch, Path: "/v1/tools/{id}",
		Summary: "Update a tool",
		Description: "Changes the fields that are present in the body; null clears a nullable field. " +
			"An active tool must keep acknowledged annotations.",
		Tags: []string{tagTools}, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *toolUpdateInput) (*writeOutput[Tool], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "update-tool:"+in.ID, in.Body, http.StatusOK,
			func(ctx context.Context, p Principal) (Tool, error) { return s.updateTool(ctx, p, in.ID, &in.Body) })
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "activate-tool", Method: http.MethodPost, Path: "/v1/tools/{id}/activate",
		Summary: "Activate a draft tool",
		Description: "Triage: makes a draft (typically auto-registered over MCP) an active tool. " +
			"Its annotations must be acknowledged first (PATCH annotations_acknowledged: true). Activating an active tool changes nothing.",
		Tags: []string{tagTools}, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *toolWriteInput) (*writeOutput[Tool], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "activate-tool:"+in.ID, struct{}{}, http.StatusOK,
			func(ctx context.Context, p Principal) (Tool, error) { return s.activateTool(ctx, p, in.ID) })
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "delete-tool", Method: http.MethodDelete, Path: "/v1/tools/{id}",
		Summary: "Delete a tool",
		Description: "Removes the tool and every rule that names it. A tool with approval requests cannot be deleted (409); " +
			"disable it instead.",
		Tags: []string{tagTools}, DefaultStatus: http.StatusNoContent, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *toolWriteInput) (*deleteOutput, error) {
		return manageDelete(ctx, s, in.IdempotencyKey, "delete-tool:"+in.ID,
			func(ctx context.Context, p Principal) error { return s.deleteTool(ctx, p, in.ID) })
	})
}

func (s *Server) createTool(ctx context.Context, p Principal, b *toolCreateRequest) (Tool, error) {
	if !b.AnnotationsAcknowledged {
		return Tool{}, fieldProblem("body.annotations_acknowledged", msgAnnotationsRequired, b.AnnotationsAcknowledged)
	}
	schema, err := checkToolSchema(b.ParameterSchema)
	if err != nil {
		return Tool{}, err
	}
	now := s.now()
	params := store.CreateToolParams{
		ID: store.NewID("tool"), OrgID: p.OrgID, Name: b.Name, Description: b.Description,
		RiskLevel: b.RiskLevel, ParameterSchema: schema, ReadOnly: b.ReadOnly, Destructive: boolOr(b.Destructive, true),
		Idempotent: b.Idempotent, OpenWorld: boolOr(b.OpenWorld, true), AnnotationsAcknowledged: true,
		DefaultPermission: permissionPtr(b.DefaultPermission), Approved: b.Approved, Enabled: boolOr(b.Enabled, true),
		Status: b.Status, RequiresSecondApproval: b.RequiresSecondApproval, CreatedAt: now,
	}
	if params.RiskLevel == "" {
		params.RiskLevel = "medium"
	}
	if params.Status == "" {
		params.Status = "active"
	}
	if b.ApprovalTimeoutSeconds != nil {
		t := clampTimeout(*b.ApprovalTimeoutSeconds)
		params.ApprovalTimeoutSeconds = &t
	}
	var out Tool
	err = s.inTx(ctx, func(q *store.Queries) error {
		var catName *string
		if b.Category != nil {
			c, err := resolveCategory(ctx, q, p.OrgID, *b.Category, "body.category")
			if err != nil {
				return err
			}
			params.CategoryID, catName = &c.ID, &c.Name
		}
		t, err := q.CreateTool(ctx, params)
		if err != nil {
			return conflictIf(err, "a tool named %q already exists in this org", b.Name)
		}
		out = toolView(t, catName)
		return s.recordChange(ctx, q, p, now, change{kind: kindToolCreated, subject: t.ID, tool: t.Name,
			details: toolAudit(out), policy: true})
	})
	return out, err
}

// updateTool applies a PATCH.
func (s *Server) updateTool(ctx context.Context, p Principal, ref string, b *toolUpdateRequest) (Tool, error) {
	if err := lookupRef("tool", ref); err != nil {
		return Tool{}, err
	}
	var schema json.RawMessage
	if b.ParameterSchema.Sent && !b.ParameterSchema.Null {
		var err error
		if schema, err = checkToolSchema(b.ParameterSchema.Value); err != nil {
			return Tool{}, err
		}
	}
	now := s.now()
	var out Tool
	err := s.inTx(ctx, func(q *store.Queries) error {
		t, err := q.LockTool(ctx, store.LockToolParams{OrgID: p.OrgID, Ref: ref})
		if err != nil {
			return notFoundIf(err, "tool", ref)
		}
		old, err := q.GetToolView(ctx, store.GetToolViewParams{OrgID: p.OrgID, Ref: t.ID})
		if err != nil {
			return err
		}
		next := toolUpdateParams(t, now)
		catName := old.CategoryName
		setString(&next.Name, b.Name)
		setString(&next.Description, b.Description)
		setString(&next.RiskLevel, b.RiskLevel)
		setString(&next.Status, b.Status)
		setBool(&next.ReadOnly, b.ReadOnly)
		setBool(&next.Destructive, b.Destructive)
		setBool(&next.Idempotent, b.Idempotent)
		setBool(&next.OpenWorld, b.OpenWorld)
		setBool(&next.AnnotationsAcknowledged, b.AnnotationsAcknowledged)
		setBool(&next.Approved, b.Approved)
		setBool(&next.Enabled, b.Enabled)
		setBool(&next.RequiresSecondApproval, b.RequiresSecondApproval)
		if b.Category.Sent {
			next.CategoryID, catName = nil, nil
			if !b.Category.Null {
				c, err := resolveCategory(ctx, q, p.OrgID, b.Category.Value, "body.category")
				if err != nil {
					return err
				}
				next.CategoryID, catName = &c.ID, &c.Name
			}
		}
		if b.ParameterSchema.Sent {
			next.ParameterSchema = schema
		}
		if b.DefaultPermission.Sent {
			next.DefaultPermission = permissionPtr(b.DefaultPermission)
		}
		if b.ApprovalTimeoutSeconds.Sent {
			next.ApprovalTimeoutSeconds = nil
			if v := b.ApprovalTimeoutSeconds.ptr(); v != nil {
				c := clampTimeout(*v)
				next.ApprovalTimeoutSeconds = &c
			}
		}
		if next.Status == "active" && !next.AnnotationsAcknowledged {
			loc := "body.annotations_acknowledged"
			if b.Status != nil {
				loc = "body.status"
			}
			return fieldProblem(loc, "an active tool must have acknowledged annotations: acknowledge them (annotations_acknowledged: true) or set status draft", nil)
		}

		changed := fieldChanges{}
		changed.note("name", t.Name, next.Name)
		changed.note("description", t.Description, next.Description)
		changed.note("category", old.CategoryName, catName)
		changed.note("risk_level", t.RiskLevel, next.RiskLevel)
		changed.noteOpaque("parameter_schema", !jsonEqual(t.ParameterSchema, next.ParameterSchema))
		changed.note("read_only", t.ReadOnly, next.ReadOnly)
		changed.note("destructive", t.Destructive, next.Destructive)
		changed.note("idempotent", t.Idempotent, next.Idempotent)
		changed.note("open_world", t.OpenWorld, next.OpenWorld)
		changed.note("annotations_acknowledged", t.AnnotationsAcknowledged, next.AnnotationsAcknowledged)
		changed.note("default_permission", t.DefaultPermission, next.DefaultPermission)
		changed.note("approved", t.Approved, next.Approved)
		changed.note("enabled", t.Enabled, next.Enabled)
		changed.note("status", t.Status, next.Status)
		changed.note("requires_second_approval", t.RequiresSecondApproval, next.RequiresSecondApproval)
		changed.note("approval_timeout_seconds", t.ApprovalTimeoutSeconds, next.ApprovalTimeoutSeconds)
		if len(changed) == 0 {
			out = toolView(t, old.CategoryName)
			return nil
		}
		t, err = q.UpdateTool(ctx, next)
		if err != nil {
			return conflictIf(err, "a tool named %q already exists in this org", next.Name)
		}
		out = toolView(t, catName)
		return s.recordChange(ctx, q, p, now, change{kind: kindToolUpdated, subject: t.ID, tool: t.Name,
			details: map[string]any{"name": t.Name, "changed": changed}, policy: true})
	})
	return out, err
}

// activateTool triages a draft: it becomes active once its annotations are
// acknowledged. An active tool is answered as it is.
func (s *Server) activateTool(ctx context.Context, p Principal, ref string) (Tool, error) {
	if err := lookupRef("tool", ref); err != nil {
		return Tool{}, err
	}
	now := s.now()
	var out Tool
	err := s.inTx(ctx, func(q *store.Queries) error {
		t, err := q.LockTool(ctx, store.LockToolParams{OrgID: p.OrgID, Ref: ref})
		if err != nil {
			return notFoundIf(err, "tool", ref)
		}
		if t.Status != "active" {
			if !t.AnnotationsAcknowledged {
				return problem(http.StatusUnprocessableEntity, CodeValidationFailed, fmt.Sprintf(
					"tool %q cannot be activated: its MCP annotations (read_only, destructive, idempotent, open_world) are not acknowledged; review them and PATCH annotations_acknowledged: true first", t.Name))
			}
			up := toolUpdateParams(t, now)
			up.Status = "active"
			if _, err := q.UpdateTool(ctx, up); err != nil {
				return err
			}
			if err := s.recordChange(ctx, q, p, now, change{kind: kindToolActivated, subject: t.ID, tool: t.Name,
				details: map[string]any{"name": t.Name, "changed": fieldChanges{"status": fieldChange{From: t.Status, To: "active"}}},
				policy:  true}); err != nil {
				return err
			}
		}
		r, err := q.GetToolView(ctx, store.GetToolViewParams{OrgID: p.OrgID, Ref: t.ID})
		out = toolView(r.Tool, r.CategoryName)
		return err
	})
	return out, err
}

func (s *Server) deleteTool(ctx context.Context, p Principal, ref string) error {
	if err := lookupRef("tool", ref); err != nil {
		return err
	}
	now := s.now()
	return s.inTx(ctx, func(q *store.Queries) error {
		t, err := q.LockTool(ctx, store.LockToolParams{OrgID: p.OrgID, Ref: ref})
		if err != nil {
			return notFoundIf(err, "tool", ref)
		}
		n, err := q.CountRulesReferencing(ctx, store.CountRulesReferencingParams{OrgID: p.OrgID, Ref: t.ID})
		if err != nil {
			return err
		}
		if _, err := q.DeleteTool(ctx, store.DeleteToolParams{OrgID: p.OrgID, ID: t.ID}); err != nil {
			return referencedIf(err, "tool %q has approval requests and cannot be deleted; disable it instead", t.Name)
		}
		return s.recordChange(ctx, q, p, now, change{kind: kindToolDeleted, subject: t.ID, tool: t.Name,
			details: map[string]any{"name": t.Name, "rules_deleted": n}, policy: true})
	})
}

// toolUpdateParams is an update that leaves t as it is.
func toolUpdateParams(t store.Tool, now time.Time) store.UpdateToolParams {
	return store.UpdateToolParams{
		OrgID: t.OrgID, ID: t.ID, Name: t.Name, Description: t.Description, CategoryID: t.CategoryID,
		RiskLevel: t.RiskLevel, ParameterSchema: t.ParameterSchema, ReadOnly: t.ReadOnly,
		Destructive: t.Destructive, Idempotent: t.Idempotent, OpenWorld: t.OpenWorld,
		AnnotationsAcknowledged: t.AnnotationsAcknowledged, DefaultPermission: t.DefaultPermission,
		Approved: t.Approved, Enabled: t.Enabled, Status: t.Status,
		RequiresSecondApproval: t.RequiresSecondApproval, ApprovalTimeoutSeconds: t.ApprovalTimeoutSeconds,
		UpdatedAt: now,
	}
}

// checkToolSchema validates a parameter schema as it is written, so the
// policy compiler never meets a broken one. Absent or null means no schema.
func checkToolSchema(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	if _, err := compileSchema(raw); err != nil {
		return nil, fieldProblem("body.parameter_schema", "parameter_schema is not a usable JSON Schema: "+err.Error(), nil)
	}
	return raw, nil
}

// resolveCategory finds a category by name or id; a missing one is a 422 on
// the field that named it.
func resolveCategory(ctx context.Context, q *store.Queries, orgID, ref, location string) (store.Category, error) {
	c, err := q.GetCategory(ctx, store.GetCategoryParams{OrgID: orgID, Ref: ref})
	if errors.Is(err, store.ErrNotFound) {
		return c, fieldProblem(location, fmt.Sprintf("no category %q in this org", ref), ref)
	}
	return c, err
}

// jsonEqual reports whether two JSON documents are equal as values (jsonb
// normalises whitespace and key order, so bytes differ).
func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(va, vb)
}

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

func setString(dst *string, v *string) {
	if v != nil {
		*dst = *v
	}
}

func setBool(dst *bool, v *bool) {
	if v != nil {
		*dst = *v
	}
}
