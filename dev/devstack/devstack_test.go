package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"oakallow/dev/devenv"
	"oakallow/workflows"
)

// stopHangDeadline is how long a test waits for Stop before calling it a hang.
const stopHangDeadline = 90 * time.Second

func quietLogger() *slog.Logger {
	if os.Getenv("OAKALLOW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := devenv.FreePort()
	require.NoError(t, err)
	return p
}

func get(t *testing.T, url, key string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// rootableTempDir is a temporary directory PostgreSQL can use when the tests
// run as root (the server then runs as "postgres" and must reach it).
func rootableTempDir(t *testing.T) string {
	t.Helper()
	base, err := os.MkdirTemp("", "oakallow-devstack-test-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(base, 0o755))
	t.Cleanup(func() { os.RemoveAll(base) })
	return base
}

// TestDevEnvironmentStartsSeedsAndRestarts is the dev environment end to
// end: a throwaway PostgreSQL cluster, the embedded Temporal server, the API;
// /readyz green, seeded keys with the right tiers, search attributes
// registered, and a restart on the same directory keeps everything.
func TestDevEnvironmentStartsSeedsAndRestarts(t *testing.T) {
	t.Parallel()
	base := rootableTempDir(t)
	opts := Options{Dir: filepath.Join(base, "dev"), Port: freePort(t), TemporalPort: freePort(t), UIPort: freePort(t)}
	ctx := context.Background()

	start := time.Now()
	env, err := Start(ctx, opts, quietLogger())
	require.NoError(t, err)
	t.Logf("cold start (initdb + Temporal schema) %s", time.Since(start))
	require.True(t, env.Seeded())

	var creds Credentials
	b, err := os.ReadFile(filepath.Join(opts.Dir, "credentials.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &creds))
	require.Equal(t, env.Credentials(), creds)
	st, err := os.Stat(filepath.Join(opts.Dir, "credentials.json"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "credentials hold keys: owner-only")
	for name, v := range map[string]string{"api_url": creds.APIURL, "org_id": creds.OrgID, "management_key": creds.ManagementKey,
		"standard_key": creds.StandardKey, "temporal_address": creds.TemporalAddress, "temporal_namespace": creds.TemporalNamespace,
		"temporal_ui_url": creds.TemporalUIURL, "database_url": creds.DatabaseURL} {
		require.NotEmpty(t, v, name)
	}
	for _, name := range []string{"pg", "temporal", "state.json", "signing-keys", "secret-key"} {
		_, err := os.Stat(filepath.Join(opts.Dir, name))
		require.NoError(t, err, "the documented layout has %s", name)
	}

	// The summary shows the keys on the seeding run and where they are saved.
	var summary bytes.Buffer
	env.PrintSummary(&summary)
	require.Contains(t, summary.String(), creds.StandardKey)
	require.Contains(t, summary.String(), filepath.Join(opts.Dir, "credentials.json"))
	require.Contains(t, summary.String(), "Dashboard      "+DashboardURL(opts.Port))
	// MCP clients are pointed at localhost, the resource the OAuth metadata names.
	require.Equal(t, DashboardURL(opts.Port)+"/mcp", creds.MCPURL)
	require.Contains(t, summary.String(), "MCP            "+creds.MCPURL)

	// Links and the OAuth issuer name localhost: a browser sent to the
	// listening address 127.0.0.1 could use no passkey (WebAuthn takes no
	// IP address as relying party), so neither the dashboard, Checkout's
	// return nor the MCP connector's sign-in would work there.
	status, body := get(t, creds.APIURL+"/.well-known/oauth-authorization-server", "")
	require.Equal(t, http.StatusOK, status, string(body))
	var meta struct {
		Issuer string `json:"issuer"`
	}
	require.NoError(t, json.Unmarshal(body, &meta))
	require.Equal(t, fmt.Sprintf("http://localhost:%d", opts.Port), meta.Issuer)

	status, body = get(t, creds.APIURL+"/readyz", "")
	require.Equal(t, http.StatusOK, status, string(body))
	require.Contains(t, string(body), `"temporal":"ok"`)

	// Keys authenticate with their tier: the standard key reads credits; the
	// management key may not call runtime endpoints.
	status, body = get(t, creds.APIURL+"/v1/credits", creds.StandardKey)
	require.Equal(t, http.StatusOK, status, string(body))
	status, body = get(t, creds.APIURL+"/v1/credits", creds.ManagementKey)
	require.Equal(t, http.StatusOK, status, string(body))
	req, _ := http.NewRequest(http.MethodPost, creds.APIURL+"/v1/permissions/check", nil)
	req.Header.Set("X-API-Key", creds.ManagementKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	// The Temporal UI answers, and the search attributes are registered.
	status, _ = get(t, creds.TemporalUIURL, "")
	require.Equal(t, http.StatusOK, status)
	tc, err := client.Dial(client.Options{HostPort: creds.TemporalAddress, Namespace: creds.TemporalNamespace})
	require.NoError(t, err)
	sa, err := tc.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: creds.TemporalNamespace})
	require.NoError(t, err)
	for name, typ := range workflows.SearchAttributeTypes() {
		require.Equal(t, typ, sa.CustomAttributes[name], name)
	}
	tc.Close()

	stopStart := time.Now()
	stopped := make(chan struct{})
	go func() { env.Stop(); close(stopped) }()
	// A deadline for a hang, not a budget: Stop's own bounds (the worker's 10 s for attempts
	// under way, Temporal's shutdown) add up to far less, however loaded the machine.
	select {
	case <-stopped:
	case <-time.After(stopHangDeadline):
		t.Fatalf("Stop has not returned after %s: it hangs", stopHangDeadline)
	}
	t.Logf("stop %s", time.Since(stopStart))
	env.Stop() // a second Stop is harmless

	// Restart on the same directory: same org, same keys, no new seed, and
	// the keys are not printed again.
	start = time.Now()
	env2, err := Start(ctx, opts, quietLogger())
	require.NoError(t, err)
	defer env2.Stop()
	t.Logf("warm start %s", time.Since(start))
	require.False(t, env2.Seeded())
	require.Equal(t, creds.OrgID, env2.Credentials().OrgID)
	require.Equal(t, creds.StandardKey, env2.Credentials().StandardKey)
	status, body = get(t, env2.Credentials().APIURL+"/v1/credits", creds.StandardKey)
	require.Equal(t, http.StatusOK, status, string(body))
	summary.Reset()
	env2.PrintSummary(&summary)
	require.NotContains(t, summary.String(), creds.StandardKey)
}

// TestThrowawayEnvironmentLeavesNothingBehind: a throwaway stack runs in its
// own fresh directory under Dir, with free ports and no UI, serves the API,
// and Stop removes the directory.
func TestThrowawayEnvironmentLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	base := rootableTempDir(t)
	env, err := Start(context.Background(), Options{Dir: base, Throwaway: true, UIPort: -1, FastPostgres: true}, quietLogger())
	require.NoError(t, err)
	defer env.Stop()
	require.True(t, env.Seeded(), "a throwaway directory is always new")
	require.Equal(t, base, filepath.Dir(env.Dir()))
	require.Empty(t, env.Credentials().TemporalUIURL)
	status, body := get(t, env.Credentials().APIURL+"/readyz", "")
	require.Equal(t, http.StatusOK, status, string(body))
	_, err = os.Stat(filepath.Join(env.Dir(), "credentials.json"))
	require.NoError(t, err)

	env.Stop()
	entries, err := os.ReadDir(base)
	require.NoError(t, err)
	require.Empty(t, entries, "Stop removes the throwaway directory")
}

func TestMissingPostgresGivesTheDocumentedMessage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := Options{Dir: dir, Port: freePort(t), PostgresBin: t.TempDir()}
	_, err := Start(context.Background(), opts, quietLogger())
	require.ErrorIs(t, err, devenv.ErrNoPostgres)
	require.Equal(t, 2, ExitCode(err))
	require.Contains(t, err.Error(), "apt-get install -y postgresql")
	require.Contains(t, err.Error(), "brew install")
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "dir", opts: Options{Dir: "x"}},
		{name: "throwaway without dir", opts: Options{Throwaway: true}},
		{name: "neither dir nor throwaway", opts: Options{}, wantErr: "Dir is required"},
		{name: "fresh throwaway", opts: Options{Throwaway: true, Fresh: true}, wantErr: "exclude each other"},
		{name: "negative API port", opts: Options{Dir: "x", Port: -1}, wantErr: "API port -1"},
		{name: "temporal port too high", opts: Options{Dir: "x", TemporalPort: 65536}, wantErr: "Temporal port 65536"},
		{name: "no UI", opts: Options{Dir: "x", UIPort: -1}},
		{name: "negative pool", opts: Options{Dir: "x", MaxDBConns: -1}, wantErr: "MaxDBConns"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.opts.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want int
	}{
		{name: "no postgres", err: devenv.ErrNoPostgres, want: 2},
		{name: "wrapped no postgres", err: fmt.Errorf("start postgres: %w", devenv.ErrNoPostgres), want: 2},
		{name: "anything else", err: os.ErrPermission, want: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, ExitCode(tc.err))
		})
	}
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDeadPostgresIsRestarted: when the dev cluster's server dies, the
// environment starts it again and the API recovers by itself, instead of
// answering 503 until a person restarts `make dev`.
func TestDeadPostgresIsRestarted(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	env, err := Start(context.Background(), Options{Dir: rootableTempDir(t), Throwaway: true, UIPort: -1, FastPostgres: true},
		slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	defer env.Stop()
	creds := env.Credentials()
	status, body := get(t, creds.APIURL+"/v1/credits", creds.StandardKey)
	require.Equal(t, http.StatusOK, status, string(body))

	pid := env.pg.PID()
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))

	deadline := time.Now().Add(2 * time.Minute) // a hang, not a budget
	for {
		status, body = get(t, creds.APIURL+"/v1/credits", creds.StandardKey)
		ready, _ := get(t, creds.APIURL+"/readyz", "")
		if status == http.StatusOK && ready == http.StatusOK && env.pg.PID() != pid {
			break
		}
		require.True(t, time.Now().Before(deadline), "the API has not recovered: %d %s", status, body)
		time.Sleep(100 * time.Millisecond)
	}
	require.GreaterOrEqual(t, env.pg.Restarts(), int64(1))
	require.Contains(t, logs.String(), "postgres exited; restarting it")
	require.Contains(t, logs.String(), "postgres restarted")
}
