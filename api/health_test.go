package api

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
)

func TestHealthAndDocs(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)

	status, body := e.do(http.MethodGet, "/healthz", "", nil)
	require.Equal(t, http.StatusOK, status, string(body))

	status, body = e.do(http.MethodGet, "/readyz", "", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Contains(t, string(body), `"postgres":"ok"`)

	status, body = e.do(http.MethodGet, "/openapi.json", "", nil)
	require.Equal(t, http.StatusOK, status)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(body, &doc))
	require.Equal(t, "3.1.0", doc["openapi"])

	// The reference page works offline: nothing is loaded from elsewhere.
	status, body = e.do(http.MethodGet, "/docs", "", nil)
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, string(body), "https://")
	for _, asset := range []string{"/docs/assets/web-components.min.js", "/docs/assets/styles.min.css"} {
		status, body = e.do(http.MethodGet, asset, "", nil)
		require.Equal(t, http.StatusOK, status, asset)
		require.Greater(t, len(body), 100_000, asset)
	}
}

func TestReadyzReportsTemporalDown(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.srv.deps.TemporalReady = func(context.Context) error { return errors.New("dial refused") }
	status, body := e.do(http.MethodGet, "/readyz", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, status, string(body))
	require.Equal(t, CodeUnavailable, problemCode(t, body))
}

func TestRequestIDIsEchoedOrMinted(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	req, _ := http.NewRequest(http.MethodGet, e.base+"/healthz", nil)
	req.Header.Set("X-Request-Id", "abc-123")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, "abc-123", resp.Header.Get("X-Request-Id"))

	req.Header.Set("X-Request-Id", "bad id; with spaces")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Len(t, resp.Header.Get("X-Request-Id"), 24)
}

// TestReadyzNeedsANewConnection: while PostgreSQL refuses new connections
// (here the database is closed to them; a postmaster shutting down answers
// the same way) the pool's open connections still work, but the service is
// not ready: the pool cannot replace them.
func TestReadyzNeedsANewConnection(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	status, body := e.do(http.MethodGet, "/readyz", "", nil)
	require.Equal(t, http.StatusOK, status, string(body))

	ctx := t.Context()
	admin, err := pgx.Connect(ctx, devtest.AdminURL(t))
	require.NoError(t, err)
	defer admin.Close(context.Background())
	db := pgx.Identifier{e.st.Pool.Config().ConnConfig.Database}.Sanitize()
	// Two idle connections in the pool, as a busy server has.
	c1, err := e.st.Pool.Acquire(ctx)
	require.NoError(t, err)
	c2, err := e.st.Pool.Acquire(ctx)
	require.NoError(t, err)
	c1.Release()
	c2.Release()
	_, err = admin.Exec(ctx, "ALTER DATABASE "+db+" WITH ALLOW_CONNECTIONS false")
	require.NoError(t, err)
	require.NoError(t, e.st.Pool.Ping(ctx), "pooled connections keep working")

	status, body = e.do(http.MethodGet, "/readyz", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, status, string(body))
	require.Equal(t, CodeUnavailable, problemCode(t, body))

	_, err = admin.Exec(ctx, "ALTER DATABASE "+db+" WITH ALLOW_CONNECTIONS true")
	require.NoError(t, err)
	status, body = e.do(http.MethodGet, "/readyz", "", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Contains(t, string(body), `"postgres":"ok"`)
}

// TestFailedReportsABrokenListener: when serving stops on its own, the
// process hears of it (it no longer answers, so it must exit) — and a
// regular Stop reports nothing.
func TestFailedReportsABrokenListener(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	require.NoError(t, e.srv.ln.Close())
	select {
	case err := <-e.srv.Failed():
		require.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(hangDeadline):
		t.Fatal("a failed listener went unreported")
	}

	other := newTestEnv(t)
	other.srv.Stop()
	select {
	case err := <-other.srv.Failed():
		t.Fatalf("Stop reported as a failure: %v", err)
	default:
	}
}
