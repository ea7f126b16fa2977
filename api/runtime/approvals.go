package runtime

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"go.temporal.io/api/serviceerror"

	"oakallow/activities"
	"oakallow/activities/pii"
	"oakallow/activities/tokens"
	"oakallow/resolver"
	"oakallow/store"
	"oakallow/workflows"
)

// Approval requests (SPEC §3, §4). A request is decided like a check, stored
// (PII-scrubbed) and its workflow started, whose id is the REF; from then on
// the workflow owns every transition and projects it into the row, which
// GetApproval and ListApprovals read. Deciding is not part of the runtime:
// agents can never decide.

// Audit kinds written by approval requests (the workflow's projections write
// approval.created, .escalated, .decided, .expired).
const (
	KindApprovalRequested   = "approval.requested"
	KindApprovalStartFailed = "approval.start_failed"
	// KindCallRefunded: a charged call that created nothing was refunded.
	KindCallRefunded   = "call.refunded"
	KindToolTimeoutSet = "tool.timeout_set"
)

const (
	// defaultApprovalTimeoutSeconds is the last step of the timeout
	// resolution (SPEC §4: request → tool override → org setting → 1 h).
	defaultApprovalTimeoutSeconds = 3600
	// startTimeout bounds starting the workflow.
	startTimeout = 10 * time.Second
	// abortTimeout bounds withdrawing an approval whose start failed.
	abortTimeout = 15 * time.Second
)

// Approval timeouts are clamped, not refused (SPEC §1: any value clamped to
// 60 s … 7 d).
const (
	MinApprovalTimeoutSeconds = 60
	MaxApprovalTimeoutSeconds = 7 * 24 * 3600
)

// ClampTimeout clamps an approval timeout in seconds to 60 s … 7 d.
func ClampTimeout(sec int64) int32 {
	return int32(min(max(sec, MinApprovalTimeoutSeconds), MaxApprovalTimeoutSeconds))
}

// ApprovalRequest asks a human to approve a tool call.
type ApprovalRequest struct {
	Call
	Reasoning string
	// TimeoutSeconds, when set, is each level's wait (clamped), and also
	// becomes the tool's stored override (SPEC §3).
	TimeoutSeconds *int64
}

// ApprovalCreated answers a new approval request.
type ApprovalCreated struct {
	ID        string    `json:"id" doc:"Approval id (apr_…)."`
	Reference string    `json:"reference" doc:"The approval's REF (REF-XXXXXXXX-XXXX); also its workflow id in Temporal." example:"REF-7K2M9Q4X-H3TD"`
	Status    string    `json:"status" enum:"pending,approved,denied,expired" doc:"Always pending for a new request."`
	Level     int       `json:"level" minimum:"1" maximum:"2" doc:"The level waiting for a decision."`
	Levels    int       `json:"levels" minimum:"1" maximum:"2" doc:"How many levels must approve: 2 when the tool requires a second approval and the team's Approval 2 group is not empty."`
	ExpiresAt time.Time `json:"expires_at" doc:"When the current level expires without a decision."`
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

// Requester is the credential that requested an approval.
type Requester struct {
	Kind string `json:"kind" enum:"api_key,agent,oauth" doc:"api_key (a standard key), agent (an agent identity) or oauth (an MCP client's OAuth grant)."`
	ID   string `json:"id" doc:"The API key id, agent identity id or OAuth grant id."`
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
	RequestedBy    Requester       `json:"requested_by" doc:"The credential that requested it. Standard keys, agent identities and OAuth clients read only the approvals they requested; management keys and reviewers read all."`
	ExpiresAt      time.Time       `json:"expires_at" doc:"The current level's deadline."`
	CreatedAt      time.Time       `json:"created_at" doc:"When the request was made."`
	DecidedAt      *time.Time      `json:"decided_at,omitempty" doc:"When the approval reached a final status."`
	Decisions      []Decision      `json:"decisions" doc:"Decisions so far, level order."`
	TokenID        string          `json:"token_id,omitempty" doc:"The execution token's id, once approved."`
	Token          string          `json:"token,omitempty" doc:"The single-use execution token (oak_tok_…), once approved. Present it to the tool server, which verifies it with POST /v1/tokens/verify."`
	TokenExpiresAt *time.Time      `json:"token_expires_at,omitempty" doc:"When the execution token expires."`
	// ToolAnnotations let a reviewer judge what approving lets the tool do.
	ToolAnnotations ToolAnnotations `json:"tool_annotations" doc:"The tool's MCP annotations and risk level as stored for the tool now (not a copy taken when the approval was requested)."`
}

// ToolAnnotations are the MCP annotations (hints) and risk level stored for
// a tool, as a reviewer sees them beside an approval of it.
type ToolAnnotations struct {
	ReadOnly     bool   `json:"read_only" doc:"MCP readOnlyHint: the tool does not modify its environment."`
	Destructive  bool   `json:"destructive" doc:"MCP destructiveHint: the tool may perform destructive updates."`
	Idempotent   bool   `json:"idempotent" doc:"MCP idempotentHint: calling it again with the same arguments has no further effect."`
	OpenWorld    bool   `json:"open_world" doc:"MCP openWorldHint: the tool interacts with entities outside the org (the internet, other systems)."`
	Acknowledged bool   `json:"acknowledged" doc:"Whether an owner or admin reviewed and acknowledged these annotations; false means they are the conservative defaults or an agent's unreviewed claim."`
	RiskLevel    string `json:"risk_level" enum:"low,medium,high,critical" doc:"The tool's risk level."`
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
		return ClampTimeout(*request)
	case toolOverride != nil:
		return ClampTimeout(int64(*toolOverride))
	case orgSetting > 0:
		return ClampTimeout(int64(orgSetting))
	}
	return defaultApprovalTimeoutSeconds
}

// RequestApproval decides, bills, stores and starts one approval request.
// req's tenant, resource and method are normalised in place.
func (s *Service) RequestApproval(ctx context.Context, c Caller, req *ApprovalRequest) (ApprovalCreated, error) {
	if s.d.Temporal == nil {
		return ApprovalCreated{}, refuse(KindUnavailable, CodeUnavailable, "approvals are not available: this server has no Temporal connection")
	}
	rawParams, rawContext, err := req.accept("reasoning", req.Reasoning)
	if err != nil {
		return ApprovalCreated{}, err
	}
	pol, err := s.d.Policies.Policy(ctx, c.OrgID)
	if err != nil {
		return ApprovalCreated{}, err
	}
	info, known := pol.Tool(req.Tool)
	if known && info.Schema != nil {
		if err := validateRawParameters(info.Schema, rawParams); err != nil {
			return ApprovalCreated{}, err
		}
	}
	d := pol.Decide(resolver.Input{Tool: req.Tool, Tenant: req.Tenant, Resource: req.Resource, Method: req.Method})
	if !known || d.Reason == resolver.ReasonToolNotRegistered {
		return ApprovalCreated{}, refusef(KindForbidden, CodeToolNotRegistered,
			"the org has no tool named %q; register it before requesting approvals for it", req.Tool)
	}
	if d.Permission == resolver.Disabled {
		detail := fmt.Sprintf("the verdict for this request is disabled (level %d %s", d.Level, d.LevelName)
		if d.RuleID != "" {
			detail += ", rule " + d.RuleID
		}
		return ApprovalCreated{}, refuse(KindForbidden, CodeToolDisabled, detail+"); it cannot be approved")
	}
	paramsHash, err := tokens.HashParameters(rawParams)
	if err != nil {
		return ApprovalCreated{}, refuse(KindInvalid, CodeValidationFailed, "parameters cannot be canonicalised: "+err.Error())
	}

	st := s.d.Store
	org, err := st.GetOrg(ctx, c.OrgID)
	if err != nil {
		return ApprovalCreated{}, fmt.Errorf("load org: %w", err)
	}
	var tenantID *string
	if req.Tenant != "" {
		t, err := st.GetTenant(ctx, store.GetTenantParams{OrgID: c.OrgID, Ref: req.Tenant})
		switch {
		case err == nil && t.Name == req.Tenant:
			tenantID = &t.ID
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return ApprovalCreated{}, fmt.Errorf("load tenant: %w", err)
		}
	}
	twoLevels := false
	if info.RequiresSecondApproval {
		n, err := st.CountApproverGroup(ctx, store.CountApproverGroupParams{TeamID: c.TeamID, Level: 2})
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
	chargeID := store.NewID("evt")
	err = s.d.Recorder.Record(ctx, store.Entry{Billable: true, Event: store.AuditRecord{
		ID: chargeID, OrgID: c.OrgID, TeamID: c.TeamID, OccurredAt: now,
		ActorKind: c.Kind, ActorID: c.ID, Kind: KindApprovalRequested, Subject: id,
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
			ID: id, OrgID: c.OrgID, Reference: ref, ToolID: info.ID, ToolName: req.Tool, TenantID: tenantID,
			TenantName: req.Tenant, Resource: req.Resource, Method: req.Method, Parameters: storedParams,
			ParamsHash: paramsHash, Reasoning: reasoning, Context: storedContext, ReferenceID: req.ReferenceID,
			TwoLevels: twoLevels, LevelTimeoutSeconds: timeout, ExpiresAt: expires, CreatedAt: now,
			CreatedByKind: c.Kind, CreatedByID: c.ID,
		}); err != nil {
			if errors.Is(err, store.ErrReferenced) {
				return refusef(KindConflict, CodeConflict, "tool %q was deleted while the request was made", req.Tool)
			}
			return err
		}
		if req.TimeoutSeconds == nil || (info.TimeoutSeconds != nil && *info.TimeoutSeconds == timeout) {
			return nil
		}
		// SPEC §3: a request's timeout also becomes the tool's stored override.
		if err := q.SetToolTimeout(wctx, store.SetToolTimeoutParams{OrgID: c.OrgID, ID: info.ID,
			ApprovalTimeoutSeconds: &timeout, UpdatedAt: now}); err != nil {
			return fmt.Errorf("set tool timeout: %w", err)
		}
		_, err := RecordChange(wctx, q, c, now, Change{Kind: KindToolTimeoutSet, Subject: info.ID, Tool: req.Tool,
			Details: map[string]any{"approval_timeout_seconds": map[string]any{"from": info.TimeoutSeconds, "to": timeout}, "approval_id": id},
			Policy:  true})
		return err
	})
	if err != nil {
		// Nothing was created: the call is not billed (SPEC §9).
		s.refundCharge(wctx, c, chargeID, id, req.Tool, "approval_not_created")
		return ApprovalCreated{}, err
	}

	in := workflows.ApprovalInput{
		ApprovalID: id, Reference: ref, OrgID: c.OrgID, ToolName: req.Tool, TwoLevels: twoLevels,
		LevelTimeout: time.Duration(timeout) * time.Second, CreatedAt: now,
	}
	if tenantID != nil {
		in.TenantID = *tenantID
	}
	if err := in.Validate(); err != nil {
		return ApprovalCreated{}, fmt.Errorf("approval input: %w", err)
	}
	sctx, scancel := context.WithTimeout(wctx, startTimeout)
	_, err = s.d.Temporal.ExecuteWorkflow(sctx, workflows.StartWorkflowOptions(in), workflows.ApprovalWorkflowName, in)
	scancel()
	created := ApprovalCreated{ID: id, Reference: ref, Status: string(workflows.StatusPending), Level: 1, Levels: levels, ExpiresAt: expires}
	if err != nil && !s.startedAnyway(ctx, ref, err) {
		if aborted, abortErr := s.abortApproval(ctx, c, id, ref, req.Tool, chargeID, err); aborted {
			return ApprovalCreated{}, abortErr
		}
		// The workflow started late and already runs the approval: it was
		// created, and is billed like any other.
	}
	return created, nil
}

// startedAnyway reports whether the approval's workflow runs although
// starting it returned an error (a timeout after the server accepted it).
func (s *Service) startedAnyway(ctx context.Context, ref string, cause error) bool {
	var dup *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(cause, &dup) {
		return false // a REF collision with another approval's closed workflow
	}
	// A fresh deadline: the start may have used all of its own.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startTimeout)
	defer cancel()
	desc, err := s.d.Temporal.DescribeWorkflowExecution(dctx, ref, "")
	return err == nil && desc.GetWorkflowExecutionInfo().GetType().GetName() == workflows.ApprovalWorkflowName
}

// abortApproval withdraws an approval whose workflow could not be started
// and reports whether it did. The row is deleted only while no workflow has
// touched it, in the same transaction that gives the call's charge
// (chargeID) back — a call that failed after being charged is not billed
// (SPEC §9), so a retry with the same Idempotency-Key pays once — and
// audits the failure; then a workflow that may have started despite the
// error is terminated (one starting later fails on its first projection,
// as its row is gone). When a workflow has already projected the row, it
// runs the approval: nothing is withdrawn or refunded and the caller is
// told it was created (aborted false). When the withdrawal itself fails,
// the answer says the approval may exist rather than that nothing was
// created; the row then stays pending with no workflow until the worker's
// start reconciler (activities.RecoverUnstartedApprovals) starts it. It
// runs on its own deadline: the failed start may have used the request's.
func (s *Service) abortApproval(ctx context.Context, c Caller, id, ref, tool, chargeID string, cause error) (aborted bool, err error) {
	s.d.Logger.ErrorContext(ctx, "start approval workflow", "request_id", s.d.RequestID(ctx), "reference", ref, "err", cause)
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	now := s.now()
	withdrawn := false
	err = s.inTx(actx, func(q *store.Queries) error {
		n, err := q.DeleteUnstartedApproval(actx, store.DeleteUnstartedApprovalParams{OrgID: c.OrgID, ID: id})
		if err != nil || n == 0 {
			return err
		}
		withdrawn = true
		if err := s.d.Recorder.Refund(actx, q, chargeID, KindApprovalStartFailed, now); err != nil {
			return err
		}
		_, err = RecordChange(actx, q, c, now, Change{Kind: KindApprovalStartFailed, Subject: id, Tool: tool,
			Details: map[string]any{"reference": ref, "refunded_charge": chargeID}})
		return err
	})
	if err != nil {
		s.d.Logger.ErrorContext(ctx, "abort approval", "request_id", s.d.RequestID(ctx), "reference", ref, "err", err)
		return true, refusef(KindUnavailable, CodeUnavailable,
			"the approval workflow could not be started and approval %s could not be withdrawn: it may exist; read it with GET /v1/approvals/%s before retrying", ref, ref)
	}
	if !withdrawn {
		s.d.Logger.WarnContext(ctx, "approval workflow started despite the error", "request_id", s.d.RequestID(ctx), "reference", ref)
		return false, nil
	}
	var dup *serviceerror.WorkflowExecutionAlreadyStarted
	if !errors.As(cause, &dup) {
		if err := s.d.Temporal.TerminateWorkflow(actx, ref, "", "oakallow: start failed; approval aborted"); err != nil {
			var nf *serviceerror.NotFound
			if !errors.As(err, &nf) {
				s.d.Logger.WarnContext(ctx, "terminate unstarted approval workflow", "reference", ref, "err", err)
			}
		}
	}
	return true, refuse(KindUnavailable, CodeUnavailable, "the approval workflow could not be started; nothing was created, retry later")
}

// refundCharge gives back the charge of an approval request that created
// nothing, audited as call.refunded.
func (s *Service) refundCharge(ctx context.Context, c Caller, chargeID, id, tool, reason string) {
	now := s.now()
	err := s.inTx(ctx, func(q *store.Queries) error {
		if err := s.d.Recorder.Refund(ctx, q, chargeID, reason, now); err != nil {
			return err
		}
		_, err := RecordChange(ctx, q, c, now, Change{Kind: KindCallRefunded, Subject: id, Tool: tool,
			Details: map[string]any{"refunded_charge": chargeID, "reason": reason}})
		return err
	})
	if err != nil {
		s.d.Logger.ErrorContext(ctx, "refund a failed approval request", "request_id", s.d.RequestID(ctx), "charge", chargeID, "err", err)
	}
}

// Storable reports whether PostgreSQL can hold s as text: valid UTF-8
// without NUL. Ids and names from paths and queries are raw bytes and are
// checked with it before they reach a query.
func Storable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// GetApproval reads an approval (by id or REF) with its decisions and, when
// withToken, its execution token once approved. A caller that does not read
// every approval finds only its own: another's is not found, with the same
// answer as a REF that does not exist, so its existence is not revealed.
func (s *Service) GetApproval(ctx context.Context, c Caller, ref string, withToken bool) (Approval, error) {
	if !Storable(ref) {
		return Approval{}, refuse(KindNotFound, CodeNotFound, "no approval with that id in this org")
	}
	st := s.d.Store
	orgID := c.OrgID
	kind, id := c.requester()
	row, err := st.GetApprovalByRef(ctx, store.GetApprovalByRefParams{OrgID: orgID, Ref: ref, RequesterKind: kind, RequesterID: id})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return Approval{}, notFound("approval", ref)
		}
		return Approval{}, err
	}
	ds, err := st.ListDecisionsOfApproval(ctx, row.ID)
	if err != nil {
		return Approval{}, fmt.Errorf("load decisions: %w", err)
	}
	ann, err := st.GetToolAnnotations(ctx, store.GetToolAnnotationsParams{OrgID: orgID, ID: row.ToolID})
	if err != nil {
		return Approval{}, fmt.Errorf("load tool annotations: %w", err)
	}
	a := ApprovalView(row, ds)
	a.ToolAnnotations = ToolAnnotations{ReadOnly: ann.ReadOnly, Destructive: ann.Destructive, Idempotent: ann.Idempotent,
		OpenWorld: ann.OpenWorld, Acknowledged: ann.AnnotationsAcknowledged, RiskLevel: ann.RiskLevel}
	if withToken && row.Status == string(workflows.StatusApproved) {
		tok, found, err := s.approvalToken(ctx, row)
		if err != nil {
			return Approval{}, err
		}
		if found {
			m, err := activities.OpenToken(s.d.SecretBox, tok)
			if err != nil {
				return Approval{}, err
			}
			a.TokenID, a.Token, a.TokenExpiresAt = m.ID, m.Token, &m.ExpiresAt
		}
	}
	return a, nil
}

const (
	// tokenWait bounds how long reading an approved approval waits for its
	// token to be minted.
	tokenWait = 5 * time.Second
	// tokenWaitAfterDecision is how long after the decision a missing token is
	// still waited for: the workflow notifies (bounded by
	// workflows.NotifyScheduleToClose) before it mints.
	tokenWaitAfterDecision = workflows.NotifyScheduleToClose + time.Minute
)

// approvalToken finds the execution token of an approved approval. The
// workflow projects the decision first and mints after notifying, so for a
// moment an approval reads approved while its token is being minted. An agent
// polling for the decision must not read "approved" without the token and
// stop, so a recent decision waits for the token (up to tokenWait, within
// ctx). Past that — a mint held up by an outage — the approval is answered
// without a token, and polling again finds it once minted.
func (s *Service) approvalToken(ctx context.Context, row store.Approval) (store.ExecutionToken, bool, error) {
	arg := store.GetTokenBySourceParams{OrgID: row.OrgID, SourceKind: activities.SourceApproval, SourceID: row.ID}
	var deadline time.Time
	pause := 10 * time.Millisecond
	for {
		tok, err := s.d.Store.GetTokenBySource(ctx, arg)
		if err == nil {
			return tok, true, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return store.ExecutionToken{}, false, fmt.Errorf("load token: %w", err)
		}
		now := s.now()
		if deadline.IsZero() {
			if row.DecidedAt == nil || now.Sub(*row.DecidedAt) > tokenWaitAfterDecision {
				return store.ExecutionToken{}, false, nil
			}
			deadline = now.Add(tokenWait)
		}
		if !now.Add(pause).Before(deadline) {
			return store.ExecutionToken{}, false, nil
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return store.ExecutionToken{}, false, ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, 250*time.Millisecond)
	}
}

// ApprovalView is a stored approval and its decisions as the runtime shows them.
func ApprovalView(r store.Approval, ds []store.ApprovalDecision) Approval {
	a := Approval{
		ID: r.ID, Reference: r.Reference, Status: r.Status, Level: int(r.Level), Levels: 1, Tool: r.ToolName,
		Tenant: r.TenantName, Resource: r.Resource, Method: r.Method, Reasoning: r.Reasoning,
		Parameters: r.Parameters, ParamsHash: r.ParamsHash, Context: r.Context, ReferenceID: r.ReferenceID,
		RequestedBy: Requester{Kind: r.CreatedByKind, ID: r.CreatedByID},
		ExpiresAt:   r.ExpiresAt, CreatedAt: r.CreatedAt, DecidedAt: r.DecidedAt, Decisions: make([]Decision, 0, len(ds)),
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

// ApprovalQuery selects a page of an org's approvals, newest first.
type ApprovalQuery struct {
	Status string // "" for any
	Tool   string // "" for any
	Tenant string // "" for any; a name, normalised here
	// Before, when set, continues after the last item of the previous page.
	Before *ApprovalPosition
	Limit  int // 1 … 200
}

// ApprovalPosition is an approval's place in the newest-first order.
type ApprovalPosition struct {
	CreatedAt time.Time
	ID        string
}

// ApprovalPage is a page of approvals; Next is set when more follow.
type ApprovalPage struct {
	Items []Approval
	Next  *ApprovalPosition
}

// MaxApprovalPage is the largest page ListApprovals returns.
const MaxApprovalPage = 200

// ListApprovals lists an org's approvals (without tokens): all of them, or
// only the caller's own when it does not read every approval.
func (s *Service) ListApprovals(ctx context.Context, c Caller, q ApprovalQuery) (ApprovalPage, error) {
	if !Storable(q.Tool) || !Storable(q.Tenant) {
		return ApprovalPage{}, refuse(KindInvalid, CodeValidationFailed, "tool and tenant must be valid UTF-8 without NUL")
	}
	if q.Limit < 1 || q.Limit > MaxApprovalPage {
		return ApprovalPage{}, invalidField("limit", fmt.Sprintf("limit must be 1 … %d", MaxApprovalPage))
	}
	tenant := q.Tenant
	if n, err := resolver.NormalizeName(tenant); err == nil {
		tenant = n
	}
	params := store.ListApprovalsPageParams{OrgID: c.OrgID, Tool: q.Tool, Tenant: tenant, RowLimit: int32(q.Limit) + 1}
	if q.Before != nil {
		if !Storable(q.Before.ID) {
			return ApprovalPage{}, refuse(KindBadRequest, CodeBadRequest, "cursor is not one this list returned")
		}
		params.BeforeCreated, params.BeforeID = &q.Before.CreatedAt, q.Before.ID
	}
	rows, err := s.approvalRows(ctx, c, q.Status, params)
	if err != nil {
		return ApprovalPage{}, err
	}
	n := min(len(rows), q.Limit)
	ids := make([]string, 0, n)
	for _, r := range rows[:n] {
		ids = append(ids, r.Approval.ID)
	}
	ds, err := s.d.Store.ListDecisionsOfApprovals(ctx, ids)
	if err != nil {
		return ApprovalPage{}, fmt.Errorf("load decisions: %w", err)
	}
	byApproval := map[string][]store.ApprovalDecision{}
	for _, d := range ds {
		byApproval[d.ApprovalID] = append(byApproval[d.ApprovalID], d)
	}
	page := ApprovalPage{Items: make([]Approval, 0, n)}
	for _, r := range rows[:n] {
		a := ApprovalView(r.Approval, byApproval[r.Approval.ID])
		a.ToolAnnotations = ToolAnnotations{ReadOnly: r.ReadOnly, Destructive: r.Destructive, Idempotent: r.Idempotent,
			OpenWorld: r.OpenWorld, Acknowledged: r.AnnotationsAcknowledged, RiskLevel: r.RiskLevel}
		page.Items = append(page.Items, a)
	}
	if len(rows) > q.Limit {
		last := rows[n-1].Approval
		page.Next = &ApprovalPosition{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	return page, nil
}

// approvalRows reads a page of approvals with the statement that fits: the
// org's or the caller's own (Caller.ReadsAllApprovals), of any status or of
// one. Each is its own statement so that even a generic plan reads its index.
func (s *Service) approvalRows(ctx context.Context, c Caller, status string, p store.ListApprovalsPageParams) ([]store.ListApprovalsPageRow, error) {
	st := s.d.Store
	var (
		rows []store.ListApprovalsPageRow
		err  error
	)
	switch {
	case c.ReadsAllApprovals && status == "":
		return st.ListApprovalsPage(ctx, p)
	case c.ReadsAllApprovals:
		var byStatus []store.ListApprovalsPageByStatusRow
		byStatus, err = st.ListApprovalsPageByStatus(ctx, store.ListApprovalsPageByStatusParams{OrgID: p.OrgID, Status: status,
			Tool: p.Tool, Tenant: p.Tenant, BeforeCreated: p.BeforeCreated, BeforeID: p.BeforeID, RowLimit: p.RowLimit})
		for _, r := range byStatus {
			rows = append(rows, store.ListApprovalsPageRow(r))
		}
	case status == "":
		var own []store.ListRequesterApprovalsPageRow
		own, err = st.ListRequesterApprovalsPage(ctx, store.ListRequesterApprovalsPageParams{OrgID: p.OrgID,
			RequesterKind: c.Kind, RequesterID: c.ID, Tool: p.Tool, Tenant: p.Tenant,
			BeforeCreated: p.BeforeCreated, BeforeID: p.BeforeID, RowLimit: p.RowLimit})
		for _, r := range own {
			rows = append(rows, store.ListApprovalsPageRow(r))
		}
	default:
		var own []store.ListRequesterApprovalsPageByStatusRow
		own, err = st.ListRequesterApprovalsPageByStatus(ctx, store.ListRequesterApprovalsPageByStatusParams{OrgID: p.OrgID,
			RequesterKind: c.Kind, RequesterID: c.ID, Status: status, Tool: p.Tool, Tenant: p.Tenant,
			BeforeCreated: p.BeforeCreated, BeforeID: p.BeforeID, RowLimit: p.RowLimit})
		for _, r := range own {
			rows = append(rows, store.ListApprovalsPageRow(r))
		}
	}
	return rows, err
}
