package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/activities"
	"oakallow/store"
	"oakallow/workflows"
)

// Account deletion (SPEC §8, issue 9): DELETE /v1/me. At once, in one
// transaction: the person is marked deleted (so no session of theirs
// authenticates on any replica: the session cache is told by the users
// trigger), their sessions are revoked, passkeys, recovery codes and
// ceremonies deleted, the API keys they created revoked and their
// memberships removed. The personal data is purged 30 days later by
// workflows.AccountDeletionWorkflow, started inside that transaction: if it
// cannot be started nothing changes, and if the commit fails after it
// started, the purge finds the person not deleted and touches nothing.

// CodeDeletionUnavailable: account deletion needs the workflow service.
const CodeDeletionUnavailable = "deletion_unavailable"

// AccountDeletion is the answer to a deletion request.
type AccountDeletion struct {
	UserID  string    `json:"user_id" doc:"The deleted person."`
	PurgeAt time.Time `json:"purge_at" doc:"When the personal data (e-mail, name, passkey keys) is purged. Audit entries and billing records stay, naming the person by a pseudonym."`
}

type deleteAccountOutput struct {
	SetCookie []http.Cookie `header:"Set-Cookie" doc:"Clears the session cookie."`
	Body      AccountDeletion
}

func registerDeletion(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "delete-account", Method: http.MethodDelete, Path: "/v1/me",
		Summary: "Delete my account",
		Description: "Deletes the signed-in person's account: every session, passkey and recovery code, and the API keys they created, stop working at once on every replica; " +
			"the person leaves every team. The personal data is purged 30 days later. The last owner of a team must first make someone else owner (409 last_owner). " +
			"Needs a full (passkey) session.",
		Tags: []string{tagSessions}, Errors: append(sessionErrors, http.StatusConflict, http.StatusServiceUnavailable),
		DefaultStatus: http.StatusAccepted,
	}, accessSelf), func(ctx context.Context, _ *struct{}) (*deleteAccountOutput, error) {
		d, err := s.deleteAccount(ctx, mustPrincipal(ctx))
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &deleteAccountOutput{SetCookie: []http.Cookie{s.cookieFor("", time.Time{})}, Body: d}, nil
	})
}

// deleteAccount deletes p's person (see above).
func (s *Server) deleteAccount(ctx context.Context, p Principal) (AccountDeletion, error) {
	if s.deps.Temporal == nil {
		return AccountDeletion{}, problem(http.StatusServiceUnavailable, CodeDeletionUnavailable,
			"account deletion is not available on this server (no workflow service configured)")
	}
	now := s.now()
	d := AccountDeletion{UserID: p.UserID, PurgeAt: now.Add(workflows.AccountPurgeDelay)}
	keysRevoked := false
	err := s.inTx(ctx, func(q *store.Queries) error {
		ms, err := q.LockUserTeams(ctx, p.UserID)
		if err != nil {
			return err
		}
		if team := soleOwnedTeam(ms, p.UserID); team != "" {
			return problem(http.StatusConflict, CodeLastOwner, fmt.Sprintf(
				"you are the last owner of team %s: make someone else owner first", team))
		}
		if _, err := q.MarkUserDeleted(ctx, store.MarkUserDeletedParams{ID: p.UserID, Now: now}); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return problem(http.StatusUnauthorized, CodeInvalidSession, "missing, expired or revoked session")
			}
			return err
		}
		s.sessions.forgetUser(p.UserID)
		sessions, err := q.RevokeUserSessions(ctx, store.RevokeUserSessionsParams{UserID: p.UserID, Now: now})
		if err != nil {
			return err
		}
		passkeys, err := q.DeletePasskeysOfUser(ctx, p.UserID)
		if err != nil {
			return err
		}
		codes, err := q.DeleteRecoveryCodesOfUser(ctx, p.UserID)
		if err != nil {
			return err
		}
		if err := q.DeleteCeremoniesOfUser(ctx, p.UserID); err != nil {
			return err
		}
		keys, err := q.RevokeKeysCreatedBy(ctx, store.RevokeKeysCreatedByParams{UserID: p.UserID, Now: now})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := s.auditIdentity(ctx, q, identityEvent{Kind: kindKeyRevoked, OrgID: k.OrgID, TeamID: k.TeamID, ActorID: p.UserID,
				Subject: k.ID, Outcome: "account_deleted", Details: map[string]any{"session_id": p.SessionID}}); err != nil {
				return err
			}
		}
		if len(keys) > 0 {
			keysRevoked = true
			if err := q.NotifyChange(ctx, "keys"); err != nil {
				return err
			}
		}
		left, err := q.RemoveUserMemberships(ctx, p.UserID)
		if err != nil {
			return err
		}
		details := map[string]any{"session_id": p.SessionID, "purge_at": d.PurgeAt, "sessions_revoked": len(sessions),
			"passkeys_deleted": passkeys, "recovery_codes_deleted": codes, "api_keys_revoked": len(keys)}
		teams := []string{""} // audited once even without a team
		if len(left) > 0 {
			teams = teams[:0]
			for _, m := range left {
				teams = append(teams, m.TeamID)
			}
		}
		for _, team := range teams {
			if err := s.auditIdentity(ctx, q, identityEvent{Kind: activities.KindAccountDeletionRequested, TeamID: team,
				ActorID: p.UserID, Subject: p.UserID, Outcome: "requested", Details: details}); err != nil {
				return err
			}
		}
		// Last, so a refusal above starts nothing; a failure here rolls
		// everything back.
		_, err = s.deps.Temporal.ExecuteWorkflow(ctx, workflows.AccountDeletionStartWorkflowOptions(p.UserID),
			workflows.AccountDeletionWorkflowName, workflows.AccountDeletionInput{UserID: p.UserID, PurgeAt: d.PurgeAt})
		if err != nil {
			s.log.ErrorContext(ctx, "start account deletion workflow", "request_id", requestIDFrom(ctx), "err", err)
			return problem(http.StatusServiceUnavailable, CodeDeletionUnavailable, "the account could not be deleted now; nothing changed, retry later")
		}
		return nil
	})
	if err != nil {
		return AccountDeletion{}, err
	}
	if keysRevoked {
		s.applyKeyChange(ctx)
	}
	return d, nil
}

// soleOwnedTeam is a team of which user is the only owner, or "" (ms: the
// memberships of every team the user is in).
func soleOwnedTeam(ms []store.LockUserTeamsRow, user string) string {
	owners, mine := map[string]int{}, map[string]bool{}
	for _, m := range ms {
		if m.Role == RoleOwner {
			owners[m.TeamID]++
			if m.UserID == user {
				mine[m.TeamID] = true
			}
		}
	}
	for _, m := range ms { // in team order, so the answer is stable
		if mine[m.TeamID] && owners[m.TeamID] == 1 {
			return m.TeamID
		}
	}
	return ""
}
