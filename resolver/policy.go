package resolver

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrInvalidPolicy is wrapped by every error Compile returns, so callers can
// tell a policy the resolver refuses from other failures with errors.Is.
var ErrInvalidPolicy = errors.New("invalid policy")

// maxReportedProblems bounds the size of a Compile error: a broken table of
// ten thousand rules should not produce a ten-thousand-line message.
const maxReportedProblems = 20

// Rule maps a key to a permission. Each key field is a name; "" means the
// field is not part of the key, so a rule with every key field empty is the
// org wildcard and a rule with only Tenant set is that tenant's wildcard.
// A rule that names a Tool applies to that tool only; one that does not
// applies to every tool.
type Rule struct {
	// ID identifies the rule in decisions and the audit log; required and
	// unique within a policy.
	ID string
	// Tenant scopes the rule to one tenant; "" makes it an org-wide rule.
	Tenant string
	// Resource restricts the rule to checks naming this resource.
	Resource string
	// Tool restricts the rule to checks of this tool.
	Tool string
	// Method restricts the rule to checks carrying this method (exact,
	// case-sensitive match).
	Method string
	// Permission is the verdict when this rule is the first match; required.
	Permission Permission
}

// Tool is the part of a registered tool that takes part in decisions.
type Tool struct {
	// Name is unique within the org; checks name tools by it.
	Name string
	// Category names the tool's category; "" for none. A category that is
	// not in Policy.Categories has no default permission.
	Category string
	// DefaultPermission answers at level 9; PermissionUnset falls through.
	DefaultPermission Permission
	// Approved answers Allowed at level 11 (pre-approved tool).
	Approved bool
	// Enabled false makes every check answer Disabled at the gate.
	Enabled bool
	// Draft marks a tool discovered automatically and not yet triaged: it
	// never reaches Allowed through levels 9–11.
	Draft bool
}

// Category carries the default permission of a category of tools.
type Category struct {
	// Name is unique within the org.
	Name string
	// DefaultPermission answers at level 10; PermissionUnset falls through.
	DefaultPermission Permission
}

// Policy is everything one org's decisions depend on.
type Policy struct {
	Tools      []Tool
	Categories []Category
	Rules      []Rule
}

// ruleKey is the exact-match key of a rule. A struct of strings hashes
// without allocating, which keeps Decide allocation-free.
type ruleKey struct {
	tenant, resource, tool, method string
}

// ruleHit is what a matching rule contributes to a Decision.
type ruleHit struct {
	id         string
	permission Permission
}

// toolEntry is a registered tool with what Compile derived for it.
type toolEntry struct {
	tool Tool
	// categoryDefault is the category's default permission, resolved once.
	categoryDefault Permission
	// ruleLevels has a bit for every tool-naming level (see levelBit) at
	// which at least one rule names this tool, in any scope.
	ruleLevels uint16
}

// Compile validates p and builds an immutable Index from it. It refuses
// duplicate tool or category names, tools or categories without a name,
// rules without an ID, duplicate rule IDs, rules whose Permission is unset,
// two rules with the same key, and permission values outside the declared
// constants. Every problem found (up to a bound) is reported, each wrapping
// ErrInvalidPolicy. Compile copies what it needs; p may be reused.
func Compile(p Policy) (*Index, error) {
	var problems problemList

	categories := make(map[string]Permission, len(p.Categories))
	for i, c := range p.Categories {
		switch {
		case c.Name == "":
			problems.add("category #%d has no name", i)
			continue
		case !c.DefaultPermission.valid():
			problems.add("category %q has invalid default permission %d", c.Name, uint8(c.DefaultPermission))
		}
		if _, dup := categories[c.Name]; dup {
			problems.add("duplicate category %q", c.Name)
			continue
		}
		categories[c.Name] = c.DefaultPermission
	}

	ix := &Index{
		tools:        make(map[string]*toolEntry, len(p.Tools)),
		rules:        make(map[ruleKey]ruleHit, len(p.Rules)),
		tenantLevels: make(map[string]uint16),
	}
	for i, t := range p.Tools {
		switch {
		case t.Name == "":
			problems.add("tool #%d has no name", i)
			continue
		case !t.DefaultPermission.valid():
			problems.add("tool %q has invalid default permission %d", t.Name, uint8(t.DefaultPermission))
		}
		if _, dup := ix.tools[t.Name]; dup {
			problems.add("duplicate tool %q", t.Name)
			continue
		}
		ix.tools[t.Name] = &toolEntry{tool: t, categoryDefault: categories[t.Category]}
	}

	ids := make(map[string]struct{}, len(p.Rules))
	for i, r := range p.Rules {
		label := strconv.Quote(r.ID)
		if r.ID == "" {
			label = "#" + strconv.Itoa(i)
			problems.add("rule %s has no id", label)
		} else if _, dup := ids[r.ID]; dup {
			problems.add("duplicate rule id %q", r.ID)
		} else {
			ids[r.ID] = struct{}{}
		}
		switch {
		case r.Permission == PermissionUnset:
			problems.add("rule %s has no permission", label)
		case !r.Permission.valid():
			problems.add("rule %s has invalid permission %d", label, uint8(r.Permission))
		}

		k := ruleKey{tenant: r.Tenant, resource: r.Resource, tool: r.Tool, method: r.Method}
		if prev, dup := ix.rules[k]; dup {
			problems.add("rules %q and %s have the same key (tenant=%q resource=%q tool=%q method=%q)",
				prev.id, label, r.Tenant, r.Resource, r.Tool, r.Method)
			continue
		}
		ix.rules[k] = ruleHit{id: r.ID, permission: r.Permission}

		bit := levelBit(r.Tenant != "", r.Resource != "", r.Tool != "", r.Method != "")
		if r.Tenant != "" {
			ix.tenantLevels[r.Tenant] |= bit
		} else {
			ix.orgLevels |= bit
		}
		// A rule naming an unregistered tool is kept (the tool may be
		// registered later, and the gate stops checks of it meanwhile) but
		// marks no tool.
		if e, ok := ix.tools[r.Tool]; ok && r.Tool != "" {
			e.ruleLevels |= bit
		}
	}

	if err := problems.err(); err != nil {
		return nil, err
	}
	return ix, nil
}

// problemList collects Compile's findings into one error.
type problemList struct {
	errs    []error
	dropped int
}

func (l *problemList) add(format string, args ...any) {
	if len(l.errs) == maxReportedProblems {
		l.dropped++
		return
	}
	l.errs = append(l.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidPolicy}, args...)...))
}

func (l *problemList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	if l.dropped > 0 {
		l.errs = append(l.errs, fmt.Errorf("%w: and %d more problems", ErrInvalidPolicy, l.dropped))
	}
	return fmt.Errorf("compile policy: %w", errors.Join(l.errs...))
}
