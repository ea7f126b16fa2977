package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/store"
)

func TestToolCRUD(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk, org := e.boot.ManagementKey, e.boot.OrgID
	e.want(http.StatusCreated, http.MethodPost, "/v1/categories", mk, map[string]any{"name": "payments"})

	schema := `{"type":"object","properties":{"amount":{"type":"number"}},"required":["amount"]}`
	full := decodeAs[Tool](t, e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{
		"name": "wire_money", "description": "Sends a wire transfer", "category": "payments", "risk_level": "critical",
		"parameter_schema": json.RawMessage(schema), "read_only": false, "destructive": true, "idempotent": false,
		"open_world": true, "annotations_acknowledged": true, "default_permission": "requires_approval",
		"requires_second_approval": true, "approval_timeout_seconds": 30,
	}))
	require.Regexp(t, `^tool_`, full.ID)
	require.Equal(t, "payments", *full.Category)
	require.NotNil(t, full.CategoryID)
	require.Equal(t, "critical", full.RiskLevel)
	require.JSONEq(t, schema, string(full.ParameterSchema))
	require.True(t, full.AnnotationsAcknowledged)
	require.False(t, full.NeedsAnnotations)
	require.Equal(t, "requires_approval", *full.DefaultPermission)
	require.True(t, full.RequiresSecondApproval)
	require.Equal(t, int32(60), *full.ApprovalTimeoutSeconds, "timeouts are clamped to at least 60 s, not refused")
	require.Equal(t, "active", full.Status)
	require.True(t, full.Enabled)

	// Defaults: the MCP annotation defaults (destructive, open world), active, enabled, nothing else set.
	raw := e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{"name": "lookup", "annotations_acknowledged": true})
	minimal := decodeAs[Tool](t, raw)
	require.Equal(t, "medium", minimal.RiskLevel)
	require.True(t, minimal.Destructive)
	require.True(t, minimal.OpenWorld)
	require.False(t, minimal.ReadOnly)
	require.False(t, minimal.Idempotent)
	require.True(t, minimal.Enabled)
	require.False(t, minimal.Approved)
	require.Equal(t, "active", minimal.Status)
	require.Nil(t, minimal.Category)
	require.Nil(t, minimal.DefaultPermission)
	require.Nil(t, minimal.ApprovalTimeoutSeconds)
	var wire map[string]any
	require.NoError(t, json.Unmarshal(raw, &wire))
	require.Contains(t, wire, "parameter_schema")
	require.Nil(t, wire["parameter_schema"], "no schema is sent as null")
	require.Contains(t, wire, "default_permission")

	for _, ref := range []string{full.ID, "wire_money"} {
		got := decodeAs[Tool](t, e.want(http.StatusOK, http.MethodGet, "/v1/tools/"+ref, e.boot.StandardKey, nil))
		require.Equal(t, full, got)
	}

	requireProblem(t, e.want(http.StatusConflict, http.MethodPost, "/v1/tools", mk,
		map[string]any{"name": "wire_money", "annotations_acknowledged": true}), CodeConflict, "")
	requireProblem(t, e.want(http.StatusConflict, http.MethodPatch, "/v1/tools/lookup", mk,
		map[string]any{"name": "wire_money"}), CodeConflict, "")

	patches := []struct {
		name  string
		patch map[string]any
		want  func(t *testing.T, got Tool)
	}{
		{"only present fields change", map[string]any{"approved": true}, func(t *testing.T, got Tool) {
			require.True(t, got.Approved)
			require.Equal(t, "payments", *got.Category)
			require.Equal(t, "requires_approval", *got.DefaultPermission)
			require.JSONEq(t, schema, string(got.ParameterSchema))
		}},
		{"timeout is clamped to 7 days", map[string]any{"approval_timeout_seconds": 10_000_000}, func(t *testing.T, got Tool) {
			require.Equal(t, int32(604800), *got.ApprovalTimeoutSeconds)
		}},
		{"nulls clear nullable fields", map[string]any{"category": nil, "default_permission": nil,
			"parameter_schema": nil, "approval_timeout_seconds": nil}, func(t *testing.T, got Tool) {
			require.Nil(t, got.Category)
			require.Nil(t, got.CategoryID)
			require.Nil(t, got.DefaultPermission)
			require.JSONEq(t, "null", string(got.ParameterSchema))
			var stored bool
			require.NoError(t, e.st.Pool.QueryRow(context.Background(),
				`SELECT parameter_schema IS NULL FROM tools WHERE id = $1`, full.ID).Scan(&stored))
			require.True(t, stored, "no schema is stored as SQL NULL")
			require.Nil(t, got.ApprovalTimeoutSeconds)
			require.True(t, got.Approved)
		}},
		{"set them again, category by id", map[string]any{"category": *full.CategoryID, "default_permission": "allowed",
			"parameter_schema": map[string]any{"type": "object"}, "approval_timeout_seconds": 900}, func(t *testing.T, got Tool) {
			require.Equal(t, "payments", *got.Category)
			require.Equal(t, "allowed", *got.DefaultPermission)
			require.JSONEq(t, `{"type":"object"}`, string(got.ParameterSchema))
			require.Equal(t, int32(900), *got.ApprovalTimeoutSeconds)
		}},
		{"flags and rename", map[string]any{"enabled": false, "read_only": true, "risk_level": "low", "name": "wire"}, func(t *testing.T, got Tool) {
			require.False(t, got.Enabled)
			require.True(t, got.ReadOnly)
			require.Equal(t, "low", got.RiskLevel)
			require.Equal(t, "wire", got.Name)
		}},
	}
	for _, p := range patches {
		t.Run(p.name, func(t *testing.T) {
			got := decodeAs[Tool](t, e.want(http.StatusOK, http.MethodPatch, "/v1/tools/"+full.ID, mk, p.patch))
			p.want(t, got)
			again := decodeAs[Tool](t, e.want(http.StatusOK, http.MethodGet, "/v1/tools/"+full.ID, mk, nil))
			require.Equal(t, got, again)
		})
	}

	updates := e.audits(org, kindToolUpdated, full.ID)
	require.Len(t, updates, len(patches))
	require.Equal(t, "wire", updates[len(updates)-1].Tool)
	require.Equal(t, map[string]any{
		"category":                 map[string]any{"from": "payments", "to": nil},
		"default_permission":       map[string]any{"from": "requires_approval", "to": nil},
		"parameter_schema":         "changed",
		"approval_timeout_seconds": map[string]any{"from": float64(604800), "to": nil},
	}, updates[2].Details["changed"])

	// A rule naming the tool goes with it.
	e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk, map[string]any{"tool": "wire", "permission": "disabled"})
	e.want(http.StatusNoContent, http.MethodDelete, "/v1/tools/wire", mk, nil)
	requireProblem(t, e.want(http.StatusNotFound, http.MethodGet, "/v1/tools/"+full.ID, mk, nil), CodeNotFound, "")
	rules := decodeAs[struct{ Items []Rule }](t, e.want(http.StatusOK, http.MethodGet, "/v1/rules", mk, nil))
	require.Empty(t, rules.Items)

	created := e.audits(org, kindToolCreated, full.ID)
	require.Len(t, created, 1)
	require.Equal(t, "wire_money", created[0].Tool)
	require.Equal(t, true, created[0].Details["parameter_schema"])
	require.Equal(t, "critical", created[0].Details["risk_level"])
	deleted := e.audits(org, kindToolDeleted, full.ID)
	require.Len(t, deleted, 1)
	require.Equal(t, float64(1), deleted[0].Details["rules_deleted"])
}

func TestToolValidation(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk := e.boot.ManagementKey
	base := func(extra map[string]any) map[string]any {
		b := map[string]any{"name": "t", "annotations_acknowledged": true}
		for k, v := range extra {
			if v == nil {
				delete(b, k)
				continue
			}
			b[k] = v
		}
		return b
	}
	cases := []struct {
		name     string
		body     map[string]any
		location string
		detail   string
	}{
		{"annotations not acknowledged", base(map[string]any{"annotations_acknowledged": false}), "body.annotations_acknowledged", "annotations_acknowledged: true"},
		{"acknowledgement missing", base(map[string]any{"annotations_acknowledged": nil}), "body.annotations_acknowledged", "registration refused"},
		{"schema that does not compile", base(map[string]any{"parameter_schema": map[string]any{"type": 5}}), "body.parameter_schema", "not a usable JSON Schema"},
		{"schema with an unknown type", base(map[string]any{"parameter_schema": map[string]any{"type": "banana"}}), "body.parameter_schema", "not a usable JSON Schema"},
		{"schema that is a string", base(map[string]any{"parameter_schema": "object"}), "body.parameter_schema", "JSON object"},
		{"schema with an external $ref", base(map[string]any{"parameter_schema": map[string]any{"$ref": "https://example.com/s.json"}}), "body.parameter_schema", "external"},
		{"unknown category", base(map[string]any{"category": "nope"}), "body.category", `no category "nope"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPost, "/v1/tools", mk, c.body), CodeValidationFailed, c.location)
			require.Contains(t, p.Detail, c.detail)
		})
	}
	list := decodeAs[struct{ Items []Tool }](t, e.want(http.StatusOK, http.MethodGet, "/v1/tools", mk, nil))
	require.Empty(t, list.Items, "no refused registration was stored")

	// The same checks guard updates, and a refused update changes nothing.
	tool := decodeAs[Tool](t, e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, base(nil)))
	for _, c := range []struct {
		name     string
		patch    map[string]any
		location string
	}{
		{"bad schema", map[string]any{"parameter_schema": map[string]any{"minLength": "x"}, "approved": true}, "body.parameter_schema"},
		{"unknown category", map[string]any{"category": "nope", "approved": true}, "body.category"},
		{"withdraw acknowledgement of an active tool", map[string]any{"annotations_acknowledged": false}, "body.annotations_acknowledged"},
	} {
		t.Run("patch "+c.name, func(t *testing.T) {
			requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPatch, "/v1/tools/"+tool.ID, mk, c.patch), CodeValidationFailed, c.location)
		})
	}
	got := decodeAs[Tool](t, e.want(http.StatusOK, http.MethodGet, "/v1/tools/"+tool.ID, mk, nil))
	require.Equal(t, tool, got)
}

func TestToolTriage(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk, org := e.boot.ManagementKey, e.boot.OrgID
	ctx := context.Background()

	// A draft as MCP auto-registration leaves it: annotations not acknowledged.
	draftID := store.NewID("tool")
	_, err := e.st.CreateTool(ctx, store.CreateToolParams{ID: draftID, OrgID: org, Name: "mcp_discovered",
		RiskLevel: "medium", Destructive: true, OpenWorld: true, Enabled: true, Status: "draft", CreatedAt: time.Now()})
	require.NoError(t, err)
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{"name": "known", "annotations_acknowledged": true})

	draft := decodeAs[Tool](t, e.want(http.StatusOK, http.MethodGet, "/v1/tools/mcp_discovered", mk, nil))
	require.Equal(t, "draft", draft.Status)
	require.True(t, draft.NeedsAnnotations)

	names := func(status string) []string {
		list := decodeAs[struct{ Items []Tool }](t, e.want(http.StatusOK, http.MethodGet, "/v1/tools?status="+status, mk, nil))
		var out []string
		for _, it := range list.Items {
			out = append(out, it.Name)
		}
		return out
	}
	require.Equal(t, []string{"mcp_discovered"}, names("draft"))
	require.Equal(t, []string{"known"}, names("active"))

	p := requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPost, "/v1/tools/"+draftID+"/activate", mk, nil), CodeValidationFailed, "")
	require.Contains(t, p.Detail, "not acknowledged")
	requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPatch, "/v1/tools/"+draftID, mk,
		map[string]any{"status": "active"}), CodeValidationFailed, "body.status")

	acked := decodeAs[Tool](t, e.want(http.StatusOK, http.MethodPatch, "/v1/tools/"+draftID, mk,
		map[string]any{"destructive": false, "read_only": true, "annotations_acknowledged": true}))
	require.False(t, acked.NeedsAnnotations)
	require.Equal(t, "draft", acked.Status, "acknowledging does not activate")

	active := decodeAs[Tool](t, e.want(http.StatusOK, http.MethodPost, "/v1/tools/mcp_discovered/activate", mk, nil))
	require.Equal(t, "active", active.Status)
	again := decodeAs[Tool](t, e.want(http.StatusOK, http.MethodPost, "/v1/tools/"+draftID+"/activate", mk, nil))
	require.Equal(t, active, again)
	activations := e.audits(org, kindToolActivated, draftID)
	require.Len(t, activations, 1, "activating an active tool records nothing")
	require.Equal(t, map[string]any{"status": map[string]any{"from": "draft", "to": "active"}}, activations[0].Details["changed"])

	// Back to draft, acknowledgement withdrawn in the same request.
	back := decodeAs[Tool](t, e.want(http.StatusOK, http.MethodPatch, "/v1/tools/"+draftID, mk,
		map[string]any{"status": "draft", "annotations_acknowledged": false}))
	require.Equal(t, "draft", back.Status)
	require.True(t, back.NeedsAnnotations)
	require.Equal(t, []string{"mcp_discovered"}, names("draft"))
	require.True(t, strings.HasPrefix(activations[0].ActorID, "key_"))
}
