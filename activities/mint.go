package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"oakallow/activities/sealed"
	"oakallow/activities/tokens"
	"oakallow/store"
	"oakallow/workflows"
)

// Token sources: what an execution token was minted from (execution_tokens.source_kind).
const (
	// SourceCheck: an allowed permission check; TokenSource.ID is the check id.
	SourceCheck = tokens.SourceCheck
	// SourceApproval: an approved approval; TokenSource.ID is the approval id.
	SourceApproval = tokens.SourceApproval
)

// Errors of MintToken and VerifyAndConsume. The API maps them to problem codes.
var (
	// ErrTokenSourceConflict: a token for this source exists but belongs to another org.
	ErrTokenSourceConflict = errors.New("token source belongs to another org")
	// ErrTokenInvalid: malformed, not signed by a known key, or signed by a retired key.
	ErrTokenInvalid = errors.New("execution token is invalid")
	// ErrTokenExpired: the token is authentic but past its expiry.
	ErrTokenExpired = errors.New("execution token has expired")
	// ErrTokenReplayed: the token was already verified once (409 token_replayed).
	ErrTokenReplayed = errors.New("execution token was already used")
	// ErrParamsMismatch: the presented parameters do not hash to the bound hash.
	ErrParamsMismatch = errors.New("parameters do not match the token")
	// ErrTokenWrongOrg: the token was minted for another org than the caller's.
	ErrTokenWrongOrg = errors.New("execution token belongs to another org")
	// ErrTokenNotAllowed: the token is authentic, but the gate given to
	// VerifyAndConsumeIf refused it (the org's policy no longer allows its
	// call). The gate's error is wrapped too.
	ErrTokenNotAllowed = errors.New("execution token is no longer allowed by the org's policy")
)

// TokenSource is what an execution token is minted from and bound to (SPEC §5).
type TokenSource struct {
	// Kind is SourceCheck or SourceApproval.
	Kind string
	// ID is the check id or the approval id.
	ID string
	// OrgID is the org the token is for.
	OrgID string
	// Tool, Tenant, Resource and Method are the call the token allows; Tenant, Resource
	// and Method may be empty.
	Tool, Tenant, Resource, Method string
	// ParamsHash is tokens.HashParameters of the call's parameters ("" binds none).
	ParamsHash string
}

func (s TokenSource) validate() error {
	switch {
	case s.Kind != SourceCheck && s.Kind != SourceApproval:
		return fmt.Errorf("token source kind %q is not %s or %s", s.Kind, SourceCheck, SourceApproval)
	case s.ID == "" || s.OrgID == "" || s.Tool == "":
		return errors.New("token source id, org and tool are required")
	}
	return nil
}

// MintedToken is a stored execution token.
type MintedToken struct {
	// ID is the token id (tok_…).
	ID string
	// Token is the token itself (oak_tok_…), for the caller to present once.
	Token string
	// Hash is the lowercase hex SHA-256 of Token.
	Hash string
	// ExpiresAt is when the token stops verifying.
	ExpiresAt time.Time
}

// OpenToken opens a stored token row's sealed token.
func OpenToken(box *sealed.Box, row store.ExecutionToken) (MintedToken, error) {
	token, err := box.Open(row.TokenSealed, store.ExecutionTokenAAD(row.ID))
	if err != nil {
		return MintedToken{}, fmt.Errorf("execution token %s does not open with the server's secret key: %w", row.ID, err)
	}
	return MintedToken{ID: row.ID, Token: string(token), Hash: row.TokenHash, ExpiresAt: row.ExpiresAt.UTC()}, nil
}

// tokenHash is the hex SHA-256 of a token, the only form of it that enters workflow
// history.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// MintToken mints the execution token for src, valid for ttl from now, and stores it
// sealed by box (the API hands it out again; verification needs only the signature).
// It is idempotent per (src.Kind, src.ID): the first call stores the token and every
// later call — including one racing it on another replica — returns that same stored
// token (the unique (source_kind, source_id) constraint decides the winner), even once it
// has expired. It writes no audit event: the API audits (and bills) its mint call, and
// the approval workflow projects token.minted.
func MintToken(ctx context.Context, st *store.Store, kr *tokens.Keyring, box *sealed.Box, src TokenSource, now time.Time, ttl time.Duration) (MintedToken, error) {
	if err := src.validate(); err != nil {
		return MintedToken{}, fmt.Errorf("mint token: %w", err)
	}
	if ttl <= 0 {
		return MintedToken{}, errors.New("mint token: ttl must be positive")
	}
	existing := func() (MintedToken, error) {
		row, err := st.GetExecutionTokenBySource(ctx, store.GetExecutionTokenBySourceParams{SourceKind: src.Kind, SourceID: src.ID})
		if err != nil {
			return MintedToken{}, err
		}
		if row.OrgID != src.OrgID {
			return MintedToken{}, ErrTokenSourceConflict
		}
		return OpenToken(box, row)
	}
	if m, err := existing(); !errors.Is(err, store.ErrNotFound) {
		if err != nil {
			return MintedToken{}, fmt.Errorf("mint token: %w", err)
		}
		return m, nil
	}

	id, err := tokens.NewTokenID()
	if err != nil {
		return MintedToken{}, fmt.Errorf("mint token: %w", err)
	}
	nonce, err := tokens.NewNonce()
	if err != nil {
		return MintedToken{}, fmt.Errorf("mint token: %w", err)
	}
	now = now.UTC()
	claims := tokens.Claims{
		TokenID: id, Org: src.OrgID, Tool: src.Tool, Tenant: src.Tenant, Resource: src.Resource,
		Method: src.Method, ParamsHash: src.ParamsHash, Source: tokens.Source(src.Kind, src.ID),
		IssuedAt: now, ExpiresAt: now.Add(ttl), Nonce: nonce,
	}
	token, err := kr.Mint(claims)
	if err != nil {
		return MintedToken{}, fmt.Errorf("mint token: %w", err)
	}
	// Read the claims back as a verifier will see them: the key id the keyring signed
	// with, and the expiry at the precision the token carries.
	signed, err := kr.Verify(token, now)
	if err != nil {
		return MintedToken{}, fmt.Errorf("mint token: the new token does not verify: %w", err)
	}
	sealedToken, err := box.Seal([]byte(token), store.ExecutionTokenAAD(id))
	if err != nil {
		return MintedToken{}, fmt.Errorf("mint token: %w", err)
	}
	inserted, err := st.InsertExecutionToken(ctx, store.InsertExecutionTokenParams{
		ID: id, OrgID: src.OrgID, SourceKind: src.Kind, SourceID: src.ID,
		TokenSealed: sealedToken, TokenHash: tokenHash(token), Nonce: nonce, ToolName: src.Tool,
		ParamsHash: src.ParamsHash, KeyID: signed.KeyID, IssuedAt: signed.IssuedAt, ExpiresAt: signed.ExpiresAt,
	})
	if err != nil {
		return MintedToken{}, fmt.Errorf("mint token: store: %w", err)
	}
	if inserted == 0 {
		// Another mint for the same source won the race; its token is the token.
		m, err := existing()
		if err != nil {
			return MintedToken{}, fmt.Errorf("mint token: %w", err)
		}
		return m, nil
	}
	return MintedToken{ID: id, Token: token, Hash: tokenHash(token), ExpiresAt: signed.ExpiresAt}, nil
}

// verifyDetails are the audit details of a token verification.
type verifyDetails struct {
	TokenID       string `json:"token_id"`
	Source        string `json:"source"`
	KeyID         string `json:"key_id"`
	ParamsChecked bool   `json:"params_checked"`
}

// VerifyAndConsume verifies an execution token presented by a tool server of org orgID
// and uses it up (SPEC §5):
//
//  1. signature (constant time, by a known key that is not retired) and expiry, with
//     Keyring.Verify: ErrTokenInvalid or ErrTokenExpired;
//  2. the token's org is orgID: ErrTokenWrongOrg;
//  3. when presentedParams is not empty, that they hash (RFC 8785 canonical JSON) to the
//     bound parameters hash: ErrParamsMismatch;
//  4. the nonce is consumed by one INSERT … ON CONFLICT DO NOTHING, so exactly one
//     verification succeeds however many replicas race: ErrTokenReplayed for the rest.
//
// A failed check 1–3 consumes nothing, so the legitimate holder can still use the token.
// Steps 4 and its token.verified audit event (outcome ok or replayed) commit together.
// On success it returns the token's claims.
func VerifyAndConsume(ctx context.Context, st *store.Store, kr *tokens.Keyring, token string, presentedParams json.RawMessage, orgID string, now time.Time) (tokens.Claims, error) {
	return VerifyAndConsumeIf(ctx, st, kr, token, presentedParams, orgID, now, nil)
}

// TokenGate decides whether an authentic token of the caller's org may still be used
// now; an error refuses it. The API's gate re-checks the org's current policy.
type TokenGate func(tokens.Claims) error

// VerifyAndConsumeIf is VerifyAndConsume with a gate, asked after checks 1–3 and before
// the nonce is spent: a token the gate refuses is not spent (ErrTokenNotAllowed, wrapping
// the gate's error), so it works again if the gate opens before the token expires. A
// nil gate opens for every token.
func VerifyAndConsumeIf(ctx context.Context, st *store.Store, kr *tokens.Keyring, token string, presentedParams json.RawMessage, orgID string, now time.Time, gate TokenGate) (tokens.Claims, error) {
	claims, err := kr.Verify(token, now)
	if err != nil {
		return tokens.Claims{}, classifyVerifyErr(err)
	}
	if claims.Org != orgID {
		return tokens.Claims{}, ErrTokenWrongOrg
	}
	checked := len(presentedParams) > 0
	if checked {
		ok, err := tokens.ParamsMatch(claims.ParamsHash, presentedParams)
		if err != nil {
			return tokens.Claims{}, fmt.Errorf("%w: %v", ErrParamsMismatch, err)
		}
		if !ok {
			return tokens.Claims{}, ErrParamsMismatch
		}
	}
	if gate != nil {
		if err := gate(claims); err != nil {
			return tokens.Claims{}, fmt.Errorf("%w: %w", ErrTokenNotAllowed, err)
		}
	}
	replayed := false
	err = st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		spent, err := q.SpendNonce(ctx, store.SpendNonceParams{Nonce: claims.Nonce, TokenID: claims.TokenID, OrgID: claims.Org, SpentAt: now})
		if err != nil {
			return fmt.Errorf("spend nonce: %w", err)
		}
		replayed = spent == 0
		org, err := q.GetOrg(ctx, claims.Org)
		if err != nil {
			return fmt.Errorf("load org: %w", err)
		}
		details, err := json.Marshal(verifyDetails{TokenID: claims.TokenID, Source: claims.Source, KeyID: claims.KeyID, ParamsChecked: checked})
		if err != nil {
			return fmt.Errorf("encode audit details: %w", err)
		}
		outcome := "ok"
		if replayed {
			outcome = "replayed"
		}
		return q.InsertAuditEvent(ctx, store.InsertAuditEventParams{
			ID: store.NewID("evt"), OrgID: claims.Org, TeamID: org.TeamID, OccurredAt: now,
			ActorKind: ActorSystem, ActorID: "token_verifier", Kind: AuditTokenVerified, Subject: claims.TokenID,
			Outcome: outcome, Tool: claims.Tool, Tenant: claims.Tenant, Details: details,
		})
	})
	if err != nil {
		return tokens.Claims{}, fmt.Errorf("verify token: %w", err)
	}
	if replayed {
		return tokens.Claims{}, ErrTokenReplayed
	}
	return claims, nil
}

// classifyVerifyErr maps a Keyring.Verify failure to ErrTokenExpired or ErrTokenInvalid.
// The cause says which check failed (no token content) and stays in the chain for logs.
func classifyVerifyErr(err error) error {
	if errors.Is(err, tokens.ErrExpired) {
		return fmt.Errorf("%w: %w", ErrTokenExpired, err)
	}
	return fmt.Errorf("%w: %w", ErrTokenInvalid, err)
}

// MintApprovalToken implements workflows.ActivityMintApprovalToken: it mints (or finds)
// the execution token of an approved approval, bound to the approval row's tool, tenant,
// resource, method and parameters hash, and returns only its id and hash. It refuses an
// approval whose stored status is not approved (non-retryable ErrorTypePermission).
func (a *Activities) MintApprovalToken(ctx context.Context, in workflows.MintApprovalTokenInput) (workflows.MintApprovalTokenResult, error) {
	if in.OrgID == "" || in.ApprovalID == "" {
		return workflows.MintApprovalTokenResult{}, nonRetryable(workflows.ErrorTypeValidation, "mint approval token: org id and approval id are required")
	}
	apr, err := a.st.GetApprovalForActivity(ctx, store.GetApprovalForActivityParams{OrgID: in.OrgID, ID: in.ApprovalID})
	if err != nil {
		return workflows.MintApprovalTokenResult{}, lookupErr(err, "approval "+in.ApprovalID)
	}
	if in.Reference != "" && apr.Reference != in.Reference {
		return workflows.MintApprovalTokenResult{}, nonRetryable(workflows.ErrorTypeValidation,
			"approval %s has reference %s, not %s", apr.ID, apr.Reference, in.Reference)
	}
	if apr.Status != string(workflows.StatusApproved) {
		return workflows.MintApprovalTokenResult{}, nonRetryable(workflows.ErrorTypePermission,
			"approval %s is %s, not approved: no execution token", apr.ID, apr.Status)
	}
	m, err := MintToken(ctx, a.st, a.keyring, a.box, TokenSource{
		Kind: SourceApproval, ID: apr.ID, OrgID: apr.OrgID,
		Tool: apr.ToolName, Tenant: apr.TenantName, Resource: apr.Resource, Method: apr.Method,
		ParamsHash: apr.ParamsHash,
	}, a.now(), a.tokenTTL)
	if errors.Is(err, ErrTokenSourceConflict) {
		return workflows.MintApprovalTokenResult{}, nonRetryable(workflows.ErrorTypeValidation, "mint approval token: %v", err)
	}
	if err != nil {
		return workflows.MintApprovalTokenResult{}, err
	}
	return workflows.MintApprovalTokenResult{TokenID: m.ID, TokenHash: m.Hash}, nil
}
