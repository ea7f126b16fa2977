package devtest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// StripeMockVersion is the stripe-mock the Makefile installs (`make tools`)
// and CI runs: Stripe's own mock of its API, driven by its OpenAPI spec.
const StripeMockVersion = "v0.203.0"

var (
	stripeOnce sync.Once
	stripeURL  string
	stripeErr  error
	stripeCmd  *exec.Cmd
)

// StripeMock returns the base URL of a stripe-mock server on loopback,
// started once per test process and stopped by Main. The binary is looked
// up on PATH and in $GOBIN or $GOPATH/bin, where `make tools` installs it.
// Without it the test fails under CI (which installs it) and is skipped,
// saying how to install it, elsewhere.
func StripeMock(t testing.TB) string {
	t.Helper()
	stripeOnce.Do(startStripeMock)
	if errors.Is(stripeErr, errNoStripeMock) && os.Getenv("CI") == "" {
		t.Skipf("%v: install it with `make tools` (go install github.com/stripe/stripe-mock@%s)", stripeErr, StripeMockVersion)
	}
	if stripeErr != nil {
		t.Fatalf("stripe-mock: %v", stripeErr)
	}
	return stripeURL
}

var errNoStripeMock = errors.New("stripe-mock is not installed")

func findStripeMock() (string, error) {
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p, nil
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for d := range strings.SplitSeq(strings.TrimSpace(string(out)), string(os.PathListSeparator)) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "stripe-mock")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", errNoStripeMock
}

var (
	stripeListening    = regexp.MustCompile(`Listening for HTTP at address: .*:(\d+)`)
	stripeListeningTLS = regexp.MustCompile(`Listening for HTTPS at address: `)
	stripeListenError  = regexp.MustCompile(`error listening at address: .*`)
)

func startStripeMock() {
	bin, err := findStripeMock()
	if err != nil {
		stripeErr = err
		return
	}
	stripeURL, stripeCmd, stripeErr = launchStripeMock(bin)
}

// launchStripeMock starts stripe-mock on loopback ports of the system's
// choosing — HTTPS too: left alone it takes port 12112, so a second test
// process (another package, another engineer's run) would fail to bind it
// and exit after reporting its HTTP port — and returns once it listens on
// both, or with the error it reported.
func launchStripeMock(bin string) (string, *exec.Cmd, error) {
	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:", "-https-addr", "127.0.0.1:")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s: %w", bin, err)
	}
	type result struct {
		port string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var port string
		reported := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case reported:
			case stripeListenError.MatchString(line):
				done <- result{err: errors.New(stripeListenError.FindString(line))}
				reported = true
			case stripeListening.MatchString(line):
				port = stripeListening.FindStringSubmatch(line)[1]
			case stripeListeningTLS.MatchString(line) && port != "":
				done <- result{port: port}
				reported = true
			}
		}
		if !reported {
			done <- result{err: errors.New("stripe-mock exited before listening")}
		}
	}()
	kill := func(err error) (string, *exec.Cmd, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return "", nil, err
	}
	select {
	case r := <-done:
		if r.err != nil {
			return kill(r.err)
		}
		return "http://127.0.0.1:" + r.port, cmd, nil
	case <-time.After(60 * time.Second):
		return kill(errors.New("stripe-mock did not report its address within 60 s"))
	}
}

func stopStripeMock() {
	if stripeCmd != nil {
		_ = stripeCmd.Process.Kill()
		_ = stripeCmd.Wait()
	}
}
