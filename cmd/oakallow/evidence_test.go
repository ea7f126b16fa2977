package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/api/passkeys"
	"oakallow/api/passkeys/passkeystest"
	"oakallow/dev/devtest"
	"oakallow/store"
)

// TestVerifyEvidence makes a real decision assertion with a virtual
// authenticator and checks it with the offline command, as a third party
// holding only the evidence file and the public key would.
func TestVerifyEvidence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := devtest.Store(t)
	now := time.Now()
	require.NoError(t, st.CreateTeam(ctx, store.CreateTeamParams{ID: "team_1", Name: "t", CreatedAt: now}))
	require.NoError(t, st.CreateUser(ctx, store.CreateUserParams{ID: "usr_r", Email: "r@example.com", CreatedAt: now}))
	svc, err := passkeys.New(passkeys.Config{RPID: "localhost", Origins: []string{"http://localhost:8080"}}, st, nil)
	require.NoError(t, err)
	a := passkeystest.New("localhost", "http://localhost:8080")
	opts, err := svc.BeginEnrollment(ctx, "usr_r")
	require.NoError(t, err)
	resp, err := a.Create(opts.PublicKey)
	require.NoError(t, err)
	_, err = svc.FinishEnrollment(ctx, "usr_r", opts.CeremonyID, resp, "laptop")
	require.NoError(t, err)

	b := passkeys.Binding{ApprovalID: "apr_x", Tool: "wire_money", ParamsHash: strings.Repeat("c", 64), Level: 2, Decision: "approve"}
	opts, err = svc.BeginDecision(ctx, "usr_r", "org_1", b)
	require.NoError(t, err)
	resp, err = a.Get(opts.PublicKey)
	require.NoError(t, err)
	ev, err := svc.FinishDecision(ctx, "usr_r", opts.CeremonyID, resp, b)
	require.NoError(t, err)

	dir := t.TempDir()
	write := func(name string, v any) string {
		p := filepath.Join(dir, name)
		raw, err := json.Marshal(v)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(p, raw, 0o600))
		return p
	}
	keyPath := filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(keyPath, []byte(base64.RawURLEncoding.EncodeToString(ev.PublicKey)+"\n"), 0o600))

	var out strings.Builder
	require.NoError(t, run(ctx, []string{"verify-evidence", "-evidence", write("one.json", ev), "-public-key", keyPath}, &out))
	require.Contains(t, out.String(), `usr_r confirmed "approve" at level 2 of approval apr_x (tool wire_money`)

	out.Reset()
	require.NoError(t, run(ctx, []string{"verify-evidence", "-evidence", write("all.json", map[string]any{"items": []passkeys.Evidence{ev}}), "-public-key", keyPath}, &out))
	require.Contains(t, out.String(), "verified:")

	// Claiming the reviewer denied (or decided another approval) fails.
	forged := ev
	forged.Decision = "deny"
	out.Reset()
	err = run(ctx, []string{"verify-evidence", "-evidence", write("forged.json", forged), "-public-key", keyPath}, &out)
	require.ErrorContains(t, err, "does not bind this approval")
	require.Empty(t, out.String())

	// A key that is not the credential's does not verify it.
	other := passkeystest.New("localhost", "http://localhost:8080")
	require.NoError(t, st.CreateUser(ctx, store.CreateUserParams{ID: "usr_o", Email: "o@example.com", CreatedAt: now}))
	opts, err = svc.BeginEnrollment(ctx, "usr_o")
	require.NoError(t, err)
	resp, err = other.Create(opts.PublicKey)
	require.NoError(t, err)
	e2, err := svc.FinishEnrollment(ctx, "usr_o", opts.CeremonyID, resp, "")
	require.NoError(t, err)
	var otherKey []byte
	require.NoError(t, st.Pool.QueryRow(ctx, `SELECT public_key FROM passkeys WHERE id = $1`, e2.Passkey.ID).Scan(&otherKey))
	otherPath := filepath.Join(dir, "other")
	require.NoError(t, os.WriteFile(otherPath, []byte(base64.RawURLEncoding.EncodeToString(otherKey)), 0o600))
	err = run(ctx, []string{"verify-evidence", "-evidence", write("one.json", ev), "-public-key", otherPath}, &out)
	require.ErrorContains(t, err, "signature does not verify")

	var ue usageError
	require.ErrorAs(t, run(ctx, []string{"verify-evidence", "-evidence", keyPath}, &out), &ue)
}
