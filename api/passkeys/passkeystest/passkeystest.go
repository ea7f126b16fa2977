// Package passkeystest is a virtual WebAuthn authenticator for tests: it
// answers the options oakallow hands out as a browser and a platform
// authenticator would, with user verification, so tests drive real
// ceremonies end to end. Built on github.com/descope/virtualwebauthn.
package passkeystest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/descope/virtualwebauthn"
)

// Authenticator holds passkeys for one relying party and origin.
type Authenticator struct {
	mu   sync.Mutex
	rp   virtualwebauthn.RelyingParty
	auth virtualwebauthn.Authenticator
	// handles maps a credential id to the user handle it was made for.
	handles map[string][]byte
}

// New returns an authenticator that performs user verification.
func New(rpID, origin string) *Authenticator {
	return &Authenticator{
		rp:      virtualwebauthn.RelyingParty{ID: rpID, Name: "oakallow", Origin: origin},
		auth:    virtualwebauthn.NewAuthenticator(),
		handles: map[string][]byte{},
	}
}

// WithoutUserVerification makes later ceremonies report user presence only.
func (a *Authenticator) WithoutUserVerification() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.auth.Options.UserNotVerified = true
}

// Create answers creation options (a PublicKeyCredentialCreationOptions,
// or anything that JSON-encodes as one) with a new passkey's attestation.
func (a *Authenticator) Create(options any) ([]byte, error) {
	raw, err := json.Marshal(options)
	if err != nil {
		return nil, err
	}
	o, err := virtualwebauthn.ParseAttestationOptions(string(raw))
	if err != nil {
		return nil, fmt.Errorf("parse creation options: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cred, err := newCredential()
	if err != nil {
		return nil, err
	}
	a.auth.AddCredential(cred)
	a.handles[string(cred.ID)] = []byte(o.UserID)
	return []byte(virtualwebauthn.CreateAttestationResponse(a.rp, a.auth, cred, *o)), nil
}

// Get answers request options with an assertion by the newest passkey the
// options allow (any passkey when they list none: a discoverable sign-in),
// moving that passkey's signature counter forward.
func (a *Authenticator) Get(options any) ([]byte, error) {
	return a.get(options, 1)
}

// GetReplayingCounter is Get without moving the counter forward, as a cloned
// authenticator that lags behind would.
func (a *Authenticator) GetReplayingCounter(options any) ([]byte, error) {
	return a.get(options, 0)
}

func (a *Authenticator) get(options any, step uint32) ([]byte, error) {
	raw, err := json.Marshal(options)
	if err != nil {
		return nil, err
	}
	o, err := virtualwebauthn.ParseAssertionOptions(string(raw))
	if err != nil {
		return nil, fmt.Errorf("parse request options: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	idx := -1
	for i := len(a.auth.Credentials) - 1; i >= 0; i-- {
		if len(o.AllowCredentials) == 0 || a.auth.Credentials[i].IsAllowedForAssertion(*o) {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("no passkey for these options")
	}
	cred := &a.auth.Credentials[idx]
	cred.Counter += step
	auth := a.auth
	auth.Options.UserHandle = a.handles[string(cred.ID)]
	return []byte(virtualwebauthn.CreateAssertionResponse(a.rp, auth, *cred, *o)), nil
}

// Forget drops every passkey this authenticator holds.
func (a *Authenticator) Forget() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.auth.Credentials = nil
}

// newCredential returns a P-256 passkey whose public key encodes to a valid
// COSE key. virtualwebauthn writes the coordinates with big.Int.Bytes, which
// drops leading zero bytes, so about one key in 128 came out with a 31-byte
// coordinate that a relying party rightly refuses (COSE and go-webauthn
// require 32): a flaky enrollment in the tests. Such keys are drawn again.
func newCredential() (virtualwebauthn.Credential, error) {
	for {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return virtualwebauthn.Credential{}, err
		}
		if len(key.X.Bytes()) != 32 || len(key.Y.Bytes()) != 32 {
			continue
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return virtualwebauthn.Credential{}, err
		}
		return virtualwebauthn.NewCredentialWithImportedKey(virtualwebauthn.KeyTypeEC2, der), nil
	}
}
