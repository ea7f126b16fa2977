package api

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/api/ratelimit"
)

// Starting a passkey sign-in is public and stores a ceremony until it
// expires, so one address may only start so many, on every replica.
func TestPasskeySignInStartsLimitedPerAddress(t *testing.T) {
	t.Parallel()
	st, boot := bootstrappedStore(t)
	cfg := testConfig()
	cfg.Accounts.PasskeyOptionsPerIP = ratelimit.Limit{N: 3, Per: 15 * time.Minute}
	a := startEnvWith(t, cfg, Deps{Store: st}, boot)
	b := startEnvWith(t, cfg, Deps{Store: st}, boot)
	countCeremonies := func() int {
		var n int
		require.NoError(t, st.Pool.QueryRow(context.Background(), `SELECT count(*) FROM webauthn_ceremonies`).Scan(&n))
		return n
	}
	for i, e := range []*testEnv{a, b, a} {
		status, raw := e.do(http.MethodPost, "/v1/auth/passkey/options", "", nil)
		require.Equal(t, http.StatusOK, status, "start %d: %s", i, raw)
	}
	for _, e := range []*testEnv{a, b} {
		status, hdr, raw := e.send(http.MethodPost, "/v1/auth/passkey/options", "", nil, nil)
		requireStatusCode(t, http.StatusTooManyRequests, CodeRateLimited, status, raw)
		secs, err := strconv.Atoi(hdr.Get("Retry-After"))
		require.NoError(t, err)
		require.Positive(t, secs)
	}
	require.Equal(t, 3, countCeremonies(), "a refused start stores nothing")
}
