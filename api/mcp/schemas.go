package mcp

// The tools' input and output schemas (JSON Schema 2020-12), written out so
// that they state exactly what the handlers accept and answer: the limits
// are the REST operations' own, and parameters stay free-form objects whose
// bytes reach the runtime unchanged (exact numbers for the RFC 8785 hash).

const orgProp = `"org": {"type": "string", "maxLength": 64, "description": "Your org's id (org_…). Optional: a credential acts for one org; another id is refused."}`

const callProps = orgProp + `,
	"tool": {"type": "string", "minLength": 1, "maxLength": 200, "description": "The tool's name as registered in the org's catalog."},
	"tenant": {"type": "string", "maxLength": 200, "description": "The org's customer the call acts for (tenant name)."},
	"resource": {"type": "string", "maxLength": 200, "description": "Target resource name (a database, a mailbox, …)."},
	"method": {"type": "string", "maxLength": 200, "description": "Free-form method, e.g. read, write, DELETE, send."},
	"parameters": {"type": "object", "description": "The tool call's parameters, validated against the tool's schema. Tokens bind their RFC 8785 hash. At most 64 levels deep; send numbers RFC 8785 would change (beyond double precision) as strings."},
	"context": {"type": "object", "description": "Free-form context for reviewers and the audit log (PII-scrubbed)."},
	"reference_id": {"type": "string", "maxLength": 200, "description": "Your own correlation id, echoed in the audit log and webhooks."}`

const checkInput = `{"type": "object", "additionalProperties": false, "required": ["tool"], "properties": {` + callProps + `,
	"reason": {"type": "string", "maxLength": 2000, "description": "Why you want to run the tool (PII-scrubbed before storage)."}}}`

const checkOutput = `{"type": "object", "required": ["permission", "level", "level_name", "scope", "check_id", "receipt"], "properties": {
	"permission": {"type": "string", "enum": ["allowed", "requires_approval", "disabled"], "description": "The verdict."},
	"level": {"type": "integer", "minimum": 0, "maximum": 12, "description": "The level that decided: 1–8 rules, 9–12 fallbacks, 0 gates."},
	"level_name": {"type": "string"},
	"scope": {"type": "string", "enum": ["gate", "tenant", "org", "fallback"]},
	"rule_id": {"type": "string"},
	"reason": {"type": "string", "description": "Why a gate or fallback answered: tool_not_registered, tool_disabled, tool_draft, tool_auto_created (the unknown tool was registered as a draft), tool_discovery_capped (the org's auto-discovery caps kept it out)."},
	"check_id": {"type": "string", "description": "Give it to mint_token when the verdict is allowed."},
	"receipt": {"type": "string", "description": "Signed receipt of this decision (oak_rcpt_…)."}}}`

const approvalInput = `{"type": "object", "additionalProperties": false, "required": ["tool", "reasoning"], "properties": {` + callProps + `,
	"reasoning": {"type": "string", "minLength": 1, "maxLength": 2000, "description": "Why you want to run the tool, for the reviewers (PII-scrubbed)."},
	"timeout_seconds": {"type": "integer", "description": "How long each level waits for a decision, clamped to 60 … 604800 s; also becomes the tool's stored override."}}}`

const approvalCreatedOutput = `{"type": "object", "required": ["id", "reference", "status", "level", "levels", "expires_at"], "properties": {
	"id": {"type": "string"},
	"reference": {"type": "string", "description": "REF-XXXXXXXX-XXXX: give it to check_approval_status."},
	"status": {"type": "string", "enum": ["pending"]},
	"level": {"type": "integer"},
	"levels": {"type": "integer", "description": "How many levels must approve (1 or 2)."},
	"expires_at": {"type": "string", "format": "date-time"}}}`

const approvalStatusProps = `{"type": "object", "required": ["id", "reference", "status", "level", "levels", "tool", "expires_at", "created_at", "decisions"], "properties": {
	"id": {"type": "string"},
	"reference": {"type": "string"},
	"status": {"type": "string", "enum": ["pending", "approved", "denied", "expired"], "description": "Run the tool only when approved, with the token."},
	"level": {"type": "integer"},
	"levels": {"type": "integer"},
	"tool": {"type": "string"},
	"tenant": {"type": "string"},
	"resource": {"type": "string"},
	"method": {"type": "string"},
	"reference_id": {"type": "string"},
	"expires_at": {"type": "string", "format": "date-time"},
	"created_at": {"type": "string", "format": "date-time"},
	"decided_at": {"type": "string", "format": "date-time"},
	"decisions": {"type": "array", "items": {"type": "object"}},
	"token": {"type": "string", "description": "Once approved: the single-use execution token (oak_tok_…)."},
	"token_expires_at": {"type": "string", "format": "date-time"}}}`

const approvalStatusInput = `{"type": "object", "additionalProperties": false, "required": ["reference"], "properties": {` + orgProp + `,
	"reference": {"type": "string", "minLength": 1, "maxLength": 200, "description": "The approval's reference (REF-…) or id."}}}`

const approvalStatusOutput = approvalStatusProps

const listApprovalsInput = `{"type": "object", "additionalProperties": false, "properties": {` + orgProp + `,
	"tool": {"type": "string", "maxLength": 200, "description": "Only approvals for this tool."},
	"limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20},
	"cursor": {"type": "string", "maxLength": 400, "description": "next_cursor of the previous page."}}}`

const listApprovalsOutput = `{"type": "object", "required": ["approvals"], "properties": {
	"approvals": {"type": "array", "items": ` + approvalStatusProps + `},
	"next_cursor": {"type": "string"}}}`

const mintInput = `{"type": "object", "additionalProperties": false, "properties": {` + orgProp + `,
	"check_id": {"type": "string", "maxLength": 200, "description": "An allowed check's check_id. Give this or approval_id."},
	"approval_id": {"type": "string", "maxLength": 200, "description": "An approved approval's id or reference. Give this or check_id."}}}`

const mintOutput = `{"type": "object", "required": ["token", "token_id", "expires_at", "source_kind", "source_id"], "properties": {
	"token": {"type": "string", "description": "The single-use execution token (oak_tok_…): pass it to the tool."},
	"token_id": {"type": "string"},
	"expires_at": {"type": "string", "format": "date-time"},
	"source_kind": {"type": "string", "enum": ["check", "approval"]},
	"source_id": {"type": "string"}}}`

const listToolsInput = `{"type": "object", "additionalProperties": false, "properties": {` + orgProp + `,
	"limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 50},
	"cursor": {"type": "string", "maxLength": 400, "description": "next_cursor of the previous page."}}}`

const listToolsOutput = `{"type": "object", "required": ["tools"], "properties": {
	"tools": {"type": "array", "items": {"type": "object", "required": ["name", "risk_level", "status", "enabled"], "properties": {
		"name": {"type": "string"},
		"description": {"type": "string"},
		"category": {"type": "string"},
		"risk_level": {"type": "string", "enum": ["low", "medium", "high", "critical"]},
		"status": {"type": "string", "enum": ["active", "draft"]},
		"enabled": {"type": "boolean"},
		"read_only": {"type": "boolean"},
		"destructive": {"type": "boolean"},
		"idempotent": {"type": "boolean"},
		"open_world": {"type": "boolean"},
		"parameter_schema": {"type": "object"}}}},
	"next_cursor": {"type": "string"}}}`
