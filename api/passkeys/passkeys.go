package passkeys

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/jackc/pgx/v5"

	"oakallow/store"
)

// Audit event kinds written by this package.
const (
	KindEnrolled          = "passkey.enrolled"
	KindRemoved           = "passkey.removed"
	KindSignedIn          = "passkey.signed_in"
	KindSignInFailed      = "passkey.sign_in_failed"
	KindRecoveryGenerated = "recovery_codes.generated"
	KindRecoveryRedeemed  = "recovery_code.redeemed"
	KindDecisionSigned    = "approval.decision_signed"
	KindDecisionRefused   = "approval.decision_signature_refused"
	// KindRecoveryConfirmationRefused: a passkey assertion confirming new
	// recovery codes was refused.
	KindRecoveryConfirmationRefused = "recovery_codes.confirmation_refused"
	// KindPasskeyChangeRefused: a passkey assertion confirming adding or
	// removing a passkey was refused (details: change add or remove).
	KindPasskeyChangeRefused = "passkey.change_confirmation_refused"
)

// Ceremony kinds (webauthn_ceremonies.kind).
const (
	ceremonyRegister = "register"
	ceremonyLogin    = "login"
	ceremonyDecide   = "decide"
	// ceremonyRecoveryCodes confirms a regeneration of recovery codes.
	ceremonyRecoveryCodes = "recovery_codes"
	// ceremonyPasskeyChange confirms adding or removing a passkey.
	ceremonyPasskeyChange = "passkey_change"
)

// handleLen is the length of a WebAuthn user handle: 64 random bytes, the
// most WebAuthn allows (§5.4.3), so it says nothing about the person.
const handleLen = 64

// maxResponseBytes bounds a WebAuthn response a client sends back.
const maxResponseBytes = 64 << 10

// maxNameRunes bounds a passkey's display name.
const maxNameRunes = 100

// Error is a refusal with a stable code for clients; Kind tells the surface
// what class of answer it is.
type Error struct {
	Kind ErrorKind
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// ErrorKind classifies refusals for the surfaces.
type ErrorKind int

// The kinds of refusal.
const (
	// Unauthenticated: the ceremony or assertion does not prove who the caller is (401).
	Unauthenticated ErrorKind = iota + 1
	// Forbidden: the caller is known but may not do this (403).
	Forbidden
	// Conflict: the state does not allow it (409), e.g. removing the last passkey.
	Conflict
	// NotFound: no such passkey (404).
	NotFound
	// Invalid: malformed input (422).
	Invalid
)

// Stable error codes.
const (
	CodeCeremonyInvalid  = "ceremony_invalid"
	CodeAssertionInvalid = "assertion_invalid"
	CodeCloneWarning     = "passkey_clone_warning"
	CodeLastPasskey      = "last_passkey"
	CodeRecoveryInvalid  = "recovery_code_invalid"
	CodeNotFound         = "not_found"
	CodeInvalid          = "validation_failed"
	// CodeAssertionRequired: the change needs a passkey assertion made for it.
	CodeAssertionRequired = "passkey_assertion_required"
)

func refuse(kind ErrorKind, code, msg string) *Error { return &Error{Kind: kind, Code: code, Msg: msg} }

var (
	errCeremony  = refuse(Unauthenticated, CodeCeremonyInvalid, "the passkey ceremony is unknown, expired or already used; start again")
	errAssertion = refuse(Unauthenticated, CodeAssertionInvalid, "the passkey response does not verify")
	errClone     = refuse(Unauthenticated, CodeCloneWarning,
		"this passkey's signature counter went backwards, so it may have been copied; it is refused — use another passkey or a recovery code")
)

// Service is the relying party.
type Service struct {
	cfg Config
	wa  *webauthn.WebAuthn
	st  *store.Store
	now func() time.Time
}

// New builds the relying party. now is the clock (time.Now in production).
func New(cfg Config, st *store.Store, now func() time.Time) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          cfg.RPID,
		RPDisplayName: cfg.RPName,
		RPOrigins:     cfg.Origins,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   protocol.VerificationRequired,
		},
		AttestationPreference: protocol.PreferNoAttestation,
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: cfg.CeremonyTTL, TimeoutUVD: cfg.CeremonyTTL},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: cfg.CeremonyTTL, TimeoutUVD: cfg.CeremonyTTL},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("passkeys: %w", err)
	}
	return &Service{cfg: cfg, wa: wa, st: st, now: now}, nil
}

// RPID is the relying-party id.
func (s *Service) RPID() string { return s.cfg.RPID }

// Passkey is one enrolled passkey, as shown to its owner.
type Passkey struct {
	ID         string     `json:"id" doc:"The passkey's id (pk_…)."`
	Name       string     `json:"name" doc:"A name its owner chose."`
	CreatedAt  time.Time  `json:"created_at" doc:"When it was enrolled."`
	LastUsedAt *time.Time `json:"last_used_at,omitempty" doc:"When it last signed in or signed a decision."`
	Synced     bool       `json:"synced" doc:"True when the authenticator says the passkey is backed up (synced across devices)."`
}

func passkeyOf(r store.Passkey) Passkey {
	return Passkey{ID: r.ID, Name: r.Name, CreatedAt: r.CreatedAt, LastUsedAt: r.LastUsedAt, Synced: r.BackupState}
}

// user adapts a stored user and passkeys to webauthn.User.
type user struct {
	id, email, name string
	handle          []byte
	keys            []store.Passkey
}

func (u *user) WebAuthnID() []byte          { return u.handle }
func (u *user) WebAuthnName() string        { return u.email }
func (u *user) WebAuthnDisplayName() string { return cmp.Or(u.name, u.email) }
func (u *user) WebAuthnCredentials() []webauthn.Credential {
	out := make([]webauthn.Credential, 0, len(u.keys))
	for _, k := range u.keys {
		out = append(out, credentialOf(k))
	}
	return out
}

func credentialOf(k store.Passkey) webauthn.Credential {
	ts := make([]protocol.AuthenticatorTransport, 0, len(k.Transports))
	for _, t := range k.Transports {
		ts = append(ts, protocol.AuthenticatorTransport(t))
	}
	return webauthn.Credential{
		ID: k.CredentialID, PublicKey: k.PublicKey, AttestationType: k.AttestationType, Transport: ts,
		Flags: webauthn.CredentialFlags{
			UserPresent: true, UserVerified: true, BackupEligible: k.BackupEligible, BackupState: k.BackupState,
		},
		Authenticator: webauthn.Authenticator{AAGUID: k.Aaguid, SignCount: uint32(k.SignCount)},
	}
}

// loadUser reads an active user and their passkeys.
func loadUser(ctx context.Context, q *store.Queries, userID string) (*user, error) {
	r, err := q.GetUserForPasskeys(ctx, userID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, pgx.ErrNoRows) {
			return nil, refuse(Forbidden, "user_inactive", "this account does not exist or was deleted")
		}
		return nil, fmt.Errorf("load user: %w", err)
	}
	if r.Status != "active" {
		return nil, refuse(Forbidden, "user_inactive", "this account does not exist or was deleted")
	}
	keys, err := q.ListPasskeysOfUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("load passkeys: %w", err)
	}
	return &user{id: r.ID, email: r.Email, name: r.Name, handle: r.WebauthnHandle, keys: keys}, nil
}

// newCeremonyID is the opaque id a client presents to finish a ceremony.
func newCeremonyID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "cer_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// ceremonyRow is what startCeremony stores besides the session data.
type ceremonyRow struct {
	kind       string
	userID     *string
	approvalID *string
	orgID      *string
	level      *int16
	decision   *string
}

func (s *Service) startCeremony(ctx context.Context, q *store.Queries, c ceremonyRow, sd *webauthn.SessionData) (string, error) {
	raw, err := json.Marshal(sd)
	if err != nil {
		return "", fmt.Errorf("encode ceremony: %w", err)
	}
	now := s.now()
	id := newCeremonyID()
	if err := q.InsertCeremony(ctx, store.InsertCeremonyParams{
		ID: id, Kind: c.kind, UserID: c.userID, SessionData: raw, ApprovalID: c.approvalID, OrgID: c.orgID,
		Level: c.level, Decision: c.decision, CreatedAt: now, ExpiresAt: now.Add(s.cfg.CeremonyTTL),
	}); err != nil {
		return "", fmt.Errorf("store ceremony: %w", err)
	}
	return id, nil
}

// takeCeremony consumes a ceremony of the given kind. It is gone afterwards
// whatever the outcome, so a response can be tried once.
func (s *Service) takeCeremony(ctx context.Context, id, kind string) (store.WebauthnCeremony, webauthn.SessionData, error) {
	var sd webauthn.SessionData
	if id == "" || len(id) > 100 {
		return store.WebauthnCeremony{}, sd, errCeremony
	}
	c, err := s.st.TakeCeremony(ctx, store.TakeCeremonyParams{ID: id, Kind: kind})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, pgx.ErrNoRows) {
			return c, sd, errCeremony
		}
		return c, sd, fmt.Errorf("take ceremony: %w", err)
	}
	if !s.now().Before(c.ExpiresAt) {
		return c, sd, errCeremony
	}
	if err := json.Unmarshal(c.SessionData, &sd); err != nil {
		return c, sd, fmt.Errorf("decode ceremony: %w", err)
	}
	return c, sd, nil
}

// SweepCeremonies deletes expired ceremonies; callers run it now and then.
func (s *Service) SweepCeremonies(ctx context.Context) (int64, error) {
	return s.st.DeleteExpiredCeremonies(ctx, s.now())
}

// audit writes one audit entry about a person in q's transaction. People
// belong to no single org, so the entry is written once in each of the
// person's teams, where its owners and admins see it.
func (s *Service) audit(ctx context.Context, q *store.Queries, userID, kind, subject, outcome string, details map[string]any) error {
	raw, err := jsonDetails(details)
	if err != nil {
		return err
	}
	if err := q.InsertPersonAuditEvent(ctx, userID, store.InsertAuditEventParams{
		ID: store.NewID("evt"), OccurredAt: s.now(),
		ActorKind: "user", ActorID: userID, Kind: kind, Subject: subject, Outcome: outcome, Details: raw,
	}); err != nil {
		return fmt.Errorf("audit %s: %w", kind, err)
	}
	return nil
}

// inTx runs fn in one transaction.
func (s *Service) inTx(ctx context.Context, fn func(q *store.Queries) error) error {
	return s.st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error { return fn(q) })
}

// parseAssertion parses a client's assertion JSON.
func parseAssertion(body []byte) (*protocol.ParsedCredentialAssertionData, error) {
	if len(body) == 0 || len(body) > maxResponseBytes {
		return nil, errAssertion
	}
	p, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		return nil, errAssertion
	}
	return p, nil
}

// recordUse stores a verified assertion's counter. A counter that went
// backwards (the library's clone warning), or that another replica already
// moved past in the meantime, refuses the assertion.
func (s *Service) recordUse(ctx context.Context, q *store.Queries, k store.Passkey, cred *webauthn.Credential) error {
	if cred.Authenticator.CloneWarning {
		return errClone
	}
	now := s.now()
	n, err := q.RecordPasskeyUse(ctx, store.RecordPasskeyUseParams{
		ID: k.ID, SignCount: int64(cred.Authenticator.SignCount), BackupState: cred.Flags.BackupState, UsedAt: &now,
	})
	if err != nil {
		return fmt.Errorf("record passkey use: %w", err)
	}
	if n == 0 {
		return errClone
	}
	return nil
}

// passkeyByCredential finds the stored passkey for a credential id among u's.
func (u *user) passkeyByCredential(id []byte) (store.Passkey, bool) {
	for _, k := range u.keys {
		if bytes.Equal(k.CredentialID, id) {
			return k, true
		}
	}
	return store.Passkey{}, false
}

// jsonDetails encodes an audit entry's details.
func jsonDetails(details map[string]any) ([]byte, error) {
	if details == nil {
		details = map[string]any{}
	}
	raw, err := json.Marshal(details)
	if err != nil {
		return nil, fmt.Errorf("encode audit details: %w", err)
	}
	return raw, nil
}
