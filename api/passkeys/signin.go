package passkeys

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-webauthn/webauthn/webauthn"

	"oakallow/store"
)

// BeginSignIn starts a discoverable (usernameless) sign-in: the options name
// no user and no credential; the authenticator offers the passkeys it holds
// for this relying party.
func (s *Service) BeginSignIn(ctx context.Context) (Options, error) {
	assertion, sd, err := s.wa.BeginDiscoverableLogin(webauthn.WithUserVerification("required"))
	if err != nil {
		return Options{}, fmt.Errorf("begin sign-in: %w", err)
	}
	id, err := s.startCeremony(ctx, s.st.Queries, ceremonyRow{kind: ceremonyLogin}, sd)
	if err != nil {
		return Options{}, err
	}
	return Options{CeremonyID: id, PublicKey: assertion.Response}, nil
}

// SignedIn is who a verified sign-in identified.
type SignedIn struct {
	UserID    string
	PasskeyID string
}

// FinishSignIn verifies a discoverable sign-in's assertion: the credential
// must belong to the active user its user handle names, be made with user
// verification, and its signature counter must have moved forward (a clone
// warning refuses it). A failure on a known passkey is audited for its
// owner's team.
func (s *Service) FinishSignIn(ctx context.Context, ceremonyID string, response []byte) (SignedIn, error) {
	_, sd, err := s.takeCeremony(ctx, ceremonyID, ceremonyLogin)
	if err != nil {
		return SignedIn{}, err
	}
	parsed, err := parseAssertion(response)
	if err != nil {
		return SignedIn{}, err
	}
	var owner *user
	handler := func(rawID, userHandle []byte) (webauthn.User, error) {
		k, err := s.st.GetPasskeyByCredentialID(ctx, rawID)
		if err != nil {
			return nil, err
		}
		u, err := loadUser(ctx, s.st.Queries, k.UserID)
		if err != nil {
			return nil, err
		}
		owner = u
		return u, nil
	}
	_, cred, verr := s.wa.ValidatePasskeyLogin(handler, sd, parsed)
	if verr != nil {
		if owner != nil {
			s.auditFailure(ctx, owner, KindSignInFailed, "assertion_invalid")
		}
		var e *Error
		if errors.As(verr, &e) && e.Kind == Forbidden {
			return SignedIn{}, errAssertion // a deleted account looks like an unknown passkey
		}
		if errors.Is(verr, store.ErrUnavailable) {
			return SignedIn{}, verr
		}
		return SignedIn{}, errAssertion
	}
	k, ok := owner.passkeyByCredential(cred.ID)
	if !ok {
		return SignedIn{}, errAssertion
	}
	var out SignedIn
	err = s.inTx(ctx, func(q *store.Queries) error {
		if err := s.recordUse(ctx, q, k, cred); err != nil {
			return err
		}
		out = SignedIn{UserID: owner.id, PasskeyID: k.ID}
		return s.audit(ctx, q, owner.id, KindSignedIn, k.ID, "success", nil)
	})
	if errors.Is(err, errClone) {
		s.auditFailure(ctx, owner, KindSignInFailed, CodeCloneWarning)
	}
	if err != nil {
		return SignedIn{}, err
	}
	return out, nil
}

// auditFailure records a refused ceremony of a known user. It is best effort:
// the refusal stands whether or not the entry could be written.
func (s *Service) auditFailure(ctx context.Context, u *user, kind, reason string) {
	_ = s.inTx(ctx, func(q *store.Queries) error {
		return s.audit(ctx, q, u.id, kind, u.id, "refused", map[string]any{"reason": reason})
	})
}

func (s *Service) replaceRecoveryCodes(ctx context.Context, q *store.Queries, u *user) ([]string, error) {
	codes, hashes := newRecoveryCodes()
	if _, err := q.DeleteRecoveryCodes(ctx, u.id); err != nil {
		return nil, fmt.Errorf("delete recovery codes: %w", err)
	}
	if err := q.InsertRecoveryCodes(ctx, store.InsertRecoveryCodesParams{UserID: u.id, Hashes: hashes, CreatedAt: s.now()}); err != nil {
		return nil, fmt.Errorf("store recovery codes: %w", err)
	}
	if err := s.audit(ctx, q, u.id, KindRecoveryGenerated, u.id, "success",
		map[string]any{"count": len(codes)}); err != nil {
		return nil, err
	}
	return codes, nil
}

// RecoveryCodesLeft is how many unused recovery codes the user has.
func (s *Service) RecoveryCodesLeft(ctx context.Context, userID string) (int, error) {
	c, err := s.st.CountRecoveryCodes(ctx, userID)
	if err != nil {
		return 0, fmt.Errorf("count recovery codes: %w", err)
	}
	return int(c.Unused), nil
}

// errRecovery is the one answer to every failed redemption, so it does not
// tell whether the address has an account.
var errRecovery = refuse(Unauthenticated, CodeRecoveryInvalid, "this e-mail address and recovery code do not match an unused code")

// RedeemRecoveryCode signs a user in with their e-mail address and one
// unused recovery code (SPEC §8): the code is spent, every passkey of the
// user is revoked (whoever lost a passkey may have lost it to someone), and
// the caller must give the user a session that can only enroll a new one.
// The user's other codes stay valid.
func (s *Service) RedeemRecoveryCode(ctx context.Context, email, code string) (SignedIn, error) {
	hash, ok := hashRecoveryCode(code)
	if !ok || email == "" || len(email) > 320 {
		return SignedIn{}, errRecovery
	}
	var out SignedIn
	err := s.inTx(ctx, func(q *store.Queries) error {
		u, err := q.GetActiveUserByEmail(ctx, email)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return errRecovery
			}
			return fmt.Errorf("load user: %w", err)
		}
		// Only one UPDATE can spend a code; the lookup is by hash, so the
		// code itself is never compared byte by byte.
		n, err := q.SpendRecoveryCode(ctx, store.SpendRecoveryCodeParams{UserID: u.ID, Hash: hash, UsedAt: ptr(s.now())})
		if err != nil {
			return fmt.Errorf("spend recovery code: %w", err)
		}
		if n == 0 {
			return errRecovery
		}
		revoked, err := q.DeletePasskeysOfUser(ctx, u.ID)
		if err != nil {
			return fmt.Errorf("revoke passkeys: %w", err)
		}
		left, err := q.CountRecoveryCodes(ctx, u.ID)
		if err != nil {
			return fmt.Errorf("count recovery codes: %w", err)
		}
		out = SignedIn{UserID: u.ID}
		return s.audit(ctx, q, u.ID, KindRecoveryRedeemed, u.ID, "success",
			map[string]any{"passkeys_revoked": revoked, "codes_left": left.Unused})
	})
	if err != nil {
		return SignedIn{}, err
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }
