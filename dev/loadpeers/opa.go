package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"oakallow/dev/devenv"
	"oakallow/dev/loadgen"
)

// buildOPA builds the opa command pinned in dev/opa/go.mod (go.sum verifies
// what the module proxy serves) into the user cache directory, once per
// version of those files, and returns its path.
func buildOPA(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", errors.New("run loadpeers from the oakallow repository (go run ./dev/loadpeers), or give -opa")
	}
	modDir := filepath.Join(filepath.Dir(gomod), "dev", "opa")
	h := sha256.New()
	for _, name := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(modDir, name))
		if err != nil {
			return "", fmt.Errorf("the pinned OPA: %w", err)
		}
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "oakallow", "opa-"+hex.EncodeToString(h.Sum(nil))[:12], "opa")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Printf("building the OPA pinned in dev/opa/go.mod into %s (the first time takes minutes) …\n", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/open-policy-agent/opa")
	cmd.Dir = modDir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build opa: %w", err)
	}
	return bin, nil
}

// startOPA starts an OPA server on a loopback port with the Rego form of the
// chain and the org as its data, decision logging on (to the console, which
// goes to a file in dir).
func startOPA(ctx context.Context, bin, dir string, org loadgen.Org) (*server, error) {
	data, err := org.OPAData()
	if err != nil {
		return nil, err
	}
	policy, dataFile, logFile := filepath.Join(dir, "policy.rego"), filepath.Join(dir, "data.json"), filepath.Join(dir, "opa.log")
	if err := os.WriteFile(policy, []byte(loadgen.Policy), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(dataFile, data, 0o600); err != nil {
		return nil, err
	}
	port, err := devenv.FreePort()
	if err != nil {
		return nil, err
	}
	logs, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "run", "--server", "--addr", addr, "--log-format", "json",
		"--set", "decision_logs.console=true", policy, dataFile)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		logs.Close()
		return nil, fmt.Errorf("start opa: %w", err)
	}
	s := &server{name: "OPA", cmd: cmd, base: "http://" + addr, done: make(chan struct{}), logFile: logFile}
	go func() { _ = cmd.Wait(); logs.Close(); close(s.done) }()
	s.stopFn = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-s.done
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(s.base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("opa exited at start; see %s", logFile)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("opa did not become healthy within 2 minutes")
		}
	}
}

// decisionsLogged counts the decision log entries OPA wrote to its log.
func decisionsLogged(logFile string) (int, error) {
	f, err := os.Open(logFile)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	n := 0
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(`"decision_id"`)) {
			n++
		}
	}
	return n, sc.Err()
}
