package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"oakallow/api/mail"
	"oakallow/api/mail/mailtest"
	"oakallow/dev/devtest"
	"oakallow/store"
)

// The dashboard in a real headless Chromium (Debian's chromium package;
// .ci/run installs it) against the real server, worker and Temporal.

// browser is one headless Chromium tab, with every page error and CSP
// violation collected.
type browser struct {
	t        *testing.T
	ctx      context.Context
	laptop   webauthn.AuthenticatorID // the virtual authenticator passkeyAuthenticator added
	mu       sync.Mutex
	problems []string
	shots    string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	ctx := devtest.ChromiumTab(t)
	b := &browser{t: t, ctx: ctx, shots: os.Getenv("OAKALLOW_SCREENSHOTS")}
	if b.shots == "" {
		b.shots = t.TempDir()
	}
	chromedp.ListenTarget(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.LevelError && !strings.Contains(ev.Entry.Text, "403") {
				msg = "console: " + ev.Entry.Text
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError {
				msg = "console.error"
			}
		}
		if msg != "" {
			b.mu.Lock()
			b.problems = append(b.problems, msg)
			b.mu.Unlock()
		}
	})
	require.NoError(t, chromedp.Run(ctx, log.Enable(), runtime.Enable()))
	return b
}

// run runs browser actions, failing the test on error or when they hang.
func (b *browser) run(actions ...chromedp.Action) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, hangDeadline)
	defer cancel()
	require.NoError(b.t, chromedp.Run(ctx, actions...))
}

// noProblems requires that no page threw or broke its CSP so far.
func (b *browser) noProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	require.Empty(b.t, b.problems)
}

// Viewports the dashboard is shown at: a desktop and a 375 px phone.
var (
	desktop = emulation.SetDeviceMetricsOverride(1280, 900, 1, false)
	phone   = emulation.SetDeviceMetricsOverride(375, 812, 2, true)
)

// screenshot saves the page at desktop and phone widths as name-desktop.png
// and name-phone.png, and requires the phone layout not to scroll sideways.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	for _, vp := range []struct {
		label   string
		width   int
		metrics chromedp.Action
	}{{"desktop", 1280, desktop}, {"phone", 375, phone}} {
		var png []byte
		var overflow bool
		// Against the emulated width, not innerWidth: a mobile browser
		// widens its layout viewport to content that overflows.
		b.run(vp.metrics, chromedp.Sleep(50*time.Millisecond), chromedp.FullScreenshot(&png, 100),
			chromedp.Evaluate(fmt.Sprintf(`document.documentElement.scrollWidth > %d`, vp.width), &overflow))
		require.False(b.t, overflow, "%s scrolls sideways at %s width", name, vp.label)
		require.NoError(b.t, os.WriteFile(filepath.Join(b.shots, name+"-"+vp.label+".png"), png, 0o644))
	}
	b.run(desktop)
}

// browserEnv is e on a replica of the suite whose public URL is
// http://localhost:PORT — WebAuthn needs a domain, not an IP address — and
// which mails sign-in codes to a test sink.
func (s *approvalSuite) browserEnv(t *testing.T, e *testEnv) (*testEnv, *mailtest.Sink) {
	t.Helper()
	sink := mailtest.Start(t)
	sender, err := mail.NewSMTP(mail.SMTPConfig{Host: sink.Host, Port: sink.Port, From: "oakallow <no-reply@example.com>", TLS: mail.TLSNone})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	cfg := testConfig()
	cfg.Listener, cfg.PublicURL = ln, base
	srv, err := NewServer(cfg, Deps{Store: s.st, Logger: testLogger(), Keyring: testKeyring, Temporal: s.tc,
		Activities: s.acts, SecretBox: s.box, Mailer: sender})
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	t.Cleanup(srv.Stop)
	c := e.on(srv)
	c.base = base
	return c, sink
}

// passkeyAuthenticator gives the tab a virtual platform authenticator (the
// DevTools WebAuthn domain) that holds discoverable credentials and verifies
// the user at once.
func (b *browser) passkeyAuthenticator() {
	b.t.Helper()
	b.run(devtest.AddPasskeyAuthenticator(webauthn.AuthenticatorTransportInternal, &b.laptop))
}

// addPasskeyFromSecurity adds a passkey named name, made by a second
// virtual authenticator (a security key), from the Security page: the form's
// confirming get() is answered by the laptop, its create() by the key.
// Which of two present authenticators answers a create() is Chromium's race,
// and the laptop holds the passkey the new one's options exclude, which ends
// the ceremony with InvalidStateError (WebAuthn §6.3.2) if it answers: so it
// stops answering once its get() is done, while the creation options are on
// their way (that request is held until it has).
func (b *browser) addPasskeyFromSecurity(name string) webauthn.AuthenticatorID {
	b.t.Helper()
	var key webauthn.AuthenticatorID
	b.run(devtest.AddPasskeyAuthenticator(webauthn.AuthenticatorTransportUsb, &key))
	lctx, stop := context.WithCancel(b.ctx)
	defer stop()
	held := make(chan error, 1)
	chromedp.ListenTarget(lctx, func(ev any) {
		p, ok := ev.(*fetch.EventRequestPaused)
		if !ok {
			return
		}
		go func() {
			ctx := cdp.WithExecutor(b.ctx, chromedp.FromContext(b.ctx).Target)
			err := webauthn.SetAutomaticPresenceSimulation(b.laptop, false).Do(ctx)
			held <- errors.Join(err, fetch.ContinueRequest(p.RequestID).Do(ctx))
		}()
	})
	b.run(fetch.Enable().WithPatterns([]*fetch.RequestPattern{{URLPattern: "*/v1/me/passkeys/options", RequestStage: fetch.RequestStageRequest}}),
		chromedp.SendKeys(`#passkey-name`, name), chromedp.Click(`#add-passkey`),
		chromedp.WaitVisible(`#passkeys form`))
	select {
	case err := <-held:
		require.NoError(b.t, err)
	default:
		b.t.Fatal("the creation options were never asked for")
	}
	b.run(fetch.Disable(), webauthn.SetAutomaticPresenceSimulation(b.laptop, true))
	return key
}

// inviteAt creates an invitation of e's team for email at now and returns its token.
func (e *testEnv) inviteAt(email, role string, now time.Time) string {
	e.t.Helper()
	tok, h := newInvitationToken()
	_, err := e.st.Pool.Exec(context.Background(), `INSERT INTO invitations (id, team_id, email, role, token_hash, invited_by, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, store.NewID("inv"), e.boot.TeamID, email, role, h[:], e.boot.UserID, now, now.Add(time.Hour))
	require.NoError(e.t, err)
	return tok
}

// mailedCode waits for the n-th mail to addr and returns its code.
func mailedCode(t *testing.T, sink *mailtest.Sink, addr string, n int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangDeadline)
	defer cancel()
	msg, err := sink.WaitFor(ctx, addr, n)
	require.NoError(t, err)
	c := codeInMail.FindStringSubmatch(msg.Body)
	require.NotNil(t, c, msg.Body)
	return c[1]
}

// testDashboardBrowser: a new admin signs up from an invitation with an
// e-mail code, must enroll a passkey (DevTools' virtual authenticator) and
// sees the recovery codes once; the open queue shows an agent's new
// approval without a reload; the reviewer approves with the passkey and the
// agent gets its token, denies another on a phone-sized screen, and sees
// decided and expired approvals with who, when and the evidence; signs in
// again with the passkey alone, then with a recovery code; a cross-site form
// is refused; every page works at 375 px without a CSP violation.
func testDashboardBrowser(t *testing.T, s *approvalSuite) {
	e, sink := s.browserEnv(t, s.org(t))
	e.seedTool("send_email", "", nil)
	e.want(http.StatusOK, http.MethodPatch, "/v1/tools/send_email", e.boot.ManagementKey, map[string]any{
		"risk_level": "high", "open_world": true, "destructive": false, "read_only": false, "idempotent": false})
	b := newBrowser(t)
	b.passkeyAuthenticator()
	// Asked first: the shortest timeout is a minute, spent while the rest runs.
	expired := e.requestApproval(map[string]any{"tool": "send_email", "reasoning": "left alone", "timeout_seconds": 60})

	// An alert's link, before signing in: the sign-in page, which knows where to go next.
	var loc, text string
	b.run(chromedp.Navigate(e.base+"/approvals/REF-0000ABCD-EF12"), chromedp.WaitVisible(`#email`), chromedp.Location(&loc))
	require.Equal(t, e.base+"/sign-in?next=%2Fapprovals%2FREF-0000ABCD-EF12", loc)
	b.screenshot("sign-in")

	// Sign up from an invitation link with an e-mail code: only passkey enrollment is open then.
	email := "rita-" + strings.ToLower(store.NewID("x")) + "@example.com"
	b.run(chromedp.Navigate(e.base+"/sign-up?invitation="+e.inviteAt(email, RoleAdmin, time.Now())), chromedp.WaitVisible(`#email`),
		chromedp.SendKeys(`#email`, email), chromedp.SendKeys(`#name`, "Rita Reviewer"), chromedp.Submit(`#email`),
		chromedp.WaitVisible(`#code`))
	b.run(chromedp.SendKeys(`#code`, mailedCode(t, sink, email, 1)), chromedp.Submit(`#code`), chromedp.WaitVisible(`#enroll-passkey`),
		chromedp.Navigate(e.base+"/approvals"), chromedp.WaitVisible(`#enroll-passkey`), chromedp.Location(&loc))
	require.Equal(t, e.base+"/enroll", loc, "an enrollment-only session reaches nothing else")
	b.screenshot("enroll")

	// Enrolling shows ten recovery codes, once; then the dashboard opens.
	var codes []string
	b.run(chromedp.SendKeys(`#passkey-name`, "test laptop"), chromedp.Click(`#enroll-passkey`), chromedp.WaitVisible(`#recovery-codes`),
		chromedp.Evaluate(`[...document.querySelectorAll('#recovery-codes code')].map(c => c.textContent)`, &codes))
	require.Len(t, codes, 10)
	b.screenshot("recovery-codes")
	b.run(chromedp.Click(`a.button`), chromedp.WaitVisible(`#queue`))
	// The header names the org the pages act in (the team's only one).
	var orgName, wantOrg string
	require.NoError(t, e.st.Pool.QueryRow(context.Background(), `SELECT name FROM orgs WHERE id = $1`, e.boot.OrgID).Scan(&wantOrg))
	b.run(chromedp.Text(`#current-org`, &orgName))
	require.Equal(t, wantOrg, orgName)

	// An agent asks; the open queue shows it without a reload.
	created := e.requestApproval(map[string]any{"tool": "send_email", "method": "send",
		"parameters": map[string]any{"to": "customer-7", "subject": "Refund", "amount": 12.5},
		"reasoning":  "The customer asked for a refund of order 7", "timeout_seconds": 900})
	start := time.Now()
	b.run(chromedp.WaitVisible(fmt.Sprintf(`#queue a[href="/approvals/%s"]`, created.Reference)))
	t.Logf("the open queue showed the new approval %v after it was created", time.Since(start))
	var navigations int
	b.run(chromedp.Evaluate(`performance.getEntriesByType("navigation").length`, &navigations))
	require.Equal(t, 1, navigations, "the queue updated without a reload")
	// The reviewer sees what the tool may do, from its stored annotations.
	var hints string
	b.run(chromedp.Text(fmt.Sprintf(`#queue a[href="/approvals/%s"] [data-annotations]`, created.Reference), &hints))
	for _, h := range []string{"risk high", "writes", "not destructive", "not idempotent", "open world"} {
		require.Contains(t, hints, h)
	}
	b.screenshot("approvals")

	// Opening it shows what the agent wants and why; approving takes the passkey.
	b.run(chromedp.Click(fmt.Sprintf(`#queue a[href="/approvals/%s"]`, created.Reference)),
		chromedp.WaitVisible(`pre.json`), chromedp.Text(`main`, &text))
	require.Contains(t, text, "The customer asked for a refund of order 7")
	require.Contains(t, text, `"amount": 12.5`)
	require.Contains(t, text, "Level\n1 of 1")
	require.Contains(t, text, "Time left")
	b.run(chromedp.Text(`dl.facts [data-annotations]`, &hints))
	for _, h := range []string{"risk high", "writes", "not destructive", "not idempotent", "open world"} {
		require.Contains(t, hints, h)
	}
	b.screenshot("approval")
	b.run(chromedp.SendKeys(`#note`, "Refund is within policy"), chromedp.Click(`#approve`),
		chromedp.WaitVisible(`ul.evidence`), chromedp.Text(`main`, &text))
	require.Contains(t, text, "approved")
	require.Contains(t, text, "approve at level 1 by Rita Reviewer")
	require.Contains(t, text, "Refund is within policy")
	require.Contains(t, text, "Level 1: approve")
	b.screenshot("approval-approved")
	got := expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+created.ID, e.boot.StandardKey, nil)
	require.Equal(t, "approved", got.Status)
	require.True(t, strings.HasPrefix(got.Token, "oak_tok_"), "the agent gets its token")

	// On a phone: deny another one.
	denied := e.requestApproval(map[string]any{"tool": "send_email", "reasoning": "Mail the whole customer list", "timeout_seconds": 900})
	b.run(phone, chromedp.Navigate(e.base+"/approvals/"+denied.Reference), chromedp.WaitVisible(`#deny`),
		chromedp.SendKeys(`#note`, "Not the whole list"), chromedp.Click(`#deny`), chromedp.WaitVisible(`ul.evidence`),
		chromedp.Text(`main`, &text), desktop)
	require.Contains(t, text, "denied")
	require.Contains(t, text, "Level 1: deny")
	got = expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+denied.ID, e.boot.StandardKey, nil)
	require.Equal(t, "denied", got.Status)
	require.Empty(t, got.Token)

	// Decided and expired approvals stay visible with who and how they ended.
	require.Eventually(t, func() bool {
		var st string
		return e.st.Pool.QueryRow(context.Background(), `SELECT status FROM approvals WHERE id = $1`, expired.ID).Scan(&st) == nil &&
			st == "expired"
	}, 2*time.Minute+hangDeadline, 200*time.Millisecond, "the approval never expired")
	b.run(chromedp.Navigate(e.base+"/approvals"), chromedp.WaitVisible(`#recent-title`), chromedp.Text(`main`, &text))
	require.Contains(t, text, expired.Reference)
	require.Contains(t, text, "expired")
	require.Contains(t, text, created.Reference)
	require.Contains(t, text, "approve by Rita Reviewer")
	require.Contains(t, text, "deny by Rita Reviewer")
	b.screenshot("approvals-decided")

	// The Security page lists the passkey (the only one: not removable) and this session.
	b.run(chromedp.Navigate(e.base+"/security"), chromedp.WaitVisible(`#passkeys`), chromedp.Text(`main`, &text))
	require.Contains(t, text, "test laptop")
	require.Contains(t, text, "10 unused recovery codes left")
	require.Contains(t, text, "this session")
	require.Contains(t, text, "Browser · signed in with a passkey on", "sign-in methods in words")
	require.NotContains(t, text, "email_code")
	var removable int
	b.run(chromedp.Evaluate(`document.querySelectorAll('#passkeys form').length`, &removable))
	require.Zero(t, removable, "the last passkey offers no removal")
	b.screenshot("security")
	// New recovery codes take the passkey too; they replace the old ones.
	var fresh []string
	b.run(chromedp.Click(`#regenerate-codes`), chromedp.WaitVisible(`#recovery-codes`),
		chromedp.Evaluate(`[...document.querySelectorAll('#recovery-codes code')].map(c => c.textContent)`, &fresh))
	require.Len(t, fresh, 10)
	require.NotContains(t, fresh, codes[3])
	codes = fresh
	b.run(chromedp.Navigate(e.base+"/security"), chromedp.WaitVisible(`#passkeys`), chromedp.Text(`main`, &text))
	require.Contains(t, text, "10 unused recovery codes left")
	// Another passkey is added only with the first one's confirmation (its
	// get() before the new one's create()); a passkey is removed only with
	// one's confirmation for removing it (a get()).
	key := b.addPasskeyFromSecurity("test key")
	b.run(chromedp.Text(`#passkeys`, &text))
	require.Contains(t, text, "test laptop")
	require.Contains(t, text, "test key")
	b.screenshot("security-two-passkeys")
	b.run(chromedp.Click(`#passkeys button[aria-label="Remove passkey test key"]`),
		chromedp.WaitVisible(`#only-passkey`), chromedp.Text(`main`, &text), webauthn.RemoveVirtualAuthenticator(key))
	require.Contains(t, text, "test laptop")
	require.NotContains(t, text, "test key")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM passkeys p JOIN users u ON u.id = p.user_id WHERE u.email = $2 AND $1 <> ''`, email))

	// Signed out, the passkey alone signs in again.
	b.run(chromedp.Click(`.signout button`), chromedp.WaitVisible(`#passkey-sign-in`),
		chromedp.Click(`#passkey-sign-in`), chromedp.WaitVisible(`#queue`), chromedp.Location(&loc))
	require.Equal(t, e.base+"/approvals", loc)

	// A recovery code signs in once, and only to enroll a new passkey.
	b.run(chromedp.Click(`.signout button`), chromedp.WaitVisible(`#passkey-sign-in`),
		chromedp.Navigate(e.base+"/sign-in/recovery"), chromedp.WaitVisible(`#code`),
		chromedp.SendKeys(`#email`, email), chromedp.SendKeys(`#code`, codes[3]), chromedp.Submit(`#code`),
		chromedp.WaitVisible(`#enroll-passkey`))
	b.run(chromedp.Click(`#enroll-passkey`), chromedp.WaitVisible(`#queue`))
	b.run(chromedp.Navigate(e.base+"/security"), chromedp.WaitVisible(`#passkeys`), chromedp.Text(`main`, &text))
	require.Contains(t, text, "9 unused recovery codes left")
	b.noProblems()
	walkAdminPages(t, e, b)

	// A form on another site, submitted with the signed-in cookie, is refused
	// and the session survives.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<form method="post" action="%s/sign-out"><button id="go">win a prize</button></form>`, e.base)
	}))
	t.Cleanup(evil.Close)
	// The click only starts the cross-site POST: wait until the other site's
	// page is gone before reading the answer.
	b.run(chromedp.Navigate(evil.URL), chromedp.Click(`#go`), chromedp.WaitNotPresent(`#go`),
		chromedp.WaitVisible(`body`), chromedp.Text(`body`, &text))
	require.Contains(t, text, "cross_origin_refused")
	b.run(chromedp.Navigate(e.base+"/approvals"), chromedp.WaitVisible(`#queue`), chromedp.Location(&loc))
	require.Equal(t, e.base+"/approvals", loc, "still signed in")
}

// walkAdminPages opens every admin page as an owner, with something on it,
// and saves its screenshots; none may scroll sideways at 375 px or break
// the CSP.
func walkAdminPages(t *testing.T, e *testEnv, b *browser) {
	mk := e.boot.ManagementKey
	e.want(http.StatusCreated, http.MethodPost, "/v1/tenants", mk, map[string]any{"name": "acme"})
	e.want(http.StatusCreated, http.MethodPost, "/v1/resources", mk, map[string]any{"name": "billing-db", "description": "the ledger"})
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", mk, map[string]any{"name": "delete_customer_records_permanently", "status": "draft",
		"annotations_acknowledged": true, "default_permission": "requires_approval"})
	e.want(http.StatusOK, http.MethodPatch, "/v1/tools/delete_customer_records_permanently", mk, map[string]any{"annotations_acknowledged": false})
	e.want(http.StatusCreated, http.MethodPost, "/v1/rules", mk, map[string]any{"tenant": "acme", "tool": "send_email", "method": "send",
		"permission": "disabled", "description": "acme sends its own mail"})
	for _, p := range []struct{ name, path, ready string }{
		{"rules", "/rules", "#rules-title"},
		{"explain", "/rules/explain?tool=send_email&tenant=acme&method=send", "ol.chain"},
		{"tools", "/tools", "#drafts-title"},
		{"tenants", "/tenants", "#list-title"},
		{"resources", "/resources", "#list-title"},
		{"keys", "/keys", "#keys-title"},
		{"activity", "/activity", "ul.events"},
		{"quickstart", "/quickstart", "ol.steps"},
		{"builder", "/builder", "#bash-seed"},
		{"settings", "/settings", "#channels-title"},
		{"team", "/team", "#groups-title"},
		{"billing", "/billing", "#usage-title"},
	} {
		b.run(chromedp.Navigate(e.base+p.path), chromedp.WaitVisible(p.ready))
		b.screenshot(p.name)
	}
	// A key made in the browser is shown once, with a working copy button.
	b.run(chromedp.Navigate(e.base+"/keys"), chromedp.WaitVisible(`#k-name`),
		chromedp.SendKeys(`#k-name`, "browser agent"), chromedp.Submit(`#k-name`), chromedp.WaitVisible(`#new-key`))
	var key string
	b.run(chromedp.Text(`#new-key`, &key))
	require.Regexp(t, `^oak_live_[0-9a-f]{32}$`, key)
	b.screenshot("key-created")
	// So is an agent identity's credential, on the Agents page.
	b.run(chromedp.Navigate(e.base+"/agents"), chromedp.WaitVisible(`#a-name`),
		chromedp.SendKeys(`#a-name`, "support triage agent"), chromedp.Submit(`#a-name`), chromedp.WaitVisible(`#shown-secret`))
	var agent string
	b.run(chromedp.Text(`#shown-secret`, &agent))
	require.True(t, strings.HasPrefix(agent, "oak_agent_"), agent)
	b.screenshot("agents")
	b.noProblems()
}
