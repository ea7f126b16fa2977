package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/api/runtime"
)

// Execution tokens (SPEC §5): minted from an allowed check or an approved
// approval (idempotently: one token per source), verified once by the tool
// server, which spends the nonce atomically.

// Problem codes of the token endpoints.
const (
	CodeTokenInvalid        = runtime.CodeTokenInvalid
	CodeTokenExpired        = runtime.CodeTokenExpired
	CodeParametersMismatch  = runtime.CodeParametersMismatch
	CodeCheckNotAllowed     = runtime.CodeCheckNotAllowed
	CodeApprovalNotApproved = runtime.CodeApprovalNotApproved
	CodeCheckTooOld         = runtime.CodeCheckTooOld
)

const tagTokens = "Tokens"

type mintRequest struct {
	CheckID    string `json:"check_id,omitempty" maxLength:"200" doc:"An allowed check's check_id. Give this or approval_id."`
	ApprovalID string `json:"approval_id,omitempty" maxLength:"200" doc:"An approved approval's id or REF. Give this or check_id."`
}

type mintInput struct {
	IdempotencyHeader
	Body mintRequest `additionalProperties:"false"`
}

// MintedToken answers POST /v1/tokens/mint.
type MintedToken = runtime.MintedToken

type mintOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
	Body     MintedToken
}

type verifyRequest struct {
	Token      string     `json:"token" minLength:"1" maxLength:"4096" doc:"The execution token presented by the agent."`
	Parameters jsonObject `json:"parameters,omitempty" doc:"The parameters the tool is about to run with. When present they must hash (RFC 8785 canonical JSON, SHA-256) to the parameters the token was issued for; {} stands for no parameters. The same rules as on checks hold: at most 64 levels deep, and numbers RFC 8785 would change are refused (422 validation_failed), never rounded into a match."`
}

type verifyInput struct {
	Body verifyRequest `additionalProperties:"false"`
}

// TokenClaims are what a verified token allows.
type TokenClaims = runtime.TokenClaims

type verifyOutput struct {
	Body TokenClaims
}

func registerTokens(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "mint-token", Method: http.MethodPost, Path: "/v1/tokens/mint",
		Summary: "Mint an execution token",
		Description: "Mints the single-use execution token for an allowed check (within 10 minutes of the check) or an " +
			"approved approval that the calling credential made (another's check or approval answers 404). Idempotent: the same source always gives the same token. The org's current policy is " +
			"checked first, also when an existing token is handed out again: a check's call must still be allowed " +
			"(409 check_not_allowed, or 403 tool_disabled), an approval's must not have become disabled (403 tool_disabled). " +
			"Billable ($0.005); refusals are not billed.",
		Tags: []string{tagTokens},
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusPaymentRequired, http.StatusForbidden,
			http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity},
	}, accessRuntime), func(ctx context.Context, in *mintInput) (*mintOutput, error) {
		status, body, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "mint-token", in.Body,
			func(ctx context.Context) (int, MintedToken, error) {
				res, err := s.rt.Mint(ctx, mustPrincipal(ctx).caller(),
					runtime.MintRequest{CheckID: in.Body.CheckID, ApprovalID: in.Body.ApprovalID})
				return http.StatusOK, res, err
			})
		if err != nil {
			return nil, err
		}
		return &mintOutput{Status: status, Replayed: replayedHeader(replayed), Body: body}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "verify-token", Method: http.MethodPost, Path: "/v1/tokens/verify",
		Summary: "Verify and spend an execution token",
		Description: "For tool servers: checks the token's signature (constant time), expiry, org, optionally the " +
			"parameters, and the org's current policy as mint does (a tool disabled since the token was minted answers " +
			"403 tool_disabled), then spends it. Exactly one verification of a token succeeds, across every replica; a second " +
			"answers 409 token_replayed. A token that fails a check is not spent. Free.",
		Tags: []string{tagTokens},
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusConflict,
			http.StatusUnprocessableEntity, http.StatusTooManyRequests},
		// Failed verifications are limited per key and per client address,
		// and all verifications per key (429 rate_limited with Retry-After).
		Middlewares: huma.Middlewares{s.limitVerifies},
	}, accessRuntimeRead), func(ctx context.Context, in *verifyInput) (*verifyOutput, error) {
		res, err := s.verifyToken(ctx, mustPrincipal(ctx), &in.Body)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &verifyOutput{Body: res}, nil
	})
}

// verifyToken verifies and spends a token for the caller's org. A refusal
// that is the presenter's fault counts against their failure budget.
func (s *Server) verifyToken(ctx context.Context, p Principal, req *verifyRequest) (TokenClaims, error) {
	var presented json.RawMessage
	if req.Parameters != nil {
		presented = json.RawMessage(req.Parameters)
	}
	c, err := s.rt.Verify(ctx, p.caller(), runtime.VerifyRequest{Token: req.Token, Parameters: presented})
	if err != nil && runtime.PresenterFault(err) {
		s.verifyFailed(ctx, p)
	}
	return c, err
}
