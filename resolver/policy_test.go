package resolver

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCompileRefuses(t *testing.T) {
	t.Parallel()
	tool := func(name string) Tool { return Tool{Name: name, Enabled: true} }
	tests := []struct {
		name   string
		policy Policy
		want   []string // each must appear in the error
	}{
		{
			name: "duplicate rule key",
			policy: Policy{Rules: []Rule{
				{ID: "a", Tenant: "acme", Tool: "deploy", Permission: Allowed},
				{ID: "b", Tenant: "acme", Tool: "deploy", Permission: Disabled},
			}},
			want: []string{`rules "a" and "b" have the same key`, `tenant="acme"`, `tool="deploy"`},
		},
		{
			name: "two org wildcards",
			policy: Policy{Rules: []Rule{
				{ID: "a", Permission: Allowed},
				{ID: "b", Permission: RequiresApproval},
			}},
			want: []string{`rules "a" and "b" have the same key`},
		},
		{
			name:   "rule without permission",
			policy: Policy{Rules: []Rule{{ID: "a", Tool: "deploy"}}},
			want:   []string{`rule "a" has no permission`},
		},
		{
			name:   "rule with out-of-range permission",
			policy: Policy{Rules: []Rule{{ID: "a", Permission: Disabled + 1}}},
			want:   []string{`rule "a" has invalid permission 4`},
		},
		{
			name:   "rule without id",
			policy: Policy{Rules: []Rule{{Tool: "deploy"}}},
			want:   []string{"rule #0 has no id", "rule #0 has no permission"},
		},
		{
			name: "duplicate rule id",
			policy: Policy{Rules: []Rule{
				{ID: "a", Tool: "deploy", Permission: Allowed},
				{ID: "a", Tool: "query", Permission: Allowed},
			}},
			want: []string{`duplicate rule id "a"`},
		},
		{
			name:   "duplicate tool",
			policy: Policy{Tools: []Tool{tool("deploy"), tool("query"), tool("deploy")}},
			want:   []string{`duplicate tool "deploy"`},
		},
		{
			name:   "tool without name",
			policy: Policy{Tools: []Tool{tool("deploy"), tool("")}},
			want:   []string{"tool #1 has no name"},
		},
		{
			name:   "tool with out-of-range default",
			policy: Policy{Tools: []Tool{{Name: "deploy", DefaultPermission: 9}}},
			want:   []string{`tool "deploy" has invalid default permission 9`},
		},
		{
			name:   "duplicate category",
			policy: Policy{Categories: []Category{{Name: "ops"}, {Name: "ops", DefaultPermission: Allowed}}},
			want:   []string{`duplicate category "ops"`},
		},
		{
			name:   "category without name",
			policy: Policy{Categories: []Category{{DefaultPermission: Allowed}}},
			want:   []string{"category #0 has no name"},
		},
		{
			name:   "category with out-of-range default",
			policy: Policy{Categories: []Category{{Name: "ops", DefaultPermission: 200}}},
			want:   []string{`category "ops" has invalid default permission 200`},
		},
		{
			name: "every problem is reported",
			policy: Policy{
				Tools: []Tool{tool("deploy"), tool("deploy")},
				Rules: []Rule{
					{ID: "a", Tool: "query"},
					{ID: "b", Permission: Allowed},
					{ID: "c", Permission: Allowed},
				},
			},
			want: []string{`duplicate tool "deploy"`, `rule "a" has no permission`, `rules "b" and "c" have the same key`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ix, err := Compile(tt.policy)
			require.ErrorIs(t, err, ErrInvalidPolicy)
			require.Nil(t, ix)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestCompileBoundsTheReport(t *testing.T) {
	t.Parallel()
	var p Policy
	for i := range 1000 {
		id := fmt.Sprintf("r%d", i)
		p.Rules = append(p.Rules, Rule{ID: id, Tool: id}) // no permission: one problem each
	}
	_, err := Compile(p)
	require.ErrorIs(t, err, ErrInvalidPolicy)
	require.ErrorContains(t, err, `rule "r19" has no permission`)
	require.NotContains(t, err.Error(), `rule "r20"`)
	require.ErrorContains(t, err, "and 980 more problems")
}

func TestCompileAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		policy Policy
	}{
		{name: "empty policy", policy: Policy{}},
		{
			name: "org wildcard and tenant wildcard are distinct keys",
			policy: Policy{Rules: []Rule{
				{ID: "org", Permission: Allowed},
				{ID: "acme", Tenant: "acme", Permission: Disabled},
			}},
		},
		{
			name: "same fields in different key positions",
			policy: Policy{Rules: []Rule{
				{ID: "as-resource", Resource: "x", Permission: Allowed},
				{ID: "as-tool", Tool: "x", Permission: Allowed},
				{ID: "as-method", Method: "x", Permission: Allowed},
				{ID: "as-tenant", Tenant: "x", Permission: Allowed},
			}},
		},
		{
			name: "rule naming an unregistered tool and tool in an unregistered category",
			policy: Policy{
				Tools: []Tool{{Name: "deploy", Category: "nowhere", Enabled: true}},
				Rules: []Rule{{ID: "a", Tool: "ghost", Permission: Disabled}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ix, err := Compile(tt.policy)
			require.NoError(t, err)
			_, rules := ix.Stats()
			require.Equal(t, len(tt.policy.Rules), rules)
		})
	}
}

// TestCompileCopiesPolicy: the Index must not change when the caller reuses
// the slices it compiled from.
func TestCompileCopiesPolicy(t *testing.T) {
	t.Parallel()
	p := Policy{
		Tools: []Tool{{Name: "deploy", Enabled: true}},
		Rules: []Rule{{ID: "org-deploy", Tool: "deploy", Permission: Allowed}},
	}
	ix, err := Compile(p)
	require.NoError(t, err)

	p.Tools[0].Enabled = false
	p.Rules[0].Permission = Disabled

	d := ix.Decide(Input{Tool: "deploy"})
	require.Equal(t, Allowed, d.Permission)
	require.Equal(t, "org-deploy", d.RuleID)
}
