package passkeys

import (
	"context"
	"fmt"

	"oakallow/store"
)

// BeginDecision starts the step-up ceremony for one decision (issue 9 §7):
// a confirmation (confirm.go) whose challenge is 32 random bytes followed by
// the SHA-256 digest of b, so the signature the authenticator makes confirms
// exactly this approval, level and decision. The caller has checked that the
// user may decide the approval.
func (s *Service) BeginDecision(ctx context.Context, userID, orgID string, b Binding) (Options, error) {
	level := int16(b.Level)
	return s.beginConfirmation(ctx, userID, b.Digest(), ceremonyRow{
		kind: ceremonyDecide, approvalID: &b.ApprovalID, orgID: &orgID, level: &level, decision: &b.Decision,
	}, "enroll a passkey before deciding approvals")
}

// FinishDecision verifies the reviewer's assertion for a decision ceremony
// and returns it as evidence. The ceremony must have been started by the
// same user for the same approval and decision; it is consumed either way.
// The caller stores the evidence (StoreEvidence) under the decide's request
// id before it sends the decision to the workflow.
func (s *Service) FinishDecision(ctx context.Context, userID, ceremonyID string, response []byte, b Binding) (Evidence, error) {
	c, sd, err := s.takeCeremony(ctx, ceremonyID, ceremonyDecide)
	if err != nil {
		return Evidence{}, err
	}
	if c.UserID == nil || *c.UserID != userID || c.ApprovalID == nil || *c.ApprovalID != b.ApprovalID ||
		c.Decision == nil || *c.Decision != b.Decision || c.Level == nil || int(*c.Level) != b.Level {
		return Evidence{}, refuse(Unauthenticated, CodeCeremonyInvalid,
			"this passkey ceremony was started for another approval, decision or person; ask for new options")
	}
	parsed, k, err := s.verifyConfirmation(ctx, userID, sd, response, func(reason string) { s.auditDecisionRefused(ctx, c, reason) })
	if err != nil {
		return Evidence{}, err
	}
	raw := parsed.Raw.AssertionResponse
	ev := Evidence{
		Binding: b, RPID: s.cfg.RPID, UserID: userID, PasskeyID: k.ID, CredentialID: parsed.RawID,
		ClientDataJSON: raw.ClientDataJSON, AuthenticatorData: raw.AuthenticatorData, Signature: raw.Signature,
		UserHandle: raw.UserHandle, PublicKey: k.PublicKey,
	}
	// The library checked the challenge against the ceremony's. Evidence is
	// kept only if it verifies offline for exactly this binding, as anyone
	// holding the public key will later check it.
	if _, err := VerifyEvidence(ev, k.PublicKey); err != nil {
		return Evidence{}, errAssertion
	}
	return ev, nil
}

// auditDecisionRefused records a refused decision assertion in the org of
// the approval the ceremony c was started for (its owners and admins see it
// with the approval's other entries). It is best effort: the refusal stands
// whether or not the entry could be written.
func (s *Service) auditDecisionRefused(ctx context.Context, c store.WebauthnCeremony, reason string) {
	if c.OrgID == nil || c.UserID == nil || c.ApprovalID == nil || c.Level == nil || c.Decision == nil {
		return // FinishDecision refuses such a ceremony before any assertion
	}
	_ = s.inTx(ctx, func(q *store.Queries) error {
		org, err := q.GetOrg(ctx, *c.OrgID)
		if err != nil {
			return err
		}
		raw, err := jsonDetails(map[string]any{"reason": reason, "level": *c.Level, "decision": *c.Decision})
		if err != nil {
			return err
		}
		return q.InsertAuditEvent(ctx, store.InsertAuditEventParams{
			ID: store.NewID("evt"), OrgID: org.ID, TeamID: org.TeamID, OccurredAt: s.now(), ActorKind: "user", ActorID: *c.UserID,
			Kind: KindDecisionRefused, Subject: *c.ApprovalID, Outcome: "refused", Details: raw,
		})
	})
}

// StoreEvidence keeps a verified decision assertion under the decide's
// request id, and audits it. ev.Binding must be complete (tool and
// parameters hash set by the caller from the approval). A retry with the
// same request id keeps the first evidence.
func (s *Service) StoreEvidence(ctx context.Context, teamID, orgID, requestID string, ev Evidence) error {
	return s.inTx(ctx, func(q *store.Queries) error {
		if _, err := q.InsertDecisionEvidence(ctx, store.InsertDecisionEvidenceParams{
			RequestID: requestID, ApprovalID: ev.ApprovalID, Level: int16(ev.Level), Decision: ev.Decision,
			UserID: ev.UserID, PasskeyID: ev.PasskeyID, CredentialID: ev.CredentialID, PublicKey: ev.PublicKey,
			RpID: ev.RPID, ToolName: ev.Tool, ParamsHash: ev.ParamsHash, ClientDataJson: ev.ClientDataJSON,
			AuthenticatorData: ev.AuthenticatorData, Signature: ev.Signature, UserHandle: orEmpty(ev.UserHandle),
			CreatedAt: s.now(),
		}); err != nil {
			return fmt.Errorf("store decision evidence: %w", err)
		}
		raw, err := jsonDetails(map[string]any{"level": ev.Level, "decision": ev.Decision, "passkey_id": ev.PasskeyID, "request_id": requestID})
		if err != nil {
			return err
		}
		return q.InsertAuditEvent(ctx, store.InsertAuditEventParams{
			ID: store.NewID("evt"), OrgID: orgID, TeamID: teamID, OccurredAt: s.now(), ActorKind: "user", ActorID: ev.UserID,
			Kind: KindDecisionSigned, Subject: ev.ApprovalID, Outcome: "success", Tool: ev.Tool, Details: raw,
		})
	})
}

// ListEvidence returns the evidence of an approval's accepted decisions,
// level by level; a decide that the workflow refused has none.
func (s *Service) ListEvidence(ctx context.Context, approvalID string) ([]Evidence, error) {
	rows, err := s.st.ListDecisionEvidence(ctx, approvalID)
	if err != nil {
		return nil, fmt.Errorf("list decision evidence: %w", err)
	}
	out := make([]Evidence, 0, len(rows))
	for _, r := range rows {
		out = append(out, Evidence{
			Binding: Binding{ApprovalID: r.ApprovalID, Tool: r.ToolName, ParamsHash: r.ParamsHash, Level: int(r.Level), Decision: r.Decision},
			RPID:    r.RpID, UserID: r.UserID, PasskeyID: r.PasskeyID, CredentialID: r.CredentialID,
			ClientDataJSON: r.ClientDataJson, AuthenticatorData: r.AuthenticatorData, Signature: r.Signature,
			UserHandle: r.UserHandle, PublicKey: r.PublicKey, DecidedAt: r.DecidedAt,
		})
	}
	return out, nil
}

func orEmpty(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
