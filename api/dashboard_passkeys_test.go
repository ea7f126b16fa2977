package api

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/api/passkeys"
	"oakallow/api/passkeys/passkeystest"
	"oakallow/store"
)

// The dashboard's passkey, recovery and Security forms over the real
// server, with passkeystest's authenticator standing in for the browser's
// (the chromedp test drives the real one).

// browserSession starts an enrollment-only session of a browser (its token
// travels as a cookie, and an upgrade sets a new cookie).
func (e *testEnv) browserSession(user string) string {
	e.t.Helper()
	var is issuedSession
	require.NoError(e.t, e.srv.inTx(e.t.Context(), func(q *store.Queries) error {
		var err error
		is, err = e.srv.startSession(e.t.Context(), q, newSession{UserID: user, Method: sessionMethodEmailCode,
			Client: sessionClientBrowser})
		return err
	}))
	return is.Token
}

// sessionSet is the session cookie an answer set, or "".
func sessionSet(h http.Header) string {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == sessionCookiePlain {
			return c.Value
		}
	}
	return ""
}

var recoveryCodeItem = regexp.MustCompile(`<li><code>([^<]+)</code></li>`)

// confirmForm is what webauthn.js puts into a form after answering the
// options of optionsPath (asked for with the browser session cookie
// session) with a: the fields prefix + ceremony_id and credential.
func (e *testEnv) confirmForm(a *passkeystest.Authenticator, session, optionsPath, prefix string) url.Values {
	e.t.Helper()
	opts := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, optionsPath, cookie(session), nil)
	resp, err := a.Get(opts.PublicKey)
	require.NoError(e.t, err)
	return url.Values{prefix + "ceremony_id": {opts.CeremonyID}, prefix + "credential": {string(resp)}}
}

func TestDashboardPasskeyForms(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	user := e.person(RoleReviewer)
	enrolling := e.browserSession(user)
	auth := passkeystest.New("localhost", testOrigin)

	// Without the authenticator's answer (no JavaScript), nothing is enrolled.
	status, _, body := e.form("/enroll", enrolling, url.Values{"name": {"laptop"}})
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
	require.Contains(t, body, "needs JavaScript")

	// The answer to the API's options enrolls the passkey: the page shows
	// ten recovery codes and the session cookie is now a full one.
	opts := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/me/passkeys/options", cookie(enrolling), nil)
	resp, err := auth.Create(opts.PublicKey)
	require.NoError(t, err)
	status, h, body := e.form("/enroll", enrolling, url.Values{"ceremony_id": {opts.CeremonyID}, "credential": {string(resp)}, "name": {"laptop"},
		"next": {"/approvals/REF-0000ABCD-EF12"}})
	require.Equal(t, http.StatusOK, status, body)
	codes := recoveryCodeItem.FindAllStringSubmatch(body, -1)
	require.Len(t, codes, 10, body)
	require.Contains(t, body, `<a class="button" href="/approvals/REF-0000ABCD-EF12">`, "after the codes, on to the page asked for")
	full := sessionSet(h)
	require.NotEmpty(t, full)
	status, _, _ = e.page("/approvals", full)
	require.Equal(t, http.StatusOK, status)

	// A forged answer does not sign in.
	status, _, body = e.form("/sign-in/passkey", "", url.Values{"ceremony_id": {"cer_nope"}, "credential": {`{"id":"x"}`}})
	require.Equal(t, http.StatusUnauthorized, status, body)
	require.Contains(t, body, `role="alert"`)

	// A passkey sign-in from an enrollment-only session replaces it.
	again := e.browserSession(user)
	sopts := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/auth/passkey/options", nil, nil)
	resp, err = auth.Get(sopts.PublicKey)
	require.NoError(t, err)
	status, h, body = e.form("/sign-in/passkey", again, url.Values{"ceremony_id": {sopts.CeremonyID}, "credential": {string(resp)},
		"next": {"/approvals/REF-0000ABCD-EF12"}})
	require.Equal(t, http.StatusSeeOther, status, body)
	require.Equal(t, "/approvals/REF-0000ABCD-EF12", h.Get("Location"))
	require.NotEmpty(t, sessionSet(h))
	status, _, _ = e.page("/enroll", again)
	require.Equal(t, http.StatusSeeOther, status, "the enrollment-only session ended")
	status, _, _ = e.page("/approvals", sessionSet(h))
	require.Equal(t, http.StatusOK, status)

	// Security: the only passkey cannot be removed; new codes are shown once
	// and replace the old.
	status, _, body = e.page("/security", full)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "laptop")
	require.Contains(t, body, "10 unused recovery codes left")
	pk := regexp.MustCompile(`pk_[A-Za-z0-9]+`).FindString(body)
	require.Empty(t, pk, "the last passkey offers no removal")
	var pkID string
	require.NoError(t, e.st.Pool.QueryRow(t.Context(), `SELECT id FROM passkeys WHERE user_id = $1`, user).Scan(&pkID))
	status, _, body = e.form("/security/passkeys/"+pkID+"/remove", full, nil)
	require.Equal(t, http.StatusUnprocessableEntity, status, "the session alone removes no passkey")
	require.Contains(t, body, "needs JavaScript")
	// Its removal's options are refused already: webauthn.js shows why
	// before the person touches the authenticator.
	status, raw := e.asSession(http.MethodPost, "/v1/me/passkeys/"+pkID+"/remove-options", cookie(full), nil)
	requireStatusCode(t, http.StatusConflict, passkeys.CodeLastPasskey, status, raw)
	require.Contains(t, body, `data-confirm="/v1/me/passkeys/add-options"`, "adding a passkey confirms with one first")

	// Another passkey is added only with the first one's confirmation, and
	// then either may go, confirmed.
	phone := passkeystest.New("localhost", testOrigin)
	add := func(confirm url.Values) (int, string) {
		opts := expectAs[passkeys.Options](e, http.StatusOK, http.MethodPost, "/v1/me/passkeys/options", cookie(full), nil)
		resp, err := phone.Create(opts.PublicKey)
		require.NoError(t, err)
		form := url.Values{"ceremony_id": {opts.CeremonyID}, "credential": {string(resp)}, "name": {"phone"}}
		for k, v := range confirm {
			form[k] = v
		}
		status, _, body := e.form("/enroll", full, form)
		return status, body
	}
	status, body = add(nil)
	require.Equal(t, http.StatusUnauthorized, status, "the session alone adds no passkey")
	require.Contains(t, body, "confirm the new one")
	status, body = add(e.confirmForm(auth, full, "/v1/me/passkeys/add-options", "confirm_"))
	require.Equal(t, http.StatusSeeOther, status, body)
	status, _, body = e.page("/security", full)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "phone")
	require.Contains(t, body, `data-options="/v1/me/passkeys/`+pkID+`/remove-options"`)
	var phoneID string
	require.NoError(t, e.st.Pool.QueryRow(t.Context(), `SELECT id FROM passkeys WHERE user_id = $1 AND name = 'phone'`, user).Scan(&phoneID))
	status, _, body = e.form("/security/passkeys/"+pkID+"/remove", full, e.confirmForm(phone, full, "/v1/me/passkeys/"+phoneID+"/remove-options", ""))
	require.Equal(t, http.StatusUnauthorized, status, "a confirmation for removing another passkey removes none")
	require.Contains(t, body, `role="alert"`)
	status, _, body = e.form("/security/passkeys/"+pkID+"/remove", full, e.confirmForm(phone, full, "/v1/me/passkeys/"+pkID+"/remove-options", ""))
	require.Equal(t, http.StatusSeeOther, status, body)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM passkeys WHERE user_id = $2 AND $1 <> ''`, user))
	status, _, body = e.form("/security/recovery-codes", full, nil)
	require.Equal(t, http.StatusUnprocessableEntity, status, "the session alone makes no codes")
	require.Contains(t, body, "needs JavaScript")
	status, _, body = e.form("/security/recovery-codes", full, e.confirmForm(phone, full, "/v1/me/recovery-codes/options", ""))
	require.Equal(t, http.StatusOK, status, body)
	fresh := recoveryCodeItem.FindAllStringSubmatch(body, -1)
	require.Len(t, fresh, 10)
	require.NotEqual(t, codes[0][1], fresh[0][1])

	// Revoking every other session leaves this one; revoking this one signs out.
	status, _, _ = e.form("/security/sessions/revoke-others", full, nil)
	require.Equal(t, http.StatusSeeOther, status)
	status, _, _ = e.page("/approvals", sessionSet(h))
	require.Equal(t, http.StatusSeeOther, status, "the other session was revoked")
	var me Me
	require.NoError(t, json.Unmarshal(expectBody(t, e, full), &me))
	status, h, _ = e.form("/security/sessions/"+me.SessionID+"/revoke", full, nil)
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/sign-in", h.Get("Location"))
	status, _, _ = e.page("/approvals", full)
	require.Equal(t, http.StatusSeeOther, status)

	// A used-up or wrong recovery code is refused on the page; a fresh one
	// signs in to enroll a new passkey only.
	var email string
	require.NoError(t, e.st.Pool.QueryRow(t.Context(), `SELECT email FROM users WHERE id = $1`, user).Scan(&email))
	status, _, body = e.form("/sign-in/recovery", "", url.Values{"email": {email}, "code": {codes[0][1]}})
	require.Equal(t, http.StatusUnauthorized, status, body)
	require.Contains(t, body, `role="alert"`)
	status, h, body = e.form("/sign-in/recovery", "", url.Values{"email": {email}, "code": {strings.ToLower(fresh[2][1])}})
	require.Equal(t, http.StatusSeeOther, status, body)
	require.Equal(t, "/enroll", h.Get("Location"))
	status, h, _ = e.page("/approvals", sessionSet(h))
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/enroll", h.Get("Location"))

	// A recovery sign-in keeps where the person was going (an alert's
	// link), as a passkey sign-in does: the sign-in page's link carries it,
	// the form carries it on, and enrollment goes there after. Only a
	// same-origin path survives.
	const ref = "/approvals/REF-ABCDEFGH-JKMN"
	status, _, body = e.page("/sign-in?next="+url.QueryEscape(ref), "")
	require.Equal(t, http.StatusOK, status, body)
	link := regexp.MustCompile(`href="(/sign-in/recovery[^"]*)"`).FindStringSubmatch(body)
	require.NotNil(t, link, body)
	status, _, body = e.page(html.UnescapeString(link[1]), "")
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, `name="next" value="`+ref+`"`)
	status, h, body = e.form("/sign-in/recovery", "", url.Values{"email": {email}, "code": {fresh[3][1]}, "next": {ref}})
	require.Equal(t, http.StatusSeeOther, status, body)
	require.Equal(t, "/enroll?next="+url.QueryEscape(ref), h.Get("Location"))
	status, _, body = e.page(h.Get("Location"), sessionSet(h))
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, `value="`+ref+`"`, "enrollment goes on to the approval")
	for _, bad := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example"} {
		status, h, body = e.form("/sign-in/recovery", "", url.Values{"email": {email}, "code": {fresh[4][1]}, "next": {bad}})
		require.Equal(t, http.StatusSeeOther, status, body)
		require.Equal(t, "/enroll", h.Get("Location"), bad)
		fresh = fresh[1:]
	}
}

// expectBody is GET /v1/me's body for the session.
func expectBody(t *testing.T, e *testEnv, session string) []byte {
	t.Helper()
	status, raw := e.asSession(http.MethodGet, "/v1/me", cookie(session), nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	return raw
}

func TestDashboardSignUpPage(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	status, h, _ := e.page("/sign-up", "")
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/sign-in", h.Get("Location"))
	status, _, body := e.page("/sign-up?invitation=oak_inv_abc", "")
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, `name="invitation" value="oak_inv_abc"`, "the invitation moves into the form body")
	require.Contains(t, body, `id="name"`)
	status, _, body = e.page("/sign-in", "")
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, `data-webauthn="get"`)
	require.Contains(t, body, `href="/sign-in/recovery"`)
}

// testApprovalNotifications: creating and deciding an approval each
// announce its org on oakallow_approvals, which wakes open queues on every
// replica.
func testApprovalNotifications(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	e.seedTool("send_email", "", nil)
	conn, err := s.st.Pool.Acquire(t.Context())
	require.NoError(t, err)
	t.Cleanup(conn.Release)
	_, err = conn.Exec(t.Context(), "LISTEN "+approvalsChannel)
	require.NoError(t, err)
	// until waits for a notification of e's org (skipping other tests'
	// orgs) after which the approval's status is want: a notification is
	// delivered once its transaction committed.
	until := func(id, want string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), hangDeadline)
		defer cancel()
		for {
			n, err := conn.Conn().WaitForNotification(ctx)
			require.NoError(t, err, "no notification of the org with the approval %s", want)
			var st string
			if n.Payload == e.boot.OrgID &&
				s.st.Pool.QueryRow(ctx, `SELECT status FROM approvals WHERE id = $1`, id).Scan(&st) == nil && st == want {
				return
			}
		}
	}
	created := e.requestApproval(map[string]any{"tool": "send_email", "reasoning": "r", "timeout_seconds": 600})
	until(created.ID, "pending")
	expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+created.ID+"/decide", e.boot.ManagementKey,
		map[string]any{"decision": "approve"})
	until(created.ID, "approved")
	_, err = conn.Exec(context.Background(), "UNLISTEN *")
	require.NoError(t, err)
}

func TestDashboardOrgSwitcher(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	owner := e.signIn(e.person(RoleOwner), true)
	get := func(path, org string) (int, http.Header, string) {
		c := sessionCookiePlain + "=" + owner.Token
		if org != "" {
			c += "; oakallow_org=" + org
		}
		status, h, raw := e.sendVia(noRedirects, http.MethodGet, path, "", map[string]string{"Cookie": c}, nil)
		return status, h, string(raw)
	}
	choose := func(org string) (int, http.Header, string) {
		return e.form("/orgs", owner.Token, url.Values{"org": {org}, "next": {"/approvals"}})
	}
	status, _, body := get("/approvals", "")
	require.Equal(t, http.StatusOK, status, "one org: no choice to make: %s", body)

	// A second org: the dashboard asks which one.
	second := expectAs[Org](e, http.StatusCreated, http.MethodPost, "/v1/orgs", bearer(owner.Token), map[string]any{"name": "second-app"})
	var h http.Header
	require.Eventually(t, func() bool {
		status, h, _ = get("/approvals", "")
		return status == http.StatusSeeOther
	}, hangDeadline, 20*time.Millisecond)
	require.Equal(t, "/orgs?next=%2Fapprovals", h.Get("Location"))
	status, _, body = get("/orgs?next=%2Fapprovals", "")
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "acme-app")
	require.Contains(t, body, "second-app")

	// Only an org of the person's teams can be chosen.
	other := newTestEnv(t)
	for _, bad := range []string{other.boot.OrgID, "org_doesnotexist", "not-an-org"} {
		status, h, body = choose(bad)
		require.Contains(t, []int{http.StatusForbidden, http.StatusUnprocessableEntity}, status, body)
		require.Empty(t, h.Values("Set-Cookie"), bad)
	}
	status, h, body = choose(second.ID)
	require.Equal(t, http.StatusSeeOther, status, body)
	require.Equal(t, "/approvals", h.Get("Location"))
	c := (&http.Response{Header: h}).Cookies()
	require.Len(t, c, 1)
	require.Equal(t, second.ID, c[0].Value)
	require.True(t, c[0].HttpOnly)
	status, _, body = get("/approvals", second.ID)
	require.Equal(t, http.StatusOK, status, body)

	// A remembered org that is not (or no longer) the person's is forgotten.
	status, h, _ = get("/approvals", other.boot.OrgID)
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/orgs?next=%2Fapprovals", h.Get("Location"))
	c = (&http.Response{Header: h}).Cookies()
	require.Len(t, c, 1)
	require.Equal(t, -1, c[0].MaxAge)
}

// TestDashboardFirstOrg: a person who signed up on their own owns a team
// with no org, and every page sends them to the switcher; the switcher
// creates their first org, acts in it and leads to the Quickstart. A
// reviewer gets no such form, and the API refuses one forged for a team
// that is not the person's.
func TestDashboardFirstOrg(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	ctx, now := context.Background(), time.Now()
	team, user := store.NewID("team"), store.NewID("usr")
	require.NoError(t, e.st.CreateTeam(ctx, store.CreateTeamParams{ID: team, Name: "ada@example.com", CreatedAt: now}))
	require.NoError(t, e.st.CreateUser(ctx, store.CreateUserParams{ID: user, Email: user + "@example.com", Name: "Ada", CreatedAt: now}))
	require.NoError(t, e.st.CreateMembership(ctx, store.CreateMembershipParams{TeamID: team, UserID: user, Role: RoleOwner, CreatedAt: now}))
	ada := e.signIn(user, true)

	status, h, _ := e.page("/quickstart", ada.Token)
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, "/orgs?next=%2Fquickstart", h.Get("Location"))
	status, _, body := e.page("/orgs?next=%2Fquickstart", ada.Token)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "This team has no org yet.")
	require.Contains(t, body, `action="/orgs/new"`, "the empty switcher offers to create the first org")

	status, _, body = e.form("/orgs/new", ada.Token, url.Values{"team": {team}, "name": {"  "}})
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
	require.Contains(t, body, `role="alert"`)
	status, _, body = e.form("/orgs/new", ada.Token, url.Values{"team": {e.boot.TeamID}, "name": {"not mine"}})
	require.Equal(t, http.StatusForbidden, status, "another team's: %s", body)

	status, h, body = e.form("/orgs/new", ada.Token, url.Values{"team": {team}, "name": {"production"}, "next": {"/quickstart"}})
	require.Equal(t, http.StatusSeeOther, status, body)
	require.Equal(t, "/quickstart", h.Get("Location"))
	c := (&http.Response{Header: h}).Cookies()
	require.Len(t, c, 1)
	var org string
	require.NoError(t, e.st.Pool.QueryRow(ctx, `SELECT id FROM orgs WHERE team_id = $1 AND name = 'production'`, team).Scan(&org))
	require.Equal(t, org, c[0].Value, "the dashboard acts in the new org")
	status, _, body = e.page("/quickstart", ada.Token)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, org)

	reviewer := e.signIn(e.person(RoleReviewer), true)
	status, _, body = e.page("/orgs", reviewer.Token)
	require.Equal(t, http.StatusOK, status, body)
	require.NotContains(t, body, `action="/orgs/new"`)
}
