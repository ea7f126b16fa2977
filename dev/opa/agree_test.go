package opa

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/stretchr/testify/require"

	"oakallow/dev/loadgen"
	"oakallow/resolver"
)

// TestRegoPolicyAgreesWithResolver evaluates the benchmark's Rego policy
// with OPA over the benchmark's org and compares every decision — verdict,
// level, level name, scope, rule id and reason — with resolver.Decide's, for
// samples that together reach every level and gate of the chain, so the
// side-by-side benchmark measures two engines answering the same question.
func TestRegoPolicyAgreesWithResolver(t *testing.T) {
	t.Parallel()
	reached := map[string]int{}

	// The benchmark's org: a sample of the load's checks and of varied ones,
	// and every tool alone (no tenant, resource or method).
	org := loadgen.Generate(1)
	r := rand.New(rand.NewPCG(7, 11))
	var checks []loadgen.Check
	for i := range 20000 {
		if i%2 == 0 {
			checks = append(checks, loadgen.LoadCheck(r))
		} else {
			checks = append(checks, loadgen.VariedCheck(r))
		}
	}
	var toolsAlone []loadgen.Check
	for _, tool := range org.Policy.Tools {
		toolsAlone = append(toolsAlone, loadgen.Check{Tool: tool.Name})
	}
	agree(t, org, append(checks, toolsAlone...), reached)

	// Without rules, every tool alone reaches the fallbacks, drafts included.
	rules := org.Policy.Rules
	org.Policy.Rules = nil
	agree(t, org, toolsAlone, reached)
	org.Policy.Rules = rules

	// With an org wildcard, which the benchmark's org leaves out so that
	// levels 9–12 are reached.
	org.Policy.Rules = append(org.Policy.Rules, resolver.Rule{ID: "rule_org_wildcard", Permission: resolver.Disabled})
	agree(t, org, checks[:2000], reached)

	// The samples must reach every part of the chain, or agreement on them
	// would prove little.
	for _, name := range []string{
		"tool_not_registered/tool_not_registered", "tool_disabled/tool_disabled",
		"tenant_resource_tool_method/", "tenant_resource_tool/", "tenant_tool_method/", "tenant_tool/",
		"tenant_resource_method/", "tenant_resource/", "tenant_method/", "tenant_wildcard/",
		"org_resource_tool_method/", "org_resource_tool/", "org_tool_method/", "org_tool/",
		"org_resource_method/", "org_resource/", "org_method/", "org_wildcard/",
		"tool_default/", "category_default/", "tool_approved/", "fail_safe/",
		"category_default/tool_draft", "fail_safe/tool_draft",
	} {
		require.Positive(t, reached[name], "no check of the samples decided at %s (%v)", name, reached)
	}
}

// agree compares OPA's decision with the resolver's for each check over
// org, counting the decisions by level name and reason in reached.
func agree(t *testing.T, org loadgen.Org, checks []loadgen.Check, reached map[string]int) {
	t.Helper()
	ix, err := resolver.Compile(org.Policy)
	require.NoError(t, err)
	data, err := org.OPAData()
	require.NoError(t, err)
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&doc))

	ctx := context.Background()
	query, err := rego.New(
		rego.Query("data.oakallow.decision"),
		rego.Module("policy.rego", loadgen.Policy),
		rego.Store(inmem.NewFromObject(doc)),
	).PrepareForEval(ctx)
	require.NoError(t, err)

	for _, c := range checks {
		want := loadgen.FromResolver(ix.Decide(c.Input()))
		rs, err := query.Eval(ctx, rego.EvalInput(c.OPAInput()))
		require.NoError(t, err)
		require.Len(t, rs, 1, "check %+v: the policy gave no decision", c)
		raw, err := json.Marshal(rs[0].Expressions[0].Value)
		require.NoError(t, err)
		var got loadgen.Decision
		require.NoError(t, json.Unmarshal(raw, &got))
		require.Equal(t, want, got, "check %+v", c)
		reached[want.LevelName+"/"+want.Reason]++
	}
}
