package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2/humatest"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"oakallow/api/ratelimit"
	"oakallow/store"
)

// testClock is a clock the test moves by hand, so that refills happen when
// the test says and no test depends on how fast the machine is.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (all of 127.0.0.0/8 is loopback on Linux).
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// randomKey is a well-formed API key that nobody issued.
func randomKey(t testing.TB) string {
	t.Helper()
	var b [16]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return apiKeyPrefix + hex.EncodeToString(b[:])
}

// limitEnv starts a server with the given limits on a manual clock.
func limitEnv(t *testing.T, limits LimitsConfig) (*testEnv, *testClock) {
	t.Helper()
	clock := newTestClock()
	st, boot := bootstrappedStore(t)
	cfg := testConfig()
	cfg.Limits = limits
	return startEnvWith(t, cfg, Deps{Store: st, Now: clock.Now}, boot), clock
}

var off = ratelimit.Limit{Off: true}

// metricValue reads one series of the server's /metrics.
func (e *testEnv) metricValue(series string) float64 {
	e.t.Helper()
	status, raw := e.do(http.MethodGet, "/metrics", "", nil)
	require.Equal(e.t, http.StatusOK, status)
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(e.t, err)
			return f
		}
	}
	e.t.Fatalf("no series %s in /metrics", series)
	return 0
}

// crossing is one rate_limit.exceeded audit row.
type crossing struct {
	OrgID, ActorKind, ActorID string
	Details                   crossingDetails
	raw                       string
}

// crossings returns the audit rows of a limit's crossings, oldest first.
func (e *testEnv) crossings(limit string) []crossing {
	e.t.Helper()
	rows, err := e.st.Pool.Query(context.Background(), `SELECT org_id, actor_kind, actor_id, details::text
		FROM audit_events WHERE kind = $1 AND subject = $2 ORDER BY seq`, kindRateLimited, limit)
	require.NoError(e.t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (crossing, error) {
		var c crossing
		err := r.Scan(&c.OrgID, &c.ActorKind, &c.ActorID, &c.raw)
		if err == nil {
			err = json.Unmarshal([]byte(c.raw), &c.Details)
		}
		return c, err
	})
	require.NoError(e.t, err)
	return out
}

// requireLimited requires a 429 rate_limited answer with Retry-After.
func requireLimited(t *testing.T, status int, hdr http.Header, raw []byte, retryAfter string) {
	t.Helper()
	require.Equal(t, http.StatusTooManyRequests, status, string(raw))
	require.Equal(t, CodeRateLimited, problemCode(t, raw))
	require.Equal(t, retryAfter, hdr.Get("Retry-After"))
}

func TestFailedAuthenticationIsLimitedPerAddress(t *testing.T) {
	t.Parallel()
	e, clock := limitEnv(t, LimitsConfig{AuthFailuresPerIP: ratelimit.Limit{N: 5, Per: time.Minute}, AuthFailuresPerKey: off})
	attacker, other := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
	get := func(c *http.Client, key string) (int, http.Header, []byte) {
		return e.sendVia(c, http.MethodGet, "/v1/credits", key, nil, nil)
	}
	badKeys := []string{"", "nonsense", randomKey(t), randomKey(t), "Bearer-ish " + randomKey(t)}
	for _, k := range badKeys {
		status, _, raw := get(attacker, k)
		require.Equal(t, http.StatusUnauthorized, status, string(raw))
		require.Equal(t, CodeInvalidKey, problemCode(t, raw))
	}
	// The sixth failure in a minute is refused; one attempt comes back every 12 s.
	status, hdr, raw := get(attacker, randomKey(t))
	requireLimited(t, status, hdr, raw, "12")
	// A held-back address is refused with a valid key too (else it would
	// still learn from every guess) …
	status, hdr, raw = get(attacker, e.boot.StandardKey)
	requireLimited(t, status, hdr, raw, "12")
	// … while the valid key from another address works, and that address
	// has a budget of its own.
	status, _, raw = get(other, e.boot.StandardKey)
	require.Equal(t, http.StatusOK, status, string(raw))
	status, _, _ = get(other, randomKey(t))
	require.Equal(t, http.StatusUnauthorized, status)
	for range 3 {
		status, _, _ = get(attacker, randomKey(t))
		require.Equal(t, http.StatusTooManyRequests, status)
	}

	// One crossing: audited once, at installation level, counted.
	c := e.crossings(limitAuthFailuresPerIP)
	require.Len(t, c, 1)
	require.Empty(t, c[0].OrgID)
	require.Equal(t, actorClientIP, c[0].ActorKind)
	require.Equal(t, "127.0.0.2", c[0].ActorID)
	require.Equal(t, "127.0.0.2", c[0].Details.ClientIP)
	require.Equal(t, "5/1m0s", c[0].Details.Allowed)
	require.Equal(t, 12, c[0].Details.RetryAfterS)
	require.Equal(t, 5.0, e.metricValue(`oakallow_rate_limited_total{limit="auth_failures_per_ip"}`))
	require.Equal(t, 1.0, e.metricValue(`oakallow_rate_limit_crossings_total{limit="auth_failures_per_ip"}`))

	// A minute later the budget is full again: the valid key works, and the
	// next flood is a new crossing with its own audit entry.
	clock.Advance(time.Minute)
	status, _, raw = get(attacker, e.boot.StandardKey)
	require.Equal(t, http.StatusOK, status, string(raw))
	for range 5 {
		status, _, _ = get(attacker, randomKey(t))
		require.Equal(t, http.StatusUnauthorized, status)
	}
	status, hdr, raw = get(attacker, randomKey(t))
	requireLimited(t, status, hdr, raw, "12")
	require.Len(t, e.crossings(limitAuthFailuresPerIP), 2)
	require.Equal(t, 2.0, e.metricValue(`oakallow_rate_limit_crossings_total{limit="auth_failures_per_ip"}`))
}

func TestWrongTierIsNotAnAuthenticationFailure(t *testing.T) {
	t.Parallel()
	e, _ := limitEnv(t, LimitsConfig{AuthFailuresPerIP: ratelimit.Limit{N: 2, Per: time.Minute}})
	for range 10 {
		status, raw := e.do(http.MethodPost, "/v1/permissions/check", e.boot.ManagementKey, map[string]any{"tool": "x"})
		require.Equal(t, http.StatusForbidden, status, string(raw))
		require.Equal(t, CodeWrongKeyTier, problemCode(t, raw))
	}
	status, raw := e.do(http.MethodGet, "/v1/credits", e.boot.StandardKey, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Empty(t, e.crossings(limitAuthFailuresPerIP))
}

func TestRevokedKeyIsLimitedFromAnyAddress(t *testing.T) {
	t.Parallel()
	e, _ := limitEnv(t, LimitsConfig{AuthFailuresPerIP: off, AuthFailuresPerKey: ratelimit.Limit{N: 3, Per: time.Minute}})
	// A key of the org, revoked (the server never held it: to the key
	// cache a revoked key and an unknown one look the same).
	var key, keyID string
	require.NoError(t, e.st.InTx(context.Background(), func(tx pgx.Tx, q *store.Queries) error {
		var err error
		if key, err = createKey(context.Background(), q, e.boot.OrgID, TierStandard, "leaked", e.boot.UserID, time.Now()); err != nil {
			return err
		}
		h := sha256.Sum256([]byte(key))
		return tx.QueryRow(context.Background(), `UPDATE api_keys SET revoked_at = now() WHERE hash = $1 RETURNING id`, h[:]).Scan(&keyID)
	}))

	// Three failures from three addresses, then 429 wherever the key comes from.
	for i := range 3 {
		status, _, _ := e.sendVia(clientFrom("127.0.0."+strconv.Itoa(10+i)), http.MethodGet, "/v1/credits", key, nil, nil)
		require.Equal(t, http.StatusUnauthorized, status)
	}
	for i := range 3 {
		status, hdr, raw := e.sendVia(clientFrom("127.0.0."+strconv.Itoa(20+i)), http.MethodGet, "/v1/credits", key, nil, nil)
		requireLimited(t, status, hdr, raw, "20")
	}
	// Other keys keep their own budget.
	status, raw := e.do(http.MethodGet, "/v1/credits", randomKey(t), nil)
	require.Equal(t, http.StatusUnauthorized, status, string(raw))
	status, raw = e.do(http.MethodGet, "/v1/credits", e.boot.StandardKey, nil)
	require.Equal(t, http.StatusOK, status, string(raw))

	// Audited once, in the org the revoked key belonged to, by key id and
	// display prefix, never the key itself.
	c := e.crossings(limitAuthFailuresPerKey)
	require.Len(t, c, 1)
	require.Equal(t, e.boot.OrgID, c[0].OrgID)
	require.Equal(t, actorAPIKey, c[0].ActorKind)
	require.Equal(t, keyID, c[0].ActorID)
	require.Equal(t, key[:displayPrefixLen], c[0].Details.KeyPrefix)
	require.Equal(t, "127.0.0.20", c[0].Details.ClientIP)
	require.NotContains(t, c[0].raw, key[displayPrefixLen:])
	require.Equal(t, 3.0, e.metricValue(`oakallow_rate_limited_total{limit="auth_failures_per_key"}`))

	// A key nobody issued is audited at installation level.
	unknown := randomKey(t)
	for range 3 {
		status, _ = e.do(http.MethodGet, "/v1/credits", unknown, nil)
		require.Equal(t, http.StatusUnauthorized, status)
	}
	status, _ = e.do(http.MethodGet, "/v1/credits", unknown, nil)
	require.Equal(t, http.StatusTooManyRequests, status)
	c = e.crossings(limitAuthFailuresPerKey)
	require.Len(t, c, 2)
	require.Empty(t, c[1].OrgID)
	require.Empty(t, c[1].ActorID)
	require.Equal(t, unknown[:displayPrefixLen], c[1].Details.KeyPrefix)
}

// garbageToken is shaped like a token and verifies as nothing.
const garbageToken = "oak_tok_e30.AAAA"

func TestFailedVerificationsAreLimitedPerKey(t *testing.T) {
	t.Parallel()
	e, clock := limitEnv(t, LimitsConfig{VerifyFailuresPerKey: ratelimit.Limit{N: 3, Per: time.Minute}})
	tok := expect[MintedToken](e, http.StatusOK, http.MethodPost, "/v1/tokens/mint", e.boot.StandardKey,
		map[string]any{"check_id": e.allowedCheck("deploy", map[string]any{"env": "prod"})})
	verify := func(token string) (int, http.Header, []byte) {
		return e.send(http.MethodPost, "/v1/tokens/verify", e.boot.StandardKey, nil, map[string]any{"token": token})
	}
	for range 3 {
		status, _, raw := verify(garbageToken)
		require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))
		require.Equal(t, CodeTokenInvalid, problemCode(t, raw))
	}
	status, hdr, raw := verify(garbageToken)
	requireLimited(t, status, hdr, raw, "20")
	// Every verification with the key waits, the real token's too; it is
	// not spent by the refusal.
	status, hdr, raw = verify(tok.Token)
	requireLimited(t, status, hdr, raw, "20")

	c := e.crossings(limitVerifyFailuresPerKey)
	require.Len(t, c, 1)
	require.Equal(t, e.boot.OrgID, c[0].OrgID)
	require.Equal(t, e.keyID(TierStandard), c[0].ActorID)
	require.Equal(t, 2.0, e.metricValue(`oakallow_rate_limited_total{limit="verify_failures_per_key"}`))
	require.Equal(t, 1.0, e.metricValue(`oakallow_rate_limit_crossings_total{limit="verify_failures_per_key"}`))

	clock.Advance(20 * time.Second)
	status, _, raw = verify(tok.Token)
	require.Equal(t, http.StatusOK, status, string(raw))
	// A replay is a failure too: the bucket, one token up after 20 s and
	// nothing more since, is empty again.
	status, _, raw = verify(tok.Token)
	require.Equal(t, http.StatusConflict, status, string(raw))
	require.Equal(t, CodeTokenReplayed, problemCode(t, raw))
	status, _, _ = verify(tok.Token)
	require.Equal(t, http.StatusTooManyRequests, status)
	require.Len(t, e.crossings(limitVerifyFailuresPerKey), 1, "the same episode")
}

func TestVerificationsPerKeyAreCapped(t *testing.T) {
	t.Parallel()
	e, _ := limitEnv(t, LimitsConfig{VerifiesPerKey: ratelimit.Limit{N: 4, Per: time.Second},
		VerifyFailuresPerKey: off, VerifyFailuresPerIP: off})
	for range 4 {
		status, raw := e.do(http.MethodPost, "/v1/tokens/verify", e.boot.StandardKey, map[string]any{"token": garbageToken})
		require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))
	}
	for range 5 {
		status, hdr, raw := e.send(http.MethodPost, "/v1/tokens/verify", e.boot.StandardKey, nil, map[string]any{"token": garbageToken})
		requireLimited(t, status, hdr, raw, "1")
	}
	require.Len(t, e.crossings(limitVerifiesPerKey), 1)
	require.Equal(t, 5.0, e.metricValue(`oakallow_rate_limited_total{limit="verifies_per_key"}`))
	// Other operations of the key are not verifications.
	status, raw := e.do(http.MethodGet, "/v1/credits", e.boot.StandardKey, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
}

func TestFailedVerificationsAreLimitedPerAddress(t *testing.T) {
	t.Parallel()
	e, _ := limitEnv(t, LimitsConfig{VerifyFailuresPerIP: ratelimit.Limit{N: 2, Per: time.Minute}, VerifyFailuresPerKey: off})
	var second string
	require.NoError(t, e.st.InTx(context.Background(), func(_ pgx.Tx, q *store.Queries) error {
		var err error
		if second, err = createKey(context.Background(), q, e.boot.OrgID, TierStandard, "second", e.boot.UserID, time.Now()); err != nil {
			return err
		}
		return q.NotifyChange(context.Background(), "keys")
	}))
	e.waitForKey(second)
	a, b := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
	verify := func(c *http.Client, key string) (int, http.Header, []byte) {
		return e.sendVia(c, http.MethodPost, "/v1/tokens/verify", key, nil, map[string]any{"token": garbageToken})
	}
	// Two keys, one address: the address's budget is shared.
	for _, k := range []string{e.boot.StandardKey, second} {
		status, _, raw := verify(a, k)
		require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))
	}
	status, hdr, raw := verify(a, second)
	requireLimited(t, status, hdr, raw, "30")
	status, _, raw = verify(b, second)
	require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))

	c := e.crossings(limitVerifyFailuresPerIP)
	require.Len(t, c, 1)
	require.Empty(t, c[0].OrgID)
	require.Equal(t, "127.0.0.2", c[0].ActorID)
}

func TestForwardedForIsTrustedOnlyFromTrustedProxies(t *testing.T) {
	t.Parallel()
	limit := ratelimit.Limit{N: 3, Per: time.Minute}
	t.Run("not trusted", func(t *testing.T) {
		t.Parallel()
		e, _ := limitEnv(t, LimitsConfig{AuthFailuresPerIP: limit, AuthFailuresPerKey: off})
		c := clientFrom("127.0.0.2")
		// A client cannot escape its limit by making up addresses.
		for i := range 3 {
			status, _, _ := e.sendVia(c, http.MethodGet, "/v1/credits", randomKey(t),
				map[string]string{"X-Forwarded-For": "198.51.100." + strconv.Itoa(i)}, nil)
			require.Equal(t, http.StatusUnauthorized, status)
		}
		status, hdr, raw := e.sendVia(c, http.MethodGet, "/v1/credits", randomKey(t),
			map[string]string{"X-Forwarded-For": "198.51.100.99"}, nil)
		requireLimited(t, status, hdr, raw, "20")
		require.Equal(t, "127.0.0.2", e.crossings(limitAuthFailuresPerIP)[0].ActorID)
	})
	t.Run("trusted proxy", func(t *testing.T) {
		t.Parallel()
		e, _ := limitEnv(t, LimitsConfig{AuthFailuresPerIP: limit, AuthFailuresPerKey: off,
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
		proxy := clientFrom("127.0.0.2")
		via := func(xff, key string) (int, http.Header, []byte) {
			return e.sendVia(proxy, http.MethodGet, "/v1/credits", key, map[string]string{"X-Forwarded-For": xff}, nil)
		}
		for range 3 {
			status, _, _ := via("198.51.100.7", randomKey(t))
			require.Equal(t, http.StatusUnauthorized, status)
		}
		status, hdr, raw := via("198.51.100.7", randomKey(t))
		requireLimited(t, status, hdr, raw, "20")
		// Another client behind the same proxy is unaffected; a client
		// cannot pose as it by adding addresses on the left.
		status, _, raw = via("198.51.100.8", e.boot.StandardKey)
		require.Equal(t, http.StatusOK, status, string(raw))
		status, _, _ = via("198.51.100.8, 198.51.100.7", e.boot.StandardKey)
		require.Equal(t, http.StatusTooManyRequests, status)
		require.Equal(t, "198.51.100.7", e.crossings(limitAuthFailuresPerIP)[0].ActorID)
	})
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted, err := ParseTrustedProxies("10.0.0.0/8, 192.0.2.1, 2001:db8:ffff::/48, 2001:db8:5::7")
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		trusted bool
		peer    string
		xff     []string
		want    string
	}{
		{name: "peer", peer: "203.0.113.5:4000", want: "203.0.113.5"},
		{name: "forwarded-for ignored without trusted proxies", peer: "203.0.113.5:4000", xff: []string{"198.51.100.1"}, want: "203.0.113.5"},
		{name: "untrusted peer", trusted: true, peer: "203.0.113.5:4000", xff: []string{"198.51.100.1"}, want: "203.0.113.5"},
		{name: "trusted peer", trusted: true, peer: "10.1.2.3:4000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "rightmost untrusted", trusted: true, peer: "10.1.2.3:4000", xff: []string{"6.6.6.6, 198.51.100.1, 192.0.2.1"}, want: "198.51.100.1"},
		{name: "header lines in order", trusted: true, peer: "10.1.2.3:4000", xff: []string{"6.6.6.6", "198.51.100.1, 10.9.9.9"}, want: "198.51.100.1"},
		{name: "all trusted", trusted: true, peer: "10.1.2.3:4000", xff: []string{"10.0.0.7, 192.0.2.1"}, want: "10.0.0.7"},
		{name: "no header", trusted: true, peer: "10.1.2.3:4000", want: "10.1.2.3"},
		{name: "garbage stops at its sender", trusted: true, peer: "10.1.2.3:4000", xff: []string{"6.6.6.6, nonsense, 192.0.2.1"}, want: "192.0.2.1"},
		{name: "ports and brackets", trusted: true, peer: "10.1.2.3:4000", xff: []string{"[2001:db8:1:2::5]:443"}, want: "2001:db8:1:2::"},
		{name: "IPv6 by its /64", peer: "[2001:db8:1:2:aaaa::1]:4000", want: "2001:db8:1:2::"},
		{name: "trusted IPv6 proxy", trusted: true, peer: "[2001:db8:ffff:1::1]:4000", xff: []string{"203.0.113.9"}, want: "203.0.113.9"},
		{name: "one trusted IPv6 address", trusted: true, peer: "[2001:db8:5::7]:4000", xff: []string{"203.0.113.9"}, want: "203.0.113.9"},
		{name: "IPv4-mapped is IPv4", peer: "[::ffff:203.0.113.5]:4000", want: "203.0.113.5"},
		{name: "no address", peer: "@", want: "invalid IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := &limits{}
			if tc.trusted {
				l.trusted = trusted
			}
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			got := l.clientIP(humatest.NewContext(nil, req, httptest.NewRecorder()))
			require.Equal(t, tc.want, got.String())
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	t.Parallel()
	got, err := ParseTrustedProxies(" 10.0.0.0/8,192.0.2.1 , ::ffff:192.0.2.2, 2001:db8::1/32,")
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32"),
		netip.MustParsePrefix("192.0.2.2/32"), netip.MustParsePrefix("2001:db8::/32")}, got)
	for _, bad := range []string{"10.0.0.0/33", "proxy.example.com", "10.0.0"} {
		_, err := ParseTrustedProxies(bad)
		require.Error(t, err, bad)
	}
}

func TestLimitsConfigDefaultsAndBounds(t *testing.T) {
	t.Parallel()
	var c LimitsConfig
	require.NoError(t, c.Validate())
	require.Equal(t, defaultAuthFailuresPerIP, c.AuthFailuresPerIP)
	require.Equal(t, defaultVerifiesPerKey, c.VerifiesPerKey)
	require.Equal(t, defaultMaxTracked, c.MaxTracked)
	require.Error(t, (&LimitsConfig{MaxTracked: 10}).Validate())
	require.Error(t, (&LimitsConfig{VerifiesPerKey: ratelimit.Limit{N: 5}}).Validate(), "no period")
	require.Error(t, (&LimitsConfig{TrustedProxies: []netip.Prefix{{}}}).Validate())
	require.NoError(t, (&LimitsConfig{AuthFailuresPerIP: off}).Validate())
}
