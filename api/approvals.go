package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"oakallow/activities"
	"oakallow/activities/pii"
	"oakallow/activities/tokens"
	"oakallow/resolver"
	"oakallow/store"
	"oakallow/workflows"
)

// Approval requests (SPEC §3, §4). The API decides the request like a check,
// stores the approval row (PII-scrubbed) and starts its workflow, whose id is
// the REF; from then on the workflow owns every transition and projects it
// into the row, which GET and the list read. Decisions go to the workflow as
// the decide Update.

// Problem codes of the approval endpoints.
const (
	CodeToolDisabled    = "tool_disabled"
	CodeAlreadyDecided  = "already_decided"
	CodeApprovalExpired = "approval_expired"
	CodeWrongLevel      = "wrong_level"
	CodeSameApprover    = "same_approver"
)

// Audit event kinds written by the approval endpoints (the workflow's
// projections write approval.created, .escalated, .decided, .expired).
const (
	kindApprovalRequested   = "approval.requested"
	kindApprovalStartFailed = "approval.start_failed"
	kindToolTimeoutSet      = "tool.timeout_set"
)

const (
	// defaultApprovalTimeoutSeconds is the last step of the timeout
	// resolution (SPEC §4: request → tool override → org setting → 1 h).
	defaultApprovalTimeoutSeconds = 3600
	// startTimeout bounds starting the workflow.
	startTimeout = 10 * time.Second
	// decideTimeout bounds a decide Update: the workflow answers once the
	// decision is projected and, for a final approval, the token minted.
	decideTimeout = 30 * time.Second
)

const tagApprovals = "Approvals"

// approvalRequest is the body of POST /v1/approvals.
type approvalRequest struct {
	Tool           string     `json:"tool" minLength:"1" maxLength:"200" doc:"Tool name as registered in the org's catalog." example:"send_email"`
	Tenant         string     `json:"tenant,omitempty" maxLength:"200" doc:"The org's customer the call acts for (tenant name)."`
	Resource       string     `json:"resource,omitempty" maxLength:"200" doc:"Target resource name."`
	Method         string     `json:"method,omitempty" maxLength:"200" doc:"Free-form method, e.g. read, write, DELETE, send." example:"send"`
	Parameters     jsonObject `json:"parameters,omitempty" doc:"The tool call's parameters; validated against the tool's JSON Schema when it has one. The execution token minted on approval binds their hash. Stored PII-scrubbed unless the org turned scrubbing off. At most 64 levels deep; every number must survive RFC 8785 canonicalisation with its exact value (9007199254740993 does not: send such values as strings)."`
	Reasoning      string     `json:"reasoning" minLength:"1" maxLength:"2000" doc:"Why the agent wants to act, for the reviewers. PII-scrubbed before storage and notification."`
	Context        jsonObject `json:"context,omitempty" doc:"Free-form context for reviewers. PII-scrubbed before storage. At most 64 levels deep; numbers are kept exactly as written."`
	ReferenceID    string     `json:"reference_id,omitempty" maxLength:"200" doc:"The caller's own correlation id, echoed in webhooks and the audit log."`
	TimeoutSeconds *int64     `json:"timeout_seconds,omitempty" doc:"How long each approval level waits for a decision, clamped to 60 … 604800 s. When given it also becomes the tool's stored override. Default: the tool's override, else the org's setting, else 3600."`
}

type createApprovalInput struct {
	IdempotencyHeader
	Body approvalRequest `additionalProperties:"false"`
}

// ApprovalCreated answers POST /v1/approvals.
type ApprovalCreated struct {
	ID        string    `json:"id" doc:"Approval id (apr_…)."`
	Reference string    `json:"reference" doc:"The approval's REF (REF-XXXXXXXX-XXXX); also its workflow id in Temporal." example:"REF-7K2M9Q4X-H3TD"`
	Status    string    `json:"status" enum:"pending,approved,denied,expired" doc:"Always pending for a new request."`
	Level     int       `json:"level" minimum:"1" maximum:"2" doc:"The level waiting for a decision."`
	Levels    int       `json:"levels" minimum:"1" maximum:"2" doc:"How many levels must approve: 2 when the tool requires a second approval and the team's Approval 2 group is not empty."`
	ExpiresAt time.Time `json:"expires_at" doc:"When the current level expires without a decision."`
}

type createApprovalOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
	Body     ApprovalCreated
}

// Decision is one reviewer decision on an approval.
type Decision struct {
	Level    int             `json:"level" doc:"The level decided."`
	Decision string          `json:"decision" enum:"approve,deny" doc:"What was decided."`
	Decider  DeciderIdentity `json:"decider" doc:"Who decided."`
	Note     string          `json:"note,omitempty" doc:"The decider's note."`
	At       time.Time       `json:"at" doc:"When the decision was accepted."`
}

// DeciderIdentity is who made a decision.
type DeciderIdentity struct {
	Kind    string `json:"kind" enum:"user,management_key" doc:"user (a signed-in reviewer) or management_key."`
	ID      string `json:"id" doc:"The user id or the management key id."`
	Display string `json:"display,omitempty" doc:"A display label: the user's name or the key's prefix."`
}

// Approval is an approval request and its state.
type Approval struct {
	ID             string          `json:"id" doc:"Approval id (apr_…)."`
	Reference      string          `json:"reference" doc:"The REF, REF-XXXXXXXX-XXXX."`
	Status         string          `json:"status" enum:"pending,approved,denied,expired" doc:"pending until a decision or the deadline; expired means the tool must not run."`
	Level          int             `json:"level" doc:"The current level; after the approval ended, the level it ended at."`
	Levels         int             `json:"levels" doc:"How many levels must approve (1 or 2)."`
	Tool           string          `json:"tool" doc:"Tool name."`
	Tenant         string          `json:"tenant,omitempty" doc:"Tenant name, when the request named one."`
	Resource       string          `json:"resource,omitempty" doc:"Resource, when the request named one."`
	Method         string          `json:"method,omitempty" doc:"Method, when the request named one."`
	Reasoning      string          `json:"reasoning" doc:"The requester's reasoning, PII-scrubbed."`
	Parameters     json.RawMessage `json:"parameters,omitempty" doc:"The parameters as stored (PII-scrubbed unless the org turned scrubbing off)."`
	ParamsHash     string          `json:"parameters_hash,omitempty" doc:"SHA-256 of the RFC 8785 canonical JSON of the original parameters; the execution token binds it."`
	Context        json.RawMessage `json:"context,omitempty" doc:"The request's context, PII-scrubbed."`
	ReferenceID    string          `json:"reference_id,omitempty" doc:"The caller's correlation id."`
	ExpiresAt      time.Time       `json:"expires_at" doc:"The current level's deadline."`
	CreatedAt      time.Time       `json:"created_at" doc:"When the request was made."`
	DecidedAt      *time.Time      `json:"decided_at,omitempty" doc:"When the approval reached a final status."`
	Decisions      []Decision      `json:"decisions" doc:"Decisions so far, level order."`
	TokenID        string          `json:"token_id,omitempty" doc:"The execution token's id, once approved."`
	Token          string          `json:"token,omitempty" doc:"The single-use execution token (oak_tok_…), once approved. Present it to the tool server, which verifies it with POST /v1/tokens/verify."`
	TokenExpiresAt *time.Time      `json:"token_expires_at,omitempty" doc:"When the execution token expires."`
}

type approvalRefInput struct {
	ID string `path:"id" maxLength:"200" doc:"Approval id (apr_…) or REF."`
}

type approvalOutput struct {
	Body Approval
}

type listApprovalsInput struct {
	Status string `query:"status" enum:"pending,approved,denied,expired" doc:"Only approvals with this status."`
	Tool   string `query:"tool" maxLength:"200" doc:"Only approvals for this tool name."`
	Tenant string `query:"tenant" maxLength:"200" doc:"Only approvals for this tenant name."`
	Cursor string `query:"cursor" maxLength:"300" doc:"next_cursor of the previous page."`
	Limit  int    `query:"limit" minimum:"1" maximum:"200" default:"50" doc:"Page size."`
}

type listApprovalsOutput struct {
	Body struct {
		Items      []Approval `json:"items" doc:"Approvals, newest first. Tokens are only returned by GET /v1/approvals/{id}."`
		NextCursor string     `json:"next_cursor,omitempty" doc:"Pass as cursor for the next (older) page; absent on the last page."`
	}
}

type decideRequest struct {
	Decision string `json:"decision" enum:"approve,deny" doc:"approve or deny the approval's current level."`
	Note     string `json:"note,omitempty" maxLength:"1000" doc:"Optional note, shown to the requester and in notifications."`
}

type decideInput struct {
	IdempotencyHeader
	ID   string        `path:"id" maxLength:"200" doc:"Approval id (apr_…) or REF."`
	Body decideRequest `additionalProperties:"false"`
}

type decideOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
	Body     Approval
}

func registerApprovals(api huma.API, s *Server) {
	create := func(ctx context.Context, in *createApprovalInput) (*createApprovalOutput, error) {
		status, body, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "create-approval", in.Body,
			func(ctx context.Context) (int, ApprovalCreated, error) {
				res, err := s.createApproval(ctx, mustPrincipal(ctx), &in.Body)
				return http.StatusCreated, res, err
			})
		if err != nil {
			return nil, err
		}
		return &createApprovalOutput{Status: status, Replayed: replayedHeader(replayed), Body: body}, nil
	}
	createOp := huma.Operation{
		OperationID: "create-approval", Method: http.MethodPost, Path: "/v1/approvals",
		Summary: "Request an approval",
		Description: "Asks a human to approve a tool call. The request is decided like a permission check first: a disabled " +
			"verdict (or an unknown tool) is refused with 403. Otherwise a pending approval is created and its workflow started; " +
			"poll GET /v1/approvals/{id} or receive the org's webhooks. Billable ($0.005).",
		Tags: []string{tagApprovals}, DefaultStatus: http.StatusCreated,
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusPaymentRequired, http.StatusForbidden,
			http.StatusConflict, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}
	huma.Register(api, withAccess(createOp, accessRuntime), create)
	alias := createOp
	alias.OperationID, alias.Path = "create-approval-request", "/v1/approvals/request"
	alias.Summary = "Request an approval (alias)"
	alias.Description = "The same as POST /v1/approvals, at the path the hosted product also accepts."
	huma.Register(api, withAccess(alias, accessRuntime), create)

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-approval", Method: http.MethodGet, Path: "/v1/approvals/{id}",
		Summary:     "Get an approval",
		Description: "An approval by id or REF: status, level, decisions, and once approved the execution token. Free.",
		Tags:        []string{tagApprovals}, Errors: manageReadErrors,
	}, accessApprovalsRead), func(ctx context.Context, in *approvalRefInput) (*approvalOutput, error) {
		a, err := s.loadApproval(ctx, mustPrincipal(ctx).OrgID, in.ID, true)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &approvalOutput{Body: a}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-approvals", Method: http.MethodGet, Path: "/v1/approvals",
		Summary:     "List approvals",
		Description: "The org's approvals, newest first, filterable by status, tool and tenant, cursor-paginated. Free.",
		Tags:        []string{tagApprovals}, Errors: manageReadErrors,
	}, accessApprovalsRead), func(ctx context.Context, in *listApprovalsInput) (*listApprovalsOutput, error) {
		out, err := s.listApprovals(ctx, mustPrincipal(ctx).OrgID, in)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "decide-approval", Method: http.MethodPost, Path: "/v1/approvals/{id}/decide",
		Summary: "Decide an approval",
		Description: "Approves or denies the approval's current level. With a management key this works only when the org " +
			"turned on management_keys_may_decide; standard keys and agents can never decide. The answer is the approval " +
			"after the decision, including the execution token when it was the final approval.",
		Tags: []string{tagApprovals},
		Errors: []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
			http.StatusConflict, http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, accessDecide), func(ctx context.Context, in *decideInput) (*decideOutput, error) {
		status, body, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "decide-approval:"+in.ID, in.Body,
			func(ctx context.Context) (int, Approval, error) {
				res, err := s.decideApproval(ctx, mustPrincipal(ctx), in.ID, in.IdempotencyKey, &in.Body)
				return http.StatusOK, res, err
			})
		if err != nil {
			return nil, err
		}
		return &decideOutput{Status: status, Replayed: replayedHeader(replayed), Body: body}, nil
	})
}

// crockford is Crockford's base32 alphabet (no I, L, O, U).
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// newReference returns a random REF: "REF-" + 8 + "-" + 4 Crockford base32
// characters (60 random bits).
func newReference() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	out := make([]byte, 0, 17)
	out = append(out, "REF-"...)
	for i, c := range b {
		if i == 8 {
			out = append(out, '-')
		}
		out = append(out, crockford[c&31])
	}
	return string(out)
}

// resolveTimeout is SPEC §4's timeout resolution, clamped.
func resolveTimeout(request *int64, toolOverride *int32, orgSetting int32) int32 {
	switch {
	case request != nil:
		return clampTimeout(*request)
	case toolOverride != nil:
		return clampTimeout(int64(*toolOverride))
	case orgSetting > 0:
		return clampTimeout(int64(orgSetting))
	}
	return defaultApprovalTimeoutSeconds
}

// createApproval decides, bills, stores and starts one approval request.
func (s *Server) createApproval(ctx context.Context, p Principal, req *approvalRequest) (ApprovalCreated, error) {
	if s.deps.Temporal == nil {
		return ApprovalCreated{}, problem(http.StatusServiceUnavailable, CodeUnavailable, "approvals are not available: this server has no Temporal connection")
	}
	if err := normalizeRequestNames(&req.Tenant, &req.Resource, &req.Method); err != nil {
		return ApprovalCreated{}, err
	}
	pol, err := s.policies.Get(ctx, p.OrgID)
	if err != nil {
		return ApprovalCreated{}, err
	}
	rawParams, err := requestParameters(req.Parameters)
	if err != nil {
		return ApprovalCreated{}, err
	}
	rawContext, err := requestContext(req.Context)
	if err != nil {
		return ApprovalCreated{}, err
	}
	info, known := pol.tools[req.Tool]
	if known && info.Schema != nil {
		if err := validateParameters(info.Schema, rawParams); err != nil {
			return ApprovalCreated{}, err
		}
	}
	d := pol.index.Decide(resolver.Input{Tool: req.Tool, Tenant: req.Tenant, Resource: req.Resource, Method: req.Method})
	if !known || d.Reason == resolver.ReasonToolNotRegistered {
		return ApprovalCreated{}, problem(http.StatusForbidden, CodeToolNotRegistered,
			fmt.Sprintf("the org has no tool named %q; register it before requesting approvals for it", req.Tool))
	}
	if d.Permission == resolver.Disabled {
		detail := fmt.Sprintf("the verdict for this request is disabled (level %d %s", d.Level, d.LevelName)
		if d.RuleID != "" {
			detail += ", rule " + d.RuleID
		}
		return ApprovalCreated{}, problem(http.StatusForbidden, CodeToolDisabled, detail+"); it cannot be approved")
	}
	paramsHash, err := tokens.HashParameters(rawParams)
	if err != nil {
		return ApprovalCreated{}, problem(http.StatusUnprocessableEntity, CodeValidationFailed, "parameters cannot be canonicalised: "+err.Error())
	}

	st := s.deps.Store
	org, err := st.GetOrg(ctx, p.OrgID)
	if err != nil {
		return ApprovalCreated{}, fmt.Errorf("load org: %w", err)
	}
	var tenantID *string
	if req.Tenant != "" {
		t, err := st.GetTenant(ctx, store.GetTenantParams{OrgID: p.OrgID, Ref: req.Tenant})
		switch {
		case err == nil && t.Name == req.Tenant:
			tenantID = &t.ID
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return ApprovalCreated{}, fmt.Errorf("load tenant: %w", err)
		}
	}
	twoLevels := false
	if info.RequiresSecondApproval {
		n, err := st.CountApproverGroup(ctx, store.CountApproverGroupParams{TeamID: p.TeamID, Level: 2})
		if err != nil {
			return ApprovalCreated{}, fmt.Errorf("count approval 2 group: %w", err)
		}
		twoLevels = n > 0
	}
	timeout := resolveTimeout(req.TimeoutSeconds, info.TimeoutSeconds, org.ApprovalTimeoutSeconds)

	// Everything stored is scrubbed; the hash above binds the original
	// parameters so the token can be verified against what the tool receives.
	storedParams := rawParams
	if org.ScrubParameters && rawParams != nil {
		if storedParams, err = pii.ScrubJSON(rawParams); err != nil {
			return ApprovalCreated{}, fmt.Errorf("scrub parameters: %w", err)
		}
	}
	var storedContext json.RawMessage
	if rawContext != nil {
		if storedContext, err = pii.ScrubJSON(rawContext); err != nil {
			return ApprovalCreated{}, fmt.Errorf("scrub context: %w", err)
		}
	}
	reasoning := pii.Scrub(req.Reasoning)

	// PostgreSQL keeps microseconds; the workflow derives level 1's deadline
	// from CreatedAt, so both must be the value stored.
	now := s.now().Truncate(time.Millisecond)
	id, ref := store.NewID("apr"), newReference()
	expires := now.Add(time.Duration(timeout) * time.Second)
	levels := 1
	if twoLevels {
		levels = 2
	}

	// The call is billed before anything else is written, like a check: a
	// request the team cannot pay for leaves nothing but its audit entry.
	details, err := json.Marshal(map[string]any{
		"reference": ref, "resource": req.Resource, "method": req.Method, "reference_id": req.ReferenceID,
		"reasoning": reasoning, "parameters_hash": paramsHash, "levels": levels, "level_timeout_seconds": timeout,
		"verdict": map[string]any{"permission": d.Permission.String(), "level": d.Level, "level_name": d.LevelName, "rule_id": d.RuleID},
	})
	if err != nil {
		return ApprovalCreated{}, fmt.Errorf("encode audit details: %w", err)
	}
	err = s.recorder.Record(ctx, store.Entry{Billable: true, Event: store.AuditRecord{
		ID: store.NewID("evt"), OrgID: p.OrgID, TeamID: p.TeamID, OccurredAt: now,
		ActorKind: p.Kind, ActorID: p.KeyID, Kind: kindApprovalRequested, Subject: id,
		Outcome: string(workflows.StatusPending), Tool: req.Tool, Tenant: req.Tenant, Details: details,
	}})
	if err != nil {
		return ApprovalCreated{}, err
	}

	// Paid for: finish even if the client goes away, so no half-created
	// approval is left behind.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startTimeout+5*time.Second)
	defer cancel()
	err = s.inTx(wctx, func(q *store.Queries) error {
		if err := q.InsertApprovalRequest(wctx, store.InsertApprovalRequestParams{
			ID: id, OrgID: p.OrgID, Reference: ref, ToolID: info.ID, ToolName: req.Tool, TenantID: tenantID,
			TenantName: req.Tenant, Resource: req.Resource, Method: req.Method, Parameters: storedParams,
			ParamsHash: paramsHash, Reasoning: reasoning, Context: storedContext, ReferenceID: req.ReferenceID,
			TwoLevels: twoLevels, LevelTimeoutSeconds: timeout, ExpiresAt: expires, CreatedAt: now,
			CreatedByKind: p.Kind, CreatedByID: p.KeyID,
		}); err != nil {
			return referencedIf(err, "tool %q was deleted while the request was made", req.Tool)
		}
		if req.TimeoutSeconds == nil || (info.TimeoutSeconds != nil && *info.TimeoutSeconds == timeout) {
			return nil
		}
		// SPEC §3: a request's timeout also becomes the tool's stored override.
		if err := q.SetToolTimeout(wctx, store.SetToolTimeoutParams{OrgID: p.OrgID, ID: info.ID,
			ApprovalTimeoutSeconds: &timeout, UpdatedAt: now}); err != nil {
			return fmt.Errorf("set tool timeout: %w", err)
		}
		return s.recordChange(wctx, q, p, now, change{kind: kindToolTimeoutSet, subject: info.ID, tool: req.Tool,
			details: map[string]any{"approval_timeout_seconds": fieldChange{From: info.TimeoutSeconds, To: timeout}, "approval_id": id},
			policy:  true})
	})
	if err != nil {
		return ApprovalCreated{}, err
	}

	in := workflows.ApprovalInput{
		ApprovalID: id, Reference: ref, OrgID: p.OrgID, ToolName: req.Tool, TwoLevels: twoLevels,
		LevelTimeout: time.Duration(timeout) * time.Second, CreatedAt: now,
	}
	if tenantID != nil {
		in.TenantID = *tenantID
	}
	if err := in.Validate(); err != nil {
		return ApprovalCreated{}, fmt.Errorf("approval input: %w", err)
	}
	sctx, scancel := context.WithTimeout(wctx, startTimeout)
	_, err = s.deps.Temporal.ExecuteWorkflow(sctx, workflows.StartWorkflowOptions(in), workflows.ApprovalWorkflowName, in)
	scancel()
	if err != nil && !s.startedAnyway(wctx, ref, err) {
		return ApprovalCreated{}, s.abortApproval(wctx, p, id, ref, req.Tool, err)
	}
	return ApprovalCreated{ID: id, Reference: ref, Status: string(workflows.StatusPending), Level: 1, Levels: levels, ExpiresAt: expires}, nil
}

// startedAnyway reports whether the approval's workflow runs although
// starting it returned an error (a timeout after the server accepted it).
func (s *Server) startedAnyway(ctx context.Context, ref string, cause error) bool {
	var dup *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(cause, &dup) {
		return false // a REF collision with another approval's closed workflow
	}
	dctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	desc, err := s.deps.Temporal.DescribeWorkflowExecution(dctx, ref, "")
	return err == nil && desc.GetWorkflowExecutionInfo().GetType().GetName() == workflows.ApprovalWorkflowName
}

// abortApproval undoes an approval whose workflow could not be started: a
// workflow that did start despite the error is terminated, and the row is
// deleted, so nothing is left pending that no workflow will ever end (a
// late-starting workflow then fails on its first projection). The failure
// is audited and answered with 503.
func (s *Server) abortApproval(ctx context.Context, p Principal, id, ref, tool string, cause error) error {
	s.log.ErrorContext(ctx, "start approval workflow", "request_id", requestIDFrom(ctx), "reference", ref, "err", cause)
	var dup *serviceerror.WorkflowExecutionAlreadyStarted
	if !errors.As(cause, &dup) {
		if err := s.deps.Temporal.TerminateWorkflow(ctx, ref, "", "oakallow: start failed; approval aborted"); err != nil {
			var nf *serviceerror.NotFound
			if !errors.As(err, &nf) {
				s.log.WarnContext(ctx, "terminate unstarted approval workflow", "reference", ref, "err", err)
			}
		}
	}
	now := s.now()
	err := s.inTx(ctx, func(q *store.Queries) error {
		if _, err := q.DeleteUnstartedApproval(ctx, store.DeleteUnstartedApprovalParams{OrgID: p.OrgID, ID: id}); err != nil {
			return err
		}
		return s.recordChange(ctx, q, p, now, change{kind: kindApprovalStartFailed, subject: id, tool: tool,
			details: map[string]any{"reference": ref}})
	})
	if err != nil {
		s.log.ErrorContext(ctx, "abort approval", "request_id", requestIDFrom(ctx), "reference", ref, "err", err)
	}
	return problem(http.StatusServiceUnavailable, CodeUnavailable,
		"the approval workflow could not be started; nothing was created, retry later")
}

// loadApproval reads an approval with its decisions and, when withToken,
// its execution token.
func (s *Server) loadApproval(ctx context.Context, orgID, ref string, withToken bool) (Approval, error) {
	if err := lookupRef("approval", ref); err != nil {
		return Approval{}, err
	}
	st := s.deps.Store
	row, err := st.GetApprovalByRef(ctx, store.GetApprovalByRefParams{OrgID: orgID, Ref: ref})
	if err != nil {
		return Approval{}, notFoundIf(err, "approval", ref)
	}
	ds, err := st.ListDecisionsOfApproval(ctx, row.ID)
	if err != nil {
		return Approval{}, fmt.Errorf("load decisions: %w", err)
	}
	a := approvalView(row, ds)
	if withToken && row.Status == string(workflows.StatusApproved) {
		tok, err := st.GetTokenBySource(ctx, store.GetTokenBySourceParams{OrgID: orgID, SourceKind: tokenSourceApproval, SourceID: row.ID})
		switch {
		case err == nil:
			m, err := activities.OpenToken(s.deps.SecretBox, tok)
			if err != nil {
				return Approval{}, err
			}
			a.TokenID, a.Token, a.TokenExpiresAt = m.ID, m.Token, &m.ExpiresAt
		case !errors.Is(err, store.ErrNotFound):
			return Approval{}, fmt.Errorf("load token: %w", err)
		}
	}
	return a, nil
}

func approvalView(r store.Approval, ds []store.ApprovalDecision) Approval {
	a := Approval{
		ID: r.ID, Reference: r.Reference, Status: r.Status, Level: int(r.Level), Levels: 1, Tool: r.ToolName,
		Tenant: r.TenantName, Resource: r.Resource, Method: r.Method, Reasoning: r.Reasoning,
		Parameters: r.Parameters, ParamsHash: r.ParamsHash, Context: r.Context, ReferenceID: r.ReferenceID,
		ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt, DecidedAt: r.DecidedAt, Decisions: make([]Decision, 0, len(ds)),
	}
	if r.TwoLevels {
		a.Levels = 2
	}
	for _, d := range ds {
		a.Decisions = append(a.Decisions, Decision{Level: int(d.Level), Decision: d.Decision, Note: d.Note, At: d.DecidedAt,
			Decider: DeciderIdentity{Kind: d.DeciderKind, ID: d.DeciderID, Display: d.DeciderDisplay}})
	}
	return a
}

func (s *Server) listApprovals(ctx context.Context, orgID string, in *listApprovalsInput) (*listApprovalsOutput, error) {
	if !storable(in.Tool) || !storable(in.Tenant) {
		return nil, problem(http.StatusUnprocessableEntity, CodeValidationFailed, "tool and tenant must be valid UTF-8 without NUL")
	}
	params := store.ListApprovalsPageParams{OrgID: orgID, Status: in.Status, Tool: in.Tool, Tenant: nameRef(in.Tenant),
		RowLimit: int32(in.Limit) + 1}
	if in.Cursor != "" {
		at, id, err := decodeTimeCursor(in.Cursor, "approval")
		if err != nil {
			return nil, err
		}
		params.BeforeCreated, params.BeforeID = &at, id
	}
	rows, err := s.deps.Store.ListApprovalsPage(ctx, params)
	if err != nil {
		return nil, err
	}
	n := min(len(rows), in.Limit)
	ids := make([]string, 0, n)
	for _, r := range rows[:n] {
		ids = append(ids, r.ID)
	}
	ds, err := s.deps.Store.ListDecisionsOfApprovals(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("load decisions: %w", err)
	}
	byApproval := map[string][]store.ApprovalDecision{}
	for _, d := range ds {
		byApproval[d.ApprovalID] = append(byApproval[d.ApprovalID], d)
	}
	out := &listApprovalsOutput{}
	out.Body.Items = make([]Approval, 0, n)
	for _, r := range rows[:n] {
		out.Body.Items = append(out.Body.Items, approvalView(r, byApproval[r.ID]))
	}
	if len(rows) > in.Limit {
		last := rows[n-1]
		out.Body.NextCursor = encodeTimeCursor("approval", last.CreatedAt, last.ID)
	}
	return out, nil
}

// encodeTimeCursor and decodeTimeCursor carry a (created_at, id) position of
// a newest-first list, tagged with the list's kind.
func encodeTimeCursor(kind string, at time.Time, id string) string {
	return encodeCursor(kind + ":" + at.UTC().Format(time.RFC3339Nano) + "/" + id)
}

func decodeTimeCursor(c, kind string) (time.Time, string, error) {
	bad := problem(http.StatusBadRequest, CodeBadRequest, "cursor is not one this list returned")
	pos, err := decodeCursor(c)
	if err != nil {
		return time.Time{}, "", err
	}
	rest, ok := strings.CutPrefix(pos, kind+":")
	if !ok {
		return time.Time{}, "", bad
	}
	ts, id, ok := strings.Cut(rest, "/")
	if !ok || id == "" || !storable(id) {
		return time.Time{}, "", bad
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return time.Time{}, "", bad
	}
	return at, id, nil
}

// decideApproval sends a management key's decision to the approval's
// workflow and answers the approval as it is afterwards.
func (s *Server) decideApproval(ctx context.Context, p Principal, ref, idemKey string, req *decideRequest) (Approval, error) {
	if s.deps.Temporal == nil {
		return Approval{}, problem(http.StatusServiceUnavailable, CodeUnavailable, "approvals are not available: this server has no Temporal connection")
	}
	if err := lookupRef("approval", ref); err != nil {
		return Approval{}, err
	}
	st := s.deps.Store
	org, err := st.GetOrg(ctx, p.OrgID)
	if err != nil {
		return Approval{}, fmt.Errorf("load org: %w", err)
	}
	if !org.ManagementKeysMayDecide {
		return Approval{}, problem(http.StatusForbidden, CodeForbidden,
			"management keys may not decide approvals in this org; an owner or admin can turn on the org setting "+
				"management_keys_may_decide, or a reviewer decides in the dashboard")
	}
	row, err := st.GetApprovalByRef(ctx, store.GetApprovalByRefParams{OrgID: p.OrgID, Ref: ref})
	if err != nil {
		return Approval{}, notFoundIf(err, "approval", ref)
	}
	if err := s.endedProblem(ctx, row); err != nil {
		return Approval{}, err
	}
	key, err := st.GetAPIKeyDisplay(ctx, store.GetAPIKeyDisplayParams{OrgID: p.OrgID, ID: p.KeyID})
	if err != nil {
		return Approval{}, fmt.Errorf("load deciding key: %w", err)
	}
	dr := workflows.DecideRequest{
		Level:     int(row.Level),
		Decision:  workflows.DecisionValue(req.Decision),
		Decider:   workflows.Decider{Kind: workflows.DeciderManagementKey, ID: p.KeyID, Display: key.Prefix},
		Note:      req.Note,
		RequestID: decideRequestID(p.KeyID, idemKey),
	}
	if err := dr.Validate(); err != nil {
		return Approval{}, problem(http.StatusUnprocessableEntity, CodeValidationFailed, "invalid decision: "+err.Error())
	}
	if err := s.storeNote(ctx, row.ID, dr.RequestID, dr.Note, idemKey != ""); err != nil {
		return Approval{}, err
	}
	dr.Note = "" // customer data: it stays in PostgreSQL, out of workflow history
	res, err := s.sendDecision(ctx, row.WorkflowID, dr)
	if err != nil {
		return Approval{}, s.decideProblem(ctx, p.OrgID, row.ID, err)
	}
	a, err := s.loadApproval(ctx, p.OrgID, row.ID, true)
	if err != nil {
		return Approval{}, err
	}
	// The workflow answers only after the decision's projection (and, for an approval, its
	// token) is in PostgreSQL, so the two agree; a disagreement means the approval
	// invariant broke, which must never pass unnoticed.
	if a.Status != string(res.State.Status) || len(a.Decisions) != len(res.State.Decisions) {
		s.log.ErrorContext(ctx, "approval invariant: the decide answer and PostgreSQL disagree",
			"approval_id", row.ID, "workflow_status", res.State.Status, "stored_status", a.Status,
			"workflow_decisions", len(res.State.Decisions), "stored_decisions", len(a.Decisions))
	}
	return a, nil
}

// decideTurns hands out turns to send a decide Update, one at a time per approval: a
// fixed set of single-slot stripes, chosen by a hash of the workflow id, so two approvals
// rarely share a turn and memory stays constant however many approvals there are.
type decideTurns [64]chan struct{}

// take waits for workflowID's turn (or ctx) and returns the function that ends it.
func (d *decideTurns) take(ctx context.Context, workflowID string) (func(), error) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(workflowID))
	slot := &d[h.Sum32()%uint32(len(d))]
	if *slot == nil {
		return nil, errors.New("decide turns used before init")
	}
	select {
	case *slot <- struct{}{}:
		return func() { <-*slot }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// init makes the stripes; called once by NewServer.
func (d *decideTurns) init() {
	for i := range d {
		d[i] = make(chan struct{}, 1)
	}
}

// storeNote keeps a decide's note in PostgreSQL under the decide's request id, where the
// workflow's activities read it: reviewer notes are customer data and never enter workflow
// history (SPEC §4). A retry (same Idempotency-Key, so the same request id) must carry the
// same note; retried says whether the request id can have been used before.
func (s *Server) storeNote(ctx context.Context, approvalID, requestID, note string, retried bool) error {
	q := s.deps.Store.Queries
	if note != "" {
		n, err := q.InsertDecisionNote(ctx, store.InsertDecisionNoteParams{
			RequestID: requestID, ApprovalID: approvalID, Note: note, CreatedAt: time.Now()})
		if err != nil {
			return fmt.Errorf("store decision note: %w", err)
		}
		if n == 1 || !retried {
			return nil
		}
	} else if !retried {
		return nil
	}
	have, err := q.GetDecisionNote(ctx, requestID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil // note == "" and none stored: the same request
	case err != nil:
		return fmt.Errorf("load decision note: %w", err)
	case have.ApprovalID != approvalID || have.Note != note:
		return problem(http.StatusUnprocessableEntity, CodeIdempotencyKeyReused,
			"this Idempotency-Key was already used for a different decision")
	}
	return nil
}

// sendDecision delivers a decision to the approval's workflow as the decide Update and
// waits for its outcome. The server aborts an Update whose workflow task it discards
// (Unavailable "workflow update was aborted"); nothing of an aborted Update happened, so it
// is sent again, with the same Update id, until the decide timeout.
func (s *Server) sendDecision(ctx context.Context, workflowID string, dr workflows.DecideRequest) (workflows.DecideResult, error) {
	// Detached from the client: a decision that reached the workflow is carried through
	// even if the caller hangs up.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), decideTimeout)
	defer cancel()
	// One decide Update per approval at a time from this replica. Temporal admits at most
	// a few Updates in flight per workflow (history.maxInFlightUpdates, 10 by default) and
	// answers the rest ResourceExhausted; a burst of 20 concurrent decides then stalled
	// the approval for tens of seconds. Taking turns costs the losers nothing: each is
	// refused as soon as the winner's acceptance is in, in milliseconds.
	release, err := s.decides.take(uctx, workflowID)
	if err != nil {
		return workflows.DecideResult{}, err
	}
	defer release()
	backoff := 20 * time.Millisecond
	for {
		handle, err := s.deps.Temporal.UpdateWorkflow(uctx, client.UpdateWorkflowOptions{
			WorkflowID:   workflowID,
			UpdateID:     dr.RequestID,
			UpdateName:   workflows.UpdateDecide,
			Args:         []any{dr},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		var res workflows.DecideResult
		if err == nil {
			err = handle.Get(uctx, &res)
		}
		if err == nil || !isUnavailable(err) {
			return res, err
		}
		s.log.InfoContext(ctx, "decide update not delivered; sending it again",
			"request_id", requestIDFrom(ctx), "workflow_id", workflowID, "err", err)
		select {
		case <-uctx.Done():
			return workflows.DecideResult{}, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// decideRequestID is the decide Update's id. With an Idempotency-Key it is
// derived from the caller and the key, so a retry is deduplicated by
// Temporal and the workflow even if the stored answer was lost; without one
// every request is new.
func decideRequestID(keyID, idemKey string) string {
	if idemKey == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		return "req-" + hex.EncodeToString(b[:])
	}
	h := sha256.Sum256([]byte(keyID + "\x00" + idemKey))
	return "idem-" + hex.EncodeToString(h[:16])
}

// endedProblem is the 409 for deciding an approval that has ended, carrying its standing
// (the decisions that won); nil while it is pending.
func (s *Server) endedProblem(ctx context.Context, row store.Approval) error {
	var p *Problem
	switch workflows.Status(row.Status) {
	case workflows.StatusApproved, workflows.StatusDenied:
		p = problem(http.StatusConflict, CodeAlreadyDecided, "the approval is already "+row.Status)
	case workflows.StatusExpired:
		p = problem(http.StatusConflict, CodeApprovalExpired, "the approval expired; request a new one")
	default:
		return nil
	}
	ds, err := s.deps.Store.ListDecisionsOfApproval(ctx, row.ID)
	if err != nil {
		return fmt.Errorf("load decisions: %w", err)
	}
	v := approvalView(row, ds)
	p.Approval = &ApprovalStanding{Status: v.Status, Level: v.Level, Decisions: v.Decisions}
	return p
}

// decideProblem maps a failed decide Update to its answer: the workflow's
// rejections, a workflow that has already ended (answered from the stored
// status), and Temporal being unreachable.
func (s *Server) decideProblem(ctx context.Context, orgID, id string, err error) error {
	if reason, ok := workflows.RejectionReason(err); ok {
		msg := rejectionMessage(err)
		// The workflow's state as it refused the decision: the decisions that won.
		var standing *ApprovalStanding
		if st, ok := workflows.RejectionState(err); ok {
			standing = standingOf(st)
		}
		switch reason {
		case workflows.RejectAlreadyDecided:
			return conflictProblem(CodeAlreadyDecided, msg, standing)
		case workflows.RejectExpired:
			return conflictProblem(CodeApprovalExpired, msg, standing)
		case workflows.RejectWrongLevel:
			return conflictProblem(CodeWrongLevel, msg+"; reload the approval and decide its current level", standing)
		case workflows.RejectSameApprover:
			return problem(http.StatusForbidden, CodeSameApprover, msg)
		case workflows.RejectRequestIDReused:
			return problem(http.StatusUnprocessableEntity, CodeIdempotencyKeyReused, "this Idempotency-Key was already used for a different decision")
		default:
			return problem(http.StatusUnprocessableEntity, CodeValidationFailed, msg)
		}
	}
	if workflowClosed(err) {
		row, lerr := s.deps.Store.GetApprovalByRef(ctx, store.GetApprovalByRefParams{OrgID: orgID, Ref: id})
		if lerr != nil {
			return fmt.Errorf("reload approval after decide: %w", lerr)
		}
		if p := s.endedProblem(ctx, row); p != nil {
			return p
		}
		return problem(http.StatusConflict, CodeConflict, "the approval's workflow is no longer running; it cannot be decided")
	}
	if errors.Is(err, context.DeadlineExceeded) || isUnavailable(err) {
		s.log.WarnContext(ctx, "decide update", "request_id", requestIDFrom(ctx), "err", err)
		return problem(http.StatusServiceUnavailable, CodeUnavailable,
			"the decision was not processed in time and may still be applied: read the approval (GET /v1/approvals/{id}) "+
				"before deciding again, or retry with the same Idempotency-Key to wait for this decision")
	}
	return fmt.Errorf("decide update: %w", err)
}

// ApprovalStanding is where a refused decision found the approval: its status, level and
// the decisions that won.
type ApprovalStanding struct {
	Status    string     `json:"status" enum:"pending,approved,denied,expired" doc:"The approval's status when the decision was refused."`
	Level     int        `json:"level" doc:"The approval's level when the decision was refused."`
	Decisions []Decision `json:"decisions" doc:"The decisions accepted so far, level order: the winning decision of a decided level."`
}

// standingOf is the standing the workflow reported with a rejection.
func standingOf(st workflows.State) *ApprovalStanding {
	ds := make([]Decision, 0, len(st.Decisions))
	for _, d := range st.Decisions {
		ds = append(ds, Decision{Level: d.Level, Decision: string(d.Decision), Note: d.Note, At: d.At,
			Decider: DeciderIdentity{Kind: string(d.Decider.Kind), ID: d.Decider.ID, Display: d.Decider.Display}})
	}
	return &ApprovalStanding{Status: string(st.Status), Level: st.Level, Decisions: ds}
}

// conflictProblem is a 409 for a refused decision, with the approval's standing.
func conflictProblem(code, detail string, standing *ApprovalStanding) *Problem {
	p := problem(http.StatusConflict, code, detail)
	p.Approval = standing
	return p
}

// rejectionMessage is the workflow validator's message, which names only
// levels, statuses and deadlines.
func rejectionMessage(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Message()
	}
	return "the decision was refused"
}

// isUnavailable reports Temporal errors that mean "try again later".
func isUnavailable(err error) bool {
	var un *serviceerror.Unavailable
	var de *serviceerror.DeadlineExceeded
	var rl *serviceerror.ResourceExhausted
	return errors.As(err, &un) || errors.As(err, &de) || errors.As(err, &rl)
}
