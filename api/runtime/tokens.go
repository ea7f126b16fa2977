package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"oakallow/activities"
	"oakallow/activities/tokens"
	"oakallow/resolver"
	"oakallow/store"
	"oakallow/workflows"
)

// Execution tokens (SPEC §5): minted from an allowed check or an approved
// approval (idempotently: one token per source), verified once by the tool
// server, which spends the nonce atomically.

// Audit kinds written by mint and verify (a successful or replayed
// verification is audited by activities.VerifyAndConsume).
const (
	KindTokenMinted   = activities.AuditTokenMinted
	KindTokenVerified = activities.AuditTokenVerified
)

// Token source kinds.
const (
	SourceCheck    = activities.SourceCheck
	SourceApproval = activities.SourceApproval
)

// CheckMintWindow is how long after a check a first token may be minted
// from it: a verdict is about the rules of its moment, and a token minted
// from a stale one would outlive rule changes made since.
const CheckMintWindow = 10 * time.Minute

// tokenTTL is the lifetime of tokens minted here (the workflow's come from
// the activities' configuration, by default the same).
const tokenTTL = activities.DefaultTokenTTL

// MintRequest names the source of a token: exactly one of CheckID and
// ApprovalID (an approval's id or REF).
type MintRequest struct {
	CheckID    string
	ApprovalID string
}

// MintedToken is a minted (or handed out again) execution token.
type MintedToken struct {
	Token      string    `json:"token" doc:"The single-use execution token (oak_tok_…). Hand it to the tool server with the call."`
	TokenID    string    `json:"token_id" doc:"The token's id."`
	ExpiresAt  time.Time `json:"expires_at" doc:"When the token stops verifying."`
	SourceKind string    `json:"source_kind" enum:"check,approval" doc:"What the token was minted from."`
	SourceID   string    `json:"source_id" doc:"The check id or approval id."`
}

// Mint mints (or finds) the token of a check or an approval. The org's
// current policy is asked first; a refusal is not billed.
func (s *Service) Mint(ctx context.Context, c Caller, req MintRequest) (MintedToken, error) {
	if (req.CheckID == "") == (req.ApprovalID == "") {
		return MintedToken{}, invalidField("", "give exactly one of check_id and approval_id")
	}
	if !Storable(req.CheckID) || !Storable(req.ApprovalID) {
		return MintedToken{}, refuse(KindNotFound, CodeNotFound, "no check or approval with that id in this org")
	}
	now := s.now()
	src, err := s.tokenSource(ctx, c, req, now)
	if err != nil {
		return MintedToken{}, err
	}
	// The policy may have changed since the check or the approval: mint
	// (and hand out again) only what it allows now. Refused before billing.
	if err := s.policyGate(ctx, c.OrgID, src.Kind, resolver.Input{Tool: src.Tool, Tenant: src.Tenant,
		Resource: src.Resource, Method: src.Method}); err != nil {
		return MintedToken{}, err
	}
	details, err := json.Marshal(map[string]any{"source_kind": src.Kind, "source_id": src.ID})
	if err != nil {
		return MintedToken{}, fmt.Errorf("encode audit details: %w", err)
	}
	evt := store.AuditRecord{
		ID: store.NewID("evt"), OrgID: c.OrgID, TeamID: c.TeamID, OccurredAt: now,
		ActorKind: c.Kind, ActorID: c.ID, Kind: KindTokenMinted, Subject: src.ID,
		Outcome: "ok", Tool: src.Tool, Tenant: src.Tenant, Details: details,
	}
	if err := s.d.Recorder.Record(ctx, store.Entry{Billable: true, Event: evt}); err != nil {
		return MintedToken{}, err
	}
	// Paid for: finish even if the client goes away.
	m, err := activities.MintToken(context.WithoutCancel(ctx), s.d.Store, s.d.Keyring, s.d.SecretBox, src, now, tokenTTL)
	if err != nil {
		return MintedToken{}, err
	}
	return MintedToken{Token: m.Token, TokenID: m.ID, ExpiresAt: m.ExpiresAt, SourceKind: src.Kind, SourceID: src.ID}, nil
}

// tokenSource finds the check or approval a token is to be minted from and
// checks that it allows one. Only the caller's own check or approval is
// found (Caller.ReadsAllApprovals): another's is not found, as if it did
// not exist.
func (s *Service) tokenSource(ctx context.Context, c Caller, req MintRequest, now time.Time) (activities.TokenSource, error) {
	st := s.d.Store
	orgID := c.OrgID
	if req.ApprovalID != "" {
		kind, id := c.requester()
		a, err := st.GetApprovalByRef(ctx, store.GetApprovalByRefParams{OrgID: orgID, Ref: req.ApprovalID,
			RequesterKind: kind, RequesterID: id})
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return activities.TokenSource{}, notFound("approval", req.ApprovalID)
			}
			return activities.TokenSource{}, err
		}
		if a.Status != string(workflows.StatusApproved) {
			return activities.TokenSource{}, refusef(KindConflict, CodeApprovalNotApproved,
				"the approval is %s; only approved approvals give execution tokens", a.Status)
		}
		return activities.TokenSource{Kind: SourceApproval, ID: a.ID, OrgID: orgID, Tool: a.ToolName,
			Tenant: a.TenantName, Resource: a.Resource, Method: a.Method, ParamsHash: a.ParamsHash}, nil
	}
	ev, err := st.GetAuditEvent(ctx, store.GetAuditEventParams{OrgID: orgID, ID: req.CheckID})
	if err != nil || ev.Kind != KindPermissionCheck || !c.made(ev.ActorKind, ev.ActorID) {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return activities.TokenSource{}, fmt.Errorf("load check: %w", err)
		}
		return activities.TokenSource{}, notFound("check", req.CheckID)
	}
	if ev.Outcome != resolver.Allowed.String() {
		return activities.TokenSource{}, refusef(KindConflict, CodeCheckNotAllowed,
			"the check's verdict was %s; only allowed checks give execution tokens (request an approval instead)", ev.Outcome)
	}
	// The check's call, as Check recorded it.
	var rec CheckRecord
	if err := json.Unmarshal(ev.Details, &rec); err != nil {
		return activities.TokenSource{}, fmt.Errorf("decode check record: %w", err)
	}
	src := activities.TokenSource{Kind: SourceCheck, ID: ev.ID, OrgID: orgID, Tool: ev.Tool, Tenant: ev.Tenant,
		Resource: rec.Resource, Method: rec.Method, ParamsHash: rec.ParametersHash}
	if now.Sub(ev.OccurredAt) > CheckMintWindow {
		// Past the window only an already minted token is handed out again.
		_, err := st.GetTokenBySource(ctx, store.GetTokenBySourceParams{OrgID: orgID, SourceKind: SourceCheck, SourceID: ev.ID})
		if errors.Is(err, store.ErrNotFound) {
			return activities.TokenSource{}, refusef(KindConflict, CodeCheckTooOld,
				"the check is older than %s; check again and mint from the new check", CheckMintWindow)
		}
		if err != nil {
			return activities.TokenSource{}, fmt.Errorf("load token: %w", err)
		}
	}
	return src, nil
}

// policyGate re-decides a token's call (its source kind: SourceCheck or
// SourceApproval) against the org's policy as it is now. Mint and verify
// both ask it, so disabling a tool or a rule change stops tokens already
// minted as well as new ones:
//
//   - from a check, the call must still be allowed: a tool since disabled,
//     deleted or put back to draft (which fallback levels never allow), or
//     a rule that now answers requires_approval or disabled, refuses it;
//   - from an approval, a human allowed this call, so rules that now answer
//     requires_approval (or allowed) leave it standing, and a draft tool
//     stays approvable; only a disabled verdict refuses it (the tool was
//     disabled or deleted, or a rule now disables the call).
func (s *Service) policyGate(ctx context.Context, orgID, kind string, in resolver.Input) error {
	pol, err := s.d.Policies.Policy(ctx, orgID)
	if err != nil {
		return err
	}
	d := pol.Decide(in)
	why := fmt.Sprintf("level %d %s", d.Level, d.LevelName)
	if d.RuleID != "" {
		why += ", rule " + d.RuleID
	}
	switch {
	case d.Permission == resolver.Disabled:
		return refusef(KindForbidden, CodeToolDisabled,
			"the org's policy now answers disabled for this call (%s): its execution token is refused", why)
	case kind == SourceCheck && d.Permission != resolver.Allowed:
		return refusef(KindConflict, CodeCheckNotAllowed,
			"a check made now would answer %s (%s): the rules or the tool changed since the check; check again, or request an approval",
			d.Permission, why)
	}
	return nil
}

// VerifyRequest is a token presented to a tool server.
type VerifyRequest struct {
	Token string
	// Parameters, when not nil, are the parameters the tool is about to run
	// with; they must hash to the bound ones ({} stands for none).
	Parameters json.RawMessage
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

// Verify verifies and spends a token for the caller's org. A refused token
// is not spent; the refusal wraps the activities error that caused it
// (activities.ErrTokenInvalid, …), see PresenterFault.
func (s *Service) Verify(ctx context.Context, c Caller, req VerifyRequest) (TokenClaims, error) {
	var presented json.RawMessage
	switch {
	case req.Parameters == nil: // not presented: no binding check
	case IsEmptyObject(req.Parameters):
		// {} is "no parameters", as on checks and approvals: it matches
		// only a token that binds none.
		presented = json.RawMessage("null")
	default:
		raw, err := parameters(req.Parameters)
		if err != nil {
			return TokenClaims{}, err
		}
		presented = raw
	}
	now := s.now()
	gate := func(cl tokens.Claims) error {
		kind, _, _ := tokens.ParseSource(cl.Source)
		return s.policyGate(ctx, cl.Org, kind, resolver.Input{Tool: cl.Tool, Tenant: cl.Tenant, Resource: cl.Resource, Method: cl.Method})
	}
	// Spending the nonce is detached from the client: a spent token must
	// also be audited, and a verification that reached the database is
	// carried through.
	cl, err := activities.VerifyAndConsumeIf(context.WithoutCancel(ctx), s.d.Store, s.d.Keyring, req.Token, presented, c.OrgID, now, gate)
	if err != nil {
		refusal, outcome := verifyRefusal(err)
		if refusal == nil {
			return TokenClaims{}, err
		}
		if outcome != "" {
			s.auditVerifyFailure(ctx, c, now, outcome)
		}
		return TokenClaims{}, refusal
	}
	kind, id, _ := tokens.ParseSource(cl.Source)
	return TokenClaims{Valid: true, TokenID: cl.TokenID, Tool: cl.Tool, Tenant: cl.Tenant, Resource: cl.Resource,
		Method: cl.Method, ParamsHash: cl.ParamsHash, ParamsVerified: presented != nil, SourceKind: kind, SourceID: id,
		IssuedAt: cl.IssuedAt, ExpiresAt: cl.ExpiresAt}, nil
}

// verifyRefusal maps VerifyAndConsume's errors to refusals (wrapping the
// cause), with the audit outcome of a refused token ("" when
// VerifyAndConsume audited it).
func verifyRefusal(err error) (*Error, string) {
	var e *Error
	outcome := ""
	switch {
	case errors.Is(err, activities.ErrTokenReplayed):
		e = refuse(KindConflict, CodeTokenReplayed, "the token was already used; every execution token works exactly once")
	case errors.Is(err, activities.ErrTokenExpired):
		e, outcome = refuse(KindInvalid, CodeTokenExpired, "the token has expired"), "expired"
	case errors.Is(err, activities.ErrParamsMismatch):
		e, outcome = refuse(KindInvalid, CodeParametersMismatch,
			"the parameters do not match the ones the token was issued for"), "parameters_mismatch"
	case errors.Is(err, activities.ErrTokenWrongOrg):
		// Indistinguishable from a forged token: the caller learns nothing
		// about other orgs.
		e, outcome = refuse(KindInvalid, CodeTokenInvalid, "the token is not valid"), "wrong_org"
	case errors.Is(err, activities.ErrTokenInvalid):
		e, outcome = refuse(KindInvalid, CodeTokenInvalid, "the token is not valid"), "invalid"
	case errors.Is(err, activities.ErrTokenNotAllowed):
		// The policy gate's own refusal (tool_disabled, check_not_allowed);
		// anything else (the policy could not be loaded) is not the token's fault.
		var gate *Error
		if !errors.As(err, &gate) {
			return nil, ""
		}
		e, outcome = &Error{Kind: gate.Kind, Code: gate.Code, Detail: gate.Detail, Fields: gate.Fields}, "not_allowed"
	default:
		return nil, ""
	}
	e.cause = err
	return e, outcome
}

// PresenterFault reports whether a refused verification is the presenter's
// fault: a token that is not valid, not theirs, expired, already spent or
// presented with other parameters. A refusal by the org's policy (the
// operator disabled the tool) is not.
func PresenterFault(err error) bool {
	return errors.Is(err, activities.ErrTokenInvalid) || errors.Is(err, activities.ErrTokenWrongOrg) ||
		errors.Is(err, activities.ErrTokenExpired) || errors.Is(err, activities.ErrParamsMismatch) ||
		errors.Is(err, activities.ErrTokenReplayed)
}

// auditVerifyFailure records a refused verification. It never records the
// token: a refused token may still be valid for its rightful holder.
func (s *Service) auditVerifyFailure(ctx context.Context, c Caller, now time.Time, outcome string) {
	err := s.d.Recorder.Record(context.WithoutCancel(ctx), store.Entry{Event: store.AuditRecord{
		ID: store.NewID("evt"), OrgID: c.OrgID, TeamID: c.TeamID, OccurredAt: now,
		ActorKind: c.Kind, ActorID: c.ID, Kind: KindTokenVerified, Outcome: outcome, Details: []byte(`{}`),
	}})
	if err != nil {
		s.d.Logger.WarnContext(ctx, "audit refused token verification", "request_id", s.d.RequestID(ctx), "err", err)
	}
}
