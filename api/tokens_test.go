package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/activities"
	"oakallow/activities/tokens"
)

// allowedCheck seeds an allowed tool and returns an allowed check's id.
func (e *testEnv) allowedCheck(tool string, params map[string]any) string {
	e.t.Helper()
	id := e.seedTool(tool, "", nil)
	e.seedRule(id, "", "allowed")
	var res CheckResult
	require.Eventually(e.t, func() bool {
		status, raw := e.do(http.MethodPost, "/v1/permissions/check", e.boot.StandardKey,
			map[string]any{"tool": tool, "method": "run", "parameters": params})
		if status != http.StatusOK || json.Unmarshal(raw, &res) != nil {
			return false
		}
		return res.Permission == "allowed"
	}, hangDeadline, 20*time.Millisecond, "the check never became allowed")
	return res.CheckID
}

func testMintFromCheck(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	params := map[string]any{"path": "/etc/motd", "lines": 10}
	checkID := e.allowedCheck("read_file", params)

	before := time.Now()
	m1 := expect[MintedToken](e, http.StatusOK, http.MethodPost, "/v1/tokens/mint", e.boot.StandardKey, map[string]any{"check_id": checkID})
	after := time.Now()
	require.True(t, strings.HasPrefix(m1.Token, "oak_tok_"))
	require.Equal(t, "check", m1.SourceKind)
	require.Equal(t, checkID, m1.SourceID)
	// Five minutes from the mint, in whole seconds (claims carry unix seconds).
	requireBetween(t, m1.ExpiresAt, before.Truncate(time.Second).Add(5*time.Minute), after.Add(5*time.Minute))
	m2 := expect[MintedToken](e, http.StatusOK, http.MethodPost, "/v1/tokens/mint", e.boot.StandardKey, map[string]any{"check_id": checkID})
	require.Equal(t, m1, m2, "the same source gives the same token")
	// Each mint call is billed and audited.
	require.Equal(t, 2, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'token.minted' AND billable AND subject = $2`, checkID))

	// Parameters that differ from the check's are refused and spend nothing.
	verify := func(params any) (int, []byte) {
		return e.do(http.MethodPost, "/v1/tokens/verify", e.boot.StandardKey, map[string]any{"token": m1.Token, "parameters": params})
	}
	for name, p := range map[string]any{
		"value changed": map[string]any{"path": "/etc/shadow", "lines": 10},
		"member added":  map[string]any{"path": "/etc/motd", "lines": 10, "sudo": true},
		"none":          map[string]any{},
	} {
		status, raw := verify(p)
		require.Equal(t, http.StatusUnprocessableEntity, status, "%s: %s", name, raw)
		require.Equal(t, CodeParametersMismatch, problemCode(t, raw), name)
	}
	// Same parameters, another spelling: 10.0 and 10 are one number in RFC 8785.
	status, raw := e.do(http.MethodPost, "/v1/tokens/verify", e.boot.StandardKey,
		json.RawMessage(`{"parameters":{"lines":10.0,"path":"/etc/motd"},"token":"`+m1.Token+`"}`))
	require.Equal(t, http.StatusOK, status, string(raw))
	var c TokenClaims
	require.NoError(t, json.Unmarshal(raw, &c))
	require.Equal(t, "read_file", c.Tool)
	require.Equal(t, "run", c.Method)
	require.Equal(t, "check", c.SourceKind)
	require.Equal(t, checkID, c.SourceID)
	require.Equal(t, m1.TokenID, c.TokenID)
	status, raw = verify(params)
	require.Equal(t, http.StatusConflict, status, string(raw))
	require.Equal(t, CodeTokenReplayed, problemCode(t, raw))

	// A check without parameters binds none: {} and no parameters both match.
	bare := e.allowedCheck("ping", nil)
	tok := expect[MintedToken](e, http.StatusOK, http.MethodPost, "/v1/tokens/mint", e.boot.StandardKey, map[string]any{"check_id": bare})
	expect[TokenClaims](e, http.StatusOK, http.MethodPost, "/v1/tokens/verify", e.boot.StandardKey,
		map[string]any{"token": tok.Token, "parameters": map[string]any{}})
}

func testMintRefusals(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	sk := e.boot.StandardKey
	e.seedTool("needs_human", "", nil)
	_, res, raw := e.check(sk, map[string]any{"tool": "needs_human"})
	require.Equal(t, "requires_approval", res.Permission, string(raw))
	allowed := e.allowedCheck("read_file", nil)
	other := s.org(t)
	otherCheck := other.allowedCheck("read_file", nil)
	old := e.allowedCheck("old_tool", nil)
	// audit_events is append-only, so age the check by moving the server's
	// clock instead: a server whose now is 11 minutes ahead.
	later := s.startServerAt(t, func() time.Time { return time.Now().Add(11 * time.Minute) })

	cases := []struct {
		name   string
		env    *testEnv
		body   map[string]any
		status int
		code   string
	}{
		{"requires_approval check", e, map[string]any{"check_id": res.CheckID}, http.StatusConflict, CodeCheckNotAllowed},
		{"unknown check", e, map[string]any{"check_id": "chk_nope"}, http.StatusNotFound, CodeNotFound},
		{"another org's check", e, map[string]any{"check_id": otherCheck}, http.StatusNotFound, CodeNotFound},
		{"both sources", e, map[string]any{"check_id": allowed, "approval_id": "apr_x"}, http.StatusUnprocessableEntity, CodeValidationFailed},
		{"no source", e, map[string]any{}, http.StatusUnprocessableEntity, CodeValidationFailed},
		{"unknown approval", e, map[string]any{"approval_id": "apr_nope"}, http.StatusNotFound, CodeNotFound},
		{"check too old", e.on(later), map[string]any{"check_id": old}, http.StatusConflict, CodeCheckTooOld},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.env.expectProblem(tc.status, tc.code, http.MethodPost, "/v1/tokens/mint", sk, tc.body)
		})
	}
	// Management keys cannot mint (runtime endpoint); nothing above was minted or billed.
	e.expectProblem(http.StatusForbidden, CodeWrongKeyTier, http.MethodPost, "/v1/tokens/mint", e.boot.ManagementKey, map[string]any{"check_id": allowed})
	require.Zero(t, e.count(`SELECT count(*) FROM execution_tokens WHERE org_id = $1`))
	require.Zero(t, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'token.minted'`))

	// Once minted in time, the same token is handed out again later.
	m := expect[MintedToken](e, http.StatusOK, http.MethodPost, "/v1/tokens/mint", sk, map[string]any{"check_id": allowed})
	again := expect[MintedToken](e.on(later), http.StatusOK, http.MethodPost, "/v1/tokens/mint", sk, map[string]any{"check_id": allowed})
	require.Equal(t, m.Token, again.Token)
}

// startServerAt starts a replica whose clock is now.
func (s *approvalSuite) startServerAt(t *testing.T, now func() time.Time) *Server {
	t.Helper()
	return s.startServer(t, func(d *Deps) { d.Now = now })
}

func testVerifyRefusals(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	other := s.org(t)
	tok := expect[MintedToken](e, http.StatusOK, http.MethodPost, "/v1/tokens/mint", e.boot.StandardKey,
		map[string]any{"check_id": e.allowedCheck("read_file", nil)})

	// A token signed by a key this server does not have.
	foreign, err := tokens.GenerateKey("elsewhere")
	require.NoError(t, err)
	fkr, err := tokens.NewKeyring("elsewhere", foreign)
	require.NoError(t, err)
	nonce, err := tokens.NewNonce()
	require.NoError(t, err)
	forged, err := fkr.Mint(tokens.Claims{TokenID: "tok_forged", Org: e.boot.OrgID, Tool: "read_file",
		Source: tokens.Source(tokens.SourceCheck, "chk_x"), Nonce: nonce, ExpiresAt: time.Now().Add(time.Minute)})
	require.NoError(t, err)
	// An authentic token that has expired.
	nonce2, err := tokens.NewNonce()
	require.NoError(t, err)
	expired, err := testKeyring.Mint(tokens.Claims{TokenID: "tok_expired", Org: e.boot.OrgID, Tool: "read_file",
		Source: tokens.Source(tokens.SourceCheck, "chk_y"), Nonce: nonce2,
		IssuedAt: time.Now().Add(-time.Hour), ExpiresAt: time.Now().Add(-30 * time.Minute)})
	require.NoError(t, err)
	tampered := tok.Token[:len(tok.Token)-2] + "AA"
	if tampered == tok.Token {
		tampered = tok.Token[:len(tok.Token)-2] + "BB"
	}

	cases := []struct {
		name  string
		env   *testEnv
		token string
		code  string
	}{
		{"garbage", e, "not-a-token", CodeTokenInvalid},
		{"forged with an unknown key", e, forged, CodeTokenInvalid},
		{"tampered signature", e, tampered, CodeTokenInvalid},
		{"expired", e, expired, CodeTokenExpired},
		{"another org's token", other, tok.Token, CodeTokenInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.env.expectProblem(http.StatusUnprocessableEntity, tc.code, http.MethodPost, "/v1/tokens/verify",
				tc.env.boot.StandardKey, map[string]any{"token": tc.token})
		})
	}
	// None of that spent the real token.
	expect[TokenClaims](e, http.StatusOK, http.MethodPost, "/v1/tokens/verify", e.boot.StandardKey, map[string]any{"token": tok.Token})
	// Refusals are audited, without the token.
	require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'token.verified' AND outcome = 'expired'`))
	require.Zero(t, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND details::text LIKE '%oak_tok_%'`))
	// Verification is free.
	require.Zero(t, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'token.verified' AND billable`))
}

func testExecutions(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	tok := expect[MintedToken](e, http.StatusOK, http.MethodPost, "/v1/tokens/mint", e.boot.StandardKey,
		map[string]any{"check_id": e.allowedCheck("send_sms", nil)})
	expect[TokenClaims](e, http.StatusOK, http.MethodPost, "/v1/tokens/verify", e.boot.StandardKey, map[string]any{"token": tok.Token})

	// A spent token still identifies its execution.
	logged := expect[ExecutionLogged](e, http.StatusCreated, http.MethodPost, "/v1/executions", e.boot.StandardKey,
		map[string]any{"token": tok.Token, "status": "success", "duration_ms": 420, "result_summary": "texted +1 415 555 0100"})
	require.Equal(t, tok.TokenID, logged.TokenID)
	require.Equal(t, "send_sms", logged.Tool)
	rows := e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND id = $2 AND kind = 'execution.logged'
		AND billable AND outcome = 'success' AND subject = $3 AND details->>'result_summary' NOT LIKE '%555%'`, logged.ID, tok.TokenID)
	require.Equal(t, 1, rows, "the execution is audited, billed, and its summary scrubbed")

	// An expired token still identifies its execution (long calls).
	old, err := activities.MintToken(context.Background(), s.st, testKeyring, s.box, activities.TokenSource{Kind: activities.SourceCheck,
		ID: "chk_long_call", OrgID: e.boot.OrgID, Tool: "send_sms"}, time.Now().Add(-time.Hour), time.Minute)
	require.NoError(t, err)
	e.expectProblem(http.StatusUnprocessableEntity, CodeTokenExpired, http.MethodPost, "/v1/tokens/verify", e.boot.StandardKey,
		map[string]any{"token": old.Token})
	expect[ExecutionLogged](e, http.StatusCreated, http.MethodPost, "/v1/executions", e.boot.StandardKey,
		map[string]any{"token": old.Token, "status": "failed", "duration_ms": 3_600_000})

	other := s.org(t)
	cases := []struct {
		name   string
		env    *testEnv
		key    string
		body   map[string]any
		status int
		code   string
	}{
		{"garbage token", e, e.boot.StandardKey, map[string]any{"token": "oak_tok_x.y", "status": "error", "duration_ms": 1}, http.StatusUnprocessableEntity, CodeTokenInvalid},
		{"another org's token", other, other.boot.StandardKey, map[string]any{"token": tok.Token, "status": "error", "duration_ms": 1}, http.StatusUnprocessableEntity, CodeTokenInvalid},
		{"management key", e, e.boot.ManagementKey, map[string]any{"token": tok.Token, "status": "success", "duration_ms": 1}, http.StatusForbidden, CodeWrongKeyTier},
		{"summary too long", e, e.boot.StandardKey, map[string]any{"token": tok.Token, "status": "success", "duration_ms": 1, "result_summary": strings.Repeat("s", 2001)}, http.StatusUnprocessableEntity, CodeValidationFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.env.expectProblem(tc.status, tc.code, http.MethodPost, "/v1/executions", tc.key, tc.body)
		})
	}
	require.Equal(t, 2, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'execution.logged'`))
}

// testConcurrentVerify presents one token 100 times at once to two API
// replicas: exactly one verification succeeds.
func testConcurrentVerify(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	replica := e.on(s.startServer(t))
	replica.waitForKey(e.boot.StandardKey)
	tok := expect[MintedToken](e, http.StatusOK, http.MethodPost, "/v1/tokens/mint", e.boot.StandardKey,
		map[string]any{"check_id": e.allowedCheck("deploy", map[string]any{"env": "prod"})})

	const n = 100
	statuses := make([]int, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			target := e
			if i%2 == 1 {
				target = replica
			}
			<-start
			statuses[i] = postStatus(target.base+"/v1/tokens/verify", e.boot.StandardKey,
				`{"token":"`+tok.Token+`","parameters":{"env":"prod"}}`)
		}()
	}
	close(start)
	wg.Wait()
	counts := map[int]int{}
	for _, st := range statuses {
		counts[st]++
	}
	require.Equal(t, map[int]int{http.StatusOK: 1, http.StatusConflict: n - 1}, counts)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM spent_nonces WHERE org_id = $1`))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'token.verified' AND outcome = 'ok'`))
}

// postStatus posts body and returns the status (0 on a transport error), for
// use from goroutines where require cannot stop the test.
func postStatus(url, key, body string) int {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	return resp.StatusCode
}
