package api

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/api/passkeys"
	"oakallow/store"
	"oakallow/workflows"
)

// Decisions by people (issue 9 §7): a reviewer decides with a passkey
// assertion made for exactly that decision. The options bind the approval
// (id, tool, parameters hash), the level and the decision into the
// challenge; the assertion is verified, kept as evidence under the decide's
// request id, and only then is the decision sent to the workflow — whose
// validator alone decides, race-free, whether it wins (level, deadline, and
// that nobody decides two levels). Evidence is served only for decisions
// the workflow accepted.

// Problem codes of reviewer decisions.
const (
	CodeNotAnApprover          = "not_an_approver"
	CodeRequesterCannotDecide  = "requester_cannot_decide"
	CodePasskeyAssertionNeeded = "passkey_assertion_required"
)

type decideOptionsInput struct {
	ID   string `path:"id" maxLength:"200" doc:"Approval id (apr_…) or REF."`
	Body struct {
		_        struct{} `additionalProperties:"false"`
		Decision string   `json:"decision" enum:"approve,deny" doc:"The decision you are about to make; the passkey signs it."`
	}
}

type decideOptionsOutput struct {
	Body struct {
		passkeys.Options
		Binding passkeys.Binding `json:"binding" doc:"What the challenge binds: its last 32 bytes are SHA-256 of this, encoded as docs/ARCHITECTURE.md describes."`
	}
}

// UnsignedDecision is a decision made without a passkey: by a management
// key, which the org allowed (management_keys_may_decide).
type UnsignedDecision struct {
	Level    int             `json:"level" doc:"The level decided."`
	Decision string          `json:"decision" enum:"approve,deny" doc:"What was decided."`
	Decider  DeciderIdentity `json:"decider" doc:"The management key that decided (kind management_key)."`
}

type evidenceOutput struct {
	Body struct {
		Items []passkeys.Evidence `json:"items" doc:"One entry per decision made by a signed-in reviewer: the passkey assertion, verifiable offline with the credential's public key (oakallow verify-evidence)."`
		// Management-key decisions carry no evidence, and are said to be such.
		ManagementKeyDecisions []UnsignedDecision `json:"management_key_decisions" doc:"Decisions made with a management key (org setting management_keys_may_decide): no person and no passkey stands behind them."`
	}
}

func registerReview(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "decide-approval-options", Method: http.MethodPost, Path: "/v1/approvals/{id}/decide/options",
		Summary: "Start a passkey-signed decision",
		Description: "Options for navigator.credentials.get() whose challenge binds this approval, its current level and your " +
			"decision. Only a member of the level's approver group who did not request the approval and did not decide " +
			"its other level gets them. Send the assertion with POST /v1/approvals/{id}/decide within 5 minutes. An approval " +
			"that cannot be decided any more — decided, expired, or past its level's deadline — answers 409 already_decided " +
			"or approval_expired with its standing (the winning decisions), exactly as decide would, and starts no ceremony.",
		Tags: []string{tagApprovals},
		Errors: []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusConflict,
			http.StatusUnprocessableEntity, http.StatusServiceUnavailable},
	}, accessReview), func(ctx context.Context, in *decideOptionsInput) (*decideOptionsOutput, error) {
		p := mustPrincipal(ctx)
		if s.rp == nil {
			return nil, errNoPasskeys()
		}
		row, b, err := s.reviewable(ctx, p, in.ID, in.Body.Decision)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		o, err := s.rp.BeginDecision(ctx, p.UserID, row.OrgID, b)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &decideOptionsOutput{}
		out.Body.Options, out.Body.Binding = o, b
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-approval-evidence", Method: http.MethodGet, Path: "/v1/approvals/{id}/evidence",
		Summary: "Evidence of an approval's decisions",
		Description: "For each decision a reviewer made, the passkey assertion that confirmed it (credential id, client " +
			"data, authenticator data, signature) and what it binds. Anyone holding the credential's public key can check " +
			"offline which approval and decision the reviewer confirmed: oakallow verify-evidence. Management-key " +
			"decisions are listed apart: they have no such evidence.",
		Tags: []string{tagApprovals}, Errors: manageReadErrors,
	}, accessApprovalsRead), func(ctx context.Context, in *approvalRefInput) (*evidenceOutput, error) {
		// Read as GET /v1/approvals/{id} reads it: a standard key, an agent
		// or an OAuth grant finds only its own approvals, and another's
		// evidence (tool, parameters hash, reviewers) answers not found.
		a, err := s.rt.GetApproval(ctx, mustPrincipal(ctx).caller(), in.ID, false)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		items := []passkeys.Evidence{}
		if s.rp != nil {
			if items, err = s.rp.ListEvidence(ctx, a.ID); err != nil {
				return nil, toProblem(ctx, s.log, err)
			}
		}
		out := &evidenceOutput{}
		out.Body.Items, out.Body.ManagementKeyDecisions = items, []UnsignedDecision{}
		for _, d := range a.Decisions {
			if d.Decider.Kind == string(workflows.DeciderManagementKey) {
				out.Body.ManagementKeyDecisions = append(out.Body.ManagementKeyDecisions,
					UnsignedDecision{Level: d.Level, Decision: d.Decision, Decider: d.Decider})
			}
		}
		return out, nil
	})
}

// reviewable loads a pending approval that p may decide at its current level
// and the binding of decision on it. It refuses early what the workflow would
// refuse anyway (a decided level), and what only PostgreSQL knows: the
// approver group, and that the requester does not decide their own request.
// The workflow's validator stays the authority on races (two levels by one
// person, two decisions on one level).
func (s *Server) reviewable(ctx context.Context, p Principal, ref, decision string) (store.Approval, passkeys.Binding, error) {
	if s.deps.Temporal == nil {
		return store.Approval{}, passkeys.Binding{}, problem(http.StatusServiceUnavailable, CodeUnavailable,
			"approvals are not available: this server has no Temporal connection")
	}
	if err := lookupRef("approval", ref); err != nil {
		return store.Approval{}, passkeys.Binding{}, err
	}
	row, err := s.deps.Store.GetApprovalByRef(ctx, store.GetApprovalByRefParams{OrgID: p.OrgID, Ref: ref})
	if err != nil {
		return row, passkeys.Binding{}, notFoundIf(err, "approval", ref)
	}
	if err := s.endedProblem(ctx, row); err != nil {
		return row, passkeys.Binding{}, err
	}
	if row.CreatedByKind == PrincipalUser && row.CreatedByID == p.UserID {
		return row, passkeys.Binding{}, problem(http.StatusForbidden, CodeRequesterCannotDecide,
			"you requested this approval; someone else must decide it")
	}
	ok, err := s.deps.Store.IsApproverGroupMember(ctx, store.IsApproverGroupMemberParams{
		UserID: p.UserID, TeamID: p.TeamID, Level: row.Level})
	if err != nil {
		return row, passkeys.Binding{}, err
	}
	if !ok {
		return row, passkeys.Binding{}, problem(http.StatusForbidden, CodeNotAnApprover,
			"you are not in the approver group of this approval's current level")
	}
	ds, err := s.deps.Store.ListDecisionsOfApproval(ctx, row.ID)
	if err != nil {
		return row, passkeys.Binding{}, err
	}
	for _, d := range ds {
		if d.DeciderKind == PrincipalUser && d.DeciderID == p.UserID {
			return row, passkeys.Binding{}, problem(http.StatusForbidden, CodeSameApprover,
				"you decided another level of this approval; someone else must decide this one")
		}
	}
	return row, passkeys.Binding{ApprovalID: row.ID, Tool: row.ToolName, ParamsHash: row.ParamsHash,
		Level: int(row.Level), Decision: decision}, nil
}

// decideAsReviewer decides with a signed-in reviewer's passkey assertion.
func (s *Server) decideAsReviewer(ctx context.Context, p Principal, ref, idemKey string, req *decideRequest) (Approval, error) {
	if req.CeremonyID == "" || len(req.Credential) == 0 {
		return Approval{}, problem(http.StatusUnauthorized, CodePasskeyAssertionNeeded,
			"a reviewer's decision needs a passkey assertion: get options from POST /v1/approvals/{id}/decide/options "+
				"and send ceremony_id and credential with the decision")
	}
	if s.rp == nil {
		return Approval{}, errNoPasskeys()
	}
	row, b, err := s.reviewable(ctx, p, ref, req.Decision)
	if err != nil {
		return Approval{}, err
	}
	ev, err := s.rp.FinishDecision(ctx, p.UserID, req.CeremonyID, req.Credential, b)
	if err != nil {
		return Approval{}, err
	}
	u, err := s.deps.Store.GetUser(ctx, p.UserID)
	if err != nil {
		return Approval{}, err
	}
	dr := workflows.DecideRequest{
		Level:    b.Level,
		Decision: workflows.DecisionValue(req.Decision),
		// Display is the person's name, never their e-mail address (it reaches
		// notifications and the Temporal UI).
		Decider:   workflows.Decider{Kind: workflows.DeciderUser, ID: p.UserID, Display: clip(u.Name, workflows.MaxDisplayRunes)},
		Note:      req.Note,
		RequestID: decideRequestID(p.UserID, row.ID, idemKey),
	}
	// The evidence is kept before the Update is sent, under its request id;
	// it is served only if the workflow accepts this very request.
	if err := s.rp.StoreEvidence(ctx, p.TeamID, p.OrgID, dr.RequestID, ev); err != nil {
		return Approval{}, err
	}
	return s.submitDecision(ctx, p, row, dr, idemKey)
}
