package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Parameters are bound exactly (SPEC §5): numbers keep their exact decimal
// value, and a number RFC 8785 would change is refused, never rounded into
// another request's hash.

// problemDetail decodes a problem's first error detail.
func problemDetail(t testing.TB, raw []byte) (code, location, message string) {
	t.Helper()
	var p struct {
		Code   string `json:"code"`
		Errors []struct {
			Location string `json:"location"`
			Message  string `json:"message"`
		} `json:"errors"`
	}
	require.NoError(t, json.Unmarshal(raw, &p), string(raw))
	require.NotEmpty(t, p.Errors, string(raw))
	return p.Code, p.Errors[0].Location, p.Errors[0].Message
}

func TestCheckBindsExactNumbers(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.seedTool("pay", "", ptr("allowed"))
	sk := e.boot.StandardKey

	// 2^53+1 has no double: RFC 8785 would hash it as 2^53.
	status, raw := e.do(http.MethodPost, "/v1/permissions/check", sk,
		`{"tool":"pay","parameters":{"invoice":{"amount":9007199254740993}}}`)
	require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))
	code, loc, msg := problemDetail(t, raw)
	require.Equal(t, CodeValidationFailed, code)
	require.Equal(t, "body.parameters.invoice.amount", loc)
	require.Contains(t, msg, "9007199254740992")
	require.Zero(t, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'permission.check'`),
		"a refused check is neither decided nor billed")

	// Context is not hashed: it is stored exactly as sent, digit for digit.
	status, res, raw := e.check(sk, json.RawMessage(
		`{"tool":"pay","parameters":{"amount":9007199254740992,"rate":0.1},"context":{"order":12345678901234567891}}`))
	require.Equal(t, http.StatusOK, status, string(raw))
	var details string
	require.NoError(t, e.st.Pool.QueryRow(context.Background(),
		`SELECT details::text FROM audit_events WHERE org_id = $1 AND id = $2`, e.boot.OrgID, res.CheckID).Scan(&details))
	require.Contains(t, details, `12345678901234567891`)
	require.Contains(t, details, `9007199254740992`)
	_, raw = e.do(http.MethodGet, "/v1/activity?kind=permission.check", sk, nil)
	require.Contains(t, string(raw), `12345678901234567891`)
}

func testApprovalBindsExactNumbers(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	e.seedTool("pay", "", nil)
	sk := e.boot.StandardKey

	status, raw := e.do(http.MethodPost, "/v1/approvals", sk,
		`{"tool":"pay","reasoning":"pay the invoice","parameters":{"amount":9007199254740993}}`)
	require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))
	code, loc, _ := problemDetail(t, raw)
	require.Equal(t, CodeValidationFailed, code)
	require.Equal(t, "body.parameters.amount", loc)
	require.Zero(t, e.count(`SELECT count(*) FROM approvals WHERE org_id = $1`))

	// What the reviewer sees is what was sent.
	status, raw = e.do(http.MethodPost, "/v1/approvals", sk,
		`{"tool":"pay","reasoning":"pay the invoice","parameters":{"amount":9007199254740992,"rate":1.10},"context":{"order":12345678901234567891}}`)
	require.Equal(t, http.StatusCreated, status, string(raw))
	var created ApprovalCreated
	require.NoError(t, json.Unmarshal(raw, &created))
	_, raw = e.do(http.MethodGet, "/v1/approvals/"+created.ID, sk, nil)
	require.Contains(t, string(raw), `12345678901234567891`)
	require.Contains(t, string(raw), `9007199254740992`)

	decided := expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+created.ID+"/decide", e.boot.ManagementKey,
		map[string]any{"decision": "approve"})
	require.NotEmpty(t, decided.Token)

	// The rounded neighbour does not verify, and does not spend the token.
	status, raw = e.do(http.MethodPost, "/v1/tokens/verify", sk,
		`{"token":"`+decided.Token+`","parameters":{"amount":9007199254740993,"rate":1.1}}`)
	require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))
	code, loc, _ = problemDetail(t, raw)
	require.Equal(t, CodeValidationFailed, code)
	require.Equal(t, "body.parameters.amount", loc)
	claims := expect[TokenClaims](e, http.StatusOK, http.MethodPost, "/v1/tokens/verify", sk,
		json.RawMessage(`{"token":"`+decided.Token+`","parameters":{"rate":1.1,"amount":9007199254740992}}`))
	require.True(t, claims.ParamsVerified)
}

// nested returns a JSON object nested levels deep ({"a":{"a":…1…}}).
func nested(levels int) string {
	return strings.Repeat(`{"a":`, levels-1) + `{"a":1}` + strings.Repeat(`}`, levels-1)
}

// A 5,000-level body used to be stored and then broke other clients'
// listings (most JSON parsers stop far earlier): parameters and context
// are refused beyond 64 levels, before anything is decided or billed.
func TestCheckRefusesDeepInput(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.seedTool("pay", "", ptr("allowed"))
	sk := e.boot.StandardKey
	for _, tc := range []struct {
		name, body, location string
	}{
		{"parameters 5000 levels", `{"tool":"pay","parameters":` + nested(5000) + `}`, "body.parameters" + strings.Repeat(".a", 64)},
		{"parameters 65 levels", `{"tool":"pay","parameters":` + nested(65) + `}`, "body.parameters" + strings.Repeat(".a", 64)},
		{"context 65 levels", `{"tool":"pay","context":{"l":[` + nested(63) + `]}}`, "body.context.l[0]" + strings.Repeat(".a", 62)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, raw := e.do(http.MethodPost, "/v1/permissions/check", sk, tc.body)
			require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))
			code, loc, msg := problemDetail(t, raw)
			require.Equal(t, CodeValidationFailed, code)
			require.Equal(t, tc.location, loc)
			require.Contains(t, msg, "nested deeper than 64 levels")
		})
	}
	require.Zero(t, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'permission.check'`))
	// 64 levels is the limit, not past it.
	status, _, raw := e.check(sk, json.RawMessage(`{"tool":"pay","parameters":`+nested(64)+`,"context":`+nested(64)+`}`))
	require.Equal(t, http.StatusOK, status, string(raw))
}

func testApprovalAndVerifyRefuseDeepInput(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.seedTool("pay", "", nil)
	sk := e.boot.StandardKey
	for _, body := range []string{
		`{"tool":"pay","reasoning":"r","parameters":` + nested(5000) + `}`,
		`{"tool":"pay","reasoning":"r","context":` + nested(65) + `}`,
	} {
		e.expectProblem(http.StatusUnprocessableEntity, CodeValidationFailed, http.MethodPost, "/v1/approvals", sk, body)
	}
	require.Zero(t, e.count(`SELECT count(*) FROM approvals WHERE org_id = $1`))
	list := expect[struct {
		Items []Approval `json:"items"`
	}](e, http.StatusOK, http.MethodGet, "/v1/approvals", sk, nil)
	require.Empty(t, list.Items)

	tok := expect[MintedToken](e, http.StatusOK, http.MethodPost, "/v1/tokens/mint", sk,
		map[string]any{"check_id": e.allowedCheck("read_file", nil)})
	raw := e.expectProblem(http.StatusUnprocessableEntity, CodeValidationFailed, http.MethodPost, "/v1/tokens/verify", sk,
		`{"token":"`+tok.Token+`","parameters":`+nested(65)+`}`)
	_, loc, _ := problemDetail(t, raw)
	require.Equal(t, "body.parameters"+strings.Repeat(".a", 64), loc)
	// Refused input spends nothing.
	expect[TokenClaims](e, http.StatusOK, http.MethodPost, "/v1/tokens/verify", sk, map[string]any{"token": tok.Token})
}

// Mint and verify re-check the org's current policy (SPEC §5): disabling a
// tool, or a rule change, stops tokens from earlier allowed checks, minted
// or not; an approval stands unless its call became disabled.
func testMintAndVerifyRecheckPolicy(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	sk, mk := e.boot.StandardKey, e.boot.ManagementKey
	// checkUntil checks the tool until the verdict is perm (policy changes
	// reach the server's cache through a notification) and returns the check id.
	checkUntil := func(tool, perm string) string {
		t.Helper()
		var res CheckResult
		require.Eventually(t, func() bool {
			var status int
			status, res, _ = e.check(sk, map[string]any{"tool": tool, "method": "run"})
			return status == http.StatusOK && res.Permission == perm
		}, 5*time.Second, 20*time.Millisecond, "%s never answered %s", tool, perm)
		return res.CheckID
	}
	mint := func(body map[string]any) (int, []byte) {
		return e.do(http.MethodPost, "/v1/tokens/mint", sk, body)
	}
	patchTool := func(id string, body map[string]any) {
		expect[Tool](e, http.StatusOK, http.MethodPatch, "/v1/tools/"+id, mk, body)
	}

	t.Run("tool disabled after an allowed check", func(t *testing.T) {
		toolID := e.seedTool("wire", "", nil)
		e.seedRule(toolID, "", "allowed")
		minted := checkUntil("wire", "allowed")
		tok := expect[MintedToken](e, http.StatusOK, http.MethodPost, "/v1/tokens/mint", sk, map[string]any{"check_id": minted})
		unminted := checkUntil("wire", "allowed")

		patchTool(toolID, map[string]any{"enabled": false})
		checkUntil("wire", "disabled")
		before := e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'token.minted'`)
		for _, id := range []string{unminted, minted} {
			status, raw := mint(map[string]any{"check_id": id})
			require.Equal(t, http.StatusForbidden, status, string(raw))
			require.Equal(t, CodeToolDisabled, problemCode(t, raw))
		}
		require.Equal(t, before, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'token.minted'`),
			"a refused mint is not billed")
		// The token minted before is refused too, and not spent.
		e.expectProblem(http.StatusForbidden, CodeToolDisabled, http.MethodPost, "/v1/tokens/verify", sk, map[string]any{"token": tok.Token})
		require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'token.verified' AND outcome = 'not_allowed'`))

		patchTool(toolID, map[string]any{"enabled": true})
		checkUntil("wire", "allowed")
		expect[TokenClaims](e, http.StatusOK, http.MethodPost, "/v1/tokens/verify", sk, map[string]any{"token": tok.Token})
		expect[MintedToken](e, http.StatusOK, http.MethodPost, "/v1/tokens/mint", sk, map[string]any{"check_id": unminted})
	})

	t.Run("rule changed after an allowed check", func(t *testing.T) {
		toolID := e.seedTool("export", "", nil)
		ruleID := e.seedRule(toolID, "", "allowed")
		first, second := checkUntil("export", "allowed"), checkUntil("export", "allowed")

		expect[Rule](e, http.StatusOK, http.MethodPatch, "/v1/rules/"+ruleID, mk, map[string]any{"permission": "requires_approval"})
		checkUntil("export", "requires_approval")
		status, raw := mint(map[string]any{"check_id": first})
		require.Equal(t, http.StatusConflict, status, string(raw))
		require.Equal(t, CodeCheckNotAllowed, problemCode(t, raw))

		expect[Rule](e, http.StatusOK, http.MethodPatch, "/v1/rules/"+ruleID, mk, map[string]any{"permission": "disabled"})
		checkUntil("export", "disabled")
		status, raw = mint(map[string]any{"check_id": second})
		require.Equal(t, http.StatusForbidden, status, string(raw))
		require.Equal(t, CodeToolDisabled, problemCode(t, raw))
	})

	t.Run("tool put back to draft", func(t *testing.T) {
		toolID := e.seedTool("scan", "", nil)
		patchTool(toolID, map[string]any{"approved": true}) // level 11: allowed
		checkID := checkUntil("scan", "allowed")
		patchTool(toolID, map[string]any{"status": "draft"})
		checkUntil("scan", "requires_approval") // drafts are never allowed by levels 9–11
		status, raw := mint(map[string]any{"check_id": checkID})
		require.Equal(t, http.StatusConflict, status, string(raw))
		require.Equal(t, CodeCheckNotAllowed, problemCode(t, raw))
	})

	t.Run("approval whose tool was disabled", func(t *testing.T) {
		toolID := e.seedTool("pay", "", ptr("requires_approval"))
		checkUntil("pay", "requires_approval")
		created := e.requestApproval(map[string]any{"tool": "pay", "method": "run", "reasoning": "rent"})
		decided := expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+created.ID+"/decide", mk,
			map[string]any{"decision": "approve"})
		require.NotEmpty(t, decided.Token)

		patchTool(toolID, map[string]any{"enabled": false})
		checkUntil("pay", "disabled")
		status, raw := mint(map[string]any{"approval_id": created.ID})
		require.Equal(t, http.StatusForbidden, status, string(raw))
		require.Equal(t, CodeToolDisabled, problemCode(t, raw))
		e.expectProblem(http.StatusForbidden, CodeToolDisabled, http.MethodPost, "/v1/tokens/verify", sk, map[string]any{"token": decided.Token})

		// Re-enabled, the approval stands although the rules still ask for
		// approval: a human approved this call.
		patchTool(toolID, map[string]any{"enabled": true})
		checkUntil("pay", "requires_approval")
		again := expect[MintedToken](e, http.StatusOK, http.MethodPost, "/v1/tokens/mint", sk, map[string]any{"approval_id": created.ID})
		require.Equal(t, decided.Token, again.Token)
		expect[TokenClaims](e, http.StatusOK, http.MethodPost, "/v1/tokens/verify", sk, map[string]any{"token": decided.Token})
	})
}
