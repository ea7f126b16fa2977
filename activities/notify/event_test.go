package notify_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/activities/notify"
)

func TestAlertValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*notify.Alert)
		wantErr string
	}{
		{name: "created", mutate: func(*notify.Alert) {}},
		{name: "escalated", mutate: func(a *notify.Alert) { a.Type = notify.EventApprovalEscalated }},
		{name: "expired", mutate: func(a *notify.Alert) { a.Type = notify.EventApprovalExpired }},
		{name: "no dashboard link", mutate: func(a *notify.Alert) { a.DashboardURL = "" }},
		{name: "decided approved", mutate: func(a *notify.Alert) { *a = decidedAlert(notify.DecisionApproved) }},
		{name: "decided denied without note", mutate: func(a *notify.Alert) { *a = decidedAlert(notify.DecisionDenied); a.Note = "" }},
		{name: "tool.auto_created", mutate: func(a *notify.Alert) { a.Type, a.Reference = notify.EventToolAutoCreated, "" }},
		{name: "tool.auto_created with a reference", mutate: func(a *notify.Alert) { a.Type = notify.EventToolAutoCreated }, wantErr: "no reference"},
		{name: "tool.auto_created without tool", mutate: func(a *notify.Alert) { a.Type, a.Reference, a.ToolName = notify.EventToolAutoCreated, "", "" }, wantErr: "tool name"},
		{name: "credits.low", mutate: func(a *notify.Alert) { a.Type, a.Reference, a.ToolName = notify.EventCreditsLow, "", "" }},
		{name: "credits.low with a tool", mutate: func(a *notify.Alert) { a.Type, a.Reference = notify.EventCreditsLow, "" }, wantErr: "no tool or reference"},
		{name: "unknown type", mutate: func(a *notify.Alert) { a.Type = "approval.approved" }, wantErr: "not an event channels carry"},
		{name: "no tool", mutate: func(a *notify.Alert) { a.ToolName = " " }, wantErr: "tool name"},
		{name: "no reference", mutate: func(a *notify.Alert) { a.Reference = "" }, wantErr: "reference"},
		{name: "reference with markup", mutate: func(a *notify.Alert) { a.Reference = "REF-<!channel>" }, wantErr: "reference"},
		{name: "reference too long", mutate: func(a *notify.Alert) { a.Reference = strings.Repeat("A", 65) }, wantErr: "reference"},
		{name: "dashboard link with javascript", mutate: func(a *notify.Alert) { a.DashboardURL = "javascript:alert(1)" }, wantErr: "dashboard URL"},
		{name: "dashboard link with credentials", mutate: func(a *notify.Alert) { a.DashboardURL = "https://u:p@x.example/a" }, wantErr: "dashboard URL"},
		{name: "decided without decision", mutate: func(a *notify.Alert) { *a = decidedAlert(""); a.Decision = "" }, wantErr: "decision"},
		{name: "decided with API verb", mutate: func(a *notify.Alert) { *a = decidedAlert("approve") }, wantErr: "decision"},
		{name: "decision fields on created", mutate: func(a *notify.Alert) { a.Note = "x" }, wantErr: "only allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := createdAlert()
			tc.mutate(&a)
			err := a.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestSampleAlertIsValid(t *testing.T) {
	t.Parallel()
	require.NoError(t, notify.SampleAlert("https://oakallow.example.com/approvals").Validate())
	require.NoError(t, notify.SampleAlert("").Validate())
}

func TestNewRequiresScrubber(t *testing.T) {
	t.Parallel()
	_, err := notify.New(notify.Config{})
	require.ErrorContains(t, err, "Scrub is required")
}

func TestAlertCarriesOnlyAllowedFields(t *testing.T) {
	t.Parallel()
	// SPEC §4: channel payloads carry only these. Adding a field to Alert
	// (a tenant, parameters, a key…) must be a deliberate spec change, so
	// this list is spelled out rather than derived.
	allowed := []string{"Type", "ToolName", "Reason", "Reference", "DashboardURL", "Decision", "Decider", "Note"}
	typ := reflect.TypeFor[notify.Alert]()
	var got []string
	for i := range typ.NumField() {
		got = append(got, typ.Field(i).Name)
	}
	require.Equal(t, allowed, got)
}
