package api

import (
	"bufio"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/api/mail"
)

// The dashboard (api/web) over the real server: who reaches which page,
// the headers every page carries, and the live queue.

// noRedirects is a client that reports redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// page GETs a dashboard page with the session (if any) and returns status, headers and body.
func (e *testEnv) page(path, session string) (int, http.Header, string) {
	e.t.Helper()
	hdr := map[string]string{}
	if session != "" {
		hdr = cookie(session)
	}
	status, h, raw := e.sendVia(noRedirects, http.MethodGet, path, "", hdr, nil)
	return status, h, string(raw)
}

func TestDashboardSignInGate(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	owner := e.signIn(e.person(RoleOwner), true)
	enrolling := e.signIn(e.person(RoleReviewer), false)

	for _, tc := range []struct {
		name, path, session, location string
	}{
		{"no session, queue", "/approvals", "", "/sign-in?next=%2Fapprovals"},
		{"no session, an alert's link", "/approvals/REF-0000ABCD-EF12", "", "/sign-in?next=%2Fapprovals%2FREF-0000ABCD-EF12"},
		{"revoked or forged session", "/approvals", "oak_ses_" + strings.Repeat("A", 43), "/sign-in?next=%2Fapprovals"},
		{"enrollment-only session", "/approvals", enrolling.Token, "/enroll"},
		{"signed in, sign-in page goes on", "/sign-in?next=%2Fapprovals%2FREF-0000ABCD-EF12", owner.Token, "/approvals/REF-0000ABCD-EF12"},
		{"signed in, never to another site", "/sign-in?next=%2F%2Fevil.example%2Fx", owner.Token, "/approvals"},
		{"home", "/", owner.Token, "/approvals"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, h, _ := e.page(tc.path, tc.session)
			require.Equal(t, http.StatusSeeOther, status)
			require.Equal(t, tc.location, h.Get("Location"))
		})
	}

	status, h, body := e.page("/approvals", owner.Token)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "Nothing is waiting for a decision.")
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'", "require-trusted-types-for 'script'"} {
		require.Contains(t, csp, want)
	}
	require.NotContains(t, csp, "unsafe-inline")
	require.Equal(t, "DENY", h.Get("X-Frame-Options"))
	require.Equal(t, "no-store", h.Get("Cache-Control"))
	require.NotContains(t, body, "<script>", "no inline script")
	require.NotContains(t, body, " style=", "no inline style")

	status, _, body = e.page("/approvals/REF-0000ABCD-EF12", owner.Token)
	require.Equal(t, http.StatusNotFound, status)
	require.Contains(t, body, "No approval with that reference in your org.")

	status, _, body = e.page("/enroll", enrolling.Token)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "may only enroll a passkey or sign out")

	status, h, _ = e.page("/static/app.css", "")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, h.Get("Content-Type"), "text/css")
}

func TestDashboardFormsRefuseCrossSitePosts(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	owner := e.signIn(e.person(RoleOwner), true)
	post := func(hdr map[string]string) int {
		status, _, _ := e.sendVia(noRedirects, http.MethodPost, "/sign-out", "", hdr, []byte{})
		return status
	}
	// A form another site submits with the reviewer's cookie does nothing.
	require.Equal(t, http.StatusForbidden, post(with(cookie(owner.Token), "Sec-Fetch-Site", "cross-site")))
	require.Equal(t, http.StatusForbidden, post(with(cookie(owner.Token), "Origin", "https://evil.example")))
	status, _, _ := e.page("/approvals", owner.Token)
	require.Equal(t, http.StatusOK, status, "the refused sign-out left the session alone")
	// The dashboard's own form signs out.
	require.Equal(t, http.StatusSeeOther, post(with(cookie(owner.Token), "Sec-Fetch-Site", "same-origin")))
	status, _, _ = e.page("/approvals", owner.Token)
	require.Equal(t, http.StatusSeeOther, status)
}

func TestDashboardEmailSignIn(t *testing.T) {
	t.Parallel()
	m := newMailEnv(t, AccountsConfig{OpenSignUp: true})
	form := func(path string, v url.Values) (int, http.Header, string) {
		status, h, raw := m.sendVia(noRedirects, http.MethodPost, path, "",
			map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"}, []byte(v.Encode()))
		return status, h, string(raw)
	}
	status, _, body := m.page("/sign-in", "")
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "New here? Enter your address: the code creates your account.", "open sign-up needs no invitation")
	status, _, body = form("/sign-in", url.Values{"email": {"ada@example.com"}, "next": {"/approvals/REF-0000ABCD-EF12"}})
	require.Equal(t, http.StatusOK, status, body)
	require.NotContains(t, body, "dev-mailbox", "a real server's codes go by mail")
	attempt := regexp.MustCompile(`name="attempt" value="(oak_att_[A-Za-z0-9_-]+)"`).FindStringSubmatch(body)
	require.NotNil(t, attempt, "the attempt travels in the form body: %s", body)
	code := m.code("ada@example.com", 1)

	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	status, _, body = form("/sign-in/code", url.Values{"attempt": {attempt[1]}, "code": {wrong}, "email": {"ada@example.com"}})
	require.Equal(t, http.StatusUnauthorized, status, body)
	require.Contains(t, body, `role="alert"`)
	require.Contains(t, body, attempt[1], "the form keeps its attempt for another try")

	status, h, body := form("/sign-in/code", url.Values{"attempt": {attempt[1]}, "code": {code}, "email": {"ada@example.com"},
		"next": {"/approvals/REF-0000ABCD-EF12"}})
	require.Equal(t, http.StatusSeeOther, status, body)
	require.Equal(t, "/enroll?next=%2Fapprovals%2FREF-0000ABCD-EF12", h.Get("Location"),
		"a code alone gives an enrollment-only session, which goes on to the alert's approval once a passkey confirms it")
	var session string
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == sessionCookiePlain {
			session = c.Value
			require.True(t, c.HttpOnly)
		}
	}
	require.NotEmpty(t, session, "the session cookie reached the browser")
	status, _, body = m.page("/enroll?next=%2Fapprovals%2FREF-0000ABCD-EF12", session)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "ada@example.com")
	require.Equal(t, 2, strings.Count(body, `name="next" value="/approvals/REF-0000ABCD-EF12"`),
		"both the enrollment and the passkey sign-in carry the approval on")
}

// testDashboardApprovals: an alert's link opens the approval with its
// reasoning and parameters, and an open queue learns of a new approval
// over its live stream.
func testDashboardApprovals(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.seedTool("send_email", "", nil)
	reviewer := e.signIn(e.person(RoleReviewer), true)

	req, err := http.NewRequest(http.MethodGet, e.base+"/approvals/events", nil)
	require.NoError(t, err)
	req.Header.Set("Cookie", sessionCookiePlain+"="+reviewer.Token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	events := make(chan string, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		var ev strings.Builder
		for sc.Scan() {
			if sc.Text() == "" {
				events <- ev.String()
				ev.Reset()
				continue
			}
			ev.WriteString(sc.Text() + "\n")
		}
	}()
	next := func() string {
		select {
		case ev, ok := <-events:
			require.True(t, ok, "stream ended")
			return ev
		case <-time.After(hangDeadline):
			t.Fatal("no event from the live queue")
			return ""
		}
	}
	require.Contains(t, next(), "Nothing is waiting for a decision.")

	created := e.requestApproval(map[string]any{"tool": "send_email", "method": "send",
		"parameters": map[string]any{"subject": "Invoice 42", "amount": 12.5},
		"reasoning":  "Send <b>the</b> invoice as asked", "timeout_seconds": 600})
	ev := next()
	require.True(t, strings.HasPrefix(ev, "event: queue\n"), ev)
	require.Contains(t, ev, created.Reference)
	require.Contains(t, ev, "Send &lt;b&gt;the&lt;/b&gt; invoice as asked", "reasoning is escaped")

	status, _, body := e.page("/approvals/"+created.Reference, reviewer.Token)
	require.Equal(t, http.StatusOK, status, body)
	for _, want := range []string{created.Reference, "send_email", "Level</dt><dd>1 of 1", "&#34;subject&#34;: &#34;Invoice 42&#34;", "&#34;amount&#34;: 12.5", "minutes left"} {
		require.Contains(t, body, want)
	}
	status, _, body = e.page("/approvals", reviewer.Token)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, created.Reference)

	// A session revoked while the queue is open ends the stream.
	require.NoError(t, e.srv.revokeSessions(t.Context(), Principal{UserID: reviewer.UserID, SessionID: reviewer.ID}, reviewer.ID, "revoked"))
	for {
		ev := next()
		if strings.HasPrefix(ev, "event: signed-out") {
			break
		}
	}
}

// TestDashboardDevMailboxCode: on a development server (go run ./dev) no
// code reaches an inbox, so the code page points at the mailbox that holds
// it; without open sign-up the sign-in page says a new person needs an
// invitation.
func TestDashboardDevMailboxCode(t *testing.T) {
	t.Parallel()
	st, boot := bootstrappedStore(t)
	mb := mail.NewMailbox(testLogger())
	e := startEnvWith(t, testConfig(), Deps{Store: st, Mailer: mb, DevMailbox: mb}, boot)
	status, _, body := e.page("/sign-in", "")
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "The same code signs you up when you were invited.")
	status, _, body = e.form("/sign-in", "", url.Values{"email": {"owner@example.com"}})
	require.Equal(t, http.StatusOK, status, body)
	link := regexp.MustCompile(`id="dev-mailbox">[^<]*<a href="([^"]+)"`).FindStringSubmatch(body)
	require.NotNil(t, link, "the code page points at the dev mailbox: %s", body)
	status, _, box := e.page(link[1], "")
	require.Equal(t, http.StatusOK, status, box)
	require.Len(t, mb.Messages(), 1)
	require.Regexp(t, `Your oakallow code: \d{6}`, box, "the mailbox shows the code")
}
