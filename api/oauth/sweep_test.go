package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
	"oakallow/store"
)

func TestMain(m *testing.M) { devtest.Main(m) }

const day = 24 * time.Hour

// sweepEnv is an authorization server on its own database, with a clock
// the test sets, and a person in an org to hold grants.
type sweepEnv struct {
	t          *testing.T
	st         *store.Store
	srv        *Server
	now        time.Time
	user, team string
	org        string
}

func newSweepEnv(t *testing.T) *sweepEnv {
	t.Helper()
	ctx := context.Background()
	e := &sweepEnv{t: t, st: devtest.Store(t), now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		user: store.NewID("usr"), team: store.NewID("team"), org: store.NewID("org")}
	srv, err := New(Config{Issuer: "http://127.0.0.1:8080"}, Deps{Store: e.st, Now: func() time.Time { return e.now }})
	require.NoError(t, err)
	e.srv = srv
	joined := e.now.AddDate(-1, 0, 0)
	require.NoError(t, e.st.CreateTeam(ctx, store.CreateTeamParams{ID: e.team, Name: "Acme", CreatedAt: joined}))
	require.NoError(t, e.st.CreateUser(ctx, store.CreateUserParams{ID: e.user, Email: "owner@example.com", Name: "Owner", CreatedAt: joined}))
	require.NoError(t, e.st.CreateMembership(ctx, store.CreateMembershipParams{TeamID: e.team, UserID: e.user, Role: "owner", CreatedAt: joined}))
	require.NoError(t, e.st.CreateOrg(ctx, store.CreateOrgParams{ID: e.org, TeamID: e.team, Name: "acme-app", CreatedAt: joined}))
	return e
}

// client registers a client age ago.
func (e *sweepEnv) client(age time.Duration) string {
	e.t.Helper()
	id := store.NewID("cli")
	require.NoError(e.t, e.st.CreateOAuthClient(context.Background(), store.CreateOAuthClientParams{ID: id, Name: "agent",
		RedirectUris: []string{"http://127.0.0.1/cb"}, ClientIp: "192.0.2.1", CreatedAt: e.now.Add(-age)}))
	return id
}

// grant records a consent to client age ago, revoked revokedAgo ago (0:
// standing), with a refresh token that has not expired; it returns the
// grant's id.
func (e *sweepEnv) grant(client string, age, revokedAgo time.Duration) string {
	e.t.Helper()
	ctx := context.Background()
	id := store.NewID("grt")
	expires := e.now.Add(365 * day)
	require.NoError(e.t, e.st.CreateOAuthGrant(ctx, store.CreateOAuthGrantParams{ID: id, ClientID: client, UserID: e.user,
		OrgID: e.org, TeamID: e.team, Scopes: []string{ScopeRead}, Resource: "http://127.0.0.1:8080/mcp", CreatedAt: e.now.Add(-age),
		ExpiresAt: expires}))
	_, h := newSecret(refreshPrefix)
	require.NoError(e.t, e.st.CreateOAuthToken(ctx, store.CreateOAuthTokenParams{TokenHash: h, GrantID: id, Kind: "refresh",
		Scopes: []string{ScopeRead}, CreatedAt: e.now.Add(-age), ExpiresAt: expires}))
	if revokedAgo > 0 {
		at := e.now.Add(-revokedAgo)
		_, err := e.st.RevokeOAuthGrant(ctx, store.RevokeOAuthGrantParams{Now: &at, Reason: "revoked_by_admin", ID: id})
		require.NoError(e.t, err)
	}
	return id
}

// testVerifier is the PKCE code verifier of every request the tests
// start, and testChallenge its S256 challenge.
var (
	testVerifier  = strings.Repeat("v", 43)
	testChallenge = func() string {
		sum := sha256.Sum256([]byte(testVerifier))
		return base64.RawURLEncoding.EncodeToString(sum[:])
	}()
)

// request starts an authorization request for client that expires at
// now+expiresIn (negative: already expired); it returns its id.
func (e *sweepEnv) request(client string, expiresIn time.Duration) string {
	e.t.Helper()
	id := store.NewID("oar")
	require.NoError(e.t, e.st.CreateOAuthRequest(context.Background(), store.CreateOAuthRequestParams{ID: id,
		ClientID: client, RedirectUri: "http://127.0.0.1/cb", CodeChallenge: testChallenge,
		Scopes: []string{ScopeRead}, Resource: e.srv.Config().Resource(), CreatedAt: e.now.Add(expiresIn - 10*time.Minute),
		ExpiresAt: e.now.Add(expiresIn)}))
	return id
}

// consent has the person approve authorization request req on the consent
// page, as the dashboard does, and returns the code.
func (e *sweepEnv) consent(req string) string {
	e.t.Helper()
	ctx := context.Background()
	cr, err := e.srv.Consent(ctx, req, e.user, "ses_test")
	require.NoError(e.t, err)
	to, err := e.srv.Decide(ctx, Decision{RequestID: req, UserID: e.user, SessionID: "ses_test", CSRF: cr.CSRF,
		Approve: true, OrgID: e.org, Scopes: []string{ScopeRead}})
	require.NoError(e.t, err)
	u, err := url.Parse(to)
	require.NoError(e.t, err)
	require.NotEmpty(e.t, u.Query().Get("code"), to)
	return u.Query().Get("code")
}

// exchange trades code for tokens at the token endpoint as client; it
// returns them and their grant's id.
func (e *sweepEnv) exchange(client, code string) (tokenAnswer, string) {
	e.t.Helper()
	c, err := e.st.GetOAuthClient(context.Background(), client)
	require.NoError(e.t, err)
	tok, terr := e.srv.exchangeCode(context.Background(), c, map[string]string{"code": code, "code_verifier": testVerifier})
	require.Nil(e.t, terr)
	return tok, e.grantOf(tok.RefreshToken)
}

// connect is a person authorizing client now, through the consent page and
// the token endpoint: its tokens and grant.
func (e *sweepEnv) connect(client string) (tokenAnswer, string) {
	e.t.Helper()
	return e.exchange(client, e.consent(e.request(client, 10*time.Minute)))
}

// refresh rotates refresh token rt of client at the token endpoint.
func (e *sweepEnv) refresh(client, rt string) (tokenAnswer, *tokenError) {
	e.t.Helper()
	c, err := e.st.GetOAuthClient(context.Background(), client)
	require.NoError(e.t, err)
	return e.srv.refresh(context.Background(), c, map[string]string{"refresh_token": rt})
}

func (e *sweepEnv) mustRefresh(client, rt string) tokenAnswer {
	e.t.Helper()
	tok, terr := e.refresh(client, rt)
	require.Nil(e.t, terr)
	return tok
}

func (e *sweepEnv) grantOf(token string) string {
	e.t.Helper()
	var id string
	require.NoError(e.t, e.st.Pool.QueryRow(context.Background(), "SELECT grant_id FROM oauth_tokens WHERE token_hash = $1",
		hashOf(token)).Scan(&id))
	return id
}

func (e *sweepEnv) exists(table, column, id string) bool {
	e.t.Helper()
	return e.count("SELECT count(*) FROM "+table+" WHERE "+column+" = $1", id) > 0
}

func (e *sweepEnv) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.st.Pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

func (e *sweepEnv) exec(query string, args ...any) {
	e.t.Helper()
	_, err := e.st.Pool.Exec(context.Background(), query, args...)
	require.NoError(e.t, err)
}

// TestSweepDeletesUnusedClients: a registration nobody consented to within
// a day is deleted, and so is one whose every grant was revoked over 30
// days ago (with its grants and tokens); a young one, a connected one (a
// standing grant), one revoked recently and one with an authorization
// request still kept are left alone, tokens included. A grant revoked over
// 30 days ago goes even when its client stays for another grant.
func TestSweepDeletesUnusedClients(t *testing.T) {
	t.Parallel()
	e := newSweepEnv(t)

	oldUnused := e.client(25 * time.Hour)
	young := e.client(23 * time.Hour)
	connected := e.client(90 * day)
	connectedGrant := e.grant(connected, 89*day, 0)
	longRevoked := e.client(90 * day)
	longRevokedGrant := e.grant(longRevoked, 80*day, 31*day)
	recentlyRevoked := e.client(90 * day)
	recentlyRevokedGrant := e.grant(recentlyRevoked, 80*day, 29*day)
	mixed := e.client(90 * day)
	mixedRevoked := e.grant(mixed, 80*day, 31*day)
	mixedStanding := e.grant(mixed, 70*day, 0)
	consenting := e.client(2 * day)
	e.request(consenting, -30*time.Minute) // expired, not yet swept: the consent may still be being decided
	abandoned := e.client(2 * day)
	e.request(abandoned, -2*time.Hour) // swept in the same pass, then its client

	require.NoError(t, e.srv.Sweep(context.Background()))

	for name, id := range map[string]string{"old unused": oldUnused, "all grants revoked a month ago": longRevoked, "abandoned request": abandoned} {
		require.False(t, e.exists("oauth_clients", "id", id), "%s: swept", name)
	}
	require.False(t, e.exists("oauth_grants", "id", longRevokedGrant), "a deleted client's grants go with it")
	require.False(t, e.exists("oauth_tokens", "grant_id", longRevokedGrant), "and their tokens")
	require.False(t, e.exists("oauth_grants", "id", mixedRevoked), "a grant revoked a month ago goes on its own")
	require.False(t, e.exists("oauth_tokens", "grant_id", mixedRevoked))
	for name, id := range map[string]string{"young": young, "connected": connected, "revoked recently": recentlyRevoked,
		"one grant standing": mixed, "request pending": consenting} {
		require.True(t, e.exists("oauth_clients", "id", id), "%s: kept", name)
	}
	for _, g := range []string{connectedGrant, recentlyRevokedGrant, mixedStanding} {
		require.True(t, e.exists("oauth_grants", "id", g))
		require.True(t, e.exists("oauth_tokens", "grant_id", g), "a kept client's tokens are untouched")
	}

	// A day later the young one is as old as the first was, and goes too.
	e.now = e.now.Add(day)
	require.NoError(t, e.srv.Sweep(context.Background()))
	require.False(t, e.exists("oauth_clients", "id", young))
	require.True(t, e.exists("oauth_clients", "id", connected))
}

// TestSweepDeletesGrantsThatExpired: a grant whose last refresh token
// expired over 30 days ago — never revoked, so never swept before, and not
// among the org's connected clients — is deleted, and its client with it
// when that was its only grant. One that expired 29 days ago is kept (until
// it is 30), and one that can still be refreshed is never touched however
// old it is: it refreshes after the sweep as before. The tokens are issued
// and rotated through the token endpoint, which records how long each grant
// works.
func TestSweepDeletesGrantsThatExpired(t *testing.T) {
	t.Parallel()
	e := newSweepEnv(t)
	now := e.now
	at := func(ago time.Duration) { e.now = now.Add(-ago) }

	at(100 * day) // RefreshTTL is 30 days: each token below works 30 days from its issue.
	expired, refreshable, recent, shared := e.client(0), e.client(0), e.client(0), e.client(0)
	expiredTok, expiredGrant := e.connect(expired)
	recentTok, recentGrant := e.connect(recent)
	refreshableTok, refreshableGrant := e.connect(refreshable)
	_, sharedOld := e.connect(shared) // never refreshed: ended 70 days ago
	unexchanged := e.client(0)
	at(75 * day)
	expiredTok = e.mustRefresh(expired, expiredTok.RefreshToken)
	recentTok = e.mustRefresh(recent, recentTok.RefreshToken)
	refreshableTok = e.mustRefresh(refreshable, refreshableTok.RefreshToken)
	at(61 * day)
	e.mustRefresh(expired, expiredTok.RefreshToken) // its last: expired 31 days ago
	at(59 * day)
	e.mustRefresh(recent, recentTok.RefreshToken) // its last: expired 29 days ago
	at(50 * day)
	refreshableTok = e.mustRefresh(refreshable, refreshableTok.RefreshToken)
	at(40 * day)
	e.consent(e.request(unexchanged, 10*time.Minute)) // its code is never exchanged
	at(25 * day)
	refreshableTok = e.mustRefresh(refreshable, refreshableTok.RefreshToken) // works 5 more days
	at(10 * day)
	_, sharedNew := e.connect(shared)
	at(0)
	unexchangedGrant := ""
	require.NoError(t, e.st.Pool.QueryRow(context.Background(), "SELECT id FROM oauth_grants WHERE client_id = $1", unexchanged).Scan(&unexchangedGrant))

	require.NoError(t, e.srv.Sweep(context.Background()))

	for name, id := range map[string]string{"expired 31 days ago": expiredGrant, "code never exchanged": unexchangedGrant,
		"one of two, expired 70 days ago": sharedOld} {
		require.False(t, e.exists("oauth_grants", "id", id), "%s: swept", name)
		require.False(t, e.exists("oauth_tokens", "grant_id", id), "%s: its tokens too", name)
	}
	require.False(t, e.exists("oauth_clients", "id", expired), "its only grant gone, the client goes in the same pass")
	require.False(t, e.exists("oauth_clients", "id", unexchanged))
	for name, id := range map[string]string{"expired 29 days ago": recentGrant, "refreshable": refreshableGrant, "connected 10 days ago": sharedNew} {
		require.True(t, e.exists("oauth_grants", "id", id), "%s: kept", name)
	}
	for _, id := range []string{recent, refreshable, shared} {
		require.True(t, e.exists("oauth_clients", "id", id))
	}
	// The refreshable grant still works: a refresh after the sweep, then a
	// sweep 29 days later (the new token works 30) leave it standing.
	refreshableTok = e.mustRefresh(refreshable, refreshableTok.RefreshToken)
	e.now = now.Add(29 * day)
	require.NoError(t, e.srv.Sweep(context.Background()))
	require.True(t, e.exists("oauth_grants", "id", refreshableGrant))
	e.mustRefresh(refreshable, refreshableTok.RefreshToken)

	// The one that expired 29 days ago at the first sweep is long gone now,
	// with its client.
	require.False(t, e.exists("oauth_grants", "id", recentGrant))
	require.False(t, e.exists("oauth_clients", "id", recent))
}

// TestSweepSparesAConsentInProgress: a person consents to a client whose
// only grant ended long ago while the sweep runs between their opening the
// consent page and their answer, and after their answer: the old grant
// goes, the client stays for the request, and the new grant works and is
// kept.
func TestSweepSparesAConsentInProgress(t *testing.T) {
	t.Parallel()
	e := newSweepEnv(t)
	now := e.now
	e.now = now.Add(-100 * day)
	client := e.client(0)
	_, old := e.connect(client)
	e.now = now

	req := e.request(client, 10*time.Minute)
	cr, err := e.srv.Consent(context.Background(), req, e.user, "ses_test")
	require.NoError(t, err)
	require.NoError(t, e.srv.Sweep(context.Background()))
	require.False(t, e.exists("oauth_grants", "id", old), "ended 70 days ago")
	require.True(t, e.exists("oauth_clients", "id", client), "a request is pending")

	to, err := e.srv.Decide(context.Background(), Decision{RequestID: req, UserID: e.user, SessionID: "ses_test", CSRF: cr.CSRF,
		Approve: true, OrgID: e.org, Scopes: []string{ScopeRead}})
	require.NoError(t, err)
	u, err := url.Parse(to)
	require.NoError(t, err)
	require.NoError(t, e.srv.Sweep(context.Background()))
	tok, grant := e.exchange(client, u.Query().Get("code"))
	require.NoError(t, e.srv.Sweep(context.Background()))
	e.now = now.Add(2 * time.Hour) // the request is swept, the client stays for its grant
	require.NoError(t, e.srv.Sweep(context.Background()))
	require.Zero(t, e.count("SELECT count(*) FROM oauth_requests WHERE client_id = $1", client))
	require.True(t, e.exists("oauth_grants", "id", grant))
	require.True(t, e.exists("oauth_clients", "id", client))
	e.mustRefresh(client, tok.RefreshToken)
}

// backlog is expired rows of every kind the sweep deletes, n each, the
// i-th expiring (or ending) i seconds after the first, and rows it must
// keep: a connected client with a working grant (whose requests, codes,
// tokens and ended grants make the backlog), tokens, a code and a request
// that expired under an hour ago, and a client registered under a day ago.
type backlog struct {
	live, grant, young string
}

func (e *sweepEnv) backlog(n int) backlog {
	e.t.Helper()
	b := backlog{live: e.client(90 * day), young: e.client(23 * time.Hour)}
	b.grant = e.grant(b.live, 80*day, 0)
	old := e.now.Add(-40 * day)
	e.exec(`INSERT INTO oauth_requests (id, client_id, redirect_uri, code_challenge, scopes, resource, created_at, expires_at)
		SELECT 'oar_sweep' || i, $1, 'http://127.0.0.1/cb', $2, '{mcp:read}', 'r', $3::timestamptz, $3 + i * interval '1 second'
		FROM generate_series(1, $4::int) i`, b.live, testChallenge, old, n)
	e.exec(`INSERT INTO oauth_codes (code_hash, grant_id, redirect_uri, code_challenge, created_at, expires_at)
		SELECT sha256(('code' || i)::bytea), $1, 'http://127.0.0.1/cb', $2, $3::timestamptz, $3 + i * interval '1 second'
		FROM generate_series(1, $4::int) i`, b.grant, testChallenge, old, n)
	e.exec(`INSERT INTO oauth_tokens (token_hash, grant_id, kind, scopes, created_at, expires_at)
		SELECT sha256(('token' || i)::bytea), $1, 'access', '{mcp:read}', $2::timestamptz, $2 + i * interval '1 second'
		FROM generate_series(1, $3::int) i`, b.grant, old, n)
	e.exec(`INSERT INTO oauth_grants (id, client_id, user_id, org_id, team_id, scopes, resource, created_at, expires_at)
		SELECT 'grt_sweep' || i, $1, $2, $3, $4, '{mcp:read}', 'r', $5::timestamptz, $5 + i * interval '1 second'
		FROM generate_series(1, $6::int) i`, b.live, e.user, e.org, e.team, old.Add(-30*day), n)
	e.exec(`INSERT INTO oauth_clients (id, redirect_uris, created_at)
		SELECT 'cli_sweep' || i, '{http://127.0.0.1/cb}', $1::timestamptz + i * interval '1 second' FROM generate_series(1, $2::int) i`, old, n)
	// Expired, but not an hour ago: kept.
	recent := e.now.Add(-30 * time.Minute)
	e.exec(`INSERT INTO oauth_requests (id, client_id, redirect_uri, code_challenge, scopes, resource, created_at, expires_at)
		VALUES ('oar_recent', $1, 'http://127.0.0.1/cb', $2, '{mcp:read}', 'r', $3, $3)`, b.live, testChallenge, recent)
	e.exec(`INSERT INTO oauth_codes (code_hash, grant_id, redirect_uri, code_challenge, created_at, expires_at)
		VALUES (sha256('recent'::bytea), $1, 'http://127.0.0.1/cb', $2, $3, $3)`, b.grant, testChallenge, recent)
	e.exec(`INSERT INTO oauth_tokens (token_hash, grant_id, kind, scopes, created_at, expires_at)
		VALUES (sha256('recent'::bytea), $1, 'access', '{mcp:read}', $2, $2)`, b.grant, recent)
	return b
}

// left is how many rows of the backlog are left in each table.
func (e *sweepEnv) left() map[string]int {
	e.t.Helper()
	out := map[string]int{}
	for table, prefix := range map[string]string{"oauth_requests": "id LIKE 'oar_sweep%'", "oauth_grants": "id LIKE 'grt_sweep%'",
		"oauth_clients": "id LIKE 'cli_sweep%'", "oauth_codes": "code_hash <> sha256('recent'::bytea)",
		"oauth_tokens": "kind = 'access' AND token_hash <> sha256('recent'::bytea)"} {
		out[table] = e.count("SELECT count(*) FROM " + table + " WHERE " + prefix)
	}
	return out
}

func (e *sweepEnv) requireKept(b backlog) {
	e.t.Helper()
	require.True(e.t, e.exists("oauth_clients", "id", b.live))
	require.True(e.t, e.exists("oauth_clients", "id", b.young))
	require.True(e.t, e.exists("oauth_grants", "id", b.grant))
	require.True(e.t, e.exists("oauth_requests", "id", "oar_recent"))
	require.Equal(e.t, 1, e.count("SELECT count(*) FROM oauth_codes WHERE code_hash = sha256('recent'::bytea)"))
	require.Equal(e.t, 2, e.count("SELECT count(*) FROM oauth_tokens WHERE grant_id = $1 AND (kind = 'refresh' OR token_hash = sha256('recent'::bytea))", b.grant))
}

func each(n int) map[string]int {
	return map[string]int{"oauth_requests": n, "oauth_codes": n, "oauth_tokens": n, "oauth_grants": n, "oauth_clients": n}
}

// TestSweepIsBatched: each of the sweep's deletes removes at most a batch
// per statement, the oldest first, and a pass runs at most its number of
// batches per table; the rest is left to the next pass. What is deleted is
// what was: rows expired over an hour ago, grants ended over 30 days ago,
// clients nobody uses.
func TestSweepIsBatched(t *testing.T) {
	t.Parallel()
	e := newSweepEnv(t)
	b := e.backlog(7)

	require.NoError(t, e.srv.sweep(context.Background(), sweepBounds{batch: 3, expired: 2, ended: 2}))
	require.Equal(t, each(1), e.left(), "two batches of three in each table")
	for _, q := range []string{"SELECT count(*) FROM oauth_requests WHERE id = 'oar_sweep7'",
		"SELECT count(*) FROM oauth_codes WHERE code_hash = sha256('code7'::bytea)",
		"SELECT count(*) FROM oauth_tokens WHERE token_hash = sha256('token7'::bytea)",
		"SELECT count(*) FROM oauth_grants WHERE id = 'grt_sweep7'", "SELECT count(*) FROM oauth_clients WHERE id = 'cli_sweep7'"} {
		require.Equal(t, 1, e.count(q), "the youngest waits for the next pass: %s", q)
	}
	e.requireKept(b)

	require.NoError(t, e.srv.sweep(context.Background(), sweepBounds{batch: 3, expired: 2, ended: 2}))
	require.Equal(t, each(0), e.left())
	e.requireKept(b)
}

// TestSweepPassIsBounded: one pass deletes at most expiredSweepBatches
// batches of sweepBatch tokens, however large the backlog; the next pass
// goes on from there.
func TestSweepPassIsBounded(t *testing.T) {
	t.Parallel()
	e := newSweepEnv(t)
	const pass = sweepBatch * expiredSweepBatches
	b := e.grant(e.client(90*day), 80*day, 0)
	e.exec(`INSERT INTO oauth_tokens (token_hash, grant_id, kind, scopes, created_at, expires_at)
		SELECT sha256(('token' || i)::bytea), $1, 'access', '{mcp:read}', $2::timestamptz, $2 + i * interval '1 second'
		FROM generate_series(1, $3::int) i`, b, e.now.Add(-40*day), pass+1)

	require.NoError(t, e.srv.Sweep(context.Background()))
	require.Equal(t, 1, e.count("SELECT count(*) FROM oauth_tokens WHERE kind = 'access'"))
	require.Equal(t, 1, e.count("SELECT count(*) FROM oauth_tokens WHERE token_hash = sha256(($1 || $2::int)::bytea)", "token", pass+1),
		"the last to expire is left to the next pass")
	require.NoError(t, e.srv.Sweep(context.Background()))
	require.Zero(t, e.count("SELECT count(*) FROM oauth_tokens WHERE kind = 'access'"))
	require.True(t, e.exists("oauth_tokens", "grant_id", b), "the refresh token works for another year")
}

// TestSweepOnReplicasAtOnce: a replica's sweep does not wait for the rows
// another replica is deleting (it leaves them to that one), in any table,
// and replicas sweeping the same backlog at once neither fail nor delete
// less than all of it.
func TestSweepOnReplicasAtOnce(t *testing.T) {
	t.Parallel()
	e := newSweepEnv(t)
	ctx := context.Background()
	b := e.backlog(31)

	// Another replica's sweep holds the oldest row of each table.
	tx, err := e.st.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	for _, q := range []string{"SELECT 1 FROM oauth_requests WHERE id = 'oar_sweep1' FOR UPDATE",
		"SELECT 1 FROM oauth_codes WHERE code_hash = sha256('code1'::bytea) FOR UPDATE",
		"SELECT 1 FROM oauth_tokens WHERE token_hash = sha256('token1'::bytea) FOR UPDATE",
		"SELECT 1 FROM oauth_grants WHERE id = 'grt_sweep1' FOR UPDATE", "SELECT 1 FROM oauth_clients WHERE id = 'cli_sweep1' FOR UPDATE"} {
		_, err = tx.Exec(ctx, q)
		require.NoError(t, err)
	}
	hang, cancel := context.WithTimeout(ctx, 30*time.Second) // fails on a hang, not on slowness
	defer cancel()
	require.NoError(t, e.srv.sweep(hang, sweepBounds{batch: 5, expired: 2, ended: 2}), "the locked rows are skipped, not waited for")
	require.Equal(t, each(21), e.left(), "ten deleted from each table, the locked one kept")
	for _, q := range []string{"SELECT count(*) FROM oauth_requests WHERE id = 'oar_sweep1'",
		"SELECT count(*) FROM oauth_codes WHERE code_hash = sha256('code1'::bytea)",
		"SELECT count(*) FROM oauth_tokens WHERE token_hash = sha256('token1'::bytea)",
		"SELECT count(*) FROM oauth_grants WHERE id = 'grt_sweep1'", "SELECT count(*) FROM oauth_clients WHERE id = 'cli_sweep1'"} {
		require.Equal(t, 1, e.count(q), q)
	}
	require.NoError(t, tx.Rollback(ctx))

	const replicas = 4
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range replicas {
		wg.Go(func() {
			err := e.srv.sweep(hang, sweepBounds{batch: 5, expired: 100, ended: 100})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	require.Empty(t, errs)
	require.Equal(t, each(0), e.left())
	e.requireKept(b)
}
