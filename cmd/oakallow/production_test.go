package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
)

// The production binary, built once per test binary by productionBinary.
var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// productionBinary builds ./cmd/oakallow (the binary operators run, not dev/).
func productionBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "oakallow-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "oakallow")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/oakallow: %w\n%s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

func removeProductionBinary() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// process is one running oakallow command; its JSON log lines are kept.
type process struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs []map[string]any
	raw  bytes.Buffer
	seen chan struct{} // signalled on every log line
	done chan struct{} // closed when the process has exited
	err  error         // its exit, valid after done
}

// startProcess runs the binary with exactly env (nothing is inherited, so the
// test's own environment cannot leak in) and collects its log.
func startProcess(t *testing.T, name string, env []string, args ...string) *process {
	t.Helper()
	p := &process{name: name, seen: make(chan struct{}, 1), done: make(chan struct{})}
	p.cmd = exec.Command(productionBinary(t), args...)
	p.cmd.Env = env
	stderr, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			_ = json.Unmarshal(sc.Bytes(), &rec)
			p.mu.Lock()
			p.raw.Write(sc.Bytes())
			p.raw.WriteByte('\n')
			if rec != nil {
				p.logs = append(p.logs, rec)
			}
			p.mu.Unlock()
			select {
			case p.seen <- struct{}{}:
			default:
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", p.name, p.log())
		}
	})
	return p
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// waitLog waits for a log record with message msg and returns it.
func (p *process) waitLog(ctx context.Context, t *testing.T, msg string) map[string]any {
	t.Helper()
	for {
		p.mu.Lock()
		for _, rec := range p.logs {
			if rec["msg"] == msg {
				p.mu.Unlock()
				return rec
			}
		}
		p.mu.Unlock()
		select {
		case <-p.seen:
		case <-p.done:
			t.Fatalf("%s exited (%v) before logging %q", p.name, p.err, msg)
		case <-ctx.Done():
			t.Fatalf("%s never logged %q: %v", p.name, msg, ctx.Err())
		}
	}
}

// stop sends SIGTERM, as a supervisor or orchestrator does, and expects a clean exit.
func (p *process) stop(ctx context.Context, t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
		require.NoError(t, p.err, "%s exit", p.name)
	case <-ctx.Done():
		t.Fatalf("%s did not stop on SIGTERM", p.name)
	}
}

// runCommand runs the binary to completion and returns its stdout.
func runCommand(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(productionBinary(t), args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "oakallow %s: %s", strings.Join(args, " "), stderr.String())
	return stdout.String()
}

// call sends a JSON request to one serve process and decodes the answer.
func call(t *testing.T, base, method, path, key string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, base+path, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	}
	return resp.StatusCode, out
}

// TestProductionLayout runs the production layout of the README from the
// production binary: migrate, then two serve and two worker processes against
// a fresh Temporal namespace (no search attributes yet) and a fresh, empty
// database. An approval is created through one serve, decided with a
// management key through the other, and its token verified exactly once.
func TestProductionLayout(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute) // a hang, not a budget
	defer cancel()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"DATABASE_URL=" + devtest.EmptyDatabase(t),
		"TEMPORAL_ADDRESS=" + devtest.Temporal(t).Address(),
		"TEMPORAL_NAMESPACE=" + devtest.Namespace(t),
		"OAKALLOW_SECRET_KEY=" + base64.StdEncoding.EncodeToString(secret),
		"OAKALLOW_ADDR=127.0.0.1:0",
		"OAKALLOW_WORKER_METRICS_ADDR=127.0.0.1:0",
		"LOG_FORMAT=json",
	}
	env = append(env, "OAKALLOW_SIGNING_KEYS="+strings.TrimSpace(runCommand(t, env, "keygen", "k1")))

	out := runCommand(t, env, "migrate", "up")
	require.Contains(t, out, "search attributes ready (added OakallowLevel, OakallowOrg, OakallowStatus, OakallowTenant, OakallowTool)")
	var boot struct {
		OrgID         string `json:"org_id"`
		ManagementKey string `json:"management_key"`
		StandardKey   string `json:"standard_key"`
	}
	require.NoError(t, json.Unmarshal([]byte(runCommand(t, env, "bootstrap",
		"-team", "Acme", "-org", "production", "-owner-email", "ops@acme.example")), &boot))
	require.NotEmpty(t, boot.StandardKey)

	var serves []string
	var procs []*process
	for i := range 2 {
		s := startProcess(t, fmt.Sprintf("serve-%d", i), env, "serve")
		w := startProcess(t, fmt.Sprintf("worker-%d", i), env, "worker")
		procs = append(procs, s, w)
		serves = append(serves, "http://"+s.waitLog(ctx, t, "api listening")["addr"].(string))
		w.waitLog(ctx, t, "worker started")
	}
	a, b := serves[0], serves[1]
	mgmt, std := boot.ManagementKey, boot.StandardKey
	for _, base := range serves {
		status, body := call(t, base, http.MethodGet, "/readyz", "", nil)
		require.Equal(t, http.StatusOK, status, body)
	}

	status, body := call(t, a, http.MethodPost, "/v1/tools", mgmt, map[string]any{
		"name": "wire_money", "risk_level": "critical", "read_only": false, "destructive": true,
		"idempotent": false, "open_world": true, "annotations_acknowledged": true,
		"default_permission": "requires_approval"})
	require.Equal(t, http.StatusCreated, status, body)
	status, body = call(t, a, http.MethodPatch, "/v1/settings", mgmt, map[string]any{"management_keys_may_decide": true})
	require.Equal(t, http.StatusOK, status, body)

	// The other replica hears of the new tool through PostgreSQL.
	for {
		status, body = call(t, b, http.MethodPost, "/v1/permissions/check", std, map[string]any{"tool": "wire_money"})
		require.Equal(t, http.StatusOK, status, body)
		if body["permission"] == "requires_approval" {
			break
		}
		require.NoError(t, ctx.Err(), "serve B never saw the tool: %v", body)
		time.Sleep(50 * time.Millisecond)
	}

	params := map[string]any{"amount": 120, "to": "landlord"}
	status, body = call(t, b, http.MethodPost, "/v1/approvals", std, map[string]any{
		"tool": "wire_money", "parameters": params, "reasoning": "monthly rent"})
	require.Equal(t, http.StatusCreated, status, body)
	ref, id := body["reference"].(string), body["id"].(string)
	require.Equal(t, "pending", body["status"])

	status, body = call(t, a, http.MethodPost, "/v1/approvals/"+ref+"/decide", mgmt, map[string]any{"decision": "approve"})
	require.Equal(t, http.StatusOK, status, body)

	var token string
	for token == "" {
		status, body = call(t, b, http.MethodGet, "/v1/approvals/"+id, std, nil)
		require.Equal(t, http.StatusOK, status, body)
		if body["status"] == "approved" && body["token"] != nil {
			token = body["token"].(string)
			break
		}
		require.NoError(t, ctx.Err(), "no token: %v", body)
		time.Sleep(50 * time.Millisecond)
	}

	status, body = call(t, a, http.MethodPost, "/v1/tokens/verify", std, map[string]any{"token": token, "parameters": params})
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, true, body["valid"])
	require.Equal(t, true, body["parameters_verified"])
	require.Equal(t, id, body["source_id"])
	status, body = call(t, b, http.MethodPost, "/v1/tokens/verify", std, map[string]any{"token": token, "parameters": params})
	require.Equal(t, http.StatusConflict, status, body)
	require.Equal(t, "token_replayed", body["code"])

	for _, p := range procs {
		p.stop(ctx, t)
	}
}
