package resolver

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// orgSize sizes a generated org.
type orgSize struct {
	tools, categories, tenants, resources, methods, inputs int
	// rules is the number of rules; at most blanketRules of them name no
	// tool, as in real orgs where most rules are about a tool, and the
	// few blanket rules would otherwise answer almost every check.
	rules, blanketRules int
	// orgWildcard adds the org wildcard rule, after which no check
	// reaches the fallback levels.
	orgWildcard bool
}

// benchmarkOrg is the org the performance targets are stated for.
var benchmarkOrg = orgSize{
	tools: 1000, categories: 20, tenants: 100, resources: 50, methods: 8, inputs: 4096,
	rules: 10000, blanketRules: 300,
}

// denseOrg is small with few names, so checks hit rules at every level;
// used to compare Decide with the reference implementation.
var denseOrg = orgSize{
	tools: 40, categories: 4, tenants: 5, resources: 4, methods: 3, inputs: 5000,
	rules: 150, blanketRules: 15,
}

// generateOrg builds a deterministic random org and checks against it. The
// checks mix registered and unknown tools and tenants, and carry a resource
// or method only some of the time.
func generateOrg(seed uint64, s orgSize) (Policy, []Input) {
	r := rand.New(rand.NewPCG(seed, seed^0x6f616b616c6c6f77))
	perm := func(unsetShare float64) Permission {
		if r.Float64() < unsetShare {
			return PermissionUnset
		}
		return Permission(1 + r.IntN(3))
	}
	name := func(kind string, i int) string { return fmt.Sprintf("%s-%04d", kind, i) }

	var p Policy
	for i := range s.categories {
		p.Categories = append(p.Categories, Category{Name: name("cat", i), DefaultPermission: perm(0.5)})
	}
	for i := range s.tools {
		t := Tool{
			Name:              name("tool", i),
			DefaultPermission: perm(0.6),
			Approved:          r.Float64() < 0.3,
			Enabled:           r.Float64() < 0.95,
			Draft:             r.Float64() < 0.05,
		}
		if r.Float64() < 0.8 {
			t.Category = name("cat", r.IntN(s.categories+2)) // a few name no registered category
		}
		p.Tools = append(p.Tools, t)
	}

	// The empty key is the org wildcard: added on purpose or never.
	seen := map[ruleKey]bool{{}: true}
	if s.orgWildcard {
		p.Rules = append(p.Rules, Rule{ID: "org-wildcard", Permission: perm(0)})
	}
	blanket := 0
	for len(p.Rules) < s.rules {
		var k ruleKey
		if r.IntN(2) == 0 {
			k.tenant = name("tenant", r.IntN(s.tenants))
		}
		if r.IntN(10) < 4 {
			k.resource = name("res", r.IntN(s.resources))
		}
		if r.IntN(10) < 4 {
			k.method = name("method", r.IntN(s.methods))
		}
		if blanket < s.blanketRules && r.IntN(10) == 0 {
			blanket++
		} else {
			k.tool = name("tool", r.IntN(s.tools))
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		p.Rules = append(p.Rules, Rule{
			ID: name("rule", len(p.Rules)), Tenant: k.tenant, Resource: k.resource, Tool: k.tool, Method: k.method,
			Permission: perm(0),
		})
	}

	inputs := make([]Input, s.inputs)
	for i := range inputs {
		in := &inputs[i]
		in.Tool = name("tool", r.IntN(s.tools))
		if r.Float64() < 0.03 {
			in.Tool = name("unknown-tool", i)
		}
		switch x := r.Float64(); {
		case x < 0.7:
			in.Tenant = name("tenant", r.IntN(s.tenants))
		case x < 0.8:
			in.Tenant = name("unknown-tenant", i)
		}
		if r.Float64() < 0.7 {
			in.Resource = name("res", r.IntN(s.resources))
		}
		if r.Float64() < 0.7 {
			in.Method = name("method", r.IntN(s.methods))
		}
	}
	return p, inputs
}

// referenceDecide is SPEC §2 written as plainly as possible, with linear
// scans and level names built from their parts. It shares no lookup
// structure with Index, so agreement between the two tests the index's
// shortcuts (level masks, skipped levels) rather than restating them.
func referenceDecide(p Policy, in Input) Decision {
	var tool *Tool
	for i := range p.Tools {
		if p.Tools[i].Name == in.Tool {
			tool = &p.Tools[i]
		}
	}
	if tool == nil {
		return Decision{Permission: Disabled, LevelName: "tool_not_registered", Scope: ScopeGate, Reason: "tool_not_registered"}
	}
	if !tool.Enabled {
		return Decision{Permission: Disabled, LevelName: "tool_disabled", Scope: ScopeGate, Reason: "tool_disabled"}
	}

	levels := []struct{ resource, tool, method bool }{
		{true, true, true}, {true, true, false}, {false, true, true}, {false, true, false},
		{true, false, true}, {true, false, false}, {false, false, true}, {false, false, false},
	}
	type scope struct {
		scope  Scope
		tenant string
		prefix string
	}
	scopes := []scope{{ScopeOrg, "", "org"}}
	if in.Tenant != "" {
		scopes = []scope{{ScopeTenant, in.Tenant, "tenant"}, {ScopeOrg, "", "org"}}
	}
	field := func(inKey bool, fromCheck string) string {
		if inKey {
			return fromCheck
		}
		return ""
	}
	for _, sc := range scopes {
		for i, l := range levels {
			if (l.resource && in.Resource == "") || (l.method && in.Method == "") {
				continue
			}
			for _, rule := range p.Rules {
				if rule.Tenant == sc.tenant &&
					rule.Resource == field(l.resource, in.Resource) &&
					rule.Tool == field(l.tool, in.Tool) &&
					rule.Method == field(l.method, in.Method) {
					parts := []string{sc.prefix}
					if l.resource {
						parts = append(parts, "resource")
					}
					if l.tool {
						parts = append(parts, "tool")
					}
					if l.method {
						parts = append(parts, "method")
					}
					if len(parts) == 1 {
						parts = append(parts, "wildcard")
					}
					return Decision{
						Permission: rule.Permission, Level: i + 1, LevelName: strings.Join(parts, "_"),
						Scope: sc.scope, RuleID: rule.ID,
					}
				}
			}
		}
	}

	reason := ""
	answer := func(perm Permission, level int, name string) (Decision, bool) {
		if perm == PermissionUnset {
			return Decision{}, false
		}
		if perm == Allowed && tool.Draft {
			reason = "tool_draft"
			return Decision{}, false
		}
		return Decision{Permission: perm, Level: level, LevelName: name, Scope: ScopeFallback, Reason: reason}, true
	}
	if d, ok := answer(tool.DefaultPermission, 9, "tool_default"); ok {
		return d
	}
	var category Permission
	for _, c := range p.Categories {
		if c.Name == tool.Category {
			category = c.DefaultPermission
		}
	}
	if d, ok := answer(category, 10, "category_default"); ok {
		return d
	}
	if tool.Approved {
		if d, ok := answer(Allowed, 11, "tool_approved"); ok {
			return d
		}
	}
	d, _ := answer(RequiresApproval, 12, "fail_safe")
	return d
}
