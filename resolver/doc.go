// Package resolver decides permission checks: it compiles one org's tools,
// categories and rules into an immutable Index, and Index.Decide walks the
// rule chain of SPEC §2 for a check. It does no I/O and imports nothing of
// oakallow; loading rules, swapping indexes when they change, auditing and
// metrics belong to its callers.
//
// # The chain
//
// Gates come first and answer Disabled with Level 0 and ScopeGate:
//
//   - the tool is not registered: Reason "tool_not_registered". This is the
//     REST behaviour; the MCP server auto-registers unknown tools as drafts
//     before asking, so it never sees this gate for a tool it registered.
//   - the tool is not Enabled: Reason "tool_disabled".
//
// Then the first matching rule wins. Levels 1–8, tenant scope, are walked
// only when the check names a tenant; the same eight keys follow at org
// scope (rules with no tenant):
//
//	1 resource + tool + method    tenant_resource_tool_method / org_…
//	2 resource + tool             tenant_resource_tool        / org_…
//	3 tool + method               tenant_tool_method          / org_…
//	4 tool                        tenant_tool                 / org_tool
//	5 resource + method           tenant_resource_method      / org_…
//	6 resource                    tenant_resource             / org_resource
//	7 method                      tenant_method               / org_method
//	8 (nothing else)              tenant_wildcard             / org_wildcard
//
// Every tenant level comes before every org level, so a tenant wildcard
// beats the most specific org rule. A level whose key needs a resource or
// method the check does not carry is skipped. A tenant with no rules of its
// own (registered or not) simply falls through to the org levels. Rules
// match names exactly, byte for byte; oakallow's callers bring tenant,
// resource and method names to one normal form with NormalizeName (trimmed,
// NFC, case-folded, invisible characters refused) both when rules are
// written and before Decide, so "DELETE", "delete" and "DELETE " are one
// method. Decide itself does not normalise: it stays a few map lookups.
//
// When no rule matches, ScopeFallback:
//
//	 9 tool_default      the tool's DefaultPermission, if set
//	10 category_default  its category's DefaultPermission, if set
//	11 tool_approved     Allowed if the tool is Approved
//	12 fail_safe         RequiresApproval
//
// # Draft tools
//
// A draft (a tool discovered automatically and not yet triaged) never
// reaches Allowed through levels 9–11. An Allowed answer at one of those
// levels is passed over, as if that level were unset, and the chain goes on:
// a category that disables the draft still disables it, and otherwise the
// fail-safe answers RequiresApproval. Such a decision carries Reason
// "tool_draft" so the audit log shows why a pre-approved tool was not
// allowed. Non-Allowed fallback answers (RequiresApproval, Disabled) apply
// to drafts unchanged.
//
// Rules at levels 1–8 apply to drafts exactly as to any other tool, Allowed
// included: a rule is an explicit decision by an org admin, and the
// specification restricts only the fallback levels. Note what follows: an
// Allowed rule that does not name a tool (say, org_wildcard) allows drafts
// too, including ones the MCP server registers later.
//
// # Performance
//
// Rules are kept in one map keyed by a struct of the four names, which Go
// hashes without allocating, and Decide builds keys from the check's own
// strings, so it never allocates. Compile also records, per tenant and per
// tool, which levels hold rules at all; Decide visits only those levels,
// usually a handful of map lookups however large the org. See
// BenchmarkDecide for figures.
package resolver
