package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"oakallow/activities/jsondoc"
	"oakallow/activities/pii"
	"oakallow/activities/tokens"
	"oakallow/resolver"
	"oakallow/store"
)

// KindPermissionCheck is the audit kind of a permission check.
const KindPermissionCheck = "permission.check"

// CheckRequest is a permission check (SPEC §2). Parameters and Context are
// JSON objects as the caller sent them (nil or {} for none): kept as text,
// numbers keep their exact decimal value through hashing and storage.
type CheckRequest struct {
	Call
	Reason string
	// Discover registers an unknown tool as a draft and answers
	// requires_approval (the MCP connector, SPEC §7; see discover.go).
	// Without it an unknown tool answers disabled, tool_not_registered (REST
	// callers manage their catalog explicitly).
	Discover bool
}

// Call is the tool call a check or an approval request is about.
// Parameters and Context are JSON objects as the caller sent them (nil or {}
// for none).
type Call struct {
	Tool        string
	Tenant      string
	Resource    string
	Method      string
	Parameters  json.RawMessage
	Context     json.RawMessage
	ReferenceID string
}

// accept refuses a call the runtime cannot take (parameters that cannot be
// bound exactly, an unacceptable context, NUL characters — also in the
// call's text, named textName — or names with no normal form), normalises
// its names in place, and returns its parameters and context (nil for none).
func (c *Call) accept(textName, text string) (rawParams, rawContext json.RawMessage, err error) {
	if rawParams, err = parameters(c.Parameters); err != nil {
		return nil, nil, err
	}
	if rawContext, err = callContext(c.Context); err != nil {
		return nil, nil, err
	}
	fields := [...]namedValue{{"tool", c.Tool}, {"tenant", c.Tenant}, {"resource", c.Resource},
		{"method", c.Method}, {textName, text}, {"reference_id", c.ReferenceID}}
	if err := rejectNUL(fields[:], rawParams, rawContext); err != nil {
		return nil, nil, err
	}
	if c.Tenant, c.Resource, c.Method, err = normalizeNames(c.Tenant, c.Resource, c.Method); err != nil {
		return nil, nil, err
	}
	return rawParams, rawContext, nil
}

// CheckResult is the verdict of a permission check.
type CheckResult struct {
	Permission string `json:"permission" enum:"allowed,requires_approval,disabled" doc:"The verdict."`
	Level      int    `json:"level" minimum:"0" maximum:"12" doc:"The level that decided: 1–8 tenant or org rules, 9–12 fallbacks, 0 for gates."`
	LevelName  string `json:"level_name" doc:"Stable name of the deciding level, e.g. org_tool, tool_default, fail_safe, tool_not_registered."`
	Scope      string `json:"scope" enum:"gate,tenant,org,fallback" doc:"Where the decision came from."`
	RuleID     string `json:"rule_id,omitempty" doc:"The matching rule, when a rule decided."`
	Reason     string `json:"reason,omitempty" doc:"Why a gate or fallback answered: tool_not_registered, tool_disabled, tool_draft; over MCP also tool_auto_created (the unknown tool was registered as a draft) and tool_discovery_capped (the auto-discovery caps kept it out)."`
	CheckID    string `json:"check_id" doc:"Id of this check; mint an execution token from an allowed check with it."`
	Receipt    string `json:"receipt" doc:"Signed receipt of this decision (oak_rcpt_…), verifiable with POST /v1/receipts/verify."`
}

// Check decides, records and signs one permission check. req's tenant,
// resource and method are normalised in place. The answer is returned only
// once the check's audit entry, and its charge, are durable.
func (s *Service) Check(ctx context.Context, c Caller, req *CheckRequest) (CheckResult, error) {
	start := time.Now()
	rawParams, rawContext, err := req.accept("reason", req.Reason)
	if err != nil {
		return CheckResult{}, err
	}
	pol, err := s.d.Policies.Policy(ctx, c.OrgID)
	if err != nil {
		return CheckResult{}, err
	}
	info, known := pol.Tool(req.Tool)
	schema := info.Schema
	if !known {
		schema = nil
	}
	// The parameters are parsed once, here; validation, hashing and
	// scrubbing all read the one parse.
	params, err := parseParameters(rawParams, schema != nil)
	if err != nil {
		return CheckResult{}, err
	}
	defer params.Release()
	if schema != nil {
		if err := validateParameters(schema, params); err != nil {
			return CheckResult{}, err
		}
	}
	var paramsHash string
	if params != nil {
		if paramsHash, err = tokens.HashDocument(params); err != nil {
			return CheckResult{}, canonicalisationError(err)
		}
	}
	checkID := store.NewID("chk")
	var d resolver.Decision
	if !known && req.Discover {
		if d, err = s.discover(ctx, c, req.Tool, checkID); err != nil {
			return CheckResult{}, err
		}
	} else {
		d = pol.Decide(resolver.Input{Tool: req.Tool, Tenant: req.Tenant, Resource: req.Resource, Method: req.Method})
	}
	now := s.now()
	res := CheckResult{
		Permission: d.Permission.String(), Level: d.Level, LevelName: d.LevelName, Scope: d.Scope.String(),
		RuleID: d.RuleID, Reason: d.Reason, CheckID: checkID,
	}
	details, err := checkDetails(req, params, rawContext, paramsHash, res)
	if err != nil {
		return CheckResult{}, err
	}
	err = s.d.Recorder.Record(ctx, store.Entry{Billable: true, Event: store.AuditRecord{
		ID: res.CheckID, OrgID: c.OrgID, TeamID: c.TeamID, OccurredAt: now,
		ActorKind: c.Kind, ActorID: c.ID, Kind: KindPermissionCheck, Subject: req.Tool,
		Outcome: res.Permission, Tool: req.Tool, Tenant: req.Tenant, Details: details,
	}})
	if err != nil {
		return CheckResult{}, err
	}
	res.Receipt, err = s.d.Keyring.SignReceipt(tokens.Receipt{
		CheckID: res.CheckID, Org: c.OrgID, Tool: req.Tool, Tenant: req.Tenant, Resource: req.Resource,
		Method: req.Method, ParamsHash: paramsHash, Permission: res.Permission, Level: res.Level,
		Scope: res.Scope, RuleID: res.RuleID, DecidedAt: now,
	})
	if err != nil {
		return CheckResult{}, fmt.Errorf("sign receipt: %w", err)
	}
	s.d.ObserveCheck(time.Since(start), res.Permission, res.Scope)
	return res, nil
}

// validateRawParameters is validateParameters of unparsed parameters.
func validateRawParameters(schema *jsonschema.Schema, raw json.RawMessage) error {
	params, err := parseParameters(raw, true)
	if err != nil {
		return err
	}
	defer params.Release()
	return validateParameters(schema, params)
}

// parseParameters parses a call's parameters (nil for none) for validation,
// hashing and scrubbing. Text that is not JSON (the surfaces decode the
// parameters as JSON, so this is a caller's bug) is refused as it was when
// each reader parsed the text: by schema validation when the tool has a
// schema, else by the canonicalisation for the hash.
func parseParameters(raw json.RawMessage, hasSchema bool) (*jsondoc.Doc, error) {
	if raw == nil {
		return nil, nil
	}
	d, err := jsondoc.Parse(raw)
	if err == nil {
		return d, nil
	}
	if hasSchema {
		return nil, refuse(KindInvalid, CodeValidationFailed, "parameters are not valid JSON")
	}
	if _, err := tokens.HashParameters(raw); err != nil {
		return nil, canonicalisationError(err)
	}
	return nil, refuse(KindInvalid, CodeValidationFailed, "parameters are not valid JSON")
}

// canonicalisationError refuses parameters the parameter hash cannot bind.
func canonicalisationError(err error) error {
	return refuse(KindInvalid, CodeValidationFailed, "parameters cannot be canonicalised: "+err.Error())
}

// validateParameters checks parameters (nil for none) against the tool's
// schema; a failure names each failing location (at most 20).
func validateParameters(schema *jsonschema.Schema, params *jsondoc.Doc) error {
	var inst any = map[string]any{}
	if params != nil {
		inst = params.Value()
	}
	err := schema.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return refuse(KindInvalid, CodeValidationFailed, "parameters do not match the tool's schema")
	}
	out := ve.BasicOutput()
	var fields []FieldError
	for _, u := range out.Errors {
		if u.Error == nil || len(fields) >= 20 {
			continue
		}
		fields = append(fields, FieldError{
			Location: "parameters" + jsonPointerToPath(u.InstanceLocation),
			Message:  u.Error.String(),
		})
	}
	return refuse(KindInvalid, CodeValidationFailed, "parameters do not match the tool's schema", fields...)
}

// jsonPointerToPath renders "/a/0/b" as ".a[0].b".
func jsonPointerToPath(ptr string) string {
	if ptr == "" {
		return ""
	}
	var b strings.Builder
	for _, seg := range strings.Split(ptr[1:], "/") {
		if seg == "" {
			continue
		}
		isIndex := true
		for _, c := range seg {
			if c < '0' || c > '9' {
				isIndex = false
			}
		}
		if isIndex {
			b.WriteString("[" + seg + "]")
		} else {
			b.WriteString("." + seg)
		}
	}
	return b.String()
}

// CheckRecord is the details of a permission.check audit entry: the request
// (reason, context and parameters PII-scrubbed) and the full decision. Mint
// reads a check's call back from it, with this same type.
type CheckRecord struct {
	Level          int             `json:"level"`
	LevelName      string          `json:"level_name"`
	Scope          string          `json:"scope"`
	RuleID         string          `json:"rule_id,omitempty"`
	GateReason     string          `json:"gate_reason,omitempty"`
	Resource       string          `json:"resource,omitempty"`
	Method         string          `json:"method,omitempty"`
	ReferenceID    string          `json:"reference_id,omitempty"`
	Reason         string          `json:"reason,omitempty"`
	ParametersHash string          `json:"parameters_hash,omitempty"`
	Parameters     json.RawMessage `json:"parameters,omitempty"`
	Context        json.RawMessage `json:"context,omitempty"`
}

// checkDetails encodes the check's CheckRecord.
func checkDetails(req *CheckRequest, params *jsondoc.Doc, rawContext json.RawMessage, paramsHash string, res CheckResult) ([]byte, error) {
	d := CheckRecord{
		Level: res.Level, LevelName: res.LevelName, Scope: res.Scope, RuleID: res.RuleID, GateReason: res.Reason,
		Resource: req.Resource, Method: req.Method, ReferenceID: req.ReferenceID,
	}
	if req.Reason != "" {
		d.Reason = pii.Scrub(req.Reason)
	}
	if paramsHash != "" {
		d.ParametersHash = paramsHash
		d.Parameters = pii.ScrubDocument(make([]byte, 0, len(params.Text())), params)
	}
	if rawContext != nil {
		scrubbed, err := pii.ScrubJSON(rawContext)
		if err != nil {
			return nil, fmt.Errorf("scrub context: %w", err)
		}
		d.Context = scrubbed
	}
	return json.Marshal(d)
}
