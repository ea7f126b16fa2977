package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"oakallow/dev/devenv"
	"oakallow/workflows"
)

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

// TestDevEnvironmentStartsSeedsAndRestarts is the dev environment end to
// end: a throwaway PostgreSQL cluster, the embedded Temporal server, the API;
// /readyz green, seeded keys with the right tiers, search attributes
// registered, and a restart on the same directory keeps everything.
func TestDevEnvironmentStartsSeedsAndRestarts(t *testing.T) {
	base, err := os.MkdirTemp("", "oakallow-dev-test-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(base, 0o755))
	t.Cleanup(func() { os.RemoveAll(base) })
	opts := options{Dir: filepath.Join(base, "dev"), Port: freePort(t), TemporalPort: freePort(t), UIPort: freePort(t)}
	ctx := context.Background()

	start := time.Now()
	env, err := startEnv(ctx, opts, quietLogger())
	require.NoError(t, err)
	t.Logf("cold start (initdb + Temporal schema) %s", time.Since(start))
	require.True(t, env.seeded)

	var creds Credentials
	b, err := os.ReadFile(filepath.Join(opts.Dir, "credentials.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &creds))
	st, err := os.Stat(filepath.Join(opts.Dir, "credentials.json"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "credentials hold keys: owner-only")
	for name, v := range map[string]string{"api_url": creds.APIURL, "org_id": creds.OrgID, "management_key": creds.ManagementKey,
		"standard_key": creds.StandardKey, "temporal_address": creds.TemporalAddress, "temporal_namespace": creds.TemporalNamespace,
		"temporal_ui_url": creds.TemporalUIURL, "database_url": creds.DatabaseURL} {
		require.NotEmpty(t, v, name)
	}

	status, body := get(t, creds.APIURL+"/readyz", "")
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
	env.Stop()
	require.Less(t, time.Since(stopStart), 10*time.Second, "shutdown must finish within 10 s")

	// Restart on the same directory: same org, same keys, no new seed.
	start = time.Now()
	env2, err := startEnv(ctx, opts, quietLogger())
	require.NoError(t, err)
	defer env2.Stop()
	t.Logf("warm start %s", time.Since(start))
	require.False(t, env2.seeded)
	require.Equal(t, creds.OrgID, env2.creds.OrgID)
	require.Equal(t, creds.StandardKey, env2.creds.StandardKey)
	status, body = get(t, env2.creds.APIURL+"/v1/credits", creds.StandardKey)
	require.Equal(t, http.StatusOK, status, string(body))
}

func TestMissingPostgresGivesTheDocumentedMessage(t *testing.T) {
	t.Parallel()
	opts := options{Dir: t.TempDir(), Port: freePort(t), PostgresBin: t.TempDir()}
	_, err := startEnv(context.Background(), opts, quietLogger())
	require.ErrorIs(t, err, devenv.ErrNoPostgres)
	require.Equal(t, 2, exitCode(err))
	require.Contains(t, err.Error(), "apt-get install -y postgresql")
	require.Contains(t, err.Error(), "brew install")
}
