package passkeys

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"oakallow/store"
)

// Confirming with a passkey. What a session alone must not be able to do —
// decide an approval, make new recovery codes — a person confirms with a
// fresh assertion of one of their own passkeys, made for exactly that act: a
// ceremony of the act's kind whose challenge is 32 random bytes followed by
// the SHA-256 of what the act is (a decision's Binding, an account change's
// accountAction). The ceremony is single use and short lived like every
// other; the assertion needs user verification and a signature counter that
// moved forward.

// beginConfirmation starts a confirmation ceremony c (its kind and what it
// binds) for userID's own passkeys, with the challenge random || digest.
// Someone without a passkey is refused with noPasskey.
func (s *Service) beginConfirmation(ctx context.Context, userID string, digest [sha256.Size]byte, c ceremonyRow, noPasskey string) (Options, error) {
	u, err := loadUser(ctx, s.st.Queries, userID)
	if err != nil {
		return Options{}, err
	}
	return s.startConfirmation(ctx, u, digest, c, noPasskey)
}

// startConfirmation is beginConfirmation for a user already loaded.
func (s *Service) startConfirmation(ctx context.Context, u *user, digest [sha256.Size]byte, c ceremonyRow, noPasskey string) (Options, error) {
	if len(u.keys) == 0 {
		return Options{}, refuse(Forbidden, "passkey_required", noPasskey)
	}
	challenge := make([]byte, randomChallengeLen, DecisionChallengeLen)
	_, _ = rand.Read(challenge)
	challenge = append(challenge, digest[:]...)
	assertion, sd, err := s.wa.BeginLogin(u, webauthn.WithChallenge(challenge),
		webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return Options{}, fmt.Errorf("begin %s confirmation: %w", c.kind, err)
	}
	c.userID = &u.id
	id, err := s.startCeremony(ctx, s.st.Queries, c, sd)
	if err != nil {
		return Options{}, err
	}
	return Options{CeremonyID: id, PublicKey: assertion.Response}, nil
}

// verifyConfirmation verifies userID's assertion for a confirmation
// ceremony's session data sd: made by one of the user's own passkeys, with
// user verification, over sd's challenge, and its signature counter moved
// forward (recorded). refused, when set, is told why a made assertion was
// refused (to audit it).
func (s *Service) verifyConfirmation(ctx context.Context, userID string, sd webauthn.SessionData, response []byte,
	refused func(reason string)) (*protocol.ParsedCredentialAssertionData, store.Passkey, error) {
	parsed, err := parseAssertion(response)
	if err != nil {
		return nil, store.Passkey{}, err
	}
	u, err := loadUser(ctx, s.st.Queries, userID)
	if err != nil {
		return nil, store.Passkey{}, err
	}
	if refused == nil {
		refused = func(string) {}
	}
	cred, err := s.wa.ValidateLogin(u, sd, parsed)
	if err != nil {
		refused("assertion_invalid")
		return nil, store.Passkey{}, errAssertion
	}
	k, ok := u.passkeyByCredential(cred.ID)
	if !ok {
		return nil, store.Passkey{}, errAssertion
	}
	err = s.inTx(ctx, func(q *store.Queries) error { return s.recordUse(ctx, q, k, cred) })
	if errors.Is(err, errClone) {
		refused(CodeCloneWarning)
	}
	if err != nil {
		return nil, store.Passkey{}, err
	}
	return parsed, k, nil
}

// accountActionDomain separates account-change digests from decision
// digests and every other SHA-256 over similar bytes.
const accountActionDomain = "oakallow/account-action/v1"

// actionRecoveryCodes is the account change that replaces all recovery codes.
const actionRecoveryCodes = "regenerate-recovery-codes"

// accountAction is what a confirmation of an account change binds: this
// change, by this person, in this session. Bound to the session, the
// assertion cannot be spent from another one, even by the same person.
type accountAction struct {
	userID, sessionID, action string
}

// digest is SHA-256 over the domain and each field, each preceded by its
// length as a 4-byte big-endian number, as Binding.Digest encodes.
func (a accountAction) digest() [sha256.Size]byte {
	return fieldsDigest(accountActionDomain, a.userID, a.sessionID, a.action)
}

// boundBy reports whether a ceremony's challenge (base64url, as the session
// data keeps it) ends with a's digest.
func (a accountAction) boundBy(challenge string) bool {
	raw, err := base64.RawURLEncoding.DecodeString(challenge)
	if err != nil || len(raw) != DecisionChallengeLen {
		return false
	}
	d := a.digest()
	return bytes.Equal(raw[randomChallengeLen:], d[:])
}

// accountChange is an account change a person confirms with a passkey:
// the ceremony kind it takes, what its challenge binds, and how a refused
// assertion for it is audited.
type accountChange struct {
	ceremony string
	action   accountAction
	// auditKind, subject and details describe a refused assertion's
	// audit entry (its reason is added).
	auditKind, subject string
	details            map[string]any
}

// begin starts the change's confirmation ceremony; someone without a
// passkey is refused with noPasskey.
func (ch accountChange) begin(ctx context.Context, s *Service, noPasskey string) (Options, error) {
	return s.beginConfirmation(ctx, ch.action.userID, ch.action.digest(), ceremonyRow{kind: ch.ceremony}, noPasskey)
}

// confirm consumes the confirmation ceremony ceremonyID and verifies
// response for it: the ceremony must be of the change's kind, started for
// this person, this session and this very change, and answered by one of
// the person's own passkeys. The ceremony is consumed whatever the outcome.
// A made assertion that is refused (it does not verify, or its passkey
// looks cloned) is audited, as a refused decision signature is.
func (ch accountChange) confirm(ctx context.Context, s *Service, ceremonyID string, response []byte) error {
	c, sd, err := s.takeCeremony(ctx, ceremonyID, ch.ceremony)
	if err != nil {
		return err
	}
	if c.UserID == nil || *c.UserID != ch.action.userID || !ch.action.boundBy(sd.Challenge) {
		return refuse(Unauthenticated, CodeCeremonyInvalid,
			"this passkey ceremony was started for another person, session or change; ask for new options")
	}
	_, _, err = s.verifyConfirmation(ctx, ch.action.userID, sd, response, func(reason string) { s.auditRefusedChange(ctx, ch, reason) })
	return err
}

// auditRefusedChange records a refused confirmation of ch in the person's
// teams. It is best effort: the refusal stands whether or not the entry
// could be written. The entry names the change and why, nothing the client
// sent.
func (s *Service) auditRefusedChange(ctx context.Context, ch accountChange, reason string) {
	details := map[string]any{"reason": reason}
	maps.Copy(details, ch.details)
	_ = s.inTx(ctx, func(q *store.Queries) error {
		return s.audit(ctx, q, ch.action.userID, ch.auditKind, ch.subject, "refused", details)
	})
}

// recoveryCodesChange is replacing userID's recovery codes in sessionID.
func recoveryCodesChange(userID, sessionID string) accountChange {
	return accountChange{
		ceremony: ceremonyRecoveryCodes, action: accountAction{userID: userID, sessionID: sessionID, action: actionRecoveryCodes},
		auditKind: KindRecoveryConfirmationRefused, subject: userID,
	}
}

// BeginRecoveryCodes starts the passkey confirmation that
// RegenerateRecoveryCodes needs, for userID in session sessionID.
func (s *Service) BeginRecoveryCodes(ctx context.Context, userID, sessionID string) (Options, error) {
	return recoveryCodesChange(userID, sessionID).begin(ctx, s, "enroll a passkey before making new recovery codes")
}

// RegenerateRecoveryCodes replaces all of the user's recovery codes with a
// fresh set, shown this once — only with the user's passkey assertion for a
// ceremony BeginRecoveryCodes started for them in this very session. A code
// signs in to the account whatever happens to its passkeys and sessions, so
// a session alone (a stolen cookie) must not be able to mint them. The
// ceremony is consumed whatever the outcome.
func (s *Service) RegenerateRecoveryCodes(ctx context.Context, userID, sessionID, ceremonyID string, response []byte) ([]string, error) {
	if err := recoveryCodesChange(userID, sessionID).confirm(ctx, s, ceremonyID, response); err != nil {
		return nil, err
	}
	var codes []string
	err := s.inTx(ctx, func(q *store.Queries) error {
		u, err := loadUser(ctx, q, userID)
		if err != nil {
			return err
		}
		codes, err = s.replaceRecoveryCodes(ctx, q, u)
		return err
	})
	return codes, err
}

// Confirmation is a person's passkey assertion for a change of their
// passkeys: the ceremony BeginAddPasskey or BeginRemovePasskey started for
// it in session SessionID, and the authenticator's answer to it.
type Confirmation struct {
	SessionID, CeremonyID string
	Response              []byte
}

// The passkey changes a confirmation binds. A removal binds the passkey's
// id after actionRemovePasskey, so it removes that passkey and no other.
const (
	actionAddPasskey    = "add-passkey"
	actionRemovePasskey = "remove-passkey:"
)

// addPasskeyChange is adding a passkey to userID's account in sessionID.
func addPasskeyChange(userID, sessionID string) accountChange {
	return accountChange{
		ceremony: ceremonyPasskeyChange, action: accountAction{userID: userID, sessionID: sessionID, action: actionAddPasskey},
		auditKind: KindPasskeyChangeRefused, subject: userID, details: map[string]any{"change": "add"},
	}
}

// removePasskeyChange is removing userID's passkey passkeyID in sessionID.
func removePasskeyChange(userID, sessionID, passkeyID string) accountChange {
	return accountChange{
		ceremony:  ceremonyPasskeyChange,
		action:    accountAction{userID: userID, sessionID: sessionID, action: actionRemovePasskey + passkeyID},
		auditKind: KindPasskeyChangeRefused, subject: passkeyID, details: map[string]any{"change": "remove"},
	}
}

// BeginAddPasskey starts the passkey confirmation that
// FinishConfirmedEnrollment needs to add a passkey to an account that has
// one, for userID in session sessionID: whoever holds a session alone (a
// stolen cookie) must not be able to add a passkey of their own, which
// would outlive the session.
func (s *Service) BeginAddPasskey(ctx context.Context, userID, sessionID string) (Options, error) {
	return addPasskeyChange(userID, sessionID).begin(ctx, s, "this account has no passkey yet: enroll one, no confirmation needed")
}

// BeginRemovePasskey starts the passkey confirmation that RemovePasskey
// needs to remove passkeyID, for userID in session sessionID. A passkey
// that is not the user's (404) or is their only one (409) is refused here
// already, before the person is asked to touch their authenticator;
// RemovePasskey checks both again under its lock.
func (s *Service) BeginRemovePasskey(ctx context.Context, userID, sessionID, passkeyID string) (Options, error) {
	u, err := loadUser(ctx, s.st.Queries, userID)
	if err != nil {
		return Options{}, err
	}
	if !slices.ContainsFunc(u.keys, func(k store.Passkey) bool { return k.ID == passkeyID }) {
		return Options{}, errNoSuchPasskey
	}
	if len(u.keys) == 1 {
		return Options{}, errLastPasskey
	}
	ch := removePasskeyChange(userID, sessionID, passkeyID)
	return s.startConfirmation(ctx, u, ch.action.digest(), ceremonyRow{kind: ch.ceremony}, "this account has no passkey to remove")
}
