package mcpjourney

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/modelcontextprotocol/go-sdk/auth"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"github.com/stretchr/testify/require"

	"oakallow/dev/devstack"
	"oakallow/dev/devtest"
)

// hang is how long one step may take before the walk counts it as hung.
const hang = 30 * time.Second

// person is the new user: one headless Chromium tab with a passkey
// authenticator (DevTools' virtual one, which verifies the user at once),
// collecting every page error and CSP violation on the dashboard.
type person struct {
	t        *testing.T
	ctx      context.Context
	base     string
	shots    string
	mu       sync.Mutex
	problems []string
}

func newPerson(t *testing.T, base string) *person {
	t.Helper()
	ctx := devtest.ChromiumTab(t)
	p := &person{t: t, ctx: ctx, base: base, shots: os.Getenv("OAKALLOW_SCREENSHOTS")}
	chromedp.ListenTarget(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "exception: " + ev.ExceptionDetails.Text
		case *log.EventEntryAdded:
			// The client's callback page is not ours (it has no favicon).
			if ev.Entry.Level == log.LevelError && strings.HasPrefix(ev.Entry.URL, base) {
				msg = "console: " + ev.Entry.Text + " " + ev.Entry.URL
			}
		}
		if msg != "" {
			p.mu.Lock()
			p.problems = append(p.problems, msg)
			p.mu.Unlock()
		}
	})
	// The first run starts the browser (on the tab's own context).
	require.NoError(t, chromedp.Run(ctx, log.Enable(), runtime.Enable()))
	p.run(devtest.PasskeyAuthenticator())
	return p
}

// run runs browser actions; on an error or a hang it fails the walk with
// where the browser was and what it showed.
func (p *person) run(actions ...chromedp.Action) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, hang)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		var loc, text string
		ctx2, cancel2 := context.WithTimeout(p.ctx, 5*time.Second)
		defer cancel2()
		_ = chromedp.Run(ctx2, chromedp.Location(&loc), chromedp.Text(`body`, &text))
		p.t.Fatalf("browser: %v\nat %s:\n%s", err, loc, text)
	}
}

// shot keeps a screenshot of the page when OAKALLOW_SCREENSHOTS names a directory.
func (p *person) shot(name string) {
	p.t.Helper()
	if p.shots == "" {
		return
	}
	var png []byte
	p.run(chromedp.FullScreenshot(&png, 100))
	require.NoError(p.t, os.WriteFile(filepath.Join(p.shots, "mcp-"+name+".png"), png, 0o644))
}

func (p *person) location() string {
	var loc string
	p.run(chromedp.Location(&loc))
	return loc
}

func (p *person) text(sel string) string {
	var s string
	p.run(chromedp.Text(sel, &s))
	return s
}

// noProblems requires that no dashboard page threw or broke its CSP so far.
func (p *person) noProblems() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	require.Empty(p.t, p.problems)
}

var mailedCode = regexp.MustCompile(`\b(\d{3} ?\d{3})\b`)

// code reads the newest sign-in code sent to addr from the dev mailbox, as
// the README tells a new user to.
func (p *person) code(addr string) string {
	p.t.Helper()
	resp, err := http.Get(p.base + "/dev/mailbox")
	require.NoError(p.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(p.t, err)
	var code string
	for _, m := range strings.Split(string(b), "\n----\n") {
		head, body, ok := strings.Cut(m, "\n\n")
		if ok && strings.Contains(head, "To: "+addr+"\n") {
			if c := mailedCode.FindStringSubmatch(body); c != nil {
				code = strings.ReplaceAll(c[1], " ", "")
			}
		}
	}
	require.NotEmpty(p.t, code, "no code for %s in the dev mailbox:\n%s", addr, b)
	return code
}

// callback is the MCP client's loopback redirect URI, which desktop clients
// listen on for the authorization response.
type callback struct {
	url string
	got chan url.Values
}

func startCallback(t *testing.T) *callback {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c := &callback{url: "http://" + ln.Addr().String() + "/callback", got: make(chan url.Values, 1)}
	srv := &http.Server{ReadHeaderTimeout: hang, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		select {
		case c.got <- r.URL.Query():
		default:
		}
		fmt.Fprintln(w, "Signed in. You can close this window and return to the application.")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return c
}

// call calls an MCP tool and returns its structured answer and whether it
// is a tool error; a protocol error fails the walk.
func call(t *testing.T, s *sdk.ClientSession, name string, args map[string]any) (map[string]any, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	res, err := s.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	require.NoError(t, err, name)
	raw, err := json.Marshal(res.StructuredContent)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	return out, res.IsError
}

// stack is the dev stack the walk runs against: a running `make dev` named
// by OAKALLOW_WALK_URL, or a throwaway one started here.
func stack(t *testing.T) string {
	t.Helper()
	if base := os.Getenv("OAKALLOW_WALK_URL"); base != "" {
		return strings.TrimSuffix(base, "/")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("OAKALLOW_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	s, err := devstack.Start(ctx, devstack.Options{Throwaway: true, FastPostgres: true, UIPort: -1}, logger)
	require.NoError(t, err)
	t.Cleanup(s.Stop)
	return s.PublicURL()
}

// TestNewUserConnectsAnMCPClient is the walk the package documents.
func TestNewUserConnectsAnMCPClient(t *testing.T) {
	if devtest.Chromium() == "" {
		t.Skip("no chromium installed (apt-get install chromium); .ci/run installs it")
	}
	base := stack(t)
	p := newPerson(t, base)

	// Sign up on the dashboard: an e-mail code from the dev mailbox, then a
	// passkey, then ten recovery codes shown once.
	email := fmt.Sprintf("new-%d@example.com", time.Now().UnixNano())
	p.run(chromedp.Navigate(base), chromedp.WaitVisible(`#email`))
	p.shot("sign-in")
	p.run(chromedp.SendKeys(`#email`, email), chromedp.Submit(`#email`), chromedp.WaitVisible(`#code`))
	p.run(chromedp.SendKeys(`#code`, p.code(email)), chromedp.Submit(`#code`), chromedp.WaitVisible(`#enroll-passkey`))
	p.shot("enroll")
	p.run(chromedp.SendKeys(`#passkey-name`, "laptop"), chromedp.Click(`#enroll-passkey`), chromedp.WaitVisible(`#recovery-codes`))

	// A new team has no org yet: the person creates one, the dashboard acts
	// in it and opens the Quickstart.
	p.run(chromedp.Click(`a.button`), chromedp.WaitVisible(`form[action="/orgs/new"] input[name=name]`))
	require.Contains(t, p.text(`main`), "This team has no org yet")
	p.shot("no-org")
	p.run(chromedp.SendKeys(`form[action="/orgs/new"] input[name=name]`, "support-agents"),
		chromedp.Submit(`form[action="/orgs/new"] input[name=name]`), chromedp.WaitVisible(`ol.steps`))
	require.Equal(t, "support-agents", p.text(`#current-org`))

	// A tool the agent may use without asking, registered on the Tools page.
	p.run(chromedp.Navigate(base+"/tools"), chromedp.WaitVisible(`#t-name`),
		chromedp.SendKeys(`#t-name`, "read_ticket"), chromedp.SetValue(`#t-risk`, "low"), chromedp.SetValue(`#t-default`, "allowed"),
		chromedp.Click(`input[name=read_only]`), chromedp.Click(`input[name=destructive]`), chromedp.Click(`input[name=open_world]`),
		chromedp.Click(`input[name=idempotent]`), chromedp.Click(`input[name=annotations_acknowledged]`),
		chromedp.Submit(`#t-name`), chromedp.WaitVisible(`p.notice`))
	require.Equal(t, "Tool registered.", p.text(`p.notice`))
	require.Contains(t, p.text(`main`), "read-only, idempotent")

	// Signed out, as when the MCP client opens the browser some other day.
	p.run(chromedp.Click(`.signout button`), chromedp.WaitVisible(`#passkey-sign-in`))

	// The MCP client gets nothing but the URL. Its first call answers 401;
	// it discovers the authorization server, registers itself, and sends
	// the person's browser to authorize: sign in with the passkey, consent.
	cb := startCallback(t)
	var consents int
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		RedirectURL: cb.url,
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			ClientName: "Support triage agent", RedirectURIs: []string{cb.url}, GrantTypes: []string{"authorization_code", "refresh_token"},
			TokenEndpointAuthMethod: "none"}},
		AuthorizationCodeFetcher: func(_ context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			consents++
			p.run(chromedp.Navigate(args.URL), chromedp.WaitVisible(`#passkey-sign-in`))
			require.Contains(t, p.location(), "/sign-in?next=%2Foauth%2Fconsent%2F", "signed out: sign in first, then back")
			p.run(chromedp.Click(`#passkey-sign-in`), chromedp.WaitVisible(`#scopes`))
			page := p.text(`main`)
			require.Contains(t, page, "Support triage agent asks to use oakallow")
			require.Contains(t, page, base+"/mcp", "the consent names the resource")
			require.Contains(t, page, "support-agents")
			p.shot("consent")
			p.run(chromedp.Click(`button[value=approve]`), chromedp.WaitVisible(`body`))
			select {
			case q := <-cb.got:
				if e := q.Get("error"); e != "" {
					return nil, errors.New(e)
				}
				return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
			case <-time.After(hang):
				return nil, fmt.Errorf("the browser never reached the client's callback (at %s)", p.location())
			}
		},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	client := sdk.NewClient(&sdk.Implementation{Name: "journey", Version: "1"}, nil)
	s, err := client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: base + "/mcp", OAuthHandler: h}, nil)
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, 1, consents)

	// A registered tool: allowed, and the check mints a token.
	out, isErr := call(t, s, "check_permission", map[string]any{"tool": "read_ticket", "method": "read"})
	require.False(t, isErr, "%v", out)
	require.Equal(t, "allowed", out["permission"], "%v", out)
	out, isErr = call(t, s, "mint_token", map[string]any{"check_id": out["check_id"]})
	require.False(t, isErr, "%v", out)
	require.True(t, strings.HasPrefix(fmt.Sprint(out["token"]), "oak_tok_"), "%v", out)

	// An unknown tool becomes a draft for the person to triage, and needs approval.
	out, isErr = call(t, s, "check_permission", map[string]any{"tool": "issue_refund", "method": "write"})
	require.False(t, isErr, "%v", out)
	require.Equal(t, "requires_approval", out["permission"], "%v", out)
	require.Equal(t, "tool_auto_created", out["reason"], "%v", out)
	p.run(chromedp.Navigate(base+"/tools"), chromedp.WaitVisible(`#drafts-title`))
	require.Contains(t, p.text(`#drafts-title`), "1")
	require.Contains(t, p.text(`main`), "issue_refund")
	p.shot("drafts")
	out, isErr = call(t, s, "list_my_tools", map[string]any{})
	require.False(t, isErr, "%v", out)
	require.Contains(t, fmt.Sprint(out["tools"]), "issue_refund")

	// Two approval requests: the person approves one and denies the other
	// in the browser, each confirmed with the passkey.
	request := func(reason string) string {
		out, isErr := call(t, s, "request_approval", map[string]any{"tool": "issue_refund", "method": "write",
			"parameters": map[string]any{"order": "A-1001", "amount": 25}, "reasoning": reason})
		require.False(t, isErr, "%v", out)
		require.Equal(t, "pending", out["status"], "%v", out)
		return fmt.Sprint(out["reference"])
	}
	approved, denied := request("The customer was charged twice"), request("Refund everything")
	out, isErr = call(t, s, "list_pending_approvals", map[string]any{})
	require.False(t, isErr, "%v", out)
	require.Len(t, out["approvals"], 2, "%v", out)
	decide := func(ref, button string) {
		p.run(chromedp.Navigate(base+"/approvals"), chromedp.WaitVisible(`#queue a[href="/approvals/`+ref+`"]`),
			chromedp.Click(`#queue a[href="/approvals/`+ref+`"]`), chromedp.WaitVisible(button))
		p.shot("approval")
		p.run(chromedp.Click(button), chromedp.WaitVisible(`ul.evidence`))
	}
	decide(approved, `#approve`)
	decide(denied, `#deny`)

	// The agent polls: the approved call comes with its execution token, the
	// denied one with none, and no token can be minted for it.
	out, isErr = call(t, s, "check_approval_status", map[string]any{"reference": approved})
	require.False(t, isErr, "%v", out)
	require.Equal(t, "approved", out["status"], "%v", out)
	require.True(t, strings.HasPrefix(fmt.Sprint(out["token"]), "oak_tok_"), "%v", out)
	out, isErr = call(t, s, "check_approval_status", map[string]any{"reference": denied})
	require.False(t, isErr, "%v", out)
	require.Equal(t, "denied", out["status"], "%v", out)
	require.Nil(t, out["token"], "%v", out)
	out, isErr = call(t, s, "mint_token", map[string]any{"approval_id": denied})
	require.True(t, isErr, "a denied approval mints nothing: %v", out)
	require.Nil(t, out["token"], "%v", out)
	p.noProblems()
}
