package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/activities"
	"oakallow/activities/tokens"
	"oakallow/resolver"
	"oakallow/store"
	"oakallow/workflows"
)

// Execution tokens (SPEC §5): minted from an allowed check or an approved
// approval (idempotently: one token per source), verified once by the tool
// server, which spends the nonce atomically.

// Problem codes of the token endpoints.
const (
	CodeTokenInvalid        = "token_invalid"
	CodeTokenExpired        = "token_expired"
	CodeParametersMismatch  = "parameters_mismatch"
	CodeCheckNotAllowed     = "check_not_allowed"
	CodeApprovalNotApproved = "approval_not_approved"
	CodeCheckTooOld         = "check_too_old"
)

// Audit event kinds written by the token endpoints (a successful or
// replayed verification is audited by activities.VerifyAndConsume).
const (
	kindTokenMinted   = activities.AuditTokenMinted
	kindTokenVerified = activities.AuditTokenVerified
)

// Token source kinds (execution_tokens.source_kind).
const (
	tokenSourceCheck    = activities.SourceCheck
	tokenSourceApproval = activities.SourceApproval
)

// checkMintWindow is how long after a check a first token may be minted
// from it: a verdict is about the rules of its moment, and a token minted
// from a stale one would outlive rule changes made since.
const checkMintWindow = 10 * time.Minute

// tokenTTL is the lifetime of tokens minted here (the workflow's come from
// the activities' configuration, by default the same).
const tokenTTL = activities.DefaultTokenTTL

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
type MintedToken struct {
	Token      string    `json:"token" doc:"The single-use execution token (oak_tok_…). Hand it to the tool server with the call."`
	TokenID    string    `json:"token_id" doc:"The token's id."`
	ExpiresAt  time.Time `json:"expires_at" doc:"When the token stops verifying."`
	SourceKind string    `json:"source_kind" enum:"check,approval" doc:"What the token was minted from."`
	SourceID   string    `json:"source_id" doc:"The check id or approval id."`
}

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
type TokenClaims struct {
	Valid          bool      `json:"valid" doc:"Always true in a 200 answer."`
	TokenID        string    `json:"token_id"`
	Tool           string    `json:"tool" doc:"The tool the token allows."`
	Tenant         string    `json:"tenant,omitempty"`
	Resource       string    `json:"resource,omitempty"`
	Method         string    `json:"method,omitempty"`
	ParamsHash     string    `json:"parameters_hash,omitempty" doc:"SHA-256 of the RFC 8785 canonical JSON of the bound parameters; absent when the token binds none."`
	ParamsVerified bool      `json:"parameters_verified" doc:"Whether presented parameters were checked against the bound hash."`
	SourceKind     string    `json:"source_kind" enum:"check,approval"`
	SourceID       string    `json:"source_id"`
	IssuedAt       time.Time `json:"issued_at"`
	ExpiresAt      time.Time `json:"expires_at"`
}

type verifyOutput struct {
	Body TokenClaims
}

func registerTokens(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "mint-token", Method: http.MethodPost, Path: "/v1/tokens/mint",
		Summary: "Mint an execution token",
		Description: "Mints the single-use execution token for an allowed check (within 10 minutes of the check) or an " +
			"approved approval. Idempotent: the same source always gives the same token. The org's current policy is " +
			"checked first, also when an existing token is handed out again: a check's call must still be allowed " +
			"(409 check_not_allowed, or 403 tool_disabled), an approval's must not have become disabled (403 tool_disabled). " +
			"Billable ($0.005); refusals are not billed.",
		Tags: []string{tagTokens},
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusPaymentRequired, http.StatusForbidden,
			http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity},
	}, accessRuntime), func(ctx context.Context, in *mintInput) (*mintOutput, error) {
		status, body, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "mint-token", in.Body,
			func(ctx context.Context) (int, MintedToken, error) {
				res, err := s.mintToken(ctx, mustPrincipal(ctx), &in.Body)
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

// mintToken mints (or finds) the token of a check or an approval.
func (s *Server) mintToken(ctx context.Context, p Principal, req *mintRequest) (MintedToken, error) {
	if (req.CheckID == "") == (req.ApprovalID == "") {
		return MintedToken{}, fieldProblem("body", "give exactly one of check_id and approval_id", nil)
	}
	now := s.now()
	src, err := s.tokenSource(ctx, p.OrgID, req, now)
	if err != nil {
		return MintedToken{}, err
	}
	// The policy may have changed since the check or the approval: mint
	// (and hand out again) only what it allows now. Refused before billing.
	if err := s.policyGate(ctx, p.OrgID, src.Kind, resolver.Input{Tool: src.Tool, Tenant: src.Tenant,
		Resource: src.Resource, Method: src.Method}); err != nil {
		return MintedToken{}, err
	}
	details, err := json.Marshal(map[string]any{"source_kind": src.Kind, "source_id": src.ID})
	if err != nil {
		return MintedToken{}, fmt.Errorf("encode audit details: %w", err)
	}
	evt := store.AuditRecord{
		ID: store.NewID("evt"), OrgID: p.OrgID, TeamID: p.TeamID, OccurredAt: now,
		ActorKind: p.Kind, ActorID: p.KeyID, Kind: kindTokenMinted, Subject: src.ID,
		Outcome: "ok", Tool: src.Tool, Tenant: src.Tenant, Details: details,
	}
	err = s.recorder.Record(ctx, store.Entry{Billable: true, Event: evt})
	if err != nil {
		return MintedToken{}, err
	}
	// Paid for: finish even if the client goes away.
	m, err := activities.MintToken(context.WithoutCancel(ctx), s.deps.Store, s.keyring, s.deps.SecretBox, src, now, tokenTTL)
	if err != nil {
		return MintedToken{}, err
	}
	return MintedToken{Token: m.Token, TokenID: m.ID, ExpiresAt: m.ExpiresAt, SourceKind: src.Kind, SourceID: src.ID}, nil
}

// tokenSource finds the check or approval a token is to be minted from and
// checks that it allows one.
func (s *Server) tokenSource(ctx context.Context, orgID string, req *mintRequest, now time.Time) (activities.TokenSource, error) {
	st := s.deps.Store
	if req.ApprovalID != "" {
		a, err := st.GetApprovalByRef(ctx, store.GetApprovalByRefParams{OrgID: orgID, Ref: req.ApprovalID})
		if err != nil {
			return activities.TokenSource{}, notFoundIf(err, "approval", req.ApprovalID)
		}
		if a.Status != string(workflows.StatusApproved) {
			return activities.TokenSource{}, problem(http.StatusConflict, CodeApprovalNotApproved,
				fmt.Sprintf("the approval is %s; only approved approvals give execution tokens", a.Status))
		}
		return activities.TokenSource{Kind: tokenSourceApproval, ID: a.ID, OrgID: orgID, Tool: a.ToolName,
			Tenant: a.TenantName, Resource: a.Resource, Method: a.Method, ParamsHash: a.ParamsHash}, nil
	}
	ev, err := st.GetAuditEvent(ctx, store.GetAuditEventParams{OrgID: orgID, ID: req.CheckID})
	if err != nil || ev.Kind != kindPermissionCheck {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return activities.TokenSource{}, fmt.Errorf("load check: %w", err)
		}
		return activities.TokenSource{}, notFound("check", req.CheckID)
	}
	if ev.Outcome != "allowed" {
		return activities.TokenSource{}, problem(http.StatusConflict, CodeCheckNotAllowed,
			fmt.Sprintf("the check's verdict was %s; only allowed checks give execution tokens (request an approval instead)", ev.Outcome))
	}
	var d struct {
		Resource   string `json:"resource"`
		Method     string `json:"method"`
		ParamsHash string `json:"parameters_hash"`
	}
	if err := json.Unmarshal(ev.Details, &d); err != nil {
		return activities.TokenSource{}, fmt.Errorf("decode check details: %w", err)
	}
	src := activities.TokenSource{Kind: tokenSourceCheck, ID: ev.ID, OrgID: orgID, Tool: ev.Tool, Tenant: ev.Tenant,
		Resource: d.Resource, Method: d.Method, ParamsHash: d.ParamsHash}
	if now.Sub(ev.OccurredAt) > checkMintWindow {
		// Past the window only an already minted token is handed out again.
		_, err := st.GetTokenBySource(ctx, store.GetTokenBySourceParams{OrgID: orgID, SourceKind: tokenSourceCheck, SourceID: ev.ID})
		if errors.Is(err, store.ErrNotFound) {
			return activities.TokenSource{}, problem(http.StatusConflict, CodeCheckTooOld,
				fmt.Sprintf("the check is older than %s; check again and mint from the new check", checkMintWindow))
		}
		if err != nil {
			return activities.TokenSource{}, fmt.Errorf("load token: %w", err)
		}
	}
	return src, nil
}

// policyGate re-decides a token's call (its source kind: tokenSourceCheck or
// tokenSourceApproval) against the org's policy as it is now. Mint and
// verify both ask it, so disabling a tool or a rule change stops tokens
// already minted as well as new ones:
//
//   - from a check, the call must still be allowed: a tool since disabled,
//     deleted or put back to draft (which fallback levels never allow), or
//     a rule that now answers requires_approval or disabled, refuses it;
//   - from an approval, a human allowed this call, so rules that now answer
//     requires_approval (or allowed) leave it standing, and a draft tool
//     stays approvable; only a disabled verdict refuses it (the tool was
//     disabled or deleted, or a rule now disables the call).
func (s *Server) policyGate(ctx context.Context, orgID, kind string, in resolver.Input) error {
	pol, err := s.policies.Get(ctx, orgID)
	if err != nil {
		return err
	}
	d := pol.index.Decide(in)
	why := fmt.Sprintf("level %d %s", d.Level, d.LevelName)
	if d.RuleID != "" {
		why += ", rule " + d.RuleID
	}
	switch {
	case d.Permission == resolver.Disabled:
		return problem(http.StatusForbidden, CodeToolDisabled, fmt.Sprintf(
			"the org's policy now answers disabled for this call (%s): its execution token is refused", why))
	case kind == tokenSourceCheck && d.Permission != resolver.Allowed:
		return problem(http.StatusConflict, CodeCheckNotAllowed, fmt.Sprintf(
			"a check made now would answer %s (%s): the rules or the tool changed since the check; check again, or request an approval",
			d.Permission, why))
	}
	return nil
}

// verifyToken verifies and spends a token for the caller's org.
func (s *Server) verifyToken(ctx context.Context, p Principal, req *verifyRequest) (TokenClaims, error) {
	var presented json.RawMessage
	switch {
	case req.Parameters == nil: // not presented: no binding check
	case req.Parameters.isEmpty():
		// {} is "no parameters", as on checks and approvals: it matches
		// only a token that binds none.
		presented = json.RawMessage("null")
	default:
		raw, err := requestParameters(req.Parameters)
		if err != nil {
			return TokenClaims{}, err
		}
		presented = raw
	}
	now := s.now()
	// Spending the nonce is detached from the client: a spent token must
	// also be audited, and a verification that reached the database is
	// carried through.
	gate := func(c tokens.Claims) error {
		kind, _, _ := tokens.ParseSource(c.Source)
		return s.policyGate(ctx, c.Org, kind, resolver.Input{Tool: c.Tool, Tenant: c.Tenant, Resource: c.Resource, Method: c.Method})
	}
	c, err := activities.VerifyAndConsumeIf(context.WithoutCancel(ctx), s.deps.Store, s.keyring, req.Token, presented, p.OrgID, now, gate)
	if err != nil {
		prob, outcome := verifyProblem(err)
		if prob == nil {
			return TokenClaims{}, err
		}
		if presenterFault(err) {
			s.verifyFailed(ctx, p)
		}
		if outcome != "" {
			s.auditVerifyFailure(ctx, p, now, outcome)
		}
		return TokenClaims{}, prob
	}
	kind, id, _ := tokens.ParseSource(c.Source)
	return TokenClaims{Valid: true, TokenID: c.TokenID, Tool: c.Tool, Tenant: c.Tenant, Resource: c.Resource,
		Method: c.Method, ParamsHash: c.ParamsHash, ParamsVerified: presented != nil, SourceKind: kind, SourceID: id,
		IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt}, nil
}

// verifyProblem maps VerifyAndConsume's errors to answers, with the audit
// outcome of a refused token ("" when VerifyAndConsume audited it).
func verifyProblem(err error) (*Problem, string) {
	switch {
	case errors.Is(err, activities.ErrTokenReplayed):
		return problem(http.StatusConflict, CodeTokenReplayed, "the token was already used; every execution token works exactly once"), ""
	case errors.Is(err, activities.ErrTokenExpired):
		return problem(http.StatusUnprocessableEntity, CodeTokenExpired, "the token has expired"), "expired"
	case errors.Is(err, activities.ErrParamsMismatch):
		return problem(http.StatusUnprocessableEntity, CodeParametersMismatch,
			"the parameters do not match the ones the token was issued for"), "parameters_mismatch"
	case errors.Is(err, activities.ErrTokenWrongOrg):
		// Indistinguishable from a forged token: the caller learns nothing
		// about other orgs.
		return problem(http.StatusUnprocessableEntity, CodeTokenInvalid, "the token is not valid"), "wrong_org"
	case errors.Is(err, activities.ErrTokenInvalid):
		return problem(http.StatusUnprocessableEntity, CodeTokenInvalid, "the token is not valid"), "invalid"
	case errors.Is(err, activities.ErrTokenNotAllowed):
		// The policy gate's own answer (tool_disabled, check_not_allowed);
		// anything else (the policy could not be loaded) is not the token's fault.
		var p *Problem
		if errors.As(err, &p) {
			return p, "not_allowed"
		}
	}
	return nil, ""
}

// presenterFault reports whether a refused verification counts against the
// presenter's failure budget: a token that is not valid, not theirs, expired,
// already spent or presented with other parameters. A refusal by the org's
// policy (the operator disabled the tool) does not.
func presenterFault(err error) bool {
	return errors.Is(err, activities.ErrTokenInvalid) || errors.Is(err, activities.ErrTokenWrongOrg) ||
		errors.Is(err, activities.ErrTokenExpired) || errors.Is(err, activities.ErrParamsMismatch) ||
		errors.Is(err, activities.ErrTokenReplayed)
}

// auditVerifyFailure records a refused verification. It never records the
// token: a refused token may still be valid for its rightful holder.
func (s *Server) auditVerifyFailure(ctx context.Context, p Principal, now time.Time, outcome string) {
	err := s.recorder.Record(context.WithoutCancel(ctx), store.Entry{Event: store.AuditRecord{
		ID: store.NewID("evt"), OrgID: p.OrgID, TeamID: p.TeamID, OccurredAt: now,
		ActorKind: p.Kind, ActorID: p.KeyID, Kind: kindTokenVerified, Outcome: outcome, Details: []byte(`{}`),
	}})
	if err != nil {
		s.log.WarnContext(ctx, "audit refused token verification", "request_id", requestIDFrom(ctx), "err", err)
	}
}
