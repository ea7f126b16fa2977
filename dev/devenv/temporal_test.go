package devenv_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"oakallow/dev/devenv"
)

// hangDeadline is how long a test waits for Stop before calling it a hang. It is not a
// performance budget (a loaded machine under -race took 5.5 s): a Stop held up by a polling
// worker would wait out the worker's 60 s long poll, and one that deadlocks never returns.
const hangDeadline = 45 * time.Second

var (
	tenantKey = temporal.NewSearchAttributeKeyKeyword("OakTenant")
	riskKey   = temporal.NewSearchAttributeKeyInt64("OakRisk")
	stageKey  = temporal.NewSearchAttributeKeyKeyword("OakStage")
)

func greet(_ workflow.Context, name string) (string, error) {
	return "hello " + name, nil
}

func TestTemporalInMemory(t *testing.T) {
	t.Parallel()
	logger := testLogger(t)
	srv, took := startTemporal(t, devenv.TemporalConfig{
		SearchAttributes: map[string]enums.IndexedValueType{
			"OakTenant": enums.INDEXED_VALUE_TYPE_KEYWORD,
			"OakRisk":   enums.INDEXED_VALUE_TYPE_INT,
		},
		Logger: logger,
	})
	t.Logf("in-memory start: %v", took)
	require.Equal(t, "default", srv.Namespace())
	host, _, err := net.SplitHostPort(srv.Address())
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host)
	require.NotEmpty(t, srv.UIURL())

	c := dial(t, srv, logger)
	stopWorker := startWorker(t, c, "inmem")

	t.Run("running", func(t *testing.T) {
		t.Run("workflow round trip", func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "round-trip", TaskQueue: "inmem"}, "greet", "oak")
			require.NoError(t, err)
			var got string
			require.NoError(t, run.Get(ctx, &got))
			require.Equal(t, "hello oak", got)
		})

		t.Run("custom search attributes are registered", func(t *testing.T) {
			t.Parallel()
			resp, err := c.OperatorService().ListSearchAttributes(testContext(t),
				&operatorservice.ListSearchAttributesRequest{Namespace: srv.Namespace()})
			require.NoError(t, err)
			require.Equal(t, enums.INDEXED_VALUE_TYPE_KEYWORD, resp.GetCustomAttributes()["OakTenant"])
			require.Equal(t, enums.INDEXED_VALUE_TYPE_INT, resp.GetCustomAttributes()["OakRisk"])
		})

		t.Run("visibility query finds workflow by search attributes", func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
				ID:                    "with-attributes",
				TaskQueue:             "inmem",
				TypedSearchAttributes: temporal.NewSearchAttributes(tenantKey.ValueSet("acme"), riskKey.ValueSet(7)),
			}, "greet", "acme")
			require.NoError(t, err)
			require.NoError(t, run.Get(ctx, nil))

			requireVisible(t, c, srv.Namespace(), "OakTenant = 'acme' AND OakRisk >= 5", []string{"with-attributes"})
			// Visibility has caught up with the workflow above, so an empty answer here is real.
			requireVisible(t, c, srv.Namespace(), "OakTenant = 'acme' AND OakRisk > 7", nil)
		})

		t.Run("web ui serves the app and reaches the frontend", func(t *testing.T) {
			t.Parallel()
			status, ctype, body := httpGet(t, srv.UIURL()+"/")
			require.Equal(t, http.StatusOK, status)
			require.Contains(t, ctype, "text/html")
			require.Contains(t, strings.ToLower(body), "<html")

			// An asset the page loads, served from the files embedded in the ui-server module.
			status, _, body = httpGet(t, srv.UIURL()+"/_app/version.json")
			require.Equal(t, http.StatusOK, status)
			require.Contains(t, body, "version")

			// The UI's API proxies to the frontend over gRPC.
			status, _, body = httpGet(t, srv.UIURL()+"/api/v1/namespaces/"+srv.Namespace())
			require.Equal(t, http.StatusOK, status, body)
			var described struct {
				NamespaceInfo struct {
					Name string `json:"name"`
				} `json:"namespaceInfo"`
			}
			require.NoError(t, json.Unmarshal([]byte(body), &described), body)
			require.Equal(t, srv.Namespace(), described.NamespaceInfo.Name)
		})
	})

	// A worker still polling must not hold Stop up; stop it afterwards, as a careless test would.
	uiAddr := strings.TrimPrefix(srv.UIURL(), "http://")
	began := time.Now()
	requireReturns(t, "Stop with a worker still polling", srv.Stop)
	t.Logf("in-memory stop (worker still polling): %v", time.Since(began))
	stopWorker()
	for _, addr := range []string{srv.Address(), uiAddr} {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
		}
		require.Error(t, err, "%s still accepts connections after Stop", addr)
	}
	require.NoError(t, srv.Stop(), "second Stop")
}

func TestTemporalPersistsAcrossRestart(t *testing.T) {
	t.Parallel()
	logger := testLogger(t)
	dir := t.TempDir()
	cfg := devenv.TemporalConfig{
		Dir:              dir,
		UIPort:           -1,
		SearchAttributes: map[string]enums.IndexedValueType{"OakTenant": enums.INDEXED_VALUE_TYPE_KEYWORD},
		Logger:           logger,
	}

	// First start: creates the database, its schema and the namespace.
	first, took := startTemporal(t, cfg)
	t.Logf("cold start with schema setup: %v", took)
	require.Empty(t, first.UIURL())

	_, err := devenv.StartTemporal(testContext(t), cfg)
	require.ErrorContains(t, err, "another Temporal server is using")

	c := dial(t, first, logger)
	ns, err := c.WorkflowService().DescribeNamespace(testContext(t),
		&workflowservice.DescribeNamespaceRequest{Namespace: first.Namespace()})
	require.NoError(t, err)
	namespaceID := ns.GetNamespaceInfo().GetId()
	stopWorker := startWorker(t, c, "persist")
	ctx := testContext(t)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    "before-restart",
		TaskQueue:             "persist",
		TypedSearchAttributes: temporal.NewSearchAttributes(tenantKey.ValueSet("acme")),
	}, "greet", "disk")
	require.NoError(t, err)
	require.NoError(t, run.Get(ctx, nil))
	requireVisible(t, c, first.Namespace(), "OakTenant = 'acme'", []string{"before-restart"})
	stopWorker()
	c.Close()
	began := time.Now()
	require.NoError(t, first.Stop())
	t.Logf("file-backed stop: %v", time.Since(began))

	requireOnDisk(t, filepath.Join(dir, "temporal.db"), "before-restart")

	// Second start on the same directory, with one more search attribute configured.
	cfg.SearchAttributes = map[string]enums.IndexedValueType{
		"OakTenant": enums.INDEXED_VALUE_TYPE_KEYWORD,
		"OakStage":  enums.INDEXED_VALUE_TYPE_KEYWORD,
	}
	second, took := startTemporal(t, cfg)
	t.Logf("warm restart (adds a search attribute): %v", took)
	c = dial(t, second, logger)

	ns, err = c.WorkflowService().DescribeNamespace(testContext(t),
		&workflowservice.DescribeNamespaceRequest{Namespace: second.Namespace()})
	require.NoError(t, err)
	require.Equal(t, namespaceID, ns.GetNamespaceInfo().GetId(), "namespace was recreated, not reused")

	desc, err := c.DescribeWorkflowExecution(testContext(t), "before-restart", run.GetRunID())
	require.NoError(t, err)
	require.Equal(t, enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, desc.GetWorkflowExecutionInfo().GetStatus())
	var got string
	require.NoError(t, c.GetWorkflow(testContext(t), "before-restart", run.GetRunID()).Get(testContext(t), &got))
	require.Equal(t, "hello disk", got)
	requireVisible(t, c, second.Namespace(), "OakTenant = 'acme'", []string{"before-restart"})

	// The attribute added on this start is usable as soon as StartTemporal has returned.
	stopWorker = startWorker(t, c, "persist")
	ctx = testContext(t)
	run, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                    "after-restart",
		TaskQueue:             "persist",
		TypedSearchAttributes: temporal.NewSearchAttributes(tenantKey.ValueSet("acme"), stageKey.ValueSet("beta")),
	}, "greet", "again")
	require.NoError(t, err)
	require.NoError(t, run.Get(ctx, nil))
	requireVisible(t, c, second.Namespace(), "OakStage = 'beta'", []string{"after-restart"})
	stopWorker()
	c.Close()
	require.NoError(t, second.Stop())

	// A configured type that contradicts the stored one is refused, after a full start and
	// stop of the server, and the refused start leaves the directory unlocked.
	cfg.SearchAttributes = map[string]enums.IndexedValueType{"OakTenant": enums.INDEXED_VALUE_TYPE_INT}
	began = time.Now()
	_, err = devenv.StartTemporal(testContext(t), cfg)
	require.ErrorContains(t, err, `search attribute "OakTenant" of namespace "default" is registered as Keyword, needed as Int`)
	t.Logf("warm restart refused for a type conflict, including stop: %v", time.Since(began))
	lock, err := os.OpenFile(filepath.Join(dir, "temporal.lock"), os.O_RDWR, 0)
	require.NoError(t, err)
	defer func() { _ = lock.Close() }()
	require.NoError(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB), "directory still locked")
}

func TestStartTemporalRefusesBusyPort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	busy := l.Addr().(*net.TCPAddr).Port

	for _, tc := range []struct {
		name string
		cfg  devenv.TemporalConfig
		want string
	}{
		{name: "frontend", cfg: devenv.TemporalConfig{FrontendPort: busy}, want: "frontend port"},
		{name: "ui", cfg: devenv.TemporalConfig{UIPort: busy}, want: "UI port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.Logger = testLogger(t)
			_, err := devenv.StartTemporal(testContext(t), tc.cfg)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, "is not free")
		})
	}
}

func TestTemporalConfigValidate(t *testing.T) {
	t.Parallel()
	keyword := enums.INDEXED_VALUE_TYPE_KEYWORD
	for _, tc := range []struct {
		name string
		cfg  devenv.TemporalConfig
		want string // "" means valid
	}{
		{name: "zero value", cfg: devenv.TemporalConfig{}},
		{name: "everything set", cfg: devenv.TemporalConfig{
			Dir: "/tmp/oak", Namespace: "oak.dev-1", Host: "127.0.0.2", FrontendPort: 7233, UIPort: 8233,
			SearchAttributes: map[string]enums.IndexedValueType{"OakTenant": keyword},
		}},
		{name: "ipv6 loopback", cfg: devenv.TemporalConfig{Host: "::1"}},
		{name: "ui disabled", cfg: devenv.TemporalConfig{UIPort: -1}},
		{name: "all interfaces", cfg: devenv.TemporalConfig{Host: "0.0.0.0"}, want: "not a loopback"},
		{name: "lan address", cfg: devenv.TemporalConfig{Host: "192.168.1.10"}, want: "not a loopback"},
		{name: "host name", cfg: devenv.TemporalConfig{Host: "localhost"}, want: "not a loopback"},
		{name: "negative frontend port", cfg: devenv.TemporalConfig{FrontendPort: -1}, want: "frontend port -1"},
		{name: "frontend port too large", cfg: devenv.TemporalConfig{FrontendPort: 70000}, want: "frontend port 70000"},
		{name: "ui port below -1", cfg: devenv.TemporalConfig{UIPort: -2}, want: "UI port -2"},
		{name: "shared port", cfg: devenv.TemporalConfig{FrontendPort: 7233, UIPort: 7233}, want: "share port"},
		{name: "namespace with space", cfg: devenv.TemporalConfig{Namespace: "oak dev"}, want: "namespace"},
		{name: "system namespace", cfg: devenv.TemporalConfig{Namespace: "temporal-system"}, want: "reserved"},
		{name: "dir with query character", cfg: devenv.TemporalConfig{Dir: "/tmp/a?b"}, want: "URI syntax"},
		{name: "attribute not an identifier", cfg: devenv.TemporalConfig{
			SearchAttributes: map[string]enums.IndexedValueType{"oak-tenant": keyword},
		}, want: "use a letter"},
		{name: "system attribute", cfg: devenv.TemporalConfig{
			SearchAttributes: map[string]enums.IndexedValueType{"WorkflowId": keyword},
		}, want: "reserved"},
		{name: "attribute without type", cfg: devenv.TemporalConfig{
			SearchAttributes: map[string]enums.IndexedValueType{"OakTenant": enums.INDEXED_VALUE_TYPE_UNSPECIFIED},
		}, want: "no valid type"},
		{name: "attribute with unknown type", cfg: devenv.TemporalConfig{
			SearchAttributes: map[string]enums.IndexedValueType{"OakTenant": 99},
		}, want: "no valid type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
			// StartTemporal refuses the same configuration before touching anything.
			_, err = devenv.StartTemporal(testContext(t), tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// startTemporal starts a server that the test stops on cleanup, and reports how long the start took.
func startTemporal(t *testing.T, cfg devenv.TemporalConfig) (*devenv.Temporal, time.Duration) {
	t.Helper()
	began := time.Now()
	srv, err := devenv.StartTemporal(testContext(t), cfg)
	require.NoError(t, err)
	took := time.Since(began)
	t.Cleanup(func() { require.NoError(t, srv.Stop()) })
	return srv, took
}

// requireReturns runs fn and fails the test if fn returns an error or has not returned within
// hangDeadline.
func requireReturns(t *testing.T, what string, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		require.NoError(t, err, what)
	case <-time.After(hangDeadline):
		t.Fatalf("%s has not returned after %s: it hangs", what, hangDeadline)
	}
}

func dial(t *testing.T, srv *devenv.Temporal, logger *slog.Logger) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{
		HostPort:  srv.Address(),
		Namespace: srv.Namespace(),
		Logger:    sdklog.NewStructuredLogger(logger),
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// startWorker runs greet on taskQueue and returns a stop function that is also run on cleanup.
func startWorker(t *testing.T, c client.Client, taskQueue string) func() {
	t.Helper()
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(greet, workflow.RegisterOptions{Name: "greet"})
	require.NoError(t, w.Start())
	stop := sync.OnceFunc(w.Stop)
	t.Cleanup(stop)
	return stop
}

// requireVisible waits for the visibility store, which is updated asynchronously, to answer query
// with exactly the workflow ids want.
func requireVisible(t *testing.T, c client.Client, namespace, query string, want []string) {
	t.Helper()
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		resp, err := c.ListWorkflow(testContext(t), &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: namespace,
			Query:     query,
		})
		require.NoError(ct, err, query)
		var got []string
		for _, e := range resp.GetExecutions() {
			got = append(got, e.GetExecution().GetWorkflowId())
		}
		assert.ElementsMatch(ct, want, got, query)
	}, 10*time.Second, 50*time.Millisecond)
}

// requireOnDisk checks, through a connection of its own, that the database file is in WAL mode
// and holds the namespace and the workflow: what a restart in a new process would find.
func requireOnDisk(t *testing.T, path, workflowID string) {
	t.Helper()
	// The "sqlite" driver (modernc.org/sqlite) is registered by Temporal's sqlite plugin.
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?mode=ro")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	var mode string
	require.NoError(t, db.QueryRow("PRAGMA journal_mode").Scan(&mode))
	require.Equal(t, "wal", strings.ToLower(mode))
	var n int
	require.NoError(t, db.QueryRow("SELECT count(*) FROM namespaces WHERE name = 'default'").Scan(&n))
	require.Equal(t, 1, n, "namespace rows")
	require.NoError(t, db.QueryRow("SELECT count(*) FROM executions_visibility WHERE workflow_id = ?", workflowID).Scan(&n))
	require.Equal(t, 1, n, "visibility rows for %s", workflowID)
}

func httpGet(t *testing.T, u string) (status int, contentType, body string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodGet, u, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testLogger collects the servers' logs and prints them only if the test fails. It writes to a
// buffer rather than t.Log because server goroutines may still log after the test has ended.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	var mu sync.Mutex
	var buf bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("server log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(lockedWriter{mu: &mu, w: &buf}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// BenchmarkStartTemporal measures how long StartTemporal takes to return (not Stop) for an
// in-memory server, a first start on an empty directory (schema setup) and a restart on a
// directory that already holds a database.
func BenchmarkStartTemporal(b *testing.B) {
	quiet := slog.New(slog.DiscardHandler)
	start := func(b *testing.B, dir string) time.Duration {
		began := time.Now()
		srv, err := devenv.StartTemporal(b.Context(), devenv.TemporalConfig{Dir: dir, UIPort: -1, Logger: quiet})
		took := time.Since(began)
		require.NoError(b, err)
		require.NoError(b, srv.Stop())
		return took
	}
	for _, bc := range []struct {
		name string
		dir  func(b *testing.B) string
	}{
		{name: "memory", dir: func(*testing.B) string { return "" }},
		{name: "file cold", dir: func(b *testing.B) string { return b.TempDir() }},
		{name: "file warm", dir: func(b *testing.B) string {
			dir := b.TempDir()
			start(b, dir)
			return dir
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var total time.Duration
			n := 0
			for b.Loop() {
				b.StopTimer()
				dir := bc.dir(b)
				b.StartTimer()
				total += start(b, dir)
				n++
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(n), "start-ms/op")
		})
	}
}
