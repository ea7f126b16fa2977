package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/store"
)

// person adds a user with a role in the env's team and returns the user id.
func (e *testEnv) person(role string) string {
	e.t.Helper()
	id := store.NewID("usr")
	ctx := context.Background()
	require.NoError(e.t, e.st.CreateUser(ctx, store.CreateUserParams{ID: id, Email: id + "@example.com", Name: role, CreatedAt: time.Now()}))
	require.NoError(e.t, e.st.CreateMembership(ctx, store.CreateMembershipParams{TeamID: e.boot.TeamID, UserID: id, Role: role, CreatedAt: time.Now()}))
	return id
}

// signIn starts a session for user as the sign-in endpoints do and returns it.
func (e *testEnv) signIn(user string, full bool) issuedSession {
	e.t.Helper()
	var is issuedSession
	method := sessionMethodEmailCode
	if full {
		method = sessionMethodPasskey
	}
	require.NoError(e.t, e.srv.inTx(context.Background(), func(q *store.Queries) error {
		var err error
		is, err = e.srv.startSession(context.Background(), q, newSession{UserID: user, Full: full, Method: method,
			Client: sessionClientApp})
		return err
	}))
	return is
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func cookie(tok string) map[string]string {
	return map[string]string{"Cookie": sessionCookiePlain + "=" + tok}
}

// asSession sends a request with the session token and extra headers.
func (e *testEnv) asSession(method, path string, hdr map[string]string, body any) (int, []byte) {
	e.t.Helper()
	status, _, raw := e.send(method, path, "", hdr, body)
	return status, raw
}

func with(h map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range h {
		out[a] = b
	}
	return out
}

func requireStatusCode(t *testing.T, status int, code string, gotStatus int, raw []byte) {
	t.Helper()
	require.Equal(t, status, gotStatus, string(raw))
	require.Equal(t, code, problemCode(t, raw), string(raw))
}

func TestSessionAuthenticatesByBearerAndCookie(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	is := e.signIn(e.boot.UserID, true)
	for name, hdr := range map[string]map[string]string{"bearer": bearer(is.Token), "cookie": cookie(is.Token)} {
		status, raw := e.asSession(http.MethodGet, "/v1/tools", hdr, nil)
		require.Equal(t, http.StatusOK, status, "%s: %s", name, raw)
		status, raw = e.asSession(http.MethodGet, "/v1/me", hdr, nil)
		require.Equal(t, http.StatusOK, status, "%s: %s", name, raw)
		var me Me
		require.NoError(t, json.Unmarshal(raw, &me))
		require.Equal(t, e.boot.UserID, me.UserID)
		require.Equal(t, sessionStateFull, me.State)
		require.Equal(t, []Membership{{TeamID: e.boot.TeamID, TeamName: "Acme", Role: RoleOwner, Since: me.Memberships[0].Since,
			Orgs: []OrgRef{{ID: e.boot.OrgID, Name: "acme-app"}}}}, me.Memberships)
	}

	// A write by a person is audited as that person.
	status, raw := e.asSession(http.MethodPost, "/v1/tenants", bearer(is.Token), map[string]any{"name": "globex"})
	require.Equal(t, http.StatusCreated, status, string(raw))
	var kind, actor string
	require.NoError(t, e.st.Pool.QueryRow(context.Background(),
		`SELECT actor_kind, actor_id FROM audit_events WHERE org_id = $1 AND kind = 'tenant.created'`, e.boot.OrgID).Scan(&kind, &actor))
	require.Equal(t, []string{PrincipalUser, e.boot.UserID}, []string{kind, actor})
}

func TestBadSessionsAreRefused(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	is := e.signIn(e.boot.UserID, true)
	forged := is.Token[:len(is.Token)-1] + map[bool]string{true: "A", false: "B"}[strings.HasSuffix(is.Token, "B")]
	for name, hdr := range map[string]map[string]string{
		"forged bearer":    bearer(forged),
		"short bearer":     bearer(sessionTokenPrefix + "abc"),
		"bad characters":   bearer(sessionTokenPrefix + strings.Repeat("!", 43)),
		"forged cookie":    cookie(forged),
		"garbage cookie":   cookie("%%%;;=="),
		"empty cookie":     cookie(""),
		"huge bearer":      bearer(sessionTokenPrefix + strings.Repeat("a", 10000)),
		"nothing at all":   {},
		"cookie of apikey": cookie(e.boot.ManagementKey),
	} {
		status, raw := e.asSession(http.MethodGet, "/v1/me", hdr, nil)
		require.Equal(t, http.StatusUnauthorized, status, "%s: %s", name, raw)
		require.Contains(t, []string{CodeInvalidSession, CodeInvalidKey}, problemCode(t, raw), name)
	}
	// Credentials of the wrong kind for the operation.
	status, raw := e.asSession(http.MethodPost, "/v1/permissions/check", bearer(is.Token), map[string]any{"tool": "x"})
	requireStatusCode(t, http.StatusForbidden, CodeWrongKeyTier, status, raw)
	e.expectProblem(http.StatusForbidden, CodeWrongKeyTier, http.MethodGet, "/v1/me", e.boot.ManagementKey, nil)
	e.expectProblem(http.StatusForbidden, CodeWrongKeyTier, http.MethodGet, "/v1/sessions", e.boot.StandardKey, nil)
	// An org id of absurd length is a bad request, not a database error.
	status, raw = e.asSession(http.MethodGet, "/v1/tools", with(bearer(is.Token), headerOrg, strings.Repeat("o", 100)), nil)
	requireStatusCode(t, http.StatusBadRequest, CodeBadRequest, status, raw)
}

func TestEnrollmentOnlySessionReachesOnlyEnrollment(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	is := e.signIn(e.boot.UserID, false)
	hdr := bearer(is.Token)
	for _, path := range []string{"/v1/tools", "/v1/sessions", "/v1/approvals", "/v1/settings"} {
		status, raw := e.asSession(http.MethodGet, path, hdr, nil)
		requireStatusCode(t, http.StatusForbidden, CodePasskeyRequired, status, raw)
	}
	status, raw := e.asSession(http.MethodPost, "/v1/tenants", hdr, map[string]any{"name": "nope"})
	requireStatusCode(t, http.StatusForbidden, CodePasskeyRequired, status, raw)
	require.Zero(t, e.count(`SELECT count(*) FROM tenants WHERE org_id = $1`))

	var me Me
	status, raw = e.asSession(http.MethodGet, "/v1/me", hdr, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.NoError(t, json.Unmarshal(raw, &me))
	require.Equal(t, sessionStateEnrollment, me.State)

	// After a passkey verified it the session is full, under a new token.
	var up issuedSession
	require.NoError(t, e.srv.inTx(context.Background(), func(q *store.Queries) error {
		var err error
		up, err = e.srv.upgradeSession(context.Background(), q, is.ID)
		return err
	}))
	require.Equal(t, is.ID, up.ID)
	require.NotEqual(t, is.Token, up.Token)
	status, raw = e.asSession(http.MethodGet, "/v1/me", hdr, nil)
	requireStatusCode(t, http.StatusUnauthorized, CodeInvalidSession, status, raw)
	status, raw = e.asSession(http.MethodGet, "/v1/tools", bearer(up.Token), nil)
	require.Equal(t, http.StatusOK, status, string(raw))

	// Sign-out ends it.
	status, raw = e.asSession(http.MethodPost, "/v1/auth/sign-out", bearer(up.Token), nil)
	require.Equal(t, http.StatusNoContent, status, string(raw))
	status, raw = e.asSession(http.MethodGet, "/v1/me", bearer(up.Token), nil)
	requireStatusCode(t, http.StatusUnauthorized, CodeInvalidSession, status, raw)
}

func TestSessionsExpireWhenIdleAndAtTheirEnd(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	st, boot := bootstrappedStore(t)
	cfg := testConfig()
	cfg.Sessions = SessionsConfig{Idle: time.Hour, Absolute: 4 * time.Hour, Enrollment: 30 * time.Minute}
	e := startEnvWith(t, cfg, Deps{Store: st, Now: clock.Now}, boot)

	idle := e.signIn(boot.UserID, true)
	busy := e.signIn(boot.UserID, true)
	enrolling := e.signIn(boot.UserID, false)
	use := func(is issuedSession) int {
		status, _ := e.asSession(http.MethodGet, "/v1/me", bearer(is.Token), nil)
		return status
	}
	for range 5 { // 5 × 40 min: busy stays in use, idle does not
		clock.Advance(40 * time.Minute)
		require.Equal(t, http.StatusOK, use(busy))
	}
	require.Equal(t, http.StatusUnauthorized, use(idle), "idle for 200 min")
	require.Equal(t, http.StatusUnauthorized, use(enrolling), "enrollment sessions end after 30 min")
	clock.Advance(41 * time.Minute)
	require.Equal(t, http.StatusUnauthorized, use(busy), "past the absolute end")
}

func TestSessionRevocation(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	other := startEnv(t, e.st, e.boot) // a second replica on the same database
	a, b, c := e.signIn(e.boot.UserID, true), e.signIn(e.boot.UserID, true), e.signIn(e.boot.UserID, true)
	someoneElse := e.signIn(e.person(RoleAdmin), true)

	var devices struct {
		Items []Device `json:"items"`
	}
	status, raw := e.asSession(http.MethodGet, "/v1/sessions", bearer(a.Token), nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.NoError(t, json.Unmarshal(raw, &devices))
	require.Len(t, devices.Items, 3)
	for _, d := range devices.Items {
		require.Equal(t, d.ID == a.ID, d.Current)
	}

	// Someone else's session cannot be revoked (and its existence is not told).
	status, raw = e.asSession(http.MethodDelete, "/v1/sessions/"+someoneElse.ID, bearer(a.Token), nil)
	requireStatusCode(t, http.StatusNotFound, CodeNotFound, status, raw)
	status, _ = e.asSession(http.MethodGet, "/v1/me", bearer(someoneElse.Token), nil)
	require.Equal(t, http.StatusOK, status)

	// Revoking b on one replica refuses it on the other at once.
	status, raw = e.asSession(http.MethodDelete, "/v1/sessions/"+b.ID, bearer(a.Token), nil)
	require.Equal(t, http.StatusNoContent, status, string(raw))
	status, raw = e.on(other.srv).asSession(http.MethodGet, "/v1/me", bearer(b.Token), nil)
	requireStatusCode(t, http.StatusUnauthorized, CodeInvalidSession, status, raw)
	// Revoking it again changes nothing.
	status, raw = e.asSession(http.MethodDelete, "/v1/sessions/"+b.ID, bearer(a.Token), nil)
	requireStatusCode(t, http.StatusNotFound, CodeNotFound, status, raw)

	// All but this one.
	var res struct{ Revoked int }
	status, raw = e.asSession(http.MethodPost, "/v1/sessions/revoke-others", bearer(a.Token), nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.NoError(t, json.Unmarshal(raw, &res))
	require.Equal(t, 1, res.Revoked)
	status, _ = e.asSession(http.MethodGet, "/v1/me", bearer(c.Token), nil)
	require.Equal(t, http.StatusUnauthorized, status)
	status, _ = e.asSession(http.MethodGet, "/v1/me", bearer(a.Token), nil)
	require.Equal(t, http.StatusOK, status)
	status, _ = e.asSession(http.MethodGet, "/v1/me", bearer(someoneElse.Token), nil)
	require.Equal(t, http.StatusOK, status, "another person's sessions are untouched")

	n := 0
	require.NoError(t, e.st.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM audit_events WHERE kind = 'session.revoked' AND actor_id = $1`, e.boot.UserID).Scan(&n))
	require.Equal(t, 2, n)
}

func TestSessionRolesAndOrgSelection(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	owner := e.signIn(e.boot.UserID, true)
	reviewer := e.signIn(e.person(RoleReviewer), true)
	admin := e.signIn(e.person(RoleAdmin), true)

	// One org: it is selected without a header.
	for _, is := range []issuedSession{owner, admin} {
		status, raw := e.asSession(http.MethodGet, "/v1/tools", bearer(is.Token), nil)
		require.Equal(t, http.StatusOK, status, string(raw))
	}
	// Reviewers see approvals, not the catalog, and change nothing.
	status, raw := e.asSession(http.MethodGet, "/v1/approvals", bearer(reviewer.Token), nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	status, raw = e.asSession(http.MethodGet, "/v1/tools", bearer(reviewer.Token), nil)
	requireStatusCode(t, http.StatusForbidden, CodeInsufficientRole, status, raw)
	status, raw = e.asSession(http.MethodPost, "/v1/tenants", bearer(reviewer.Token), map[string]any{"name": "x"})
	requireStatusCode(t, http.StatusForbidden, CodeInsufficientRole, status, raw)

	// A second org of the team: requests must name one.
	second := store.NewID("org")
	require.NoError(t, e.st.CreateOrg(context.Background(), store.CreateOrgParams{ID: second, TeamID: e.boot.TeamID, Name: "second", CreatedAt: time.Now()}))
	// Made in SQL, the new org reaches the session cache through its
	// notification (the orgs endpoint also drops the cache at once).
	require.Eventually(t, func() bool {
		status, raw = e.asSession(http.MethodGet, "/v1/tools", bearer(owner.Token), nil)
		return status != http.StatusOK
	}, hangDeadline, time.Millisecond)
	requireStatusCode(t, http.StatusBadRequest, CodeOrgRequired, status, raw)
	status, raw = e.asSession(http.MethodPost, "/v1/tenants", with(bearer(owner.Token), headerOrg, second), map[string]any{"name": "in-second"})
	require.Equal(t, http.StatusCreated, status, string(raw))
	n := 0
	require.NoError(t, e.st.Pool.QueryRow(context.Background(), `SELECT count(*) FROM tenants WHERE org_id = $1`, second).Scan(&n))
	require.Equal(t, 1, n)

	// Another team's org is refused, and so is a team one is not in.
	strangerBoot, err := Bootstrap(context.Background(), e.st, BootstrapInput{TeamName: "Stranger", OwnerEmail: "stranger@example.com",
		OrgName: "stranger-app"}, time.Now())
	require.NoError(t, err)
	stranger := &testEnv{t: t, st: e.st, srv: e.srv, base: e.base, boot: strangerBoot}
	for _, hdr := range []map[string]string{
		with(bearer(owner.Token), headerOrg, stranger.boot.OrgID),
		with(bearer(owner.Token), headerOrg, "org_doesnotexist"),
		with(bearer(owner.Token), headerTeam, stranger.boot.TeamID),
	} {
		status, raw = e.asSession(http.MethodGet, "/v1/tools", hdr, nil)
		requireStatusCode(t, http.StatusForbidden, CodeNotAMember, status, raw)
	}
	strangerSession := stranger.signIn(stranger.boot.UserID, true)
	status, raw = e.asSession(http.MethodGet, "/v1/tools", with(bearer(strangerSession.Token), headerOrg, e.boot.OrgID), nil)
	requireStatusCode(t, http.StatusForbidden, CodeNotAMember, status, raw)
}

func TestCrossOriginWritesWithCookiesAreRefused(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	is := e.signIn(e.boot.UserID, true)
	status, raw := e.asSession(http.MethodPost, "/v1/tenants",
		with(with(cookie(is.Token), "Origin", "https://evil.example"), "Sec-Fetch-Site", "cross-site"), map[string]any{"name": "csrf"})
	requireStatusCode(t, http.StatusForbidden, CodeCrossOrigin, status, raw)
	require.Zero(t, e.count(`SELECT count(*) FROM tenants WHERE org_id = $1`))
	status, raw = e.asSession(http.MethodPost, "/v1/tenants", with(cookie(is.Token), "Sec-Fetch-Site", "same-origin"), map[string]any{"name": "ok"})
	require.Equal(t, http.StatusCreated, status, string(raw))
}

func TestOpenAPIShowsWhoMayCallEachOperation(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	status, raw := e.do(http.MethodGet, "/openapi.json", "", nil)
	require.Equal(t, http.StatusOK, status)
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string                `json:"operationId"`
			Security    []map[string][]string `json:"security"`
		} `json:"paths"`
		Components struct {
			SecuritySchemes map[string]any `json:"securitySchemes"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	require.Contains(t, doc.Components.SecuritySchemes, securitySessionCookie)
	require.Contains(t, doc.Components.SecuritySchemes, securitySessionToken)
	sec := map[string][]map[string][]string{}
	for _, ops := range doc.Paths {
		for _, op := range ops {
			sec[op.OperationID] = op.Security
		}
	}
	require.Equal(t, []map[string][]string{{"apiKey": {"management"}}, {"session": {"owner", "admin"}}, {"sessionToken": {"owner", "admin"}}}, sec["create-tool"])
	require.Contains(t, doc.Components.SecuritySchemes, securityAgent)
	require.Equal(t, []map[string][]string{{"apiKey": {"standard"}}, {"agent": {}}}, sec["check-permission"])
	require.Equal(t, []map[string][]string{{"session": {"owner", "admin"}}, {"sessionToken": {"owner", "admin"}}}, sec["create-agent-identity"])
	require.Equal(t, []map[string][]string{{"session": {"owner", "admin", "reviewer", "enrollment"}}, {"sessionToken": {"owner", "admin", "reviewer", "enrollment"}}}, sec["sign-out"])
	require.Equal(t, []map[string][]string{{"apiKey": {"management", "standard"}}, {"agent": {}}, {"session": {"owner", "admin", "reviewer"}}, {"sessionToken": {"owner", "admin", "reviewer"}}}, sec["list-approvals"])
	var public []string
	for id, s := range sec {
		if len(s) == 0 {
			public = append(public, id)
		}
	}
	// The Stripe webhook authenticates by its signature (billing.go).
	require.ElementsMatch(t, []string{"healthz", "readyz", "slack-install-callback", "email-sign-in-start", "email-sign-in-verify",
		"passkey-sign-in-options", "passkey-sign-in", "recovery-sign-in", "stripe-webhook"}, public)
}
