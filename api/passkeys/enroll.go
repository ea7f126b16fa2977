package passkeys

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"oakallow/store"
)

// Options is what a client hands to navigator.credentials.create or .get
// (the "publicKey" member), with the ceremony id to send back.
type Options struct {
	CeremonyID string `json:"ceremony_id" doc:"Send this back with the authenticator's response."`
	// PublicKey is a PublicKeyCredentialCreationOptions (enrollment) or
	// PublicKeyCredentialRequestOptions (sign-in, decision), JSON-encoded as
	// WebAuthn Level 3's toJSON forms.
	PublicKey any `json:"publicKey" doc:"The WebAuthn options for navigator.credentials.create() or .get()."`
}

// BeginEnrollment starts adding a passkey for userID: a resident
// (discoverable) credential with user verification. The user's WebAuthn
// handle is created here the first time and never changes.
func (s *Service) BeginEnrollment(ctx context.Context, userID string) (Options, error) {
	var out Options
	err := s.inTx(ctx, func(q *store.Queries) error {
		u, err := loadUser(ctx, q, userID)
		if err != nil {
			return err
		}
		if u.handle == nil {
			h := make([]byte, handleLen)
			_, _ = rand.Read(h)
			if u.handle, err = q.SetWebAuthnHandle(ctx, store.SetWebAuthnHandleParams{ID: userID, Handle: h}); err != nil {
				return fmt.Errorf("set user handle: %w", err)
			}
		}
		creds := u.WebAuthnCredentials()
		exclude := make([]protocol.CredentialDescriptor, 0, len(creds))
		for _, c := range creds {
			exclude = append(exclude, c.Descriptor())
		}
		creation, sd, err := s.wa.BeginRegistration(u, webauthn.WithExclusions(exclude),
			webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired))
		if err != nil {
			return fmt.Errorf("begin registration: %w", err)
		}
		id, err := s.startCeremony(ctx, q, ceremonyRow{kind: ceremonyRegister, userID: &userID}, sd)
		if err != nil {
			return err
		}
		out = Options{CeremonyID: id, PublicKey: creation.Response}
		return nil
	})
	return out, err
}

// Enrolled is the result of a finished enrollment.
type Enrolled struct {
	Passkey Passkey `json:"passkey" doc:"The new passkey."`
	// RecoveryCodes are set on the user's first enrollment only; they are
	// shown this once and never again.
	RecoveryCodes []string `json:"recovery_codes,omitempty" doc:"On the first enrollment only: 10 single-use recovery codes. Shown once; store them somewhere safe."`
	// First is true when the user had no passkey before.
	First bool `json:"-"`
}

// FinishEnrollment verifies the authenticator's attestation response for the
// ceremony and stores the passkey — the account's first one only: adding to
// an account that has a passkey takes FinishConfirmedEnrollment (401
// passkey_assertion_required here). The first enrollment also generates the
// user's recovery codes.
func (s *Service) FinishEnrollment(ctx context.Context, userID, ceremonyID string, response []byte, name string) (Enrolled, error) {
	return s.finishEnrollment(ctx, userID, ceremonyID, response, name, enrollUnconfirmed)
}

// FinishFirstEnrollment is FinishEnrollment for a caller that may only add
// the account's first passkey (an enrollment-only session: an e-mail or
// recovery code). It refuses once the account has a passkey, even if the
// ceremony was started before that one was enrolled, with 403
// passkey_required: such a session must sign in with that passkey.
func (s *Service) FinishFirstEnrollment(ctx context.Context, userID, ceremonyID string, response []byte, name string) (Enrolled, error) {
	return s.finishEnrollment(ctx, userID, ceremonyID, response, name, enrollFirstOnly)
}

// FinishConfirmedEnrollment is FinishEnrollment for an account that may
// have a passkey already: c, an existing passkey's assertion for a ceremony
// BeginAddPasskey started for this person in session c.SessionID, confirms
// the new one. It is verified (and consumed) first.
func (s *Service) FinishConfirmedEnrollment(ctx context.Context, userID string, c Confirmation, ceremonyID string, response []byte, name string) (Enrolled, error) {
	if err := checkName(name); err != nil {
		return Enrolled{}, err
	}
	if err := addPasskeyChange(userID, c.SessionID).confirm(ctx, s, c.CeremonyID, c.Response); err != nil {
		return Enrolled{}, err
	}
	return s.finishEnrollment(ctx, userID, ceremonyID, response, name, enrollConfirmed)
}

// enrollMode is what a finishing enrollment may add besides the account's
// first passkey.
type enrollMode int

const (
	enrollUnconfirmed enrollMode = iota // nothing: a passkey confirms any other (401)
	enrollFirstOnly                     // nothing, ever: an enrollment-only session (403)
	enrollConfirmed                     // another passkey: confirmed by an existing one
)

func checkName(name string) error {
	name = strings.TrimSpace(name)
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxNameRunes {
		return refuse(Invalid, CodeInvalid, fmt.Sprintf("the passkey name must be valid text of at most %d characters", maxNameRunes))
	}
	return nil
}

func (s *Service) finishEnrollment(ctx context.Context, userID, ceremonyID string, response []byte, name string, mode enrollMode) (Enrolled, error) {
	if err := checkName(name); err != nil {
		return Enrolled{}, err
	}
	name = strings.TrimSpace(name)
	c, sd, err := s.takeCeremony(ctx, ceremonyID, ceremonyRegister)
	if err != nil {
		return Enrolled{}, err
	}
	if c.UserID == nil || *c.UserID != userID {
		return Enrolled{}, errCeremony
	}
	if len(response) == 0 || len(response) > maxResponseBytes {
		return Enrolled{}, refuse(Unauthenticated, CodeAssertionInvalid, "the authenticator's response is missing or too large")
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return Enrolled{}, refuse(Unauthenticated, CodeAssertionInvalid, "the authenticator's response does not parse")
	}
	var out Enrolled
	err = s.inTx(ctx, func(q *store.Queries) error {
		u, err := loadUser(ctx, q, userID)
		if err != nil {
			return err
		}
		// Checked under the transaction: options may have been taken
		// before another session enrolled the account's first passkey.
		switch {
		case len(u.keys) == 0 || mode == enrollConfirmed:
		case mode == enrollFirstOnly:
			return refuse(Forbidden, "passkey_required", "this account already has a passkey: sign in with it to add another")
		default:
			return refuse(Unauthenticated, CodeAssertionRequired,
				"this account already has a passkey: confirm the new one with it (POST /v1/me/passkeys/add-options)")
		}
		cred, err := s.wa.CreateCredential(u, sd, parsed)
		if err != nil {
			return refuse(Unauthenticated, CodeAssertionInvalid, "the authenticator's response does not verify")
		}
		if !cred.Flags.UserVerified {
			return refuse(Unauthenticated, CodeAssertionInvalid, "the passkey was made without user verification")
		}
		if name == "" {
			name = fmt.Sprintf("Passkey %d", len(u.keys)+1)
		}
		transports := make([]string, 0, len(cred.Transport))
		for _, t := range cred.Transport {
			transports = append(transports, string(t))
		}
		now := s.now()
		row := store.Passkey{
			ID: store.NewID("pk"), UserID: userID, CredentialID: cred.ID, PublicKey: cred.PublicKey,
			AttestationType: cred.AttestationType, Aaguid: cred.Authenticator.AAGUID, SignCount: int64(cred.Authenticator.SignCount),
			Transports: transports, BackupEligible: cred.Flags.BackupEligible, BackupState: cred.Flags.BackupState,
			Name: name, CreatedAt: now,
		}
		if err := q.InsertPasskey(ctx, store.InsertPasskeyParams{
			ID: row.ID, UserID: row.UserID, CredentialID: row.CredentialID, PublicKey: row.PublicKey,
			AttestationType: row.AttestationType, Aaguid: row.Aaguid, SignCount: row.SignCount, Transports: row.Transports,
			BackupEligible: row.BackupEligible, BackupState: row.BackupState, Name: row.Name, CreatedAt: row.CreatedAt,
		}); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return refuse(Conflict, "passkey_exists", "this passkey is already enrolled")
			}
			return fmt.Errorf("store passkey: %w", err)
		}
		out.Passkey, out.First = passkeyOf(row), len(u.keys) == 0
		if err := s.audit(ctx, q, userID, KindEnrolled, row.ID, "success",
			map[string]any{"name": row.Name, "first": out.First}); err != nil {
			return err
		}
		counts, err := q.CountRecoveryCodes(ctx, userID)
		if err != nil {
			return fmt.Errorf("count recovery codes: %w", err)
		}
		if counts.Total == 0 {
			if out.RecoveryCodes, err = s.replaceRecoveryCodes(ctx, q, u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Enrolled{}, err
	}
	return out, nil
}

// ListPasskeys lists the user's passkeys, oldest first.
func (s *Service) ListPasskeys(ctx context.Context, userID string) ([]Passkey, error) {
	rows, err := s.st.ListPasskeysOfUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("list passkeys: %w", err)
	}
	out := make([]Passkey, 0, len(rows))
	for _, r := range rows {
		out = append(out, passkeyOf(r))
	}
	return out, nil
}

// HasPasskey reports whether the user has at least one passkey.
func (s *Service) HasPasskey(ctx context.Context, userID string) (bool, error) {
	n, err := s.st.CountPasskeysOfUser(ctx, userID)
	if err != nil {
		return false, fmt.Errorf("count passkeys: %w", err)
	}
	return n > 0, nil
}

var (
	errNoSuchPasskey = refuse(NotFound, CodeNotFound, "no such passkey")
	errLastPasskey   = refuse(Conflict, CodeLastPasskey, "this is your only passkey: enroll another one before removing it")
)

// RemovePasskey removes one of the user's passkeys, never the last one:
// passkey MFA is mandatory, and a user without one could not sign in or
// decide. c, the user's passkey assertion for a ceremony BeginRemovePasskey
// started for this very passkey in session c.SessionID, confirms it (a
// session alone must not strip the owner's passkeys); it is consumed
// whatever the outcome. The user's passkeys are locked first, so two
// concurrent removals cannot both see "another one is left".
func (s *Service) RemovePasskey(ctx context.Context, userID, passkeyID string, c Confirmation) error {
	if err := removePasskeyChange(userID, c.SessionID, passkeyID).confirm(ctx, s, c.CeremonyID, c.Response); err != nil {
		return err
	}
	return s.inTx(ctx, func(q *store.Queries) error {
		ids, err := q.LockUserPasskeys(ctx, userID)
		if err != nil {
			return fmt.Errorf("lock passkeys: %w", err)
		}
		found := false
		for _, id := range ids {
			found = found || id == passkeyID
		}
		if !found {
			return errNoSuchPasskey
		}
		if len(ids) == 1 {
			return errLastPasskey
		}
		row, err := q.DeletePasskey(ctx, store.DeletePasskeyParams{UserID: userID, ID: passkeyID})
		if err != nil {
			return fmt.Errorf("remove passkey: %w", err)
		}
		return s.audit(ctx, q, userID, KindRemoved, passkeyID, "success", map[string]any{"name": row.Name})
	})
}
