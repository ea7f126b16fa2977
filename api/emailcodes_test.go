package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/api/mail"
	"oakallow/api/mail/mailtest"
	"oakallow/api/ratelimit"
	"oakallow/store"
)

// mailEnv is a server that mails through a real SMTP client to an
// in-process sink, on a manual clock, with every log line kept.
type mailEnv struct {
	*testEnv
	sink  *mailtest.Sink
	clock *testClock
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newMailEnv(t *testing.T, accounts AccountsConfig) *mailEnv {
	t.Helper()
	st, boot := bootstrappedStore(t)
	return startMailEnv(t, st, boot, accounts, nil)
}

// startMailEnv starts a (further) server on st; sink and clock are shared
// with other when given.
func startMailEnv(t *testing.T, st *store.Store, boot BootstrapResult, accounts AccountsConfig, other *mailEnv) *mailEnv {
	t.Helper()
	me := &mailEnv{logs: &syncBuffer{}}
	if other != nil {
		me.sink, me.clock = other.sink, other.clock
	} else {
		me.sink, me.clock = mailtest.Start(t), newTestClock()
	}
	sender, err := mail.NewSMTP(mail.SMTPConfig{Host: me.sink.Host, Port: me.sink.Port, From: "oakallow <no-reply@example.com>", TLS: mail.TLSNone})
	require.NoError(t, err)
	cfg := testConfig()
	cfg.Accounts = accounts
	srv, err := NewServer(cfg, Deps{Store: st, Keyring: testKeyring, SecretBox: testSecretBox, Mailer: sender, Now: me.clock.Now,
		Logger: slog.New(slog.NewTextHandler(me.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	t.Cleanup(srv.Stop)
	me.testEnv = &testEnv{t: t, st: st, srv: srv, base: "http://" + srv.Addr(), boot: boot}
	return me
}

var codeInMail = regexp.MustCompile(`\b(\d{6})\b`)

// start asks for a code and returns the attempt token.
func (m *mailEnv) start(email, invitation string) string {
	m.t.Helper()
	body := map[string]any{"email": email}
	if invitation != "" {
		body["invitation"] = invitation
	}
	got := expect[EmailStarted](m.testEnv, http.StatusAccepted, http.MethodPost, "/v1/auth/email/start", "", body)
	require.True(m.t, strings.HasPrefix(got.Attempt, attemptTokenPrefix))
	return got.Attempt
}

// code waits for the n-th mail to email and returns its code.
func (m *mailEnv) code(email string, n int) string {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangDeadline)
	defer cancel()
	msg, err := m.sink.WaitFor(ctx, email, n)
	require.NoError(m.t, err)
	c := codeInMail.FindStringSubmatch(msg.Body)
	require.NotNil(m.t, c, msg.Body)
	return c[1]
}

func (m *mailEnv) verify(attempt, code string, extra map[string]any) (int, []byte) {
	m.t.Helper()
	body := map[string]any{"attempt": attempt, "code": code, "client": "app"}
	for k, v := range extra {
		body[k] = v
	}
	status, _, raw := m.send(http.MethodPost, "/v1/auth/email/verify", "", nil, body)
	return status, raw
}

func (m *mailEnv) signedIn(attempt, code string, extra map[string]any) SessionInfo {
	m.t.Helper()
	status, raw := m.verify(attempt, code, extra)
	require.Equal(m.t, http.StatusOK, status, string(raw))
	var si SessionInfo
	require.NoError(m.t, json.Unmarshal(raw, &si))
	return si
}

// invite creates an invitation to the env's team directly (the invitation
// endpoints have their own tests) and returns its token.
func (m *mailEnv) invite(email, role string) string {
	m.t.Helper()
	return m.inviteAt(email, role, m.clock.Now())
}

func (m *mailEnv) me(token string) Me {
	m.t.Helper()
	status, raw := m.asSession(http.MethodGet, "/v1/me", bearer(token), nil)
	require.Equal(m.t, http.StatusOK, status, string(raw))
	var me Me
	require.NoError(m.t, json.Unmarshal(raw, &me))
	return me
}

func (m *mailEnv) sessions() int {
	m.t.Helper()
	var n int
	require.NoError(m.t, m.st.Pool.QueryRow(context.Background(), `SELECT count(*) FROM sessions`).Scan(&n))
	return n
}

func TestInvitedPersonSignsUpAndInAgainByEmailCode(t *testing.T) {
	t.Parallel()
	m := newMailEnv(t, AccountsConfig{})
	inv := m.invite("Rita@Example.com", RoleReviewer)

	att := m.start("rita@example.COM", inv)
	code := m.code("rita@example.com", 1)
	si := m.signedIn(att, code, map[string]any{"name": "Rita"})
	require.Equal(t, sessionStateEnrollment, si.State)
	require.NotEmpty(t, si.Token)
	me := m.me(si.Token)
	require.Equal(t, "rita@example.com", me.Email)
	require.Equal(t, "Rita", me.Name)
	require.Len(t, me.Memberships, 1)
	require.Equal(t, RoleReviewer, me.Memberships[0].Role)
	require.Equal(t, m.boot.TeamID, me.Memberships[0].TeamID)
	// The session is enrollment-only.
	status, raw := m.asSession(http.MethodGet, "/v1/approvals", bearer(si.Token), nil)
	requireStatusCode(t, http.StatusForbidden, CodePasskeyRequired, status, raw)

	// The invitation is used up.
	status, _, raw = m.send(http.MethodPost, "/v1/auth/email/start", "", nil, map[string]any{"email": "rita@example.com", "invitation": inv})
	requireStatusCode(t, http.StatusForbidden, CodeInvalidInvitation, status, raw)

	// Signing in again needs no invitation; a browser gets a cookie, not the token.
	att = m.start("rita@example.com", "")
	code = m.code("rita@example.com", 2)
	status, hdr, raw := m.send(http.MethodPost, "/v1/auth/email/verify", "", nil, map[string]any{"attempt": att, "code": code})
	require.Equal(t, http.StatusOK, status, string(raw))
	require.NotContains(t, string(raw), sessionTokenPrefix)
	ck := hdr.Get("Set-Cookie")
	require.True(t, strings.HasPrefix(ck, sessionCookiePlain+"="+sessionTokenPrefix), ck)
	require.Contains(t, ck, "HttpOnly")
	require.Contains(t, ck, "SameSite=Lax")
	tok := strings.TrimPrefix(strings.SplitN(ck, ";", 2)[0], sessionCookiePlain+"=")
	status, raw = m.asSession(http.MethodGet, "/v1/me", cookie(tok), nil)
	require.Equal(t, http.StatusOK, status, string(raw))

	var kinds []string
	rows, err := m.st.Pool.Query(context.Background(), `SELECT kind FROM audit_events WHERE team_id = $1 OR actor_id = $2 ORDER BY seq`, m.boot.TeamID, me.UserID)
	require.NoError(t, err)
	for rows.Next() {
		var k string
		require.NoError(t, rows.Scan(&k))
		kinds = append(kinds, k)
	}
	require.NoError(t, rows.Err())
	require.Subset(t, kinds, []string{kindSignInCodeSent, kindInvitationAccepted, kindSessionStarted})
}

func TestOpenSignUpCreatesATeam(t *testing.T) {
	t.Parallel()
	m := newMailEnv(t, AccountsConfig{OpenSignUp: true})
	att := m.start("grace@example.com", "")
	si := m.signedIn(att, m.code("grace@example.com", 1), map[string]any{"name": "Grace", "team_name": "Navy"})
	me := m.me(si.Token)
	require.Len(t, me.Memberships, 1)
	require.Equal(t, RoleOwner, me.Memberships[0].Role)
	require.Equal(t, "Navy", me.Memberships[0].TeamName)
	var free int64
	require.NoError(t, m.st.Pool.QueryRow(context.Background(), `SELECT amount_micros FROM credit_grants WHERE team_id = $1`, me.Memberships[0].TeamID).Scan(&free))
	require.Equal(t, int64(FreeCreditMicros), free)
}

func TestUnknownAddressGetsTheSameAnswerAndNoMail(t *testing.T) {
	t.Parallel()
	m := newMailEnv(t, AccountsConfig{})
	att := m.start("nobody@example.com", "")
	att2 := m.start("owner@example.com", "") // the bootstrapped owner
	m.code("owner@example.com", 1)
	require.Len(t, m.sink.Messages(), 1, "no mail to an address that may not sign in")
	for _, c := range []string{"000000", "123456", "999999"} {
		status, raw := m.verify(att, c, nil)
		requireStatusCode(t, http.StatusUnauthorized, CodeInvalidCode, status, raw)
	}
	require.NotEmpty(t, att2)
	require.Zero(t, m.sessions())
}

func TestWrongExpiredAndReusedCodesChangeNothing(t *testing.T) {
	t.Parallel()
	m := newMailEnv(t, AccountsConfig{})
	email := "owner@example.com"

	// Five wrong tries spend the attempt: the right code no longer works.
	att := m.start(email, "")
	code := m.code(email, 1)
	wrong := strconv.Itoa((mustAtoi(t, code)+1)%1_000_000 + 1_000_000)[1:]
	for range codeMaxTries {
		status, raw := m.verify(att, wrong, nil)
		requireStatusCode(t, http.StatusUnauthorized, CodeInvalidCode, status, raw)
	}
	status, raw := m.verify(att, code, nil)
	requireStatusCode(t, http.StatusUnauthorized, CodeInvalidCode, status, raw)

	// A code works only with its own attempt.
	attA, attB := m.start(email, ""), m.start(email, "")
	codeA, codeB := m.code(email, 2), m.code(email, 3)
	if codeA != codeB {
		status, raw = m.verify(attB, codeA, nil)
		requireStatusCode(t, http.StatusUnauthorized, CodeInvalidCode, status, raw)
	}

	// Expired after 5 minutes.
	m.clock.Advance(codeLife + time.Second)
	status, raw = m.verify(attA, codeA, nil)
	requireStatusCode(t, http.StatusUnauthorized, CodeInvalidCode, status, raw)
	require.Zero(t, m.sessions())

	// Used once.
	att = m.start(email, "")
	code = m.code(email, 4)
	m.signedIn(att, code, nil)
	status, raw = m.verify(att, code, nil)
	requireStatusCode(t, http.StatusUnauthorized, CodeInvalidCode, status, raw)
	require.Equal(t, 1, m.sessions())

	// Malformed input is refused without a 500.
	for _, body := range []string{
		`{}`, `{"attempt":"x","code":"1"}`, `{"attempt":` + strconv.Quote(strings.Repeat("a", 1000)) + `,"code":"123456"}`,
		`{"attempt":"` + att + `","code":"12345678901234"}`, `{"attempt":"` + att + `","code":"123456","client":"tv"}`,
		`{"attempt":"` + att + `","code":"123456","extra":1}`, `[1,2]`, `"x"`, `{"attempt":null}`, `{"attempt":"\u0000"}`,
	} {
		status, _, raw := m.send(http.MethodPost, "/v1/auth/email/verify", "", nil, []byte(body))
		require.True(t, status >= 400 && status < 500, "%s: %d %s", body, status, raw)
	}
	for _, email := range []string{"", "a", "not-an-address", "Ada <ada@example.com>", "a@b@c.com", "ada@example.com\r\nBcc: x@y.z",
		"ada @example.com", strings.Repeat("a", 400) + "@example.com", "ada\u200b@example.com"} {
		status, _, raw := m.send(http.MethodPost, "/v1/auth/email/start", "", nil, map[string]any{"email": email})
		require.True(t, status == http.StatusUnprocessableEntity || status == http.StatusBadRequest, "%q: %d %s", email, status, raw)
	}
	require.Equal(t, 1, m.sessions())
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}

func TestCodeLimitsHoldAcrossReplicas(t *testing.T) {
	t.Parallel()
	limits := AccountsConfig{CodesPerAddress: ratelimit.Limit{N: 3, Per: 15 * time.Minute},
		CodeFailuresPerIP: ratelimit.Limit{N: 4, Per: 15 * time.Minute}, CodesPerIP: ratelimit.Limit{N: 100, Per: 15 * time.Minute}}
	a := newMailEnv(t, limits)
	b := startMailEnv(t, a.st, a.boot, limits, a)
	replicas := []*mailEnv{a, b}

	email := "owner@example.com"
	for i := range 3 {
		replicas[i%2].start(email, "")
	}
	status, hdr, raw := b.send(http.MethodPost, "/v1/auth/email/start", "", nil, map[string]any{"email": email})
	requireStatusCode(t, http.StatusTooManyRequests, CodeRateLimited, status, raw)
	require.NotEmpty(t, hdr.Get("Retry-After"))
	require.Len(t, a.sink.Messages(), 3)
	// Another address is not held back by this one's limit.
	a.start("someone@example.com", "")

	// Wrong codes count against the client address on every replica; past
	// the limit even the right code is refused.
	a.clock.Advance(16 * time.Minute)
	att := a.start(email, "")
	code := a.code(email, 4)
	for i := range 4 {
		status, raw := replicas[i%2].verify(store.NewID("x")+"!", "000000", nil)
		requireStatusCode(t, http.StatusUnauthorized, CodeInvalidCode, status, raw)
	}
	status, raw = b.verify(att, code, nil)
	requireStatusCode(t, http.StatusTooManyRequests, CodeRateLimited, status, raw)
	require.Zero(t, a.sessions())
	a.clock.Advance(16 * time.Minute)
	att = b.start(email, "")
	b.signedIn(att, b.code(email, 5), nil)
}

// TestNoSecretsInLogs drives sign-in, sessions and keys with every log line
// kept (debug level) and finds none of the secrets in them.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	m := newMailEnv(t, AccountsConfig{})
	inv := m.invite("lin@example.com", RoleAdmin)
	att := m.start("lin@example.com", inv)
	code := m.code("lin@example.com", 1)
	status, _ := m.verify(att, "000000", nil)
	require.Equal(t, http.StatusUnauthorized, status)
	si := m.signedIn(att, code, nil)
	m.asSession(http.MethodGet, "/v1/me", bearer(si.Token), nil)
	m.asSession(http.MethodGet, "/v1/tools", bearer(si.Token), nil)
	m.asSession(http.MethodGet, "/v1/me", bearer(si.Token[:len(si.Token)-2]+"xx"), nil)
	m.do(http.MethodGet, "/v1/tools", m.boot.ManagementKey, nil)
	m.srv.Stop()

	logs := m.logs.String()
	require.NotEmpty(t, logs)
	for name, secret := range map[string]string{
		"code": code, "attempt": att, "session": si.Token, "invitation": inv,
		"management key": m.boot.ManagementKey, "standard key": m.boot.StandardKey,
	} {
		require.NotContains(t, logs, secret, name)
		h := sha256.Sum256([]byte(secret))
		require.NotContains(t, logs, string(h[:]), name)
	}
}
