package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"oakallow/activities/sealed"
	"oakallow/activities/tokens"
	"oakallow/dev/devtest"
	"oakallow/workflows"
)

func TestMain(m *testing.M) { devtest.Main(m, removeProductionBinary) }

// setTemporalEnv points the command at a fresh namespace of the test server
// and returns a client for checking it.
func setTemporalEnv(t *testing.T) (string, client.Client) {
	t.Helper()
	ns := devtest.Namespace(t)
	t.Setenv("TEMPORAL_ADDRESS", devtest.Temporal(t).Address())
	t.Setenv("TEMPORAL_NAMESPACE", ns)
	t.Setenv("LOG_LEVEL", "warn")
	c, err := client.Dial(client.Options{HostPort: devtest.Temporal(t).Address(), Namespace: ns})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return ns, c
}

// missingSearchAttributes lists oakallow's attributes the namespace lacks.
func missingSearchAttributes(ctx context.Context, t *testing.T, c client.Client, ns string) []string {
	t.Helper()
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	require.NoError(t, err)
	var missing []string
	for name, typ := range workflows.SearchAttributeTypes() {
		if have.GetCustomAttributes()[name] != typ {
			missing = append(missing, name)
		}
	}
	return missing
}

func TestMigrateUpRegistersSearchAttributes(t *testing.T) {
	ns, c := setTemporalEnv(t)
	t.Setenv("DATABASE_URL", devtest.EmptyDatabase(t))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	require.NotEmpty(t, missingSearchAttributes(ctx, t, c, ns))

	var out strings.Builder
	require.NoError(t, run(ctx, []string{"migrate", "up"}, &out))
	require.Empty(t, missingSearchAttributes(ctx, t, c, ns))
	require.Contains(t, out.String(), "temporal namespace "+ns+": search attributes ready (added OakallowLevel, OakallowOrg, OakallowStatus, OakallowTenant, OakallowTool)")

	// Again: nothing to do, and no error.
	out.Reset()
	require.NoError(t, run(ctx, []string{"migrate", "up"}, &out))
	require.Contains(t, out.String(), "temporal namespace "+ns+": search attributes ready\n")
}

func TestWorkerRegistersSearchAttributesAtStart(t *testing.T) {
	ns, c := setTemporalEnv(t)
	t.Setenv("DATABASE_URL", devtest.Database(t))
	setKeys(t)
	t.Setenv("OAKALLOW_WORKER_METRICS_ADDR", "")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	workerCtx, stopWorker := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(workerCtx, []string{"worker"}, new(strings.Builder)) }()
	// Once it polls, it has done its setup.
	waitWhileRunning(ctx, t, done, "the worker starts polling", func() bool {
		tq, err := c.DescribeTaskQueue(ctx, workflows.TaskQueue, enums.TASK_QUEUE_TYPE_WORKFLOW)
		require.NoError(t, err)
		return len(tq.GetPollers()) > 0
	})
	require.Empty(t, missingSearchAttributes(ctx, t, c, ns))
	stopWorker()
	require.NoError(t, <-done)
}

// waitWhileRunning polls cond until it holds; the command must not exit
// (done) meanwhile, and ctx's end is a hang.
func waitWhileRunning(ctx context.Context, t *testing.T, done <-chan error, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case err := <-done:
			t.Fatalf("exited before %s: %v", what, err)
		case <-ctx.Done():
			t.Fatalf("waiting until %s: %v", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// setKeys gives the command a fresh signing key and secret key.
func setKeys(t *testing.T) {
	t.Helper()
	key, err := tokens.GenerateKey("k1")
	require.NoError(t, err)
	t.Setenv("OAKALLOW_SIGNING_KEYS", tokens.FormatKeyring(key))
	secret, err := sealed.NewKey()
	require.NoError(t, err)
	t.Setenv("OAKALLOW_SECRET_KEY", secret)
}

// serve and worker do not start without the secret key, and say what it is
// and how to make one; nor with a previous key that is not one.
func TestSecretKeyIsRequired(t *testing.T) {
	setKeys(t)
	t.Setenv("DATABASE_URL", devtest.Database(t))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	t.Setenv("OAKALLOW_SECRET_KEY", "")
	for _, cmd := range []string{"serve", "worker", "reseal"} {
		err := run(ctx, []string{cmd}, new(strings.Builder))
		require.ErrorContains(t, err, "OAKALLOW_SECRET_KEY is required", cmd)
		require.ErrorContains(t, err, "openssl rand -base64 32", cmd)
	}
	current, err := sealed.NewKey()
	require.NoError(t, err)
	t.Setenv("OAKALLOW_SECRET_KEY", current)
	t.Setenv("OAKALLOW_SECRET_KEY_PREVIOUS", current)
	require.ErrorContains(t, run(ctx, []string{"serve"}, new(strings.Builder)), "OAKALLOW_SECRET_KEY_PREVIOUS")
	t.Setenv("OAKALLOW_SECRET_KEY_PREVIOUS", "not-a-key")
	require.ErrorContains(t, run(ctx, []string{"worker"}, new(strings.Builder)), "OAKALLOW_SECRET_KEY_PREVIOUS: key 1")
}

// reseal, the second step of a key rotation, reports per column and says
// when the previous key can go.
func TestResealCommand(t *testing.T) {
	setKeys(t)
	t.Setenv("DATABASE_URL", devtest.Database(t))
	previous, err := sealed.NewKey()
	require.NoError(t, err)
	t.Setenv("OAKALLOW_SECRET_KEY_PREVIOUS", previous)
	var out strings.Builder
	require.NoError(t, run(t.Context(), []string{"reseal"}, &out))
	require.Contains(t, out.String(), "execution_tokens.token_sealed: 0 sealed values, 0 resealed")
	require.Contains(t, out.String(), "OAKALLOW_SECRET_KEY_PREVIOUS can be removed")
	var ue usageError
	require.ErrorAs(t, run(t.Context(), []string{"reseal", "now"}, &out), &ue)
}

func TestServeExitsWhenItsListenerFails(t *testing.T) {
	setTemporalEnv(t)
	setKeys(t)
	t.Setenv("DATABASE_URL", devtest.Database(t))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	waitWhileRunning(ctx, t, done, "serve answers", func() bool {
		resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	require.NoError(t, ln.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, net.ErrClosed)
	case <-ctx.Done():
		t.Fatal("serve kept running without its listener")
	}
}

func TestBootstrapOnlyOnANewInstallation(t *testing.T) {
	t.Setenv("DATABASE_URL", devtest.Database(t))
	t.Setenv("LOG_LEVEL", "warn")
	args := []string{"bootstrap", "-team", "Acme", "-org", "production", "-owner-email", "ops@acme.example"}

	var out strings.Builder
	require.NoError(t, run(t.Context(), args, &out))
	var res struct {
		TeamID        string `json:"team_id"`
		SignUpLink    string `json:"sign_up_link"`
		OrgID         string `json:"org_id"`
		ManagementKey string `json:"management_key"`
		StandardKey   string `json:"standard_key"`
	}
	require.NoError(t, json.Unmarshal([]byte(out.String()), &res))
	require.Regexp(t, `^http://localhost:8080/sign-up\?invitation=oak_inv_[A-Za-z0-9_-]{43}$`, res.SignUpLink)
	require.Regexp(t, `^oak_live_[0-9a-f]{32}$`, res.ManagementKey)
	require.Regexp(t, `^oak_live_[0-9a-f]{32}$`, res.StandardKey)
	require.NotEmpty(t, res.OrgID)
	require.NotEmpty(t, res.TeamID)

	out.Reset()
	err := run(t.Context(), args, &out)
	require.ErrorContains(t, err, "this installation already has a team")
	require.Empty(t, out.String(), "no second set of keys")
}

func TestBootstrapRefusesBadInput(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no team":      {[]string{"-org", "p", "-owner-email", "a@b.example"}, "-team is required"},
		"no owner":     {[]string{"-team", "Acme"}, "-owner-email is required"},
		"bad e-mail":   {[]string{"-team", "Acme", "-org", "p", "-owner-email", "Ops <a@b.example>"}, "-owner-email is not a plain e-mail address"},
		"long name":    {[]string{"-team", strings.Repeat("x", 201), "-org", "p", "-owner-email", "a@b.example"}, "-team must be valid UTF-8 of at most 200 characters"},
		"extra args":   {[]string{"-team", "Acme", "-org", "p", "-owner-email", "a@b.example", "now"}, "unexpected arguments"},
		"unknown flag": {[]string{"-teem", "Acme"}, "flag provided but not defined"},
	} {
		err := run(t.Context(), append([]string{"bootstrap"}, tc.args...), new(strings.Builder))
		require.ErrorAs(t, err, new(usageError), name)
		require.ErrorContains(t, err, tc.want, name)
	}
}
