package api

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/api/ratelimit"
	"oakallow/store"
)

// Unauthenticated writes that store a row — OAuth authorization requests
// and passkey ceremonies — are limited per client address and for every
// address together, and their rows are swept once expired.

// browserFrom is a client from the loopback address ip that does not
// follow redirects (the authorization endpoint answers 303).
func browserFrom(ip string) *http.Client {
	c := clientFrom(ip)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// authorizeQuery is a valid authorization request of client.
func authorizeQuery(client string) string {
	return "/oauth/authorize?" + url.Values{"client_id": {client}, "redirect_uri": {testRedirect}, "response_type": {"code"},
		"code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"}, "state": {"s"}}.Encode()
}

// newClient registers an OAuth client straight in the database.
func (e *testEnv) newClient() string {
	e.t.Helper()
	id := store.NewID("cli")
	require.NoError(e.t, e.st.CreateOAuthClient(context.Background(), store.CreateOAuthClientParams{ID: id, Name: "t",
		RedirectUris: []string{testRedirect}, CreatedAt: time.Now()}))
	return id
}

// rows counts a table's rows.
func (e *testEnv) rows(table string) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.st.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n))
	return n
}

// requireLimitedPage requires the authorization endpoint's 429 page.
func requireLimitedPage(t *testing.T, status int, hdr http.Header, raw []byte, retryAfter, mentions string) {
	t.Helper()
	require.Equal(t, http.StatusTooManyRequests, status, string(raw))
	require.Equal(t, retryAfter, hdr.Get("Retry-After"))
	require.True(t, strings.HasPrefix(string(raw), "error: rate_limited\n"), string(raw))
	require.Contains(t, string(raw), mentions)
	require.Equal(t, "no-store", hdr.Get("Cache-Control"))
	require.Empty(t, hdr.Get("Location"), "a refused request is never redirected")
}

func TestOAuthAuthorizeIsLimitedPerAddressAndInAll(t *testing.T) {
	t.Parallel()
	t.Run("per address", func(t *testing.T) {
		t.Parallel()
		e, clock := limitEnv(t, LimitsConfig{OAuthAuthorizePerIP: ratelimit.Limit{N: 3, Per: time.Minute}})
		client := e.newClient()
		attacker, other := browserFrom("127.0.0.2"), browserFrom("127.0.0.3")
		for range 3 {
			status, hdr, raw := e.sendVia(attacker, http.MethodGet, authorizeQuery(client), "", nil, nil)
			require.Equal(t, http.StatusSeeOther, status, string(raw))
			require.True(t, strings.HasPrefix(hdr.Get("Location"), "/oauth/consent/"))
		}
		// The fourth in a minute is refused before it is read: one comes
		// back every 20 s. Invalid requests count too.
		status, hdr, raw := e.sendVia(attacker, http.MethodGet, authorizeQuery(client), "", nil, nil)
		requireLimitedPage(t, status, hdr, raw, "20", "from this address")
		status, hdr, raw = e.sendVia(attacker, http.MethodGet, "/oauth/authorize", "", nil, nil)
		requireLimitedPage(t, status, hdr, raw, "20", "from this address")
		require.Equal(t, 3, e.rows("oauth_requests"), "nothing refused was stored")
		// Another address has its own budget.
		status, _, raw = e.sendVia(other, http.MethodGet, authorizeQuery(client), "", nil, nil)
		require.Equal(t, http.StatusSeeOther, status, string(raw))

		c := e.crossings(limitOAuthAuthorizePerIP)
		require.Len(t, c, 1, "audited once per episode")
		require.Empty(t, c[0].OrgID)
		require.Equal(t, "127.0.0.2", c[0].ActorID)
		require.Equal(t, "3/1m0s", c[0].Details.Allowed)
		require.Equal(t, 2.0, e.metricValue(`oakallow_rate_limited_total{limit="oauth_authorize_per_ip"}`))

		clock.Advance(20 * time.Second)
		status, _, raw = e.sendVia(attacker, http.MethodGet, authorizeQuery(client), "", nil, nil)
		require.Equal(t, http.StatusSeeOther, status, string(raw))
	})
	t.Run("all addresses together", func(t *testing.T) {
		t.Parallel()
		e, _ := limitEnv(t, LimitsConfig{OAuthAuthorizeAll: ratelimit.Limit{N: 4, Per: time.Minute}})
		client := e.newClient()
		// A flood from many addresses, each well within its own budget.
		for i, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
			status, _, raw := e.sendVia(browserFrom(ip), http.MethodGet, authorizeQuery(client), "", nil, nil)
			require.Equal(t, http.StatusSeeOther, status, "request %d: %s", i, raw)
		}
		status, hdr, raw := e.sendVia(browserFrom("127.0.0.6"), http.MethodGet, authorizeQuery(client), "", nil, nil)
		requireLimitedPage(t, status, hdr, raw, "15", "from all addresses together")
		require.Equal(t, 4, e.rows("oauth_requests"))
		require.Len(t, e.crossings(limitOAuthAuthorizeAll), 1)
	})
}

func TestPasskeyOptionsAreLimitedPerAddressAndInAll(t *testing.T) {
	t.Parallel()
	t.Run("per address, sign-in and enrollment alike", func(t *testing.T) {
		t.Parallel()
		e, clock := limitEnv(t, LimitsConfig{PasskeyOptionsPerIP: ratelimit.Limit{N: 3, Per: time.Minute}})
		attacker, other := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
		for range 3 {
			status, _, raw := e.sendVia(attacker, http.MethodPost, "/v1/auth/passkey/options", "", nil, nil)
			require.Equal(t, http.StatusOK, status, string(raw))
		}
		status, hdr, raw := e.sendVia(attacker, http.MethodPost, "/v1/auth/passkey/options", "", nil, nil)
		requireLimited(t, status, hdr, raw, "20")
		require.Contains(t, string(raw), "from this address")
		// An enrollment-only session's options are ceremonies too.
		enrolling := bearer(e.signIn(e.boot.UserID, false).Token)
		status, hdr, raw = e.sendVia(attacker, http.MethodPost, "/v1/me/passkeys/options", "", enrolling, nil)
		requireLimited(t, status, hdr, raw, "20")
		require.Equal(t, 3, e.rows("webauthn_ceremonies"), "nothing refused was stored")

		status, _, raw = e.sendVia(other, http.MethodPost, "/v1/me/passkeys/options", "", enrolling, nil)
		require.Equal(t, http.StatusOK, status, string(raw))
		require.Len(t, e.crossings(limitPasskeyOptionsPerIP), 1)
		clock.Advance(20 * time.Second)
		status, _, raw = e.sendVia(attacker, http.MethodPost, "/v1/auth/passkey/options", "", nil, nil)
		require.Equal(t, http.StatusOK, status, string(raw))
	})
	t.Run("all addresses together", func(t *testing.T) {
		t.Parallel()
		e, _ := limitEnv(t, LimitsConfig{PasskeyOptionsAll: ratelimit.Limit{N: 3, Per: time.Minute}})
		for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
			status, _, raw := e.sendVia(clientFrom(ip), http.MethodPost, "/v1/auth/passkey/options", "", nil, nil)
			require.Equal(t, http.StatusOK, status, string(raw))
		}
		status, hdr, raw := e.sendVia(clientFrom("127.0.0.5"), http.MethodPost, "/v1/auth/passkey/options", "", nil, nil)
		requireLimited(t, status, hdr, raw, "20")
		require.Contains(t, string(raw), "from all addresses together")
		require.Equal(t, 3, e.rows("webauthn_ceremonies"))
		require.Len(t, e.crossings(limitPasskeyOptionsAll), 1)
	})
}

// writeMark is a mark for writtenSince: every transaction that writes after
// it gets a transaction id at or past it.
func (e *testEnv) writeMark() int64 {
	e.t.Helper()
	var xid int64
	require.NoError(e.t, e.st.Pool.QueryRow(context.Background(),
		`SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint`).Scan(&xid))
	return xid
}

// writtenSince counts the rows, in every table of the test's database, that
// a transaction inserted or updated since mark.
func (e *testEnv) writtenSince(mark int64) int {
	e.t.Helper()
	ctx := context.Background()
	rows, err := e.st.Pool.Query(ctx, `SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables`)
	require.NoError(e.t, err)
	var tables []string
	for rows.Next() {
		var t string
		require.NoError(e.t, rows.Scan(&t))
		tables = append(tables, t)
	}
	require.NoError(e.t, rows.Err())
	require.NotEmpty(e.t, tables)
	n := 0
	for _, t := range tables {
		var c int
		// A row's xmin is the 32-bit id of the transaction that wrote it; a
		// test cluster never wraps around.
		require.NoError(e.t, e.st.Pool.QueryRow(ctx, `SELECT count(*) FROM `+t+
			` WHERE xmin::text::bigint >= $1 % 4294967296`, mark).Scan(&c))
		n += c
	}
	return n
}

// TestPasskeySignInStartsWriteOnlyTheirCeremony: one mechanism limits sign-in
// starts, in memory. With the server's defaults otherwise, an admitted start
// writes its ceremony and nothing else (no PostgreSQL counter), and past the
// per-address budget the first refusal writes one audit row of the crossing
// and later ones write nothing, however many come.
func TestPasskeySignInStartsWriteOnlyTheirCeremony(t *testing.T) {
	t.Parallel()
	st, boot := bootstrappedStore(t)
	clock := newTestClock()
	cfg := Config{Addr: "127.0.0.1:0", AllowPrivateWebhooks: true,
		Limits: LimitsConfig{PasskeyOptionsPerIP: ratelimit.Limit{N: 3, Per: time.Minute}}}
	e := startEnvWith(t, cfg, Deps{Store: st, Now: clock.Now}, boot)
	attacker := clientFrom("127.0.0.2")
	start := func() (int, http.Header, []byte) {
		return e.sendVia(attacker, http.MethodPost, "/v1/auth/passkey/options", "", nil, nil)
	}

	mark := e.writeMark()
	for range 3 {
		status, _, raw := start()
		require.Equal(t, http.StatusOK, status, string(raw))
	}
	require.Equal(t, 3, e.rows("webauthn_ceremonies"))
	require.Zero(t, e.rows("auth_limits"), "no PostgreSQL counter of starts")
	require.Equal(t, 3, e.writtenSince(mark), "each start writes its ceremony and nothing else")

	mark = e.writeMark()
	status, hdr, raw := start()
	requireLimited(t, status, hdr, raw, "20")
	require.Contains(t, string(raw), "from this address")
	require.Len(t, e.crossings(limitPasskeyOptionsPerIP), 1)
	require.Equal(t, 1, e.writtenSince(mark), "the crossing is audited once")

	mark = e.writeMark()
	for range 20 {
		status, hdr, raw := start()
		requireLimited(t, status, hdr, raw, "20")
	}
	require.Zero(t, e.writtenSince(mark), "a flood of refused starts writes nothing")
	require.Equal(t, 3, e.rows("webauthn_ceremonies"))

	clock.Advance(20 * time.Second)
	status, _, raw = start()
	require.Equal(t, http.StatusOK, status, string(raw))
}

// TestStoredWritesAreSwept: the rows the limited endpoints store go once
// they expire — authorization requests by the OAuth sweep an hour after,
// ceremonies by the sign-in sweep — and live ones stay.
func TestStoredWritesAreSwept(t *testing.T) {
	t.Parallel()
	e, clock := limitEnv(t, LimitsConfig{})
	client := e.newClient()
	c := browserFrom("127.0.0.2")
	authorize := func() {
		status, _, raw := e.sendVia(c, http.MethodGet, authorizeQuery(client), "", nil, nil)
		require.Equal(t, http.StatusSeeOther, status, string(raw))
	}
	options := func() {
		status, _, raw := e.sendVia(c, http.MethodPost, "/v1/auth/passkey/options", "", nil, nil)
		require.Equal(t, http.StatusOK, status, string(raw))
	}
	authorize()
	options()
	// 10 minutes to consent, swept an hour after; ceremonies live 5 minutes.
	clock.Advance(10*time.Minute + time.Hour + time.Second)
	authorize()
	options()
	require.Equal(t, 2, e.rows("oauth_requests"))
	require.Equal(t, 2, e.rows("webauthn_ceremonies"))
	require.NoError(t, e.srv.oauth.Sweep(context.Background()))
	e.srv.sweepSignIn(context.Background())
	require.Equal(t, 1, e.rows("oauth_requests"), "the expired request is gone, the live one stays")
	require.Equal(t, 1, e.rows("webauthn_ceremonies"), "the expired ceremony is gone, the live one stays")
}
