package api

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
	"oakallow/store"
)

// TestDatabaseOutageFailsClosed: while PostgreSQL is unreachable a check cannot be
// recorded, so it must not be answered: 503 unavailable with Retry-After, never a
// verdict and never a 500. Reads of the catalog fail the same way. Once the database is
// back the same server answers again without a restart, and every verdict it gave is in
// the audit log and billed exactly once.
func TestDatabaseOutageFailsClosed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, proxy := devtest.ProxiedDatabase(t)
	st, err := store.Open(ctx, store.Config{URL: dbURL, ConnectTimeout: time.Second})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	boot, err := Bootstrap(ctx, st, BootstrapInput{
		TeamName: "Acme", OwnerEmail: "owner@example.com", OwnerName: "Owner", OrgName: "acme-app",
	}, time.Now())
	require.NoError(t, err)
	e := startEnv(t, st, boot)
	e.seedTool("send_email", "", ptr("allowed"))
	body := map[string]any{"tool": "send_email", "reason": "weekly report"}

	answered := 0
	require.Eventually(t, func() bool {
		status, res, _ := e.check(boot.StandardKey, body)
		if status == http.StatusOK {
			answered++
		}
		return status == http.StatusOK && res.Permission == "allowed"
	}, hangDeadline, 20*time.Millisecond)

	proxy.Cut()
	for range 3 {
		status, _, raw := e.check(boot.StandardKey, body)
		require.Equal(t, http.StatusServiceUnavailable, status, string(raw))
		require.Equal(t, CodeUnavailable, problemCode(t, raw))
	}
	req, err := http.NewRequest(http.MethodPost, e.base+"/v1/permissions/check", bytes.NewReader([]byte(`{"tool":"send_email"}`)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", boot.StandardKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	status, raw := e.do(http.MethodGet, "/v1/tools", boot.ManagementKey, nil)
	require.Equal(t, http.StatusServiceUnavailable, status, string(raw))
	require.Equal(t, CodeUnavailable, problemCode(t, raw))

	proxy.Restore()
	require.Eventually(t, func() bool {
		status, _, _ := e.check(boot.StandardKey, body)
		if status == http.StatusOK {
			answered++
		}
		return status == http.StatusOK
	}, hangDeadline, 50*time.Millisecond, "the server recovers without a restart")

	var rows int
	require.NoError(t, st.Pool.QueryRow(ctx,
		`SELECT count(*) FROM audit_events WHERE kind = 'permission.check' AND billable`).Scan(&rows))
	require.Equal(t, answered, rows, "every verdict given is recorded and billed; none during the outage")
	bal, err := st.GetTeamBalance(ctx, boot.TeamID)
	require.NoError(t, err)
	require.Equal(t, int64(answered), bal.BilledCalls)
}
