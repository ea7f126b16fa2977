# The oakallow permission chain (SPEC §2) in Rego, mirroring resolver.Decide
# for the side-by-side benchmark (go run ./dev/loadpeers). The agreement test
# in dev/opa evaluates it with OPA and compares every answer with the
# resolver's.
#
# data.oakallow (loadgen.OPAData):
#   tools:      name -> {category, default_permission, approved, enabled, draft}
#   categories: name -> default_permission ("" for none)
#   rules:      "tenant\x1fresource\x1ftool\x1fmethod" ("" for a field not in
#               the key) -> {id, permission}
# input: {tool, tenant?, resource?, method?}
package oakallow

tenant := object.get(input, "tenant", "")

resource := object.get(input, "resource", "")

method := object.get(input, "method", "")

tool := data.oakallow.tools[input.tool]

# Gates, then levels 1–8 for the tenant, 1–8 for the org, then 9–12: the
# first that answers decides.
decision := gate("tool_not_registered") if {
	not data.oakallow.tools[input.tool]
} else := gate("tool_disabled") if {
	not tool.enabled
} else := d if {
	d := tenant_rule
} else := d if {
	d := org_rule
} else := fallback

gate(reason) := {"permission": "disabled", "level": 0, "level_name": reason, "scope": "gate", "rule_id": "", "reason": reason}

# hit is the decision of the rule with this key, if there is one.
hit(scope, level, name, key) := {
	"permission": r.permission, "level": level, "level_name": name, "scope": scope,
	"rule_id": r.id, "reason": "",
} if {
	r := data.oakallow.rules[concat("\u001f", key)]
}

tenant_rule := d if {
	tenant != ""
	d := rule_chain("tenant", tenant)
}

org_rule := rule_chain("org", "")

# rule_chain walks the eight key shapes in order; a shape whose key needs a
# resource or method the check does not carry is skipped.
rule_chain(scope, t) := d if {
	resource != ""
	method != ""
	d := hit(scope, 1, concat("_", [scope, "resource_tool_method"]), [t, resource, input.tool, method])
} else := d if {
	resource != ""
	d := hit(scope, 2, concat("_", [scope, "resource_tool"]), [t, resource, input.tool, ""])
} else := d if {
	method != ""
	d := hit(scope, 3, concat("_", [scope, "tool_method"]), [t, "", input.tool, method])
} else := d if {
	d := hit(scope, 4, concat("_", [scope, "tool"]), [t, "", input.tool, ""])
} else := d if {
	resource != ""
	method != ""
	d := hit(scope, 5, concat("_", [scope, "resource_method"]), [t, resource, "", method])
} else := d if {
	resource != ""
	d := hit(scope, 6, concat("_", [scope, "resource"]), [t, resource, "", ""])
} else := d if {
	method != ""
	d := hit(scope, 7, concat("_", [scope, "method"]), [t, "", "", method])
} else := d if {
	d := hit(scope, 8, concat("_", [scope, "wildcard"]), [t, "", "", ""])
}

category_default := object.get(data.oakallow.categories, tool.category, "")

# A draft tool never reaches "allowed" through levels 9–11: such an answer
# is passed over, and the decision that follows says why.
passed_over contains 9 if {
	tool.draft
	tool.default_permission == "allowed"
}

passed_over contains 10 if {
	tool.draft
	category_default == "allowed"
}

passed_over contains 11 if {
	tool.draft
	tool.approved
}

fallback_reason(level) := "tool_draft" if {
	some l in passed_over
	l < level
} else := ""

fb(permission, level, name) := {
	"permission": permission, "level": level, "level_name": name, "scope": "fallback",
	"rule_id": "", "reason": fallback_reason(level),
}

fallback := fb(tool.default_permission, 9, "tool_default") if {
	tool.default_permission != ""
	not 9 in passed_over
} else := fb(category_default, 10, "category_default") if {
	category_default != ""
	not 10 in passed_over
} else := fb("allowed", 11, "tool_approved") if {
	tool.approved
	not 11 in passed_over
} else := fb("requires_approval", 12, "fail_safe")
