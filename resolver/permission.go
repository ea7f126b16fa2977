package resolver

import (
	"fmt"
	"strconv"
)

// Permission is the verdict of a permission check. The zero value,
// PermissionUnset, is never a verdict: on a tool or category it means "fall
// through to the next level"; on a rule it is refused by Compile.
type Permission uint8

// The permissions, in the order the API documents them.
const (
	// PermissionUnset means no permission was given; it never answers a check.
	PermissionUnset Permission = iota
	// Allowed lets the agent run the tool now.
	Allowed
	// RequiresApproval makes the agent ask a human first.
	RequiresApproval
	// Disabled refuses the tool outright.
	Disabled
)

// String returns the wire name: "allowed", "requires_approval", "disabled",
// or "" for PermissionUnset.
func (p Permission) String() string {
	switch p {
	case PermissionUnset:
		return ""
	case Allowed:
		return "allowed"
	case RequiresApproval:
		return "requires_approval"
	case Disabled:
		return "disabled"
	default:
		return "Permission(" + strconv.Itoa(int(p)) + ")"
	}
}

// valid reports whether p is one of the declared constants (Unset included).
func (p Permission) valid() bool { return p <= Disabled }

// ParsePermission parses a wire name. The empty string parses to
// PermissionUnset, because a nullable default_permission arrives as "" or
// null; any other unknown name is an error.
func ParsePermission(s string) (Permission, error) {
	switch s {
	case "":
		return PermissionUnset, nil
	case "allowed":
		return Allowed, nil
	case "requires_approval":
		return RequiresApproval, nil
	case "disabled":
		return Disabled, nil
	default:
		return PermissionUnset, fmt.Errorf("unknown permission %q (want allowed, requires_approval or disabled)", s)
	}
}

// MarshalText implements encoding.TextMarshaler so a Permission encodes as
// its wire name in JSON and YAML.
func (p Permission) MarshalText() ([]byte, error) {
	if !p.valid() {
		return nil, fmt.Errorf("marshal permission: invalid value %d", uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParsePermission.
func (p *Permission) UnmarshalText(text []byte) error {
	v, err := ParsePermission(string(text))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Scope says which part of the chain produced a Decision.
type Scope uint8

// The scopes, in the order the chain visits them.
const (
	// ScopeGate: the tool is unknown or disabled; no rule was consulted.
	ScopeGate Scope = iota
	// ScopeTenant: a rule scoped to the check's tenant decided (levels 1–8).
	ScopeTenant
	// ScopeOrg: an org-wide rule decided (levels 1–8 without tenant).
	ScopeOrg
	// ScopeFallback: no rule matched; the tool, its category or the
	// fail-safe decided (levels 9–12).
	ScopeFallback
)

// String returns "gate", "tenant", "org" or "fallback".
func (s Scope) String() string {
	switch s {
	case ScopeGate:
		return "gate"
	case ScopeTenant:
		return "tenant"
	case ScopeOrg:
		return "org"
	case ScopeFallback:
		return "fallback"
	default:
		return "Scope(" + strconv.Itoa(int(s)) + ")"
	}
}

// MarshalText implements encoding.TextMarshaler.
func (s Scope) MarshalText() ([]byte, error) {
	if s > ScopeFallback {
		return nil, fmt.Errorf("marshal scope: invalid value %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Scope) UnmarshalText(text []byte) error {
	for v := ScopeGate; v <= ScopeFallback; v++ {
		if v.String() == string(text) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("unknown scope %q (want gate, tenant, org or fallback)", text)
}
