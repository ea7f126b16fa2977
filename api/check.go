package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/api/runtime"
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

	read checkRead // how UnmarshalJSON took the body (checkbody.go)
	body []byte    // the body, when Resolve is to validate and decode it
}

type checkInput struct {
	IdempotencyHeader
	Body checkRequest `additionalProperties:"false"`
}

// CheckResult is the verdict of a permission check.
type CheckResult = runtime.CheckResult

type checkOutput struct {
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
	Body     CheckResult
}

func registerCheck(api huma.API, s *Server) {
	op := withAccess(huma.Operation{
		OperationID: "check-permission",
		Method:      http.MethodPost,
		Path:        "/v1/permissions/check",
		Summary:     "Check a permission",
		Description: "Resolves the org's 12-level rule chain for a tool call and returns the verdict with a signed receipt. " +
			"Billable ($0.005). The answer is sent only after the check's audit entry is durable.",
		Tags:   []string{"Runtime"},
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusPaymentRequired, http.StatusForbidden, http.StatusUnprocessableEntity},
	}, accessRuntime)
	huma.Register(api, readsCheckBody(api, op), func(ctx context.Context, in *checkInput) (*checkOutput, error) {
		if in.IdempotencyKey != "" {
			// A retried check gets the first verdict, check id and receipt
			// back, and is billed once.
			_, res, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "check-permission", in.Body,
				func(ctx context.Context) (int, CheckResult, error) {
					res, err := s.rt.Check(ctx, mustPrincipal(ctx).caller(), in.Body.domain())
					return http.StatusOK, res, err
				})
			if err != nil {
				return nil, err
			}
			return &checkOutput{Replayed: replayedHeader(replayed), Body: res}, nil
		}
		res, err := s.rt.Check(ctx, mustPrincipal(ctx).caller(), in.Body.domain())
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &checkOutput{Body: res}, nil
	})
}

// domain is the check as the runtime takes it; it shares req's bytes.
func (req *checkRequest) domain() *runtime.CheckRequest {
	return &runtime.CheckRequest{Reason: req.Reason, Call: runtime.Call{Tool: req.Tool, Tenant: req.Tenant,
		Resource: req.Resource, Method: req.Method, Parameters: json.RawMessage(req.Parameters),
		Context: json.RawMessage(req.Context), ReferenceID: req.ReferenceID}}
}
