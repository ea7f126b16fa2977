// Command conformance runs the official MCP conformance suite's
// authorization-server scenarios (npm @modelcontextprotocol/conformance,
// pinned with the Node.js it needs in package.json and package-lock.json
// beside this file) against a throwaway dev stack, and holds the results to
// baseline.txt: a warning or failure that is not in the baseline fails the
// run, and so does a baseline entry that no longer happens (stale).
//
//	make conformance     # installs the pinned packages, then runs this
//	go run ./dev/conformance -modules DIR   # DIR holds the npm ci'd node_modules
//
// The suite's authorization-code-grant scenario prints an authorization URL
// for a person to open and waits for the redirect to its own callback
// server. This command plays that person: a member of the dev org signed in
// with a passkey (a virtual authenticator) follows the URL to the consent
// step, approves the scopes asked for in the dev org, and sends the browser
// on to the callback, as the consent page would.
//
// The suite's server scenarios are not run: they connect without
// credentials, and /mcp answers every unauthenticated call with 401 and the
// RFC 9728 challenge, so they would only measure that.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"oakallow/dev/devstack"
)

func main() {
	modules := flag.String("modules", "", "directory whose node_modules holds the pinned suite and Node.js (npm ci of dev/conformance)")
	baseline := flag.String("baseline", "dev/conformance/baseline.txt", "expected warnings and failures, each with a reason")
	out := flag.String("out", "", "directory for the suite's results (default: a temporary one, removed after)")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	verbose := flag.Bool("v", false, "log the stack's warnings and errors")
	flag.Parse()
	if *modules == "" {
		fmt.Fprintln(os.Stderr, "conformance: -modules is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *modules, *baseline, *out, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(1)
	}
}

// suite locates the installed suite and its Node.js.
type suite struct{ node, cli string }

func findSuite(ctx context.Context, modules string) (suite, error) {
	s := suite{node: filepath.Join(modules, "node_modules", ".bin", "node"),
		cli: filepath.Join(modules, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js")}
	v, err := exec.CommandContext(ctx, s.node, "--version").Output()
	if err != nil {
		return suite{}, fmt.Errorf("%s: %w (run npm ci in the modules directory)", s.node, err)
	}
	major, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(v)), "v"), ".")
	if n, err := strconv.Atoi(major); err != nil || n < 22 {
		return suite{}, fmt.Errorf("%s is Node.js %s; the suite needs 22 or newer", s.node, strings.TrimSpace(string(v)))
	}
	if _, err := os.Stat(s.cli); err != nil {
		return suite{}, err
	}
	return s, nil
}

// scenarios lists the suite's authorization-server scenarios.
func (s suite) scenarios(ctx context.Context) ([]string, error) {
	raw, err := exec.CommandContext(ctx, s.node, s.cli, "list", "--authorization").Output()
	if err != nil {
		return nil, fmt.Errorf("list scenarios: %w", err)
	}
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^\s+- (\S+)`).FindAllStringSubmatch(string(raw), -1) {
		names = append(names, m[1])
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("the suite lists no authorization-server scenarios:\n%s", raw)
	}
	return names, nil
}

func run(ctx context.Context, modules, baselinePath, out string, verbose bool) error {
	s, err := findSuite(ctx, modules)
	if err != nil {
		return err
	}
	want, err := s.scenarios(ctx)
	if err != nil {
		return err
	}
	base, err := readBaseline(baselinePath)
	if err != nil {
		return err
	}
	if out == "" {
		if out, err = os.MkdirTemp("", "oakallow-conformance-"); err != nil {
			return err
		}
		defer os.RemoveAll(out)
	}

	level := slog.LevelError + 1
	if verbose {
		level = slog.LevelWarn
	}
	stack, err := devstack.Start(ctx, devstack.Options{Throwaway: true, UIPort: -1, FastPostgres: true},
		slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	if err != nil {
		return err
	}
	defer stack.Stop()
	creds := stack.Credentials()
	session, _, err := stack.SignInPerson(ctx, "admin")
	if err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	callbackPort, err := freePort()
	if err != nil {
		return err
	}
	b := browser{base: creds.APIURL, session: session, orgID: creds.OrgID,
		hc: &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	clientID, err := b.register(ctx, fmt.Sprintf("http://127.0.0.1:%d/callback", callbackPort))
	if err != nil {
		return err
	}

	// A failed consent stops the suite, which would otherwise wait minutes
	// for a callback that never comes.
	suiteCtx, stopSuite := context.WithCancel(ctx)
	defer stopSuite()
	issuer := stack.PublicURL()
	cmd := exec.CommandContext(suiteCtx, s.node, s.cli, "authorization", "--url", issuer, "--client-id", clientID,
		"--resource", issuer+"/mcp", "--port", strconv.Itoa(callbackPort), "-o", out)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	consented := make(chan error, 1)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		fmt.Println(line)
		if strings.HasPrefix(line, issuer+"/oauth/authorize?") {
			go func() {
				err := b.consent(ctx, line)
				if err != nil {
					stopSuite()
				}
				consented <- err
			}()
		}
	}
	// The suite exits non-zero on any failure; the baseline decides.
	waitErr := cmd.Wait()
	select {
	case err := <-consented:
		if err != nil {
			return fmt.Errorf("consent: %w", err)
		}
	default:
	}
	if ctx.Err() != nil {
		return fmt.Errorf("the suite did not finish in time: %w", ctx.Err())
	}
	got, err := readResults(out, want)
	if err != nil {
		return fmt.Errorf("%w (suite: %v)", err, waitErr)
	}
	return compare(os.Stdout, got, base)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// browser is the signed-in person's side of the authorization flow.
type browser struct {
	base, session, orgID string
	hc                   *http.Client
}

func (b browser) send(ctx context.Context, method, u string, body any, auth bool) (*http.Response, []byte, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+b.session)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, raw, err
}

// register registers the suite's public client (RFC 7591) with its callback.
func (b browser) register(ctx context.Context, redirect string) (string, error) {
	resp, raw, err := b.send(ctx, http.MethodPost, b.base+"/oauth/register", map[string]any{
		"client_name": "MCP conformance suite", "redirect_uris": []string{redirect},
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none"}, false)
	if err != nil {
		return "", err
	}
	var c struct {
		ClientID string `json:"client_id"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(raw, &c) != nil || c.ClientID == "" {
		return "", fmt.Errorf("register the suite's client: status %d: %.300s", resp.StatusCode, raw)
	}
	return c.ClientID, nil
}

// consent follows the authorization URL to the consent step, approves what
// the client asked for in the dev org, and sends the browser on to the
// client's callback.
func (b browser) consent(ctx context.Context, authURL string) error {
	resp, raw, err := b.send(ctx, http.MethodGet, authURL, nil, false)
	if err != nil {
		return err
	}
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/oauth/consent/") {
		return fmt.Errorf("authorization endpoint: status %d, Location %q: %.300s", resp.StatusCode, loc, raw)
	}
	id := path.Base(loc)
	resp, raw, err = b.send(ctx, http.MethodGet, b.base+"/v1/oauth/requests/"+url.PathEscape(id), nil, true)
	if err != nil {
		return err
	}
	var req struct {
		CSRF   string   `json:"csrf"`
		Scopes []string `json:"scopes"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &req) != nil {
		return fmt.Errorf("read the request: status %d: %.300s", resp.StatusCode, raw)
	}
	resp, raw, err = b.send(ctx, http.MethodPost, b.base+"/v1/oauth/requests/"+url.PathEscape(id)+"/decision",
		map[string]any{"csrf": req.CSRF, "decision": "approve", "org_id": b.orgID, "scopes": req.Scopes}, true)
	if err != nil {
		return err
	}
	var decided struct {
		RedirectTo string `json:"redirect_to"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &decided) != nil {
		return fmt.Errorf("approve: status %d: %.300s", resp.StatusCode, raw)
	}
	// The suite prints the URL as it starts its callback server: give the
	// server a moment to listen.
	for try := 0; ; try++ {
		resp, raw, err = b.send(ctx, http.MethodGet, decided.RedirectTo, nil, false)
		if err == nil || try == 50 || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("the suite's callback: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the suite's callback: status %d: %.300s", resp.StatusCode, raw)
	}
	return nil
}

// result is one check of the suite.
type result struct {
	Scenario, Check, Status, Message string
}

func (r result) key() string { return r.Scenario + " " + r.Check + " " + r.Status }

// resultDir is how the suite names a scenario's results:
// authorization-server-<scenario>-<timestamp>.
var resultDir = regexp.MustCompile(`^authorization-server-(.+)-\d{4}-\d\d-\d\dT[0-9-]+Z$`)

// readResults reads every scenario's checks.json; a scenario of the suite
// with no results is an error, not a pass.
func readResults(dir string, want []string) ([]result, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var got []result
	seen := map[string]bool{}
	for _, e := range entries {
		m := resultDir.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name(), "checks.json"))
		if err != nil {
			return nil, err
		}
		var checks []struct {
			ID, Status, ErrorMessage string
		}
		if err := json.Unmarshal(raw, &checks); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		seen[m[1]] = true
		for _, c := range checks {
			got = append(got, result{Scenario: m[1], Check: c.ID, Status: c.Status, Message: c.ErrorMessage})
		}
	}
	var missing []string
	for _, w := range want {
		if !seen[w] {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no results for scenario(s) %s", strings.Join(missing, ", "))
	}
	return got, nil
}

// readBaseline reads the expected warnings and failures: one per line,
// "<scenario> <check id> <STATUS> <reason>", # comments allowed.
func readBaseline(p string) (map[string]string, error) {
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	base := map[string]string{}
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			return nil, fmt.Errorf("%s:%d: want <scenario> <check id> <STATUS> <reason>", p, i+1)
		}
		k := strings.Join(f[:3], " ")
		if _, dup := base[k]; dup {
			return nil, fmt.Errorf("%s:%d: %s is listed twice", p, i+1, k)
		}
		base[k] = strings.Join(f[3:], " ")
	}
	return base, nil
}

// compare reports the results against the baseline and fails on a warning
// or failure it does not list, or an entry that did not happen.
func compare(w io.Writer, got []result, base map[string]string) error {
	var passed, expected int
	var unexpected []string
	happened := map[string]bool{}
	for _, r := range got {
		switch r.Status {
		case "SUCCESS", "INFO":
			passed++
			continue
		}
		happened[r.key()] = true
		if reason, ok := base[r.key()]; ok {
			expected++
			fmt.Fprintf(w, "expected: %s (%s)\n", r.key(), reason)
			continue
		}
		unexpected = append(unexpected, fmt.Sprintf("%s: %s", r.key(), r.Message))
	}
	var stale []string
	for k := range base {
		if !happened[k] {
			stale = append(stale, k)
		}
	}
	sort.Strings(stale)
	for _, u := range unexpected {
		fmt.Fprintf(w, "NEW: %s\n", u)
	}
	for _, s := range stale {
		fmt.Fprintf(w, "STALE baseline entry (it passes now; remove it): %s\n", s)
	}
	fmt.Fprintf(w, "conformance: %d warnings or failures are in the baseline\n", expected)
	fmt.Fprintf(w, "conformance: %d passed, %d failed\n", passed, len(unexpected)+len(stale))
	if len(unexpected)+len(stale) > 0 {
		return errors.New("results differ from dev/conformance/baseline.txt")
	}
	return nil
}
