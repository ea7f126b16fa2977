package api

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/api/passkeys"
	"oakallow/api/passkeys/passkeystest"
)

// Answers that show a credential once — an API key, an agent secret,
// recovery codes, a session token for an app, an invitation link — must not
// be kept by any cache (Cache-Control: no-store), like the execution tokens
// and signing secrets of testNoStoreOnSecrets.
func TestNoStoreOnCredentialsShownOnce(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	owner := bearer(e.signIn(e.boot.UserID, true).Token)
	ownerKey := passkeystest.New("localhost", testOrigin)
	status, raw := e.enrollREST(ownerKey, owner)
	require.Equal(t, http.StatusCreated, status, string(raw))
	noStore := func(what string, status, want int, h http.Header, raw []byte) {
		t.Helper()
		require.Equal(t, want, status, "%s: %s", what, raw)
		require.Equal(t, "no-store", h.Get("Cache-Control"), what)
	}
	org := "/v1/orgs/" + e.boot.OrgID
	status, h, raw := e.send(http.MethodPost, org+"/keys", "", owner, map[string]any{"name": "k", "tier": "standard"})
	noStore("create-api-key", status, http.StatusCreated, h, raw)
	status, h, raw = e.send(http.MethodPost, org+"/agents", "", owner, map[string]any{"name": "bot"})
	noStore("create-agent-identity", status, http.StatusCreated, h, raw)
	status, h, raw = e.regenerateCodes(ownerKey, owner)
	noStore("regenerate-recovery-codes", status, http.StatusOK, h, raw)
	status, h, raw = e.send(http.MethodPost, "/v1/team/invitations", "", owner, map[string]any{"email": "rita@example.com", "role": "reviewer"})
	noStore("create-invitation", status, http.StatusCreated, h, raw)

	// A new person enrolls a passkey (recovery codes, and the full session's
	// token for an app), then signs in with it as an app.
	a := passkeystest.New("localhost", testOrigin)
	enrolling := bearer(e.signIn(e.person(RoleReviewer), false).Token)
	opts := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/me/passkeys/options", enrolling, nil)
	cred, err := a.Create(opts.PublicKey)
	require.NoError(t, err)
	status, h, raw = e.send(http.MethodPost, "/v1/me/passkeys", "", enrolling,
		map[string]any{"ceremony_id": opts.CeremonyID, "credential": json.RawMessage(cred), "name": "laptop"})
	noStore("enroll-passkey", status, http.StatusCreated, h, raw)
	opts = expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/auth/passkey/options", nil, nil)
	cred, err = a.Get(opts.PublicKey)
	require.NoError(t, err)
	status, h, raw = e.send(http.MethodPost, "/v1/auth/passkey", "", nil,
		map[string]any{"ceremony_id": opts.CeremonyID, "credential": json.RawMessage(cred), "client": "app"})
	noStore("passkey-sign-in", status, http.StatusOK, h, raw)
}
