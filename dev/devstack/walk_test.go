package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
)

// walkDeadline bounds each browser step and script run: a hang fails the
// test instead of stalling the suite.
const walkDeadline = 30 * time.Second

// walker is a headless Chromium tab on the dev stack's dashboard with a
// virtual passkey authenticator; it records page exceptions and writes a
// screenshot per step (into OAKALLOW_SCREENSHOTS when set).
type walker struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
	mu    sync.Mutex
	errs  []string
	step  int
}

func newWalker(t *testing.T, base string) *walker {
	t.Helper()
	ctx := devtest.ChromiumTab(t)
	w := &walker{t: t, ctx: ctx, base: base, shots: os.Getenv("OAKALLOW_SCREENSHOTS")}
	if w.shots == "" {
		w.shots = t.TempDir()
	}
	chromedp.ListenTarget(ctx, func(ev any) {
		if ev, ok := ev.(*runtime.EventExceptionThrown); ok {
			w.mu.Lock()
			w.errs = append(w.errs, ev.ExceptionDetails.Text)
			w.mu.Unlock()
		}
	})
	// The first run starts the browser and binds it to its context: the
	// tab's own, not a step's deadline.
	require.NoError(t, chromedp.Run(ctx, runtime.Enable()))
	w.do(devtest.PasskeyAuthenticator())
	return w
}

// do runs browser actions within the walk's deadline.
func (w *walker) do(actions ...chromedp.Action) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.ctx, walkDeadline)
	defer cancel()
	require.NoError(w.t, chromedp.Run(ctx, actions...))
}

// shot saves the page as NN-name.png.
func (w *walker) shot(name string) {
	w.t.Helper()
	w.step++
	var png []byte
	w.do(chromedp.FullScreenshot(&png, 100))
	require.NoError(w.t, os.WriteFile(filepath.Join(w.shots, fmt.Sprintf("walk-%02d-%s.png", w.step, name)), png, 0o644))
}

// text is the text of the first element sel matches.
func (w *walker) text(sel string) string {
	w.t.Helper()
	var s string
	w.do(chromedp.Text(sel, &s))
	return s
}

// at is the tab's address.
func (w *walker) at() string {
	w.t.Helper()
	var loc string
	w.do(chromedp.Location(&loc))
	return loc
}

// sh runs a script copied from the dashboard, as a person pastes it into a
// shell, with env added, and requires it to succeed.
func sh(t *testing.T, interpreter, script string, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), walkDeadline)
	defer cancel()
	path := filepath.Join(t.TempDir(), "script")
	require.NoError(t, os.WriteFile(path, []byte(script), 0o600))
	cmd := exec.CommandContext(ctx, interpreter, path)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s script:\n%s\noutput:\n%s", interpreter, script, out)
	return string(out)
}

// script is a script copied from the dashboard, running in the background
// as a waiting agent does.
type script struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan error
}

func (s *script) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

func (s *script) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

func startScript(t *testing.T, interpreter, text string, env ...string) *script {
	t.Helper()
	path := filepath.Join(t.TempDir(), "script")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 2*walkDeadline)
	s := &script{t: t, cmd: exec.CommandContext(ctx, interpreter, path), done: make(chan error, 1)}
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout, s.cmd.Stderr = s, s
	require.NoError(t, s.cmd.Start())
	go func() { s.done <- s.cmd.Wait(); cancel() }()
	t.Cleanup(func() { _ = s.cmd.Process.Kill() })
	return s
}

// waitFor waits until the output matches pattern and returns the match.
func (s *script) waitFor(pattern string) []string {
	s.t.Helper()
	re := regexp.MustCompile(pattern)
	var m []string
	require.Eventually(s.t, func() bool {
		m = re.FindStringSubmatch(s.output())
		return m != nil
	}, walkDeadline, 20*time.Millisecond, "no %q in:\n%s", pattern, s.output())
	return m
}

// wait waits for the script to end, requires success, and returns its output.
func (s *script) wait() string {
	s.t.Helper()
	require.NoError(s.t, <-s.done, s.output())
	return s.output()
}

// TestNewUserWalk is `make dev` as a new user meets it, in a real headless
// Chromium: open the dashboard, sign up with an e-mail code read from the
// dev mailbox the code page points to, enroll a passkey, see the recovery
// codes, create an org, two keys, a tool that needs approval, a tenant and a
// rule, add a webhook channel; run the API Builder's check-and-approval
// script exactly as the page shows it, which waits like an agent; the open
// queue shows the approval, the webhook's link opens it after a passkey
// sign-in, the passkey approves it and the script prints the agent's token;
// another is denied and the script ends without one.
func TestNewUserWalk(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl: the API Builder's bash script needs it")
	}
	env, err := Start(context.Background(), Options{Dir: rootableTempDir(t), Throwaway: true, UIPort: -1, FastPostgres: true}, quietLogger())
	require.NoError(t, err)
	t.Cleanup(env.Stop)
	base := env.PublicURL()
	w := newWalker(t, base)

	// A receiver for the org's webhook channel: the alerts' links.
	alerts := make(chan map[string]string, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var a map[string]string
		raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if json.Unmarshal(raw, &a) == nil {
			alerts <- a
		}
	}))
	t.Cleanup(hook.Close)

	// The printed dashboard URL leads to sign-in; the code page points to the
	// dev mailbox, where the code is.
	email := "new-user@example.com"
	w.do(chromedp.Navigate(base), chromedp.WaitVisible(`#email`))
	require.Contains(t, w.text(`main`), "the code creates your account")
	w.shot("sign-in")
	w.do(chromedp.SendKeys(`#email`, email), chromedp.Submit(`#email`), chromedp.WaitVisible(`#code`))
	var mailbox string
	w.do(chromedp.AttributeValue(`#dev-mailbox a`, "href", &mailbox, nil))
	w.shot("code")
	resp, err := http.Get(base + mailbox)
	require.NoError(t, err)
	box, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	code := regexp.MustCompile(`To: ` + regexp.QuoteMeta(email) + `\n(?:.*\n)*?Subject: Your oakallow code: (\d{6})`).FindSubmatch(box)
	require.NotNil(t, code, "the mailbox holds the code:\n%s", box)

	// Code → passkey → recovery codes → the first org → the Quickstart.
	w.do(chromedp.SendKeys(`#code`, string(code[1])), chromedp.Submit(`#code`), chromedp.WaitVisible(`#enroll-passkey`))
	w.shot("enroll")
	w.do(chromedp.Click(`#enroll-passkey`), chromedp.WaitVisible(`#recovery-codes`))
	w.shot("recovery-codes")
	w.do(chromedp.Click(`a.button`), chromedp.WaitVisible(`form[action="/orgs/new"] input[name=name]`))
	require.Contains(t, w.text(`main`), "This team has no org yet.")
	w.shot("first-org")
	w.do(chromedp.SendKeys(`form[action="/orgs/new"] input[name=name]`, "production"), chromedp.Submit(`form[action="/orgs/new"] input[name=name]`),
		chromedp.WaitVisible(`ol.steps`))
	require.Equal(t, base+"/quickstart", w.at())
	w.shot("quickstart")

	// The Quickstart's first step: two keys, each shown once.
	newKey := func(name, tier string) string {
		w.do(chromedp.Navigate(base+"/keys"), chromedp.WaitVisible(`#k-name`), chromedp.SendKeys(`#k-name`, name),
			chromedp.SetValue(`#k-tier`, tier), chromedp.Submit(`#k-name`), chromedp.WaitVisible(`#new-key`))
		return strings.TrimSpace(w.text(`#new-key`))
	}
	mk, sk := newKey("setup", "management"), newKey("agent", "standard")
	w.shot("keys")

	// A tool that needs a person, a tenant and a rule.
	w.do(chromedp.Navigate(base+"/tools"), chromedp.WaitVisible(`#t-name`), chromedp.SendKeys(`#t-name`, "refund_payment"),
		chromedp.SendKeys(`#t-description`, "Refunds a customer payment"), chromedp.SetValue(`#t-risk`, "high"),
		chromedp.SetValue(`#t-default`, "requires_approval"), chromedp.Click(`input[name=annotations_acknowledged]`),
		chromedp.Submit(`#t-name`), chromedp.WaitVisible(`p.notice`))
	require.Contains(t, w.text(`main`), "refund_payment")
	w.shot("tools")
	w.do(chromedp.Navigate(base+"/tenants"), chromedp.WaitVisible(`#n-name`), chromedp.SendKeys(`#n-name`, "acme"),
		chromedp.Submit(`#n-name`), chromedp.WaitVisible(`p.notice`))
	w.do(chromedp.Navigate(base+"/rules"), chromedp.WaitVisible(`#r-tool`), chromedp.SendKeys(`#r-tenant`, "acme"),
		chromedp.SendKeys(`#r-tool`, "refund_payment"), chromedp.SetValue(`#permission`, "allowed"),
		chromedp.SendKeys(`#r-description`, "acme refunds run unattended"), chromedp.Submit(`#r-tool`), chromedp.WaitVisible(`p.notice`))
	require.Contains(t, w.text(`main`), "acme refunds run unattended")
	w.shot("rules")
	w.do(chromedp.Navigate(base+"/settings"), chromedp.WaitVisible(`#c-name`), chromedp.SetValue(`#c-kind`, "webhook"),
		chromedp.SendKeys(`#c-name`, "ops hook"), chromedp.SendKeys(`#c-url`, hook.URL), chromedp.Submit(`#c-name`),
		chromedp.WaitVisible(`#shown-secret`))
	w.shot("settings")

	// The API Builder's scripts, run as the page shows them: the seed
	// script against this org (everything exists: kept), the check and
	// approval with the standard key, while the queue is open.
	var seed, call string
	w.do(chromedp.Navigate(base+"/builder"), chromedp.WaitVisible(`#bash-call`),
		chromedp.TextContent(`#bash-seed`, &seed), chromedp.TextContent(`#bash-call`, &call))
	w.shot("builder")
	out := sh(t, "bash", seed, "OAKALLOW_MANAGEMENT_KEY="+mk)
	require.Contains(t, out, "exists  /v1/rules (kept)")
	w.do(chromedp.Navigate(base+"/approvals"), chromedp.WaitVisible(`#queue`))
	agent := startScript(t, "bash", call, "OAKALLOW_KEY="+sk)
	link := agent.waitFor(`A reviewer decides it at (\S+/approvals/(REF-[0-9A-Z-]+))\n`)
	require.Equal(t, base+"/approvals/"+link[2], link[1], "the script names the approval's dashboard page")
	ref := link[2]
	w.do(chromedp.WaitVisible(`#queue a[href="/approvals/` + ref + `"]`))
	w.shot("queue")

	// The webhook's link, opened signed out, comes back to the approval
	// after the passkey signs in.
	var alert map[string]string
	for alert == nil || alert["reference"] != ref {
		select {
		case alert = <-alerts:
		case <-time.After(walkDeadline):
			t.Fatal("no webhook alert for " + ref)
		}
	}
	require.Equal(t, base+"/approvals/"+ref, alert["dashboard_url"])
	w.do(chromedp.Click(`.signout button`), chromedp.WaitVisible(`#passkey-sign-in`),
		chromedp.Navigate(alert["dashboard_url"]), chromedp.WaitVisible(`#passkey-sign-in`))
	w.do(chromedp.Click(`#passkey-sign-in`), chromedp.WaitVisible(`#approve`))
	require.Equal(t, alert["dashboard_url"], w.at())
	w.shot("approval")
	w.do(chromedp.SendKeys(`#note`, "fine"), chromedp.Click(`#approve`), chromedp.WaitVisible(`ul.evidence`))
	require.Contains(t, w.text(`main`), "approved")
	w.shot("approved")
	approval := func(ref string) (status, token string) {
		req, err := http.NewRequest(http.MethodGet, base+"/v1/approvals/"+ref, nil)
		require.NoError(t, err)
		req.Header.Set("X-API-Key", sk)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var a struct{ Status, Token string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
		return a.Status, a.Token
	}
	status, token := approval(ref)
	require.Equal(t, "approved", status)
	require.True(t, strings.HasPrefix(token, "oak_tok_"), "the agent gets its token")
	require.Contains(t, agent.wait(), "\nstatus: approved\nexecution token: "+token+"\n", "the waiting script prints it")

	// Another request, denied: no token.
	agent = startScript(t, "bash", call, "OAKALLOW_KEY="+sk)
	link = agent.waitFor(`/approvals/(REF-[0-9A-Z-]+)\n`)
	w.do(chromedp.Navigate(base+"/approvals/"+link[1]), chromedp.WaitVisible(`#deny`), chromedp.SendKeys(`#note`, "not now"),
		chromedp.Click(`#deny`), chromedp.WaitVisible(`ul.evidence`))
	w.shot("denied")
	status, token = approval(link[1])
	require.Equal(t, "denied", status)
	require.Empty(t, token)
	require.True(t, strings.HasSuffix(agent.wait(), "\nstatus: denied\n"), "no token")

	w.mu.Lock()
	defer w.mu.Unlock()
	require.Empty(t, w.errs, "no page threw")
}
