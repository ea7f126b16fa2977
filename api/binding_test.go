package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

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
