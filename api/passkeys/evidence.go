package passkeys

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

// decisionDomain separates decision digests from every other use of a
// SHA-256 over similar bytes (and from later versions of this encoding).
const decisionDomain = "oakallow/approval-decision/v1"

// randomChallengeLen is the random part of a decision challenge; the digest
// of the decision follows it.
const randomChallengeLen = 32

// DecisionChallengeLen is the length of a decision ceremony's challenge:
// 32 random bytes, then the SHA-256 of the decision's encoding.
const DecisionChallengeLen = randomChallengeLen + sha256.Size

// Binding is what a reviewer's passkey assertion confirms: one decision on
// one approval at one level. Its digest is the last 32 bytes of the
// assertion's challenge.
type Binding struct {
	// ApprovalID is the approval's id (apr_…).
	ApprovalID string `json:"approval_id"`
	// Tool is the tool name the approval is for.
	Tool string `json:"tool"`
	// ParamsHash is the hex SHA-256 of the canonical JSON of the approval's
	// parameters, as bound in its execution token.
	ParamsHash string `json:"params_hash"`
	// Level is the level decided, 1 or 2.
	Level int `json:"level"`
	// Decision is approve or deny.
	Decision string `json:"decision"`
}

// Digest is SHA-256 over the domain and each field, each preceded by its
// length as a 4-byte big-endian number, so no two different bindings encode
// alike (a field cannot borrow bytes from its neighbour).
func (b Binding) Digest() [sha256.Size]byte {
	return fieldsDigest(decisionDomain, b.ApprovalID, b.Tool, b.ParamsHash, fmt.Sprint(b.Level), b.Decision)
}

// fieldsDigest is SHA-256 over fields, each preceded by its length as a
// 4-byte big-endian number.
func fieldsDigest(fields ...string) [sha256.Size]byte {
	var buf bytes.Buffer
	for _, f := range fields {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		buf.Write(n[:])
		buf.WriteString(f)
	}
	return sha256.Sum256(buf.Bytes())
}

// Evidence is the passkey assertion a reviewer made for a decision, with
// what it is claimed to confirm. Binary fields are base64url (no padding),
// as WebAuthn's JSON encodes them.
type Evidence struct {
	Binding
	// RPID is the relying-party id the assertion was made for.
	RPID string `json:"rp_id"`
	// UserID is the reviewer's user id.
	UserID string `json:"user_id"`
	// PasskeyID is oakallow's id of the passkey used.
	PasskeyID string `json:"passkey_id"`
	// CredentialID is the WebAuthn credential id.
	CredentialID protocol.URLEncodedBase64 `json:"credential_id"`
	// ClientDataJSON, AuthenticatorData and Signature are the assertion's,
	// byte for byte as the authenticator and browser produced them.
	ClientDataJSON    protocol.URLEncodedBase64 `json:"client_data_json"`
	AuthenticatorData protocol.URLEncodedBase64 `json:"authenticator_data"`
	Signature         protocol.URLEncodedBase64 `json:"signature"`
	// UserHandle is the WebAuthn user handle the authenticator returned, if any.
	UserHandle protocol.URLEncodedBase64 `json:"user_handle,omitempty"`
	// PublicKey is the credential's COSE public key as enrolled. A verifier
	// should use a copy of the key it holds itself; this one is a convenience.
	PublicKey protocol.URLEncodedBase64 `json:"public_key"`
	// DecidedAt is when the workflow accepted the decision.
	DecidedAt time.Time `json:"decided_at"`
}

// Confirmed is what [VerifyEvidence] established.
type Confirmed struct {
	Binding
	// Origin is the web origin the browser reported for the assertion.
	Origin string
	// SignCount is the authenticator's signature counter in the assertion.
	SignCount uint32
}

// maxEvidenceField bounds every binary field of evidence handed to
// VerifyEvidence (WebAuthn's own values are far smaller).
const maxEvidenceField = 16 << 10

// VerifyEvidence checks, offline, that ev is a valid WebAuthn assertion
// (§7.2) made with user verification by the holder of publicKey (a COSE
// key) for the relying party ev.RPID, and that its challenge binds
// ev.Binding. It returns what the reviewer confirmed. It needs nothing but
// its arguments: no server, no database.
func VerifyEvidence(ev Evidence, publicKey []byte) (Confirmed, error) {
	for name, f := range map[string][]byte{
		"client_data_json": ev.ClientDataJSON, "authenticator_data": ev.AuthenticatorData,
		"signature": ev.Signature, "public_key": publicKey,
	} {
		if len(f) == 0 || len(f) > maxEvidenceField {
			return Confirmed{}, fmt.Errorf("%s is empty or longer than %d bytes", name, maxEvidenceField)
		}
	}
	if ev.Level != 1 && ev.Level != 2 {
		return Confirmed{}, fmt.Errorf("level %d is not 1 or 2", ev.Level)
	}
	if ev.Decision != "approve" && ev.Decision != "deny" {
		return Confirmed{}, fmt.Errorf("decision %q is not approve or deny", ev.Decision)
	}
	// §7.2 steps 10–12: the client data is a webauthn.get whose challenge is ours.
	var cd protocol.CollectedClientData
	if err := json.Unmarshal(ev.ClientDataJSON, &cd); err != nil {
		return Confirmed{}, fmt.Errorf("client data is not JSON: %w", err)
	}
	if cd.Type != protocol.AssertCeremony {
		return Confirmed{}, fmt.Errorf("client data type %q is not %q", cd.Type, protocol.AssertCeremony)
	}
	challenge, err := base64.RawURLEncoding.DecodeString(cd.Challenge)
	if err != nil {
		return Confirmed{}, fmt.Errorf("client data challenge: %w", err)
	}
	if len(challenge) != DecisionChallengeLen {
		return Confirmed{}, fmt.Errorf("challenge has %d bytes, not %d: not a decision challenge", len(challenge), DecisionChallengeLen)
	}
	digest := ev.Digest()
	if !bytes.Equal(challenge[randomChallengeLen:], digest[:]) {
		return Confirmed{}, errors.New("the assertion's challenge does not bind this approval, level and decision")
	}
	// Steps 15–17: right relying party, user present and verified.
	var ad protocol.AuthenticatorData
	if err := ad.Unmarshal(ev.AuthenticatorData); err != nil {
		return Confirmed{}, fmt.Errorf("authenticator data: %w", err)
	}
	rpIDHash := sha256.Sum256([]byte(ev.RPID))
	if !bytes.Equal(ad.RPIDHash, rpIDHash[:]) {
		return Confirmed{}, fmt.Errorf("the assertion was made for another relying party than %q", ev.RPID)
	}
	if !ad.Flags.UserPresent() || !ad.Flags.UserVerified() {
		return Confirmed{}, errors.New("the assertion was made without user presence and verification")
	}
	// Steps 19–20: the signature over authenticatorData || SHA-256(clientDataJSON).
	key, err := webauthncose.ParsePublicKey(publicKey)
	if err != nil {
		return Confirmed{}, fmt.Errorf("public key: %w", err)
	}
	cdHash := sha256.Sum256(ev.ClientDataJSON)
	signed := append(append([]byte{}, ev.AuthenticatorData...), cdHash[:]...)
	ok, err := webauthncose.VerifySignature(key, signed, ev.Signature)
	if err != nil || !ok {
		return Confirmed{}, errors.New("the signature does not verify with this public key")
	}
	return Confirmed{Binding: ev.Binding, Origin: cd.Origin, SignCount: ad.Counter}, nil
}
