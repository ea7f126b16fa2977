package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"oakallow/activities/pii"
	"oakallow/activities/tokens"
	"oakallow/resolver"
	"oakallow/store"
)

// checkRequest is the body of POST /v1/permissions/check.
type checkRequest struct {
	Tool        string     `json:"tool" minLength:"1" maxLength:"200" doc:"Tool name as registered in the org's catalog." example:"send_email"`
	Tenant      string     `json:"tenant,omitempty" maxLength:"200" doc:"The org's customer the call acts for (tenant name). Tenant rules are walked only when set. Tenant, resource and method are normalised (trimmed, Unicode NFC, case-folded) before matching; names with control or invisible characters are refused (422)."`
	Resource    string     `json:"resource,omitempty" maxLength:"200" doc:"Target resource name (a database, a mailbox, …)."`
	Method      string     `json:"method,omitempty" maxLength:"200" doc:"Free-form method, e.g. read, write, DELETE, send." example:"send"`
	Parameters  jsonObject `json:"parameters,omitempty" doc:"The tool call's parameters; validated against the tool's JSON Schema when it has one. Stored PII-scrubbed; only their hash is bound into receipts and tokens. At most 64 levels deep; every number must survive RFC 8785 canonicalisation with its exact value (9007199254740993 does not: send such values as strings)."`
	Reason      string     `json:"reason,omitempty" maxLength:"2000" doc:"Why the agent wants to act. PII-scrubbed before storage."`
	Context     jsonObject `json:"context,omitempty" doc:"Free-form context for reviewers and the audit log. PII-scrubbed before storage. At most 64 levels deep; numbers are kept exactly as written."`
	ReferenceID string     `json:"reference_id,omitempty" maxLength:"200" doc:"The caller's own correlation id, echoed in the audit log."`
}

type checkInput struct {
	IdempotencyHeader
	Body checkRequest `additionalProperties:"false"`
}

// CheckResult is the verdict of a permission check.
type CheckResult struct {
	Permission string `json:"permission" enum:"allowed,requires_approval,disabled" doc:"The verdict."`
	Level      int    `json:"level" minimum:"0" maximum:"12" doc:"The level that decided: 1–8 tenant or org rules, 9–12 fallbacks, 0 for gates."`
	LevelName  string `json:"level_name" doc:"Stable name of the deciding level, e.g. org_tool, tool_default, fail_safe, tool_not_registered."`
	Scope      string `json:"scope" enum:"gate,tenant,org,fallback" doc:"Where the decision came from."`
	RuleID     string `json:"rule_id,omitempty" doc:"The matching rule, when a rule decided."`
	Reason     string `json:"reason,omitempty" doc:"Why a gate or fallback answered: tool_not_registered, tool_disabled, tool_draft."`
	CheckID    string `json:"check_id" doc:"Id of this check; mint an execution token from an allowed check with it."`
	Receipt    string `json:"receipt" doc:"Signed receipt of this decision (oak_rcpt_…), verifiable with POST /v1/receipts/verify."`
}

type checkOutput struct {
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
	Body     CheckResult
}

// Audit event kinds written by the runtime path.
const (
	kindPermissionCheck = "permission.check"
)

func registerCheck(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "check-permission",
		Method:      http.MethodPost,
		Path:        "/v1/permissions/check",
		Summary:     "Check a permission",
		Description: "Resolves the org's 12-level rule chain for a tool call and returns the verdict with a signed receipt. " +
			"Billable ($0.005). The answer is sent only after the check's audit entry is durable.",
		Tags:   []string{"Runtime"},
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusPaymentRequired, http.StatusForbidden, http.StatusUnprocessableEntity},
	}, accessRuntime), func(ctx context.Context, in *checkInput) (*checkOutput, error) {
		if in.IdempotencyKey != "" {
			// A retried check gets the first verdict, check id and receipt
			// back, and is billed once.
			_, res, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "check-permission", in.Body,
				func(ctx context.Context) (int, CheckResult, error) {
					res, err := s.check(ctx, mustPrincipal(ctx), &in.Body)
					return http.StatusOK, res, err
				})
			if err != nil {
				return nil, err
			}
			return &checkOutput{Replayed: replayedHeader(replayed), Body: res}, nil
		}
		res, err := s.check(ctx, mustPrincipal(ctx), &in.Body)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &checkOutput{Body: res}, nil
	})
}

// check decides, records and signs one permission check. A replayed
// Idempotency-Key answer does not come here, so each check is counted once.
func (s *Server) check(ctx context.Context, p Principal, req *checkRequest) (CheckResult, error) {
	start := time.Now()
	rawParams, err := requestParameters(req.Parameters)
	if err != nil {
		return CheckResult{}, err
	}
	rawContext, err := requestContext(req.Context)
	if err != nil {
		return CheckResult{}, err
	}
	if err := rejectNUL(req, rawParams, rawContext); err != nil {
		return CheckResult{}, err
	}
	if err := normalizeRequestNames(&req.Tenant, &req.Resource, &req.Method); err != nil {
		return CheckResult{}, err
	}
	pol, err := s.policies.Get(ctx, p.OrgID)
	if err != nil {
		return CheckResult{}, err
	}
	if info, ok := pol.tools[req.Tool]; ok && info.Schema != nil {
		if err := validateParameters(info.Schema, rawParams); err != nil {
			return CheckResult{}, err
		}
	}
	d := pol.index.Decide(resolver.Input{Tool: req.Tool, Tenant: req.Tenant, Resource: req.Resource, Method: req.Method})

	paramsHash, err := tokens.HashParameters(rawParams)
	if err != nil {
		return CheckResult{}, problem(http.StatusUnprocessableEntity, CodeValidationFailed, "parameters cannot be canonicalised: "+err.Error())
	}
	now := s.deps.Now().UTC()
	res := CheckResult{
		Permission: d.Permission.String(), Level: d.Level, LevelName: d.LevelName, Scope: d.Scope.String(),
		RuleID: d.RuleID, Reason: d.Reason, CheckID: store.NewID("chk"),
	}
	details, err := checkDetails(req, rawParams, rawContext, paramsHash, res)
	if err != nil {
		return CheckResult{}, err
	}
	err = s.recorder.Record(ctx, store.Entry{Billable: true, Event: store.AuditRecord{
		ID: res.CheckID, OrgID: p.OrgID, TeamID: p.TeamID, OccurredAt: now,
		ActorKind: p.Kind, ActorID: p.KeyID, Kind: kindPermissionCheck, Subject: req.Tool,
		Outcome: res.Permission, Tool: req.Tool, Tenant: req.Tenant, Details: details,
	}})
	if err != nil {
		return CheckResult{}, err
	}
	res.Receipt, err = s.keyring.SignReceipt(tokens.Receipt{
		CheckID: res.CheckID, Org: p.OrgID, Tool: req.Tool, Tenant: req.Tenant, Resource: req.Resource,
		Method: req.Method, ParamsHash: paramsHash, Permission: res.Permission, Level: res.Level,
		Scope: res.Scope, RuleID: res.RuleID, DecidedAt: now,
	})
	if err != nil {
		return CheckResult{}, fmt.Errorf("sign receipt: %w", err)
	}
	s.metrics.checkLatency.Observe(time.Since(start).Seconds())
	s.metrics.verdicts.WithLabelValues(res.Permission, res.Scope).Inc()
	return res, nil
}

// rejectNUL refuses NUL characters anywhere in a check: PostgreSQL text and
// jsonb cannot store them, and no tool name, reason or parameter needs one.
// Parameters and context are checked in their JSON encoding (rawParams,
// rawContext), which the check needs anyway, with the same test as every
// other write's body (jsonHasNUL).
func rejectNUL(req *checkRequest, rawParams, rawContext json.RawMessage) error {
	fields := [...]struct{ name, v string }{{"tool", req.Tool}, {"tenant", req.Tenant}, {"resource", req.Resource},
		{"method", req.Method}, {"reason", req.Reason}, {"reference_id", req.ReferenceID}}
	for _, f := range fields {
		if strings.IndexByte(f.v, 0) >= 0 {
			return nulProblem("body." + f.name)
		}
	}
	if jsonHasNUL(rawParams) {
		return nulProblem("body.parameters")
	}
	if jsonHasNUL(rawContext) {
		return nulProblem("body.context")
	}
	return nil
}

func nulProblem(where string) error {
	return problem(http.StatusUnprocessableEntity, CodeValidationFailed, "strings must not contain NUL characters",
		&huma.ErrorDetail{Location: where, Message: "contains a NUL character"})
}

// validateParameters checks parameters against the tool's schema and turns
// failures into a 422 with one detail per failing location.
func validateParameters(schema *jsonschema.Schema, raw json.RawMessage) error {
	if raw == nil {
		raw = json.RawMessage(`{}`)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return problem(http.StatusUnprocessableEntity, CodeValidationFailed, "parameters are not valid JSON")
	}
	err = schema.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return problem(http.StatusUnprocessableEntity, CodeValidationFailed, "parameters do not match the tool's schema")
	}
	out := ve.BasicOutput()
	var details []*huma.ErrorDetail
	for _, u := range out.Errors {
		if u.Error == nil || len(details) >= 20 {
			continue
		}
		details = append(details, &huma.ErrorDetail{
			Location: "body.parameters" + jsonPointerToPath(u.InstanceLocation),
			Message:  u.Error.String(),
		})
	}
	return problem(http.StatusUnprocessableEntity, CodeValidationFailed, "parameters do not match the tool's schema", details...)
}

// jsonPointerToPath renders "/a/0/b" as ".a[0].b".
func jsonPointerToPath(ptr string) string {
	if ptr == "" {
		return ""
	}
	var b bytes.Buffer
	seg := ""
	flush := func() {
		if seg == "" {
			return
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
		seg = ""
	}
	for _, c := range ptr[1:] {
		if c == '/' {
			flush()
			continue
		}
		seg += string(c)
	}
	flush()
	return b.String()
}

// checkAuditDetails is the details of a permission.check audit entry.
type checkAuditDetails struct {
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

// checkDetails is the audit entry's details: the request (reason, context
// and parameters PII-scrubbed) and the full decision.
func checkDetails(req *checkRequest, rawParams, rawContext json.RawMessage, paramsHash string, res CheckResult) ([]byte, error) {
	d := checkAuditDetails{
		Level: res.Level, LevelName: res.LevelName, Scope: res.Scope, RuleID: res.RuleID, GateReason: res.Reason,
		Resource: req.Resource, Method: req.Method, ReferenceID: req.ReferenceID,
	}
	if req.Reason != "" {
		d.Reason = pii.Scrub(req.Reason)
	}
	if paramsHash != "" {
		d.ParametersHash = paramsHash
		scrubbed, err := pii.ScrubJSON(rawParams)
		if err != nil {
			return nil, fmt.Errorf("scrub parameters: %w", err)
		}
		d.Parameters = scrubbed
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
