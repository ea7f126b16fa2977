package passkeys

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

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
	c.userID = &userID
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

// BeginRecoveryCodes starts the passkey confirmation that
// RegenerateRecoveryCodes needs, for userID in session sessionID.
func (s *Service) BeginRecoveryCodes(ctx context.Context, userID, sessionID string) (Options, error) {
	a := accountAction{userID: userID, sessionID: sessionID, action: actionRecoveryCodes}
	return s.beginConfirmation(ctx, userID, a.digest(), ceremonyRow{kind: ceremonyRecoveryCodes},
		"enroll a passkey before making new recovery codes")
}

// RegenerateRecoveryCodes replaces all of the user's recovery codes with a
// fresh set, shown this once — only with the user's passkey assertion for a
// ceremony BeginRecoveryCodes started for them in this very session. A code
// signs in to the account whatever happens to its passkeys and sessions, so
// a session alone (a stolen cookie) must not be able to mint them. The
// ceremony is consumed whatever the outcome.
func (s *Service) RegenerateRecoveryCodes(ctx context.Context, userID, sessionID, ceremonyID string, response []byte) ([]string, error) {
	c, sd, err := s.takeCeremony(ctx, ceremonyID, ceremonyRecoveryCodes)
	if err != nil {
		return nil, err
	}
	a := accountAction{userID: userID, sessionID: sessionID, action: actionRecoveryCodes}
	if c.UserID == nil || *c.UserID != userID || !a.boundBy(sd.Challenge) {
		return nil, refuse(Unauthenticated, CodeCeremonyInvalid,
			"this passkey ceremony was started for another person or session; ask for new options")
	}
	if _, _, err := s.verifyConfirmation(ctx, userID, sd, response, nil); err != nil {
		return nil, err
	}
	var codes []string
	err = s.inTx(ctx, func(q *store.Queries) error {
		u, err := loadUser(ctx, q, userID)
		if err != nil {
			return err
		}
		codes, err = s.replaceRecoveryCodes(ctx, q, u)
		return err
	})
	return codes, err
}
