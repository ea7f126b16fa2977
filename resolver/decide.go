package resolver

import "math/bits"

// Level names, stable identifiers recorded in decisions and the audit log.
// Rule levels 1–8 carry their scope in the name; the gates' level name is
// their reason.
const (
	LevelNameTenantResourceToolMethod = "tenant_resource_tool_method"
	LevelNameTenantResourceTool       = "tenant_resource_tool"
	LevelNameTenantToolMethod         = "tenant_tool_method"
	LevelNameTenantTool               = "tenant_tool"
	LevelNameTenantResourceMethod     = "tenant_resource_method"
	LevelNameTenantResource           = "tenant_resource"
	LevelNameTenantMethod             = "tenant_method"
	LevelNameTenantWildcard           = "tenant_wildcard"

	LevelNameOrgResourceToolMethod = "org_resource_tool_method"
	LevelNameOrgResourceTool       = "org_resource_tool"
	LevelNameOrgToolMethod         = "org_tool_method"
	LevelNameOrgTool               = "org_tool"
	LevelNameOrgResourceMethod     = "org_resource_method"
	LevelNameOrgResource           = "org_resource"
	LevelNameOrgMethod             = "org_method"
	LevelNameOrgWildcard           = "org_wildcard"

	LevelNameToolDefault     = "tool_default"     // level 9
	LevelNameCategoryDefault = "category_default" // level 10
	LevelNameToolApproved    = "tool_approved"    // level 11
	LevelNameFailSafe        = "fail_safe"        // level 12
)

// Reasons a Decision may carry.
const (
	// ReasonToolNotRegistered: the org has no tool of that name (gate).
	ReasonToolNotRegistered = "tool_not_registered"
	// ReasonToolDisabled: the tool is registered but not enabled (gate).
	ReasonToolDisabled = "tool_disabled"
	// ReasonToolDraft: the tool is a draft and an Allowed answer at levels
	// 9–11 was passed over, so a later fallback level decided.
	ReasonToolDraft = "tool_draft"
)

// Fallback level numbers.
const (
	levelToolDefault     = 9
	levelCategoryDefault = 10
	levelToolApproved    = 11
	levelFailSafe        = 12
)

// ruleLevel describes one of the eight rule key shapes (levels 1–8) of the
// chain: which check fields take part in its key.
type ruleLevel struct {
	resource, tool, method bool
	tenantName, orgName    string
}

// ruleLevels lists the shapes in chain order; index i is level i+1.
var ruleLevels = [8]ruleLevel{
	{resource: true, tool: true, method: true, tenantName: LevelNameTenantResourceToolMethod, orgName: LevelNameOrgResourceToolMethod},
	{resource: true, tool: true, tenantName: LevelNameTenantResourceTool, orgName: LevelNameOrgResourceTool},
	{tool: true, method: true, tenantName: LevelNameTenantToolMethod, orgName: LevelNameOrgToolMethod},
	{tool: true, tenantName: LevelNameTenantTool, orgName: LevelNameOrgTool},
	{resource: true, method: true, tenantName: LevelNameTenantResourceMethod, orgName: LevelNameOrgResourceMethod},
	{resource: true, tenantName: LevelNameTenantResource, orgName: LevelNameOrgResource},
	{method: true, tenantName: LevelNameTenantMethod, orgName: LevelNameOrgMethod},
	{tenantName: LevelNameTenantWildcard, orgName: LevelNameOrgWildcard},
}

// The sixteen rule levels are numbered as bits of a uint16 in chain order:
// bits 0–7 are tenant levels 1–8, bits 8–15 org levels 1–8. Masks of these
// bits let Decide skip, without a map lookup, every level that cannot match.
var (
	// levelsNeedingResource, levelsNeedingMethod: skipped when the check
	// does not carry a resource or method.
	levelsNeedingResource, levelsNeedingMethod uint16
	// levelsWithoutTool: levels whose rules apply to every tool.
	levelsWithoutTool uint16
)

func init() {
	for i, l := range ruleLevels {
		both := uint16(1)<<i | uint16(1)<<(i+8)
		if l.resource {
			levelsNeedingResource |= both
		}
		if l.method {
			levelsNeedingMethod |= both
		}
		if !l.tool {
			levelsWithoutTool |= both
		}
	}
}

// levelBit returns the bit of the rule level a key with these fields belongs
// to. Every combination of fields is exactly one level.
func levelBit(tenant, resource, tool, method bool) uint16 {
	for i, l := range ruleLevels {
		if l.resource == resource && l.tool == tool && l.method == method {
			if tenant {
				return 1 << i
			}
			return 1 << (i + 8)
		}
	}
	panic("resolver: ruleLevels does not cover every key shape")
}

// Index is a compiled Policy: immutable, and safe for concurrent use by any
// number of goroutines. Build one with Compile; the zero value is not usable.
type Index struct {
	tools map[string]*toolEntry
	rules map[ruleKey]ruleHit
	// tenantLevels has, per tenant that owns rules, the bits of the tenant
	// levels at which it has at least one rule.
	tenantLevels map[string]uint16
	// orgLevels has the bits of the org levels that hold at least one rule.
	orgLevels uint16
}

// Tool returns the registered tool of that name.
func (ix *Index) Tool(name string) (Tool, bool) {
	e, ok := ix.tools[name]
	if !ok {
		return Tool{}, false
	}
	return e.tool, true
}

// Stats returns the number of tools and rules in the index.
func (ix *Index) Stats() (tools, rules int) {
	return len(ix.tools), len(ix.rules)
}

// Input is one permission check. Every field is a name, matched exactly;
// "" means the check does not carry that field.
type Input struct {
	Tool, Tenant, Resource, Method string
}

// Decision is the answer to a check and why it was given.
type Decision struct {
	// Permission is the verdict; never PermissionUnset.
	Permission Permission
	// Level is 1–8 for a rule (see Scope), 9–12 for a fallback, 0 for a gate.
	Level int
	// LevelName is one of the LevelName* constants, or the Reason for a gate.
	LevelName string
	// Scope is the part of the chain that decided.
	Scope Scope
	// RuleID is the matching rule's ID; "" unless a rule decided.
	RuleID string
	// Reason is ReasonToolNotRegistered or ReasonToolDisabled for a gate,
	// ReasonToolDraft when a draft tool's Allowed fallback was passed over,
	// and "" otherwise.
	Reason string
}

// Decide walks the chain for one check and returns the first answer. It
// does no I/O and does not allocate.
func (ix *Index) Decide(in Input) Decision {
	t, ok := ix.tools[in.Tool]
	if !ok {
		return gate(ReasonToolNotRegistered)
	}
	if !t.tool.Enabled {
		return gate(ReasonToolDisabled)
	}

	// Levels that may hold a matching rule: org levels with rules, plus the
	// tenant's levels with rules when the check names a tenant; of the
	// tool-naming levels only those where a rule names this tool; none that
	// need a field the check does not carry.
	candidates := ix.orgLevels
	if in.Tenant != "" {
		candidates |= ix.tenantLevels[in.Tenant]
	}
	candidates &= t.ruleLevels | levelsWithoutTool
	if in.Resource == "" {
		candidates &^= levelsNeedingResource
	}
	if in.Method == "" {
		candidates &^= levelsNeedingMethod
	}
	for candidates != 0 {
		b := bits.TrailingZeros16(candidates)
		candidates &= candidates - 1

		l := &ruleLevels[b%8]
		var k ruleKey
		if b < 8 {
			k.tenant = in.Tenant
		}
		if l.resource {
			k.resource = in.Resource
		}
		if l.tool {
			k.tool = in.Tool
		}
		if l.method {
			k.method = in.Method
		}
		hit, ok := ix.rules[k]
		if !ok {
			continue
		}
		d := Decision{Permission: hit.permission, Level: b%8 + 1, RuleID: hit.id}
		if b < 8 {
			d.Scope, d.LevelName = ScopeTenant, l.tenantName
		} else {
			d.Scope, d.LevelName = ScopeOrg, l.orgName
		}
		return d
	}

	return t.fallback()
}

// fallback walks levels 9–12. A draft's Allowed at 9, 10 or 11 is passed
// over rather than turned into another verdict, so a stricter answer further
// down (a category that disables) still applies and the fail-safe answers
// otherwise.
func (t *toolEntry) fallback() Decision {
	var reason string
	if p := t.tool.DefaultPermission; p != PermissionUnset {
		if p != Allowed || !t.tool.Draft {
			return fallbackDecision(p, levelToolDefault, LevelNameToolDefault, reason)
		}
		reason = ReasonToolDraft
	}
	if p := t.categoryDefault; p != PermissionUnset {
		if p != Allowed || !t.tool.Draft {
			return fallbackDecision(p, levelCategoryDefault, LevelNameCategoryDefault, reason)
		}
		reason = ReasonToolDraft
	}
	if t.tool.Approved {
		if !t.tool.Draft {
			return fallbackDecision(Allowed, levelToolApproved, LevelNameToolApproved, reason)
		}
		reason = ReasonToolDraft
	}
	return fallbackDecision(RequiresApproval, levelFailSafe, LevelNameFailSafe, reason)
}

func fallbackDecision(p Permission, level int, name, reason string) Decision {
	return Decision{Permission: p, Level: level, LevelName: name, Scope: ScopeFallback, Reason: reason}
}

func gate(reason string) Decision {
	return Decision{Permission: Disabled, LevelName: reason, Scope: ScopeGate, Reason: reason}
}
