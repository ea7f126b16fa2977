package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

func TestApprovalInputValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*ApprovalInput)
		wantErr string
	}{
		{name: "valid", mutate: func(*ApprovalInput) {}},
		{name: "valid without tenant", mutate: func(in *ApprovalInput) { in.TenantID = "" }},
		{name: "shortest timeout", mutate: func(in *ApprovalInput) { in.LevelTimeout = MinLevelTimeout }},
		{name: "longest timeout", mutate: func(in *ApprovalInput) { in.LevelTimeout = MaxLevelTimeout }},
		{name: "missing approval id", mutate: func(in *ApprovalInput) { in.ApprovalID = "" }, wantErr: "approval id is required"},
		{name: "missing reference", mutate: func(in *ApprovalInput) { in.Reference = "" }, wantErr: "reference is required"},
		{name: "missing org", mutate: func(in *ApprovalInput) { in.OrgID = "" }, wantErr: "org id is required"},
		{name: "missing tool", mutate: func(in *ApprovalInput) { in.ToolName = "" }, wantErr: "tool name is required"},
		{name: "overlong tool", mutate: func(in *ApprovalInput) { in.ToolName = strings.Repeat("t", MaxIDRunes+1) }, wantErr: "tool name has 201 characters"},
		{name: "invalid UTF-8 tenant", mutate: func(in *ApprovalInput) { in.TenantID = "\xff" }, wantErr: "tenant id is not valid UTF-8"},
		{name: "timeout too short", mutate: func(in *ApprovalInput) { in.LevelTimeout = MinLevelTimeout - time.Second }, wantErr: "level timeout 59s outside"},
		{name: "timeout too long", mutate: func(in *ApprovalInput) { in.LevelTimeout = MaxLevelTimeout + time.Second }, wantErr: "outside"},
		{name: "missing created at", mutate: func(in *ApprovalInput) { in.CreatedAt = time.Time{} }, wantErr: "created at is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := testInput(true)
			tc.mutate(&in)
			err := in.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestDecideRequestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*DecideRequest)
		wantErr string
	}{
		{name: "valid approve", mutate: func(*DecideRequest) {}},
		{name: "valid deny by management key without note", mutate: func(r *DecideRequest) {
			r.Decision, r.Decider, r.Note = Deny, mgmtKey, ""
		}},
		{name: "level 0", mutate: func(r *DecideRequest) { r.Level = 0 }, wantErr: "level 0 is not 1 or 2"},
		{name: "level 3", mutate: func(r *DecideRequest) { r.Level = 3 }, wantErr: "level 3 is not 1 or 2"},
		{name: "unknown decision", mutate: func(r *DecideRequest) { r.Decision = "APPROVE" }, wantErr: `decision "APPROVE"`},
		{name: "empty decision", mutate: func(r *DecideRequest) { r.Decision = "" }, wantErr: `decision ""`},
		{name: "missing decider", mutate: func(r *DecideRequest) { r.Decider = Decider{} }, wantErr: "decider kind"},
		{name: "standard key cannot decide", mutate: func(r *DecideRequest) { r.Decider.Kind = "standard_key" }, wantErr: "decider kind"},
		{name: "agent cannot decide", mutate: func(r *DecideRequest) { r.Decider.Kind = "agent" }, wantErr: "decider kind"},
		{name: "missing decider id", mutate: func(r *DecideRequest) { r.Decider.ID = "" }, wantErr: "decider id is required"},
		{name: "overlong display", mutate: func(r *DecideRequest) { r.Decider.Display = strings.Repeat("d", MaxDisplayRunes+1) }, wantErr: "decider display"},
		{name: "note at the limit", mutate: func(r *DecideRequest) { r.Note = strings.Repeat("ü", MaxNoteRunes) }},
		{name: "note over the limit", mutate: func(r *DecideRequest) { r.Note = strings.Repeat("ü", MaxNoteRunes+1) }, wantErr: "note has 1001 characters"},
		{name: "note not UTF-8", mutate: func(r *DecideRequest) { r.Note = "ok\xc3" }, wantErr: "note is not valid UTF-8"},
		{name: "missing request id", mutate: func(r *DecideRequest) { r.RequestID = "" }, wantErr: "request id is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := decideReq(1, Approve, alice, "r1")
			tc.mutate(&req)
			err := req.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestStartWorkflowOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		tenant     string
		wantTenant bool
	}{
		{name: "with tenant", tenant: "ten_01", wantTenant: true},
		{name: "without tenant", tenant: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := testInput(false)
			in.TenantID = tc.tenant
			opts := StartWorkflowOptions(in)
			require.Equal(t, "REF-ABCDEFGH-JKMN", opts.ID, "the workflow id is the REF")
			require.Equal(t, TaskQueue, opts.TaskQueue)
			require.Equal(t, enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE, opts.WorkflowIDReusePolicy)
			require.Equal(t, enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING, opts.WorkflowIDConflictPolicy)
			require.Zero(t, opts.WorkflowExecutionTimeout, "the workflow ends itself at its deadline")

			sa := opts.TypedSearchAttributes
			org, _ := sa.GetKeyword(SearchAttributeOrg)
			tool, _ := sa.GetKeyword(SearchAttributeTool)
			status, _ := sa.GetKeyword(SearchAttributeStatus)
			level, _ := sa.GetInt64(SearchAttributeLevel)
			tenant, hasTenant := sa.GetKeyword(SearchAttributeTenant)
			require.Equal(t, "org_01", org)
			require.Equal(t, "delete_customer", tool)
			require.Equal(t, "pending", status)
			require.Equal(t, int64(1), level)
			require.Equal(t, tc.wantTenant, hasTenant)
			require.Equal(t, tc.tenant, tenant)
		})
	}
}

func TestSearchAttributeTypesMatchKeys(t *testing.T) {
	t.Parallel()
	keys := []temporal.SearchAttributeKey{
		SearchAttributeOrg, SearchAttributeTool, SearchAttributeTenant, SearchAttributeStatus, SearchAttributeLevel,
	}
	types := SearchAttributeTypes()
	require.Len(t, types, len(keys))
	for _, k := range keys {
		typ, ok := types[k.GetName()]
		require.True(t, ok, "%s is not registered", k.GetName())
		require.Equal(t, k.GetValueType(), typ, k.GetName())
	}
	require.Equal(t, enumspb.INDEXED_VALUE_TYPE_INT, types["OakallowLevel"])
}

func TestRejectionReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		want   string
		wantOK bool
	}{
		{name: "rejection", err: reject(RejectSameApprover, "no"), want: RejectSameApprover, wantOK: true},
		{name: "wrapped rejection", err: fmt.Errorf("decide: %w", reject(RejectExpired, "late")), want: RejectExpired, wantOK: true},
		{name: "other application error", err: temporal.NewApplicationError("boom", ErrorTypeValidation)},
		{name: "plain error", err: errors.New("boom")},
		{name: "nil", err: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := RejectionReason(tc.err)
			require.Equal(t, tc.wantOK, ok)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestWorkflowDataCarriesNoCustomerData pins the fields of everything that enters workflow
// history. Adding a field fails this test on purpose: whoever adds one must check it is an
// id, a deadline or a decision, never parameters, reasoning, context or a token.
func TestWorkflowDataCarriesNoCustomerData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		value any
		want  []string
	}{
		{name: "ApprovalInput", value: testInput(true), want: []string{
			"approval_id", "reference", "org_id", "tool_name", "tenant_id", "two_levels", "level_timeout", "created_at",
			"start_recovered"}},
		{name: "DecideRequest", value: DecideRequest{}, want: []string{"level", "decision", "decider", "note", "request_id"}},
		{name: "State", value: State{}, want: []string{"status", "level", "expires_at", "decisions", "token_id", "token_hash"}},
		{name: "ProjectApprovalInput", value: ProjectApprovalInput{}, want: []string{
			"run_id", "key", "org_id", "approval_id", "reference", "event", "decision", "state", "at", "start_recovered"}},
		{name: "EnqueueNotificationsInput", value: EnqueueNotificationsInput{}, want: []string{
			"run_id", "key", "org_id", "approval_id", "reference", "event", "level", "status", "expires_at", "decision", "at"}},
		{name: "MintApprovalTokenInput", value: MintApprovalTokenInput{}, want: []string{
			"run_id", "key", "org_id", "approval_id", "reference"}},
		{name: "MintApprovalTokenResult", value: MintApprovalTokenResult{}, want: []string{"token_id", "token_hash"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			typ := reflect.TypeOf(tc.value)
			var got []string
			for i := range typ.NumField() {
				name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
				got = append(got, name)
			}
			require.Equal(t, tc.want, got)
			_, err := json.Marshal(tc.value)
			require.NoError(t, err)
		})
	}
}

// TestImports keeps the package deterministic: only the standard library and the Temporal
// SDK, and none of the standard packages that reach outside the workflow's history.
func TestImports(t *testing.T) {
	t.Parallel()
	forbidden := []string{"math/rand", "math/rand/v2", "crypto/rand", "net", "net/http", "os", "os/exec", "sync", "sync/atomic", "time/tzdata", "log/slog"}
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range f.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			first, _, _ := strings.Cut(path, "/")
			isStd := !strings.Contains(first, ".")
			require.True(t, isStd || strings.HasPrefix(path, "go.temporal.io/"), "%s imports %s", name, path)
			require.False(t, slices.Contains(forbidden, path), "%s imports %s", name, path)
		}
		checked++
	}
	require.Positive(t, checked)
}
