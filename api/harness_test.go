package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/activities/sealed"
	"oakallow/activities/tokens"
	"oakallow/api/ratelimit"
	"oakallow/dev/devtest"
	"oakallow/store"
)

func TestMain(m *testing.M) { devtest.Main(m) }

// hangDeadline is how long a test waits for something that happens in the
// background (a notification reaching a replica, a reconnect) before calling
// it a hang. It is not a performance budget: timings are logged or measured
// by benchmarks, never asserted, because a loaded machine is slow, not wrong.
const hangDeadline = 30 * time.Second

// testEnv is a real API server on a fresh migrated database, with a
// bootstrapped team, org and keys.
type testEnv struct {
	t    testing.TB
	st   *store.Store
	srv  *Server
	base string
	boot BootstrapResult
}

// testKeyring is shared by every server in the test process, so replicas
// verify each other's receipts and tokens.
var testKeyring = func() *tokens.Keyring {
	k, err := tokens.GenerateKey("test1")
	if err != nil {
		panic(err)
	}
	kr, err := tokens.NewKeyring("test1", k)
	if err != nil {
		panic(err)
	}
	return kr
}()

// requireBetween asserts lo <= got <= hi: a time the server derived from its
// clock, bracketed by readings taken before and after the request, so a slow
// machine cannot make it fail.
func requireBetween(t testing.TB, got, lo, hi time.Time) {
	t.Helper()
	require.False(t, got.Before(lo), "%s is before %s", got, lo)
	require.False(t, got.After(hi), "%s is after %s", got, hi)
}

func testLogger() *slog.Logger {
	if os.Getenv("OAKALLOW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	st, boot := bootstrappedStore(t)
	return startEnv(t, st, boot)
}

// bootstrappedStore is a fresh database with one team, org and keys.
func bootstrappedStore(t testing.TB) (*store.Store, BootstrapResult) {
	t.Helper()
	st := devtest.Store(t)
	boot, err := Bootstrap(context.Background(), st, BootstrapInput{
		TeamName: "Acme", OwnerEmail: "owner@example.com", OwnerName: "Owner", OrgName: "acme-app",
	}, time.Now())
	require.NoError(t, err)
	return st, boot
}

// testSecretBox is the secrets box of test servers that are not given one;
// replicas share it, as production replicas share OAKALLOW_SECRET_KEY.
var testSecretBox = func() *sealed.Box {
	key, err := sealed.NewKey()
	if err != nil {
		panic(err)
	}
	raw, err := sealed.ParseKey(key)
	if err != nil {
		panic(err)
	}
	box, err := sealed.NewBox(raw)
	if err != nil {
		panic(err)
	}
	return box
}()

// testBox is a secrets box with a fresh key.
func testBox(t testing.TB) *sealed.Box {
	t.Helper()
	key, err := sealed.NewKey()
	require.NoError(t, err)
	raw, err := sealed.ParseKey(key)
	require.NoError(t, err)
	box, err := sealed.NewBox(raw)
	require.NoError(t, err)
	return box
}

// testConfig is the configuration of test servers: like go run ./dev, they
// accept webhook and channel URLs on loopback over http, where the tests'
// receivers listen. TestInternalDestinationsRefusedWhenSet covers the
// production default.
//
// Per-address rate limits are off: every test's requests come from
// 127.0.0.1, many tests share a server, and helpers poll with keys a replica
// has not learned yet, so one test's failures would hold back the others.
// limits_test.go sets the limits it tests; per-key limits keep their defaults.
func testConfig() Config {
	off := ratelimit.Limit{Off: true}
	return Config{Addr: "127.0.0.1:0", AllowPrivateWebhooks: true,
		Limits: LimitsConfig{AuthFailuresPerIP: off, VerifyFailuresPerIP: off,
			OAuthAuthorizePerIP: off, OAuthAuthorizeAll: off, PasskeyOptionsPerIP: off, PasskeyOptionsAll: off}}
}

// startEnv starts another API server on an existing database (replicas).
func startEnv(t testing.TB, st *store.Store, boot BootstrapResult) *testEnv {
	t.Helper()
	return startEnvWith(t, testConfig(), Deps{Store: st}, boot)
}

// startEnvWith starts an API server with cfg and deps (Logger, Keyring and,
// when not given, SecretBox filled in) for the org boot.
func startEnvWith(t testing.TB, cfg Config, deps Deps, boot BootstrapResult) *testEnv {
	t.Helper()
	st := deps.Store
	deps.Logger, deps.Keyring = testLogger(), testKeyring
	if deps.SecretBox == nil {
		deps.SecretBox = testSecretBox
	}
	srv, err := NewServer(cfg, deps)
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	t.Cleanup(srv.Stop)
	return &testEnv{t: t, st: st, srv: srv, base: "http://" + srv.Addr(), boot: boot}
}

// do sends a request with the key (as X-API-Key) and returns status and body.
func (e *testEnv) do(method, path, key string, body any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		raw, err := json.Marshal(b)
		require.NoError(e.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	require.NoError(e.t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp.StatusCode, raw
}

// problemCode decodes a problem body's code.
func problemCode(t testing.TB, body []byte) string {
	t.Helper()
	var p struct {
		Code string `json:"code"`
	}
	require.NoError(t, json.Unmarshal(body, &p), string(body))
	return p.Code
}
