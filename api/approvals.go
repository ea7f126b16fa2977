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

	"oakallow/api/runtime"
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
	CodeToolDisabled    = runtime.CodeToolDisabled
	CodeAlreadyDecided  = "already_decided"
	CodeApprovalExpired = "approval_expired"
	CodeWrongLevel      = "wrong_level"
	CodeSameApprover    = "same_approver"
)

const (
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
type ApprovalCreated = runtime.ApprovalCreated

type createApprovalOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
	Body     ApprovalCreated
}

// Decision is one reviewer decision on an approval.
type Decision = runtime.Decision

// DeciderIdentity is who made a decision.
type DeciderIdentity = runtime.DeciderIdentity

// Approval is an approval request and its state.
type Approval = runtime.Approval

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
	// A signed-in reviewer's passkey assertion for this decision (not used with a management key).
	CeremonyID string     `json:"ceremony_id,omitempty" maxLength:"100" doc:"Reviewers (sessions): the ceremony_id of POST /v1/approvals/{id}/decide/options for this decision."`
	Credential jsonObject `json:"credential,omitempty" doc:"Reviewers (sessions): the PublicKeyCredential from navigator.credentials.get() with those options, JSON-encoded (toJSON()). Kept as evidence of the decision."`
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
				res, err := s.rt.RequestApproval(ctx, mustPrincipal(ctx).caller(), in.Body.domain())
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
		Summary: "Get an approval",
		Description: "An approval by id or REF: status, level, decisions, and once approved the execution token. " +
			"Standard keys and agent identities read only the approvals they requested (another's answers 404, like " +
			"one that does not exist); management keys and reviewers read every approval of the org. Free.",
		Tags: []string{tagApprovals}, Errors: manageReadErrors,
	}, accessApprovalsRead), func(ctx context.Context, in *approvalRefInput) (*approvalOutput, error) {
		a, err := s.rt.GetApproval(ctx, mustPrincipal(ctx).caller(), in.ID, true)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &approvalOutput{Body: a}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-approvals", Method: http.MethodGet, Path: "/v1/approvals",
		Summary: "List approvals",
		Description: "The org's approvals, newest first, filterable by status, tool and tenant, cursor-paginated: " +
			"all of them for management keys and reviewers, only those the caller requested for standard keys and " +
			"agent identities. Free.",
		Tags: []string{tagApprovals}, Errors: manageReadErrors,
	}, accessApprovalsRead), func(ctx context.Context, in *listApprovalsInput) (*listApprovalsOutput, error) {
		out, err := s.listApprovals(ctx, mustPrincipal(ctx).caller(), in)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "decide-approval", Method: http.MethodPost, Path: "/v1/approvals/{id}/decide",
		Summary: "Decide an approval",
		Description: "Approves or denies the approval's current level. A signed-in reviewer (a member of the level's " +
			"approver group who did not request it and did not decide the other level) first asks for passkey options " +
			"(POST /v1/approvals/{id}/decide/options) and sends the assertion with the decision; it is kept as evidence " +
			"(GET /v1/approvals/{id}/evidence). With a management key this works only when the org turned on " +
			"management_keys_may_decide, and the decision is labelled as a management-key decision; standard keys and " +
			"agents can never decide. The answer is the approval after the decision, including the execution token when " +
			"it was the final approval.",
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

// domain is the approval request as the runtime takes it.
func (req *approvalRequest) domain() *runtime.ApprovalRequest {
	return &runtime.ApprovalRequest{Reasoning: req.Reasoning, TimeoutSeconds: req.TimeoutSeconds, Call: runtime.Call{
		Tool: req.Tool, Tenant: req.Tenant, Resource: req.Resource, Method: req.Method,
		Parameters: json.RawMessage(req.Parameters), Context: json.RawMessage(req.Context), ReferenceID: req.ReferenceID}}
}

func (s *Server) listApprovals(ctx context.Context, c runtime.Caller, in *listApprovalsInput) (*listApprovalsOutput, error) {
	q := runtime.ApprovalQuery{Status: in.Status, Tool: in.Tool, Tenant: in.Tenant, Limit: in.Limit}
	if in.Cursor != "" {
		at, id, err := decodeTimeCursor(in.Cursor, "approval")
		if err != nil {
			return nil, err
		}
		q.Before = &runtime.ApprovalPosition{CreatedAt: at, ID: id}
	}
	page, err := s.rt.ListApprovals(ctx, c, q)
	if err != nil {
		return nil, err
	}
	out := &listApprovalsOutput{}
	out.Body.Items = page.Items
	if page.Next != nil {
		out.Body.NextCursor = encodeTimeCursor("approval", page.Next.CreatedAt, page.Next.ID)
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
	if p.Kind == PrincipalUser {
		return s.decideAsReviewer(ctx, p, ref, idemKey, req)
	}
	if req.CeremonyID != "" || len(req.Credential) > 0 {
		return Approval{}, problem(http.StatusUnprocessableEntity, CodeValidationFailed,
			"ceremony_id and credential are for reviewers signed in with a passkey, not for API keys")
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
		RequestID: decideRequestID(p.KeyID, row.ID, idemKey),
	}
	return s.submitDecision(ctx, p, row, dr, idemKey)
}

// submitDecision stores the decision's note and sends the decision to the
// approval's workflow, answering the approval as PostgreSQL holds it after.
func (s *Server) submitDecision(ctx context.Context, p Principal, row store.Approval, dr workflows.DecideRequest, idemKey string) (Approval, error) {
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
	a, err := s.rt.GetApproval(ctx, p.caller(), row.ID, true)
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
// derived from the caller, the approval and the key, so a retry is
// deduplicated by Temporal and the workflow even if the stored answer was
// lost; without one every request is new. The approval is part of it
// because the id also keys the decision's note and passkey evidence, which
// are kept across approvals: a key used again on another approval once its
// answer is no longer kept (24 h) must not find the other decision's.
func decideRequestID(keyID, approvalID, idemKey string) string {
	if idemKey == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		return "req-" + hex.EncodeToString(b[:])
	}
	h := sha256.Sum256([]byte(keyID + "\x00" + approvalID + "\x00" + idemKey))
	return "idem-" + hex.EncodeToString(h[:16])
}

// endedProblem is the 409 for deciding an approval that has ended, carrying its standing
// (the decisions that won); nil while it is pending and its current level's deadline is
// ahead. A pending row whose deadline has passed is one the worker has not expired yet
// (its timer is late, or the worker is down): the workflow's validator refuses any
// decision on it as expired, so it is refused here the same way, before a passkey
// ceremony is started or spent for it.
func (s *Server) endedProblem(ctx context.Context, row store.Approval) error {
	var p *Problem
	switch workflows.Status(row.Status) {
	case workflows.StatusApproved, workflows.StatusDenied:
		p = problem(http.StatusConflict, CodeAlreadyDecided, "the approval is already "+row.Status)
	case workflows.StatusExpired:
		p = problem(http.StatusConflict, CodeApprovalExpired, "the approval expired; request a new one")
	default:
		if s.now().Before(row.ExpiresAt) {
			return nil
		}
		p = problem(http.StatusConflict, CodeApprovalExpired, fmt.Sprintf("level %d expired at %s; request a new one",
			row.Level, row.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	ds, err := s.deps.Store.ListDecisionsOfApproval(ctx, row.ID)
	if err != nil {
		return fmt.Errorf("load decisions: %w", err)
	}
	v := runtime.ApprovalView(row, ds)
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
