package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"oakallow/store"
	"oakallow/workflows"
)

// Audit kinds of account deletion (the API audits the request).
const (
	KindAccountDeletionRequested = "account.deletion_requested"
	KindAccountPurged            = "account.purged"
)

// Pseudonym is the stable name a deleted person's row keeps once purged:
// "deleted-user-" and the first 16 hex digits of SHA-256(user id). Audit
// entries and billing records name the person by user id, so they still
// tell who acted, as this pseudonym.
func Pseudonym(userID string) string {
	h := sha256.Sum256([]byte(userID))
	return "deleted-user-" + hex.EncodeToString(h[:8])
}

// PurgeAccount replaces a deleted person's personal data by their pseudonym
// (workflows.ActivityPurgeAccount): e-mail and display name on the user row,
// the WebAuthn user handle, what is left of passkeys, recovery codes and
// ceremonies, sign-in attempts and invitations to the address; and audits it
// in every team the deletion was requested in. One transaction, so a retry
// after a failure starts from scratch; a person already purged is left as is,
// and one who is not deleted is not touched.
func (a *Activities) PurgeAccount(ctx context.Context, in workflows.PurgeAccountInput) (workflows.PurgeAccountResult, error) {
	if in.UserID == "" {
		return workflows.PurgeAccountResult{}, nonRetryable(workflows.ErrorTypeValidation, "purge account: user id is required")
	}
	var res workflows.PurgeAccountResult
	err := a.st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		u, err := q.GetUserDeletion(ctx, in.UserID)
		if err != nil {
			return lookupErr(err, "user "+in.UserID)
		}
		switch {
		case u.PurgedAt != nil:
			res.Purged = true
			return nil
		case u.Status != "deleted":
			a.logger.WarnContext(ctx, "Account purge skipped: the person is not deleted", "user_id", in.UserID)
			return nil
		}
		now, pseudo := a.now().UTC(), Pseudonym(in.UserID)
		if err := q.PurgeUser(ctx, store.PurgeUserParams{ID: in.UserID, Pseudonym: pseudo, Now: now}); err != nil {
			return fmt.Errorf("purge user: %w", err)
		}
		if _, err := q.DeletePasskeysOfUser(ctx, in.UserID); err != nil {
			return fmt.Errorf("purge passkeys: %w", err)
		}
		if _, err := q.DeleteRecoveryCodesOfUser(ctx, in.UserID); err != nil {
			return fmt.Errorf("purge recovery codes: %w", err)
		}
		if err := q.DeleteCeremoniesOfUser(ctx, in.UserID); err != nil {
			return fmt.Errorf("purge ceremonies: %w", err)
		}
		if err := q.DeleteSignInAttemptsOf(ctx, store.DeleteSignInAttemptsOfParams{UserID: in.UserID, Email: u.Email}); err != nil {
			return fmt.Errorf("purge sign-in attempts: %w", err)
		}
		if err := q.PseudonymiseInvitations(ctx, store.PseudonymiseInvitationsParams{Email: u.Email, Pseudonym: pseudo}); err != nil {
			return fmt.Errorf("purge invitations: %w", err)
		}
		teams, err := q.DeletionAuditTeams(ctx, in.UserID)
		if err != nil {
			return fmt.Errorf("purge: audit teams: %w", err)
		}
		details, _ := json.Marshal(map[string]any{"pseudonym": pseudo})
		for _, team := range teams {
			if err := q.InsertAuditEvent(ctx, store.InsertAuditEventParams{ID: store.NewID("evt"), TeamID: team, OccurredAt: now,
				ActorKind: "system", ActorID: "account-deletion", Kind: KindAccountPurged, Subject: in.UserID,
				Outcome: "purged", Details: details}); err != nil {
				return fmt.Errorf("audit purge: %w", err)
			}
		}
		res.Purged = true
		return nil
	})
	if err != nil {
		return workflows.PurgeAccountResult{}, err
	}
	return res, nil
}
