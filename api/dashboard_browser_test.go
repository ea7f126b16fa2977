package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// The dashboard in a real headless Chromium (Debian's chromium package;
// .ci/run installs it) against the real server, worker and Temporal.

// chromiumPath is the browser the tests drive, or "" when none is installed.
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser is one headless Chromium tab, with every page error and CSP
// violation collected.
type browser struct {
	t        *testing.T
	ctx      context.Context
	mu       sync.Mutex
	problems []string
	shots    string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		t.Skip("no chromium installed (apt-get install chromium); .ci/run installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path),
		chromedp.NoSandbox, chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
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
		b.run(vp.metrics, chromedp.Sleep(50*time.Millisecond), chromedp.FullScreenshot(&png, 90),
			chromedp.Evaluate(fmt.Sprintf(`document.documentElement.scrollWidth > %d`, vp.width), &overflow))
		require.False(b.t, overflow, "%s scrolls sideways at %s width", name, vp.label)
		require.NoError(b.t, os.WriteFile(filepath.Join(b.shots, name+"-"+vp.label+".png"), png, 0o644))
	}
	b.run(desktop)
}

// testDashboardBrowser: an alert's link asks for sign-in and leads back to
// the approval; the open queue shows an agent's new approval without a
// reload; decided and expired approvals stay visible; a cross-site form is
// refused; every page works at 375 px without a CSP violation.
func testDashboardBrowser(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	e.seedTool("send_email", "", nil)
	owner := e.signIn(e.person(RoleOwner), true)
	b := newBrowser(t)
	// Asked first: the shortest timeout is a minute, spent while the rest runs.
	expired := e.requestApproval(map[string]any{"tool": "send_email", "reasoning": "left alone", "timeout_seconds": 60})

	// An alert's link, before signing in: the sign-in page, which knows where to go next.
	var loc string
	b.run(chromedp.Navigate(e.base+"/approvals/REF-0000ABCD-EF12"), chromedp.WaitVisible(`#email`), chromedp.Location(&loc))
	require.Equal(t, e.base+"/sign-in?next=%2Fapprovals%2FREF-0000ABCD-EF12", loc)
	b.screenshot("sign-in")

	// Signed in (the sign-in endpoints' own tests cover how the cookie is
	// obtained), the queue is open.
	b.run(network.SetCookie(sessionCookiePlain, owner.Token).WithURL(e.base).WithHTTPOnly(true),
		chromedp.Navigate(e.base+"/approvals"), chromedp.WaitVisible(`#queue`))

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
	b.screenshot("approvals")

	// Opening it shows what the agent wants and why.
	var text string
	b.run(chromedp.Click(fmt.Sprintf(`#queue a[href="/approvals/%s"]`, created.Reference)),
		chromedp.WaitVisible(`pre.json`), chromedp.Text(`main`, &text))
	require.Contains(t, text, "The customer asked for a refund of order 7")
	require.Contains(t, text, `"amount": 12.5`)
	require.Contains(t, text, "Level\n1 of 1")
	b.screenshot("approval")

	// Decided elsewhere (a management key, as the org allows) and an expired
	// one: both stay visible with who, when and how they ended.
	expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+created.Reference+"/decide", e.boot.ManagementKey,
		map[string]any{"decision": "deny", "note": "Refunds go through the billing team"})
	b.run(chromedp.Reload(), chromedp.WaitVisible(`ol.decisions`), chromedp.Text(`main`, &text))
	require.Contains(t, text, "denied")
	require.Contains(t, text, "(management key)")
	require.Contains(t, text, "Refunds go through the billing team")
	require.Eventually(t, func() bool {
		var st string
		return e.st.Pool.QueryRow(context.Background(), `SELECT status FROM approvals WHERE id = $1`, expired.ID).Scan(&st) == nil &&
			st == "expired"
	}, 2*time.Minute+hangDeadline, 200*time.Millisecond, "the approval never expired")
	b.run(chromedp.Navigate(e.base+"/approvals"), chromedp.WaitVisible(`#recent-title`), chromedp.Text(`main`, &text))
	require.Contains(t, text, expired.Reference)
	require.Contains(t, text, "expired")
	require.Contains(t, text, created.Reference)
	require.Contains(t, text, "deny by")
	b.screenshot("approvals-decided")
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
	b.noProblems()
}
