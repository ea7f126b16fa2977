package resolver

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExplainAgreesWithDecide: for every case of testdata, the explanation
// carries Decide's answer, exactly one step decides and it is that answer's
// level, no level before it holds a rule for the check, and every level
// after it is marked not reached.
func TestExplainAgreesWithDecide(t *testing.T) {
	t.Parallel()
	for _, f := range loadCases(t) {
		for _, c := range f.Checks {
			t.Run(f.name+"/"+c.Name, func(t *testing.T) {
				d := f.index.Decide(c.input())
				ex := f.index.Explain(c.input())
				require.Equal(t, d, ex.Decision)
				if d.Scope == ScopeGate {
					require.Equal(t, []Step{{LevelName: d.LevelName, Scope: ScopeGate, Outcome: StepDecides, Permission: Disabled}}, ex.Steps)
					return
				}
				require.Len(t, ex.Steps, 20)
				decided := -1
				for i, s := range ex.Steps {
					switch {
					case s.Outcome == StepDecides:
						require.Equal(t, -1, decided, "one deciding step")
						decided = i
						require.Equal(t, d.Level, s.Level)
						require.Equal(t, d.Scope, s.Scope)
						require.Equal(t, d.LevelName, s.LevelName)
						require.Equal(t, d.RuleID, s.RuleID)
						require.Equal(t, d.Permission, s.Permission)
					case decided >= 0:
						require.Equal(t, StepNotReached, s.Outcome, "step %d", i)
					default:
						require.Empty(t, s.RuleID, "no rule matches before the deciding level (step %d)", i)
						require.Contains(t, []string{StepNoRule, StepNoTenant, StepNoResource, StepNoMethod, StepUnset, StepDraftPassedOver}, s.Outcome)
					}
				}
				require.GreaterOrEqual(t, decided, 0)
			})
		}
	}
}

// TestExplainSaysWhy: the reasons a level did not answer, as a person
// reads them.
func TestExplainSaysWhy(t *testing.T) {
	t.Parallel()
	ix, err := Compile(Policy{
		Categories: []Category{{Name: "reads", DefaultPermission: Allowed}},
		Tools:      []Tool{{Name: "fetch", Category: "reads", Approved: true, Enabled: true, Draft: true}, {Name: "send", Enabled: true}},
		Rules: []Rule{
			{ID: "r-send", Tool: "send", Method: "post", Permission: Disabled},
			{ID: "r-wild", Permission: RequiresApproval, Tenant: "acme", Resource: "db"},
		},
	})
	require.NoError(t, err)

	ex := ix.Explain(Input{Tool: "send", Method: "post"})
	require.Equal(t, StepNoTenant, ex.Steps[0].Outcome)
	require.Equal(t, StepNoResource, ex.Steps[8].Outcome, "org_resource_tool_method needs a resource")
	require.Equal(t, Step{Level: 3, LevelName: LevelNameOrgToolMethod, Scope: ScopeOrg, Outcome: StepDecides,
		Key: Input{Tool: "send", Method: "post"}, Permission: Disabled, RuleID: "r-send"}, ex.Steps[10])
	require.Equal(t, StepNotReached, ex.Steps[11].Outcome)

	ex = ix.Explain(Input{Tool: "fetch", Tenant: "acme"})
	require.Equal(t, StepNoResource, ex.Steps[5].Outcome, "tenant_resource needs a resource")
	require.Equal(t, Step{Level: 8, LevelName: LevelNameTenantWildcard, Scope: ScopeTenant, Outcome: StepNoRule,
		Key: Input{Tenant: "acme"}}, ex.Steps[7])
	require.Equal(t, StepUnset, ex.Steps[16].Outcome, "no tool default")
	require.Equal(t, Step{Level: 10, LevelName: LevelNameCategoryDefault, Scope: ScopeFallback, Outcome: StepDraftPassedOver, Permission: Allowed}, ex.Steps[17])
	require.Equal(t, StepDraftPassedOver, ex.Steps[18].Outcome)
	require.Equal(t, StepDecides, ex.Steps[19].Outcome)
	require.Equal(t, ReasonToolDraft, ex.Decision.Reason)

	ex = ix.Explain(Input{Tool: "fetch", Tenant: "acme", Resource: "db"})
	require.Equal(t, "r-wild", ex.Decision.RuleID)
	require.Equal(t, StepDecides, ex.Steps[5].Outcome)

	ex = ix.Explain(Input{Tool: "nope"})
	require.Equal(t, []Step{{LevelName: ReasonToolNotRegistered, Scope: ScopeGate, Outcome: StepDecides, Permission: Disabled}}, ex.Steps)
}
