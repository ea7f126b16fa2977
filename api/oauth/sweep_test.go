package oauth

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
	"oakallow/store"
)

func TestMain(m *testing.M) { devtest.Main(m) }

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
	require.NoError(t, e.st.CreateTeam(ctx, store.CreateTeamParams{ID: e.team, Name: "Acme", CreatedAt: e.now.AddDate(-1, 0, 0)}))
	require.NoError(t, e.st.CreateUser(ctx, store.CreateUserParams{ID: e.user, Email: "owner@example.com", Name: "Owner", CreatedAt: e.now.AddDate(-1, 0, 0)}))
	require.NoError(t, e.st.CreateOrg(ctx, store.CreateOrgParams{ID: e.org, TeamID: e.team, Name: "acme-app", CreatedAt: e.now.AddDate(-1, 0, 0)}))
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
	require.NoError(e.t, e.st.CreateOAuthGrant(ctx, store.CreateOAuthGrantParams{ID: id, ClientID: client, UserID: e.user,
		OrgID: e.org, TeamID: e.team, Scopes: []string{ScopeRead}, Resource: "http://127.0.0.1:8080/mcp", CreatedAt: e.now.Add(-age)}))
	_, h := newSecret(refreshPrefix)
	require.NoError(e.t, e.st.CreateOAuthToken(ctx, store.CreateOAuthTokenParams{TokenHash: h, GrantID: id, Kind: "refresh",
		Scopes: []string{ScopeRead}, CreatedAt: e.now.Add(-age), ExpiresAt: e.now.Add(365 * 24 * time.Hour)}))
	if revokedAgo > 0 {
		at := e.now.Add(-revokedAgo)
		_, err := e.st.RevokeOAuthGrant(ctx, store.RevokeOAuthGrantParams{Now: &at, Reason: "revoked_by_admin", ID: id})
		require.NoError(e.t, err)
	}
	return id
}

// request starts an authorization request for client that expires at
// now+expiresIn (negative: already expired).
func (e *sweepEnv) request(client string, expiresIn time.Duration) {
	e.t.Helper()
	require.NoError(e.t, e.st.CreateOAuthRequest(context.Background(), store.CreateOAuthRequestParams{ID: store.NewID("oar"),
		ClientID: client, RedirectUri: "http://127.0.0.1/cb", CodeChallenge: strings.Repeat("a", 43),
		Scopes: []string{ScopeRead}, Resource: "http://127.0.0.1:8080/mcp", CreatedAt: e.now.Add(expiresIn - 10*time.Minute),
		ExpiresAt: e.now.Add(expiresIn)}))
}

func (e *sweepEnv) exists(table, column, id string) bool {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.st.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table+" WHERE "+column+" = $1", id).Scan(&n))
	return n > 0
}

func (e *sweepEnv) clients() int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.st.Pool.QueryRow(context.Background(), "SELECT count(*) FROM oauth_clients").Scan(&n))
	return n
}

// TestSweepDeletesUnusedClients: a registration nobody consented to within
// a day is deleted, and so is one whose every grant was revoked over 30
// days ago (with its grants and tokens); a young one, a connected one (a
// standing grant), one revoked recently and one with an authorization
// request still kept are left alone, tokens included.
func TestSweepDeletesUnusedClients(t *testing.T) {
	t.Parallel()
	e := newSweepEnv(t)
	day := 24 * time.Hour

	oldUnused := e.client(25 * time.Hour)
	young := e.client(23 * time.Hour)
	connected := e.client(90 * day)
	connectedGrant := e.grant(connected, 89*day, 0)
	longRevoked := e.client(90 * day)
	longRevokedGrant := e.grant(longRevoked, 80*day, 31*day)
	recentlyRevoked := e.client(90 * day)
	recentlyRevokedGrant := e.grant(recentlyRevoked, 80*day, 29*day)
	mixed := e.client(90 * day)
	e.grant(mixed, 80*day, 31*day)
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

// TestSweepClientsIsBatched: each statement deletes at most a batch, the
// oldest first, and a pass runs at most its number of batches; the rest is
// left to the next pass.
func TestSweepClientsIsBatched(t *testing.T) {
	t.Parallel()
	e := newSweepEnv(t)
	ids := make([]string, 7)
	for i := range ids {
		ids[i] = e.client(time.Duration(100-i) * time.Hour) // ids[0] is the oldest
	}

	n, err := e.srv.sweepClients(context.Background(), 3, 2)
	require.NoError(t, err)
	require.Equal(t, int64(6), n, "two batches of three")
	require.Equal(t, 1, e.clients())
	require.True(t, e.exists("oauth_clients", "id", ids[6]), "the youngest waits for the next pass")

	n, err = e.srv.sweepClients(context.Background(), 3, 2)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	require.Zero(t, e.clients())

	d, err := e.st.SweepOAuthClients(context.Background(), store.SweepOAuthClientsParams{UnusedBefore: e.now,
		RevokedBefore: e.now, RowLimit: 3})
	require.NoError(t, err)
	require.Zero(t, d)
}

// TestSweepClientsOnReplicasAtOnce: a replica's sweep does not wait for
// the rows another replica is deleting (it leaves them to that one), and
// replicas sweeping the same backlog at once neither fail nor delete less
// than all of it.
func TestSweepClientsOnReplicasAtOnce(t *testing.T) {
	t.Parallel()
	e := newSweepEnv(t)
	ctx := context.Background()
	first := e.client(72 * time.Hour)
	for range 60 {
		e.client(48 * time.Hour)
	}

	// Another replica's sweep holds the oldest client.
	tx, err := e.st.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, "SELECT id FROM oauth_clients WHERE id = $1 FOR UPDATE", first)
	require.NoError(t, err)
	hang, cancel := context.WithTimeout(ctx, 30*time.Second) // fails on a hang, not on slowness
	defer cancel()
	n, err := e.srv.sweepClients(hang, 5, 2)
	require.NoError(t, err, "the locked row is skipped, not waited for")
	require.Equal(t, int64(10), n)
	require.True(t, e.exists("oauth_clients", "id", first))
	require.NoError(t, tx.Rollback(ctx))

	const replicas = 4
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
		errs  []error
	)
	for range replicas {
		wg.Go(func() {
			n, err := e.srv.sweepClients(hang, 5, 100)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	require.Empty(t, errs)
	require.Equal(t, int64(51), total)
	require.Zero(t, e.clients())
}
