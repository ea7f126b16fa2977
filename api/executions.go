package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/activities/pii"
	"oakallow/activities/tokens"
	"oakallow/store"
)

// Execution logs (SPEC §3): after the tool ran, the agent or tool server
// records the outcome against the execution token. The token proves which
// call it was; it is checked by signature only — it is normally already
// spent by the verification before the call, and may have expired while a
// long call ran.

const kindExecutionLogged = "execution.logged"

type executionRequest struct {
	Token         string `json:"token" minLength:"1" maxLength:"4096" doc:"The execution token the call ran with."`
	Status        string `json:"status" enum:"success,failed,error" doc:"success: the tool did its job; failed: it ran and reported failure; error: it could not run."`
	DurationMS    int64  `json:"duration_ms" minimum:"0" maximum:"604800000" doc:"How long the call took, in milliseconds (at most a week)."`
	ResultSummary string `json:"result_summary,omitempty" maxLength:"2000" doc:"A short description of the result. PII-scrubbed before storage."`
}

type executionInput struct {
	IdempotencyHeader
	Body executionRequest `additionalProperties:"false"`
}

// ExecutionLogged answers POST /v1/executions.
type ExecutionLogged struct {
	ID       string    `json:"id" doc:"The audit event id of this log entry."`
	TokenID  string    `json:"token_id" doc:"The token the execution ran with."`
	Tool     string    `json:"tool" doc:"The tool the token allowed."`
	Status   string    `json:"status" doc:"The logged status."`
	LoggedAt time.Time `json:"logged_at"`
}

type executionOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
	Body     ExecutionLogged
}

func registerExecutions(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "log-execution", Method: http.MethodPost, Path: "/v1/executions",
		Summary: "Log an execution",
		Description: "Records the outcome of a tool call in the audit log (execution.logged), against its execution " +
			"token. The token must be authentic and of this org; it may already be spent or expired. Billable ($0.005).",
		Tags: []string{tagTokens}, DefaultStatus: http.StatusCreated,
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusPaymentRequired, http.StatusForbidden,
			http.StatusUnprocessableEntity},
	}, accessRuntime), func(ctx context.Context, in *executionInput) (*executionOutput, error) {
		status, body, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "log-execution", in.Body,
			func(ctx context.Context) (int, ExecutionLogged, error) {
				res, err := s.logExecution(ctx, mustPrincipal(ctx), &in.Body)
				return http.StatusCreated, res, err
			})
		if err != nil {
			return nil, err
		}
		return &executionOutput{Status: status, Replayed: replayedHeader(replayed), Body: body}, nil
	})
}

func (s *Server) logExecution(ctx context.Context, p Principal, req *executionRequest) (ExecutionLogged, error) {
	c, err := verifySignature(s.keyring, req.Token)
	if err != nil || c.Org != p.OrgID {
		return ExecutionLogged{}, problem(http.StatusUnprocessableEntity, CodeTokenInvalid, "the token is not valid")
	}
	// The token must also be one this installation minted and still holds.
	if _, err := s.deps.Store.GetTokenOfOrg(ctx, store.GetTokenOfOrgParams{OrgID: p.OrgID, ID: c.TokenID}); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ExecutionLogged{}, problem(http.StatusUnprocessableEntity, CodeTokenInvalid, "the token is not valid")
		}
		return ExecutionLogged{}, fmt.Errorf("load token: %w", err)
	}
	kind, sourceID, _ := tokens.ParseSource(c.Source)
	d := map[string]any{"token_id": c.TokenID, "source_kind": kind, "source_id": sourceID, "duration_ms": req.DurationMS}
	if c.Resource != "" {
		d["resource"] = c.Resource
	}
	if c.Method != "" {
		d["method"] = c.Method
	}
	if req.ResultSummary != "" {
		d["result_summary"] = pii.Scrub(req.ResultSummary)
	}
	details, err := json.Marshal(d)
	if err != nil {
		return ExecutionLogged{}, fmt.Errorf("encode audit details: %w", err)
	}
	now := s.now()
	out := ExecutionLogged{ID: store.NewID("evt"), TokenID: c.TokenID, Tool: c.Tool, Status: req.Status, LoggedAt: now}
	err = s.recorder.Record(ctx, store.Entry{Billable: true, Event: store.AuditRecord{
		ID: out.ID, OrgID: p.OrgID, TeamID: p.TeamID, OccurredAt: now,
		ActorKind: p.Kind, ActorID: p.KeyID, Kind: kindExecutionLogged, Subject: c.TokenID,
		Outcome: req.Status, Tool: c.Tool, Tenant: c.Tenant, Details: details,
	}})
	if err != nil {
		return ExecutionLogged{}, err
	}
	return out, nil
}

// verifySignature authenticates a token without judging its expiry: it
// reads the token's expiry from the (not yet authenticated) payload only to
// choose the instant Verify judges it at; Verify then checks the MAC over
// the whole payload, that expiry included, with a known, unretired key.
func verifySignature(kr *tokens.Keyring, token string) (tokens.Claims, error) {
	if len(token) > tokens.MaxLen {
		return tokens.Claims{}, errors.New("token too long")
	}
	body, ok := strings.CutPrefix(token, "oak_tok_")
	if !ok {
		return tokens.Claims{}, errors.New("not an execution token")
	}
	payload, _, ok := strings.Cut(body, ".")
	if !ok {
		return tokens.Claims{}, errors.New("not an execution token")
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return tokens.Claims{}, errors.New("not an execution token")
	}
	var w struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(raw, &w); err != nil || w.Exp <= 0 {
		return tokens.Claims{}, errors.New("not an execution token")
	}
	return kr.Verify(token, time.Unix(w.Exp, 0).Add(-time.Second))
}
