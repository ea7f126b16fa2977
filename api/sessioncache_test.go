package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/store"
)

// waitSessionCache waits until the server's change listener is connected,
// so its session cache serves (and is told of changes).
func (e *testEnv) waitSessionCache() {
	e.t.Helper()
	require.Eventually(e.t, e.srv.sessions.live.Load, hangDeadline, 5*time.Millisecond)
}

// cached reports whether the server answers the token (with no org or team
// named) from its session cache.
func (e *testEnv) cached(token string) bool {
	k := sessionKey{hash: sha256.Sum256([]byte(token))}
	return e.srv.sessions.get(k, e.srv.now().UnixNano(), e.srv.cfg.Sessions.Idle) != nil
}

// refusedWithin polls the server with the session until it answers status
// with code, and logs how long that took after since (issue 9 asks for 1 s
// on every replica; the deadline only catches a hang).
func (e *testEnv) refusedWithin(since time.Time, what, method, path, token string, status int, code string) {
	e.t.Helper()
	var raw []byte
	require.Eventually(e.t, func() bool {
		var got int
		got, raw = e.asSession(method, path, bearer(token), nil)
		return got == status
	}, hangDeadline, time.Millisecond, "%s: never refused", what)
	require.Equal(e.t, code, problemCode(e.t, raw), string(raw))
	e.t.Logf("%s: seen by the other replica after %s", what, time.Since(since))
}

func TestSessionCacheChangesReachOtherReplicas(t *testing.T) {
	t.Parallel()
	a := newTestEnv(t)
	// A second replica on the same database, whose entries would answer
	// for an hour: only the notifications end them sooner.
	cfg := testConfig()
	cfg.Sessions.CacheTTL = time.Hour
	b := a.on(startEnvWith(t, cfg, Deps{Store: a.st}, a.boot).srv)
	b.waitSessionCache()
	owner := a.signIn(a.boot.UserID, true)
	revoked := a.signIn(a.boot.UserID, true)
	bySQL := a.signIn(a.boot.UserID, true)
	adminID := a.person(RoleAdmin)
	admin := a.signIn(adminID, true)
	warm := func(is issuedSession, path string) {
		t.Helper()
		for range 2 {
			status, raw := b.asSession(http.MethodGet, path, bearer(is.Token), nil)
			require.Equal(t, http.StatusOK, status, string(raw))
		}
		require.True(t, b.cached(is.Token), "B answers the session from its cache")
	}

	// A revocation on A.
	warm(revoked, "/v1/tools")
	since := time.Now()
	status, raw := a.asSession(http.MethodDelete, "/v1/sessions/"+revoked.ID, bearer(owner.Token), nil)
	require.Equal(t, http.StatusNoContent, status, string(raw))
	b.refusedWithin(since, "revocation", http.MethodGet, "/v1/tools", revoked.Token, http.StatusUnauthorized, CodeInvalidSession)

	// A revocation no handler knows of (an operator's SQL): the trigger
	// announces it all the same.
	warm(bySQL, "/v1/tools")
	since = time.Now()
	_, err := a.st.Pool.Exec(context.Background(), `UPDATE sessions SET revoked_at = now() WHERE id = $1`, bySQL.ID)
	require.NoError(t, err)
	b.refusedWithin(since, "revocation in SQL", http.MethodGet, "/v1/tools", bySQL.Token, http.StatusUnauthorized, CodeInvalidSession)

	// A role change: the admin, made reviewer, loses the catalog.
	warm(admin, "/v1/tools")
	since = time.Now()
	sessionCall[Member](a, http.StatusOK, http.MethodPatch, "/v1/team/members/"+adminID, owner.Token, map[string]any{"role": RoleReviewer})
	b.refusedWithin(since, "role change", http.MethodGet, "/v1/tools", admin.Token, http.StatusForbidden, CodeInsufficientRole)

	// Removal from the team: nothing of the team's any more.
	warm(admin, "/v1/approvals")
	since = time.Now()
	sessionCall[struct{}](a, http.StatusNoContent, http.MethodDelete, "/v1/team/members/"+adminID, owner.Token, nil)
	b.refusedWithin(since, "membership removal", http.MethodGet, "/v1/approvals", admin.Token, http.StatusForbidden, CodeNotAMember)

	// Sign-out is refused at once on the replica that signed out.
	warm(owner, "/v1/tools")
	status, raw = b.asSession(http.MethodPost, "/v1/auth/sign-out", bearer(owner.Token), nil)
	require.Equal(t, http.StatusNoContent, status, string(raw))
	status, raw = b.asSession(http.MethodGet, "/v1/tools", bearer(owner.Token), nil)
	requireStatusCode(t, http.StatusUnauthorized, CodeInvalidSession, status, raw)
	a.refusedWithin(since, "sign-out", http.MethodGet, "/v1/me", owner.Token, http.StatusUnauthorized, CodeInvalidSession)
}

// A read of the session that began before an invalidation must not put the
// old answer back into the cache after it.
func TestSessionCacheDropsFillsThatRacedAnInvalidation(t *testing.T) {
	t.Parallel()
	c := newSessionCache(10, time.Minute)
	c.resume()
	now := time.Now().UnixNano()
	entry := func(user string) *sessionEntry {
		e := &sessionEntry{rows: []store.AuthenticateSessionRow{{ID: "ses_" + user, UserID: user}},
			expires: now + int64(time.Hour), fresh: now + int64(time.Minute)}
		e.seen.Store(now)
		return e
	}
	k := sessionKey{hash: [32]byte{1}}
	gen := c.generation()
	c.forgetUser("usr_other") // any invalidation: which user is not known before the read
	c.put(k, entry("usr_a"), gen, now)
	require.Nil(t, c.get(k, now, time.Hour))
	c.put(k, entry("usr_a"), c.generation(), now)
	require.NotNil(t, c.get(k, now, time.Hour))

	// Only that person's entries go.
	k2 := sessionKey{hash: [32]byte{2}}
	c.put(k2, entry("usr_b"), c.generation(), now)
	c.forgetUser("usr_a")
	require.Nil(t, c.get(k, now, time.Hour))
	require.NotNil(t, c.get(k2, now, time.Hour))

	// Nothing is served or stored while the listener is away.
	c.suspend()
	require.Nil(t, c.get(k2, now, time.Hour))
	c.put(k2, entry("usr_b"), c.generation(), now)
	require.Zero(t, c.len())
	c.resume()

	// An entry ends with its freshness, the session's end and its idle time.
	c.put(k2, entry("usr_b"), c.generation(), now)
	require.Nil(t, c.get(k2, now+int64(time.Minute), 2*time.Hour), "past its freshness")
	require.Nil(t, c.get(k2, now+int64(30*time.Second), 10*time.Second), "idle")
	short := entry("usr_b")
	short.expires = now + int64(time.Second)
	c.put(k2, short, c.generation(), now)
	require.Nil(t, c.get(k2, now+int64(time.Second), time.Hour), "past the session's end")

	// The cache stays within its bound.
	for i := range 50 {
		c.put(sessionKey{hash: [32]byte{byte(i + 10)}}, entry("usr_c"), c.generation(), now)
	}
	require.Equal(t, 10, c.len())
	// "all" (and anything unknown) forgets everything.
	c.apply("all")
	require.Zero(t, c.len())
}

// Uses answered from the cache are written in batches, not per request,
// and still end up in the device list.
func TestSessionCacheRecordsLastUseInBatches(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	st, boot := bootstrappedStore(t)
	e := startEnvWith(t, testConfig(), Deps{Store: st, Now: clock.Now}, boot)
	e.waitSessionCache()
	is := e.signIn(boot.UserID, true)
	lastSeen := func() time.Time {
		var at time.Time
		require.NoError(t, st.Pool.QueryRow(context.Background(), `SELECT last_seen_at FROM sessions WHERE id = $1`, is.ID).Scan(&at))
		return at
	}
	signedIn := lastSeen()
	use := func(ua string) {
		t.Helper()
		status, raw := e.asSession(http.MethodGet, "/v1/tools", with(bearer(is.Token), "User-Agent", ua), nil)
		require.Equal(t, http.StatusOK, status, string(raw))
	}

	// 50 s later: read from the database (first use here), not yet worth a write.
	clock.Advance(50 * time.Second)
	use("first")
	require.True(t, e.cached(is.Token))
	require.Equal(t, signedIn, lastSeen())
	// Past a minute, answered from the cache: the use is written by the
	// next flush, with the device of the first use since the write came due.
	clock.Advance(15 * time.Second)
	for range 20 {
		use("phone")
		clock.Advance(100 * time.Millisecond)
		require.True(t, e.cached(is.Token))
	}
	last := clock.Now().Add(-100 * time.Millisecond)
	e.srv.sessions.flushUse(context.Background(), st, e.srv.log, clock.Now().UnixNano())
	require.WithinDuration(t, last, lastSeen(), time.Second)
	require.True(t, lastSeen().After(signedIn.Add(time.Minute)))
	var devices struct{ Items []Device }
	status, raw := e.asSession(http.MethodGet, "/v1/sessions", bearer(is.Token), nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.NoError(t, json.Unmarshal(raw, &devices))
	require.Len(t, devices.Items, 1)
	require.Equal(t, "phone", devices.Items[0].UserAgent)
}

func TestCookieValue(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct{ header, want string }{
		"alone":           {"oakallow_session=abc", "abc"},
		"among others":    {"theme=dark; oakallow_session=abc; x=y", "abc"},
		"no spaces":       {"theme=dark;oakallow_session=abc", "abc"},
		"quoted":          {`oakallow_session="abc"`, "abc"},
		"first of two":    {"oakallow_session=abc; oakallow_session=def", "abc"},
		"longer name":     {"oakallow_session_old=abc", ""},
		"name as a value": {"x=oakallow_session=abc", ""},
		"missing":         {"theme=dark", ""},
		"empty header":    {"", ""},
		"empty value":     {"oakallow_session=", ""},
	} {
		require.Equal(t, c.want, cookieValue(c.header, sessionCookiePlain), name)
	}
}
