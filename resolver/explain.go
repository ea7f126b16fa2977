package resolver

// Outcomes of one level of the chain in an Explanation.
const (
	// StepDecides: this level gave the answer (always exactly one step).
	StepDecides = "decides"
	// StepNoRule: the level was consulted and the org has no rule with
	// the check's key at it.
	StepNoRule = "no_rule"
	// StepNoTenant: a tenant level, and the check names no tenant.
	StepNoTenant = "skipped_no_tenant"
	// StepNoResource: the level's key needs a resource the check lacks.
	StepNoResource = "skipped_no_resource"
	// StepNoMethod: the level's key needs a method the check lacks.
	StepNoMethod = "skipped_no_method"
	// StepUnset: a fallback level with nothing set (no default permission,
	// no category default, not pre-approved).
	StepUnset = "unset"
	// StepDraftPassedOver: a fallback level that says Allowed, passed over
	// because the tool is a draft.
	StepDraftPassedOver = "passed_over_draft"
	// StepNotReached: after the deciding level.
	StepNotReached = "not_reached"
)

// Step is one level of the chain as an Explanation shows it.
type Step struct {
	// Level is 1–8 for rule levels (see Scope), 9–12 for fallbacks, 0 for
	// a gate.
	Level int
	// LevelName is the level's stable name (a LevelName* constant, or the
	// gate's reason).
	LevelName string
	Scope     Scope
	// Outcome is one of the Step* constants.
	Outcome string
	// Key is the rule key this level looks up for the check (rule levels
	// that were consulted); the fields the level does not use are "".
	Key Input
	// Permission is what the level holds: the matching rule's or the
	// fallback's verdict; PermissionUnset when it holds none.
	Permission Permission
	// RuleID is the rule found at this level, if any.
	RuleID string
}

// Explanation is the whole chain walked for one check: every level in
// order with what it held for the check, and the Decision.
type Explanation struct {
	// Decision is exactly what Decide answers for the same input.
	Decision Decision
	// Steps are the gate (when a gate decided) or the 16 rule levels
	// followed by the four fallback levels, in chain order.
	Steps []Step
}

// Explain walks the whole chain for one check, for people: it reports what
// every level holds, where Decide stops at the first answer and skips
// levels it knows to be empty. The Decision is Decide's own answer, so an
// explanation can never disagree with a check; the steps only describe the
// levels around it. Explain allocates and is not meant for the check path.
func (ix *Index) Explain(in Input) Explanation {
	d := ix.Decide(in)
	ex := Explanation{Decision: d}
	if d.Scope == ScopeGate {
		ex.Steps = []Step{{LevelName: d.LevelName, Scope: ScopeGate, Outcome: StepDecides, Permission: d.Permission}}
		return ex
	}
	t := ix.tools[in.Tool]
	ex.Steps = make([]Step, 0, 20)
	decided := false
	step := func(s Step) {
		switch {
		case decided:
			s.Outcome = StepNotReached
		case s.Scope == d.Scope && s.Level == d.Level:
			s.Outcome, s.Permission, s.RuleID, decided = StepDecides, d.Permission, d.RuleID, true
		}
		ex.Steps = append(ex.Steps, s)
	}
	for _, scope := range [2]Scope{ScopeTenant, ScopeOrg} {
		for i, l := range ruleLevels {
			s := Step{Level: i + 1, LevelName: l.orgName, Scope: scope}
			if scope == ScopeTenant {
				s.LevelName = l.tenantName
			}
			switch {
			case scope == ScopeTenant && in.Tenant == "":
				s.Outcome = StepNoTenant
			case l.resource && in.Resource == "":
				s.Outcome = StepNoResource
			case l.method && in.Method == "":
				s.Outcome = StepNoMethod
			default:
				if scope == ScopeTenant {
					s.Key.Tenant = in.Tenant
				}
				if l.resource {
					s.Key.Resource = in.Resource
				}
				if l.tool {
					s.Key.Tool = in.Tool
				}
				if l.method {
					s.Key.Method = in.Method
				}
				s.Outcome = StepNoRule
				k := ruleKey{tenant: s.Key.Tenant, resource: s.Key.Resource, tool: s.Key.Tool, method: s.Key.Method}
				if hit, ok := ix.rules[k]; ok {
					// Decide answers with the first rule found, so only
					// the deciding level can hold one before it: step
					// marks it, and a later one is not reached.
					s.Permission, s.RuleID = hit.permission, hit.id
				}
			}
			step(s)
		}
	}
	fallback := func(level int, name string, p Permission) {
		s := Step{Level: level, LevelName: name, Scope: ScopeFallback, Outcome: StepUnset, Permission: p}
		if p == Allowed && t.tool.Draft && level != levelFailSafe {
			s.Outcome = StepDraftPassedOver
		}
		step(s)
	}
	fallback(levelToolDefault, LevelNameToolDefault, t.tool.DefaultPermission)
	fallback(levelCategoryDefault, LevelNameCategoryDefault, t.categoryDefault)
	approved := PermissionUnset
	if t.tool.Approved {
		approved = Allowed
	}
	fallback(levelToolApproved, LevelNameToolApproved, approved)
	fallback(levelFailSafe, LevelNameFailSafe, RequiresApproval)
	return ex
}
