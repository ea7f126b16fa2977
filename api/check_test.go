package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"oakallow/store"
)

// seedTool registers a tool directly in the store and announces it.
func (e *testEnv) seedTool(name string, schema string, defaultPerm *string) string {
	e.t.Helper()
	id := store.NewID("tool")
	var raw json.RawMessage
	if schema != "" {
		raw = json.RawMessage(schema)
	}
	_, err := e.st.CreateTool(context.Background(), store.CreateToolParams{ID: id, OrgID: e.boot.OrgID, Name: name,
		RiskLevel: "medium", ParameterSchema: raw, AnnotationsAcknowledged: true, DefaultPermission: defaultPerm,
		Enabled: true, Status: "active", CreatedAt: time.Now()})
	require.NoError(e.t, err)
	require.NoError(e.t, e.st.NotifyChange(context.Background(), "policy:"+e.boot.OrgID))
	return id
}

// seedRule adds an org rule for a tool (+ optional method) and announces it.
func (e *testEnv) seedRule(toolID, method, perm string) string {
	e.t.Helper()
	id := store.NewID("rule")
	var m *string
	if method != "" {
		m = &method
	}
	_, err := e.st.CreateRule(context.Background(), store.CreateRuleParams{ID: id, OrgID: e.boot.OrgID, ToolID: &toolID,
		Method: m, Permission: perm, CreatedAt: time.Now()})
	require.NoError(e.t, err)
	require.NoError(e.t, e.st.NotifyChange(context.Background(), "policy:"+e.boot.OrgID))
	return id
}

func (e *testEnv) check(key string, body any) (int, CheckResult, []byte) {
	e.t.Helper()
	status, raw := e.do(http.MethodPost, "/v1/permissions/check", key, body)
	var res CheckResult
	if status == http.StatusOK {
		require.NoError(e.t, json.Unmarshal(raw, &res), string(raw))
	}
	return status, res, raw
}

func ptr[T any](v T) *T { return &v }

func TestCheckVerdicts(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	email := e.seedTool("send_email", "", nil)
	ruleID := e.seedRule(email, "send", "allowed")
	e.seedTool("drop_table", "", ptr("disabled"))
	e.seedTool("create_invoice", `{"type":"object","properties":{"amount":{"type":"integer","minimum":1}},"required":["amount"]}`, ptr("allowed"))

	cases := []struct {
		name       string
		body       map[string]any
		permission string
		level      int
		scope      string
		levelName  string
		ruleID     string
	}{
		{"org rule on tool and method", map[string]any{"tool": "send_email", "method": "send"}, "allowed", 3, "org", "org_tool_method", ruleID},
		{"no matching rule falls to fail-safe", map[string]any{"tool": "send_email", "method": "read"}, "requires_approval", 12, "fallback", "fail_safe", ""},
		{"tool default", map[string]any{"tool": "drop_table"}, "disabled", 9, "fallback", "tool_default", ""},
		{"unknown tool over REST", map[string]any{"tool": "launch_rocket"}, "disabled", 0, "gate", "tool_not_registered", ""},
		{"valid parameters", map[string]any{"tool": "create_invoice", "parameters": map[string]any{"amount": 5}}, "allowed", 9, "fallback", "tool_default", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, res, raw := e.check(e.boot.StandardKey, tc.body)
			require.Equal(t, http.StatusOK, status, string(raw))
			require.Equal(t, tc.permission, res.Permission)
			require.Equal(t, tc.level, res.Level)
			require.Equal(t, tc.scope, res.Scope)
			require.Equal(t, tc.levelName, res.LevelName)
			require.Equal(t, tc.ruleID, res.RuleID)
			require.True(t, strings.HasPrefix(res.CheckID, "chk_"))
			require.True(t, strings.HasPrefix(res.Receipt, "oak_rcpt_"))
		})
	}
}

func TestCheckRejectsBadInput(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.seedTool("create_invoice", `{"type":"object","properties":{"amount":{"type":"integer","minimum":1}},"required":["amount"]}`, nil)

	cases := []struct {
		name   string
		key    string
		body   any
		status int
		code   string
		where  string // substring of an error location
	}{
		{"no key", "", map[string]any{"tool": "x"}, 401, CodeInvalidKey, ""},
		{"unknown key", "oak_live_00000000000000000000000000000000", map[string]any{"tool": "x"}, 401, CodeInvalidKey, ""},
		{"management key on runtime endpoint", e.boot.ManagementKey, map[string]any{"tool": "x"}, 403, CodeWrongKeyTier, ""},
		{"malformed JSON", e.boot.StandardKey, `{"tool": "x",`, 400, CodeBadRequest, ""},
		{"missing tool", e.boot.StandardKey, map[string]any{"method": "x"}, 422, CodeValidationFailed, "body"},
		{"tool name too long", e.boot.StandardKey, map[string]any{"tool": strings.Repeat("t", 201)}, 422, CodeValidationFailed, "body.tool"},
		{"reason too long", e.boot.StandardKey, map[string]any{"tool": "x", "reason": strings.Repeat("r", 2001)}, 422, CodeValidationFailed, "body.reason"},
		{"unknown field", e.boot.StandardKey, map[string]any{"tool": "x", "toool": 1}, 422, CodeValidationFailed, "body"},
		{"parameters not an object", e.boot.StandardKey, map[string]any{"tool": "x", "parameters": []int{1}}, 422, CodeValidationFailed, "body.parameters"},
		{"parameters fail the schema", e.boot.StandardKey, map[string]any{"tool": "create_invoice", "parameters": map[string]any{"amount": 0}}, 422, CodeValidationFailed, "body.parameters.amount"},
		{"required parameter missing", e.boot.StandardKey, map[string]any{"tool": "create_invoice", "parameters": map[string]any{}}, 422, CodeValidationFailed, "body.parameters"},
		{"NUL in tool name", e.boot.StandardKey, `{"tool":"a\u0000b"}`, 422, CodeValidationFailed, "body.tool"},
		{"NUL deep in parameters", e.boot.StandardKey, `{"tool":"x","parameters":{"a":[{"b":"\u0000"}]}}`, 422, CodeValidationFailed, "body.parameters"},
		{"NUL in a context key", e.boot.StandardKey, `{"tool":"x","context":{"\u0000":1}}`, 422, CodeValidationFailed, "body.context"},
		{"body over 64 KiB", e.boot.StandardKey, `{"tool":"x","reason":"` + strings.Repeat("a", 70<<10) + `"}`, 413, CodeBodyTooLarge, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, raw := e.do(http.MethodPost, "/v1/permissions/check", tc.key, tc.body)
			require.Equal(t, tc.status, status, string(raw))
			require.Equal(t, tc.code, problemCode(t, raw))
			if tc.where != "" {
				require.Contains(t, string(raw), `"location":"`+tc.where, string(raw))
			}
		})
	}
	// Nothing above was billed or audited as a check.
	var n int
	require.NoError(t, e.st.Pool.QueryRow(context.Background(), "SELECT count(*) FROM audit_events WHERE kind = 'permission.check'").Scan(&n))
	require.Zero(t, n)
}

func TestCheckIsAuditedBeforeAnswerAndReceiptVerifies(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.seedTool("send_email", "", ptr("allowed"))
	status, res, raw := e.check(e.boot.StandardKey, map[string]any{
		"tool": "send_email", "tenant": "acme", "method": "send",
		"reason":     "mail bob@example.com his invoice",
		"parameters": map[string]any{"to": "bob@example.com", "amount": 12},
	})
	require.Equal(t, http.StatusOK, status, string(raw))

	// Durable before the answer: read it back straight away.
	ev, err := e.st.GetAuditEvent(context.Background(), store.GetAuditEventParams{OrgID: e.boot.OrgID, ID: res.CheckID})
	require.NoError(t, err)
	require.True(t, ev.Billable)
	require.Equal(t, int64(5000), ev.CostMicros)
	require.Equal(t, "allowed", ev.Outcome)
	require.Equal(t, "acme", ev.Tenant)
	require.NotContains(t, string(ev.Details), "bob@example.com", "PII must be scrubbed before storage")
	require.Contains(t, string(ev.Details), "[redacted:email]")

	// Activity shows it.
	status, raw = e.do(http.MethodGet, "/v1/activity?kind=permission.check&tool=send_email", e.boot.StandardKey, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Contains(t, string(raw), res.CheckID)

	// The receipt verifies and says what was decided.
	status, raw = e.do(http.MethodPost, "/v1/receipts/verify", e.boot.StandardKey, map[string]any{"receipt": res.Receipt})
	require.Equal(t, http.StatusOK, status, string(raw))
	var v struct {
		Valid      bool   `json:"valid"`
		CheckID    string `json:"check_id"`
		Permission string `json:"permission"`
		Tenant     string `json:"tenant"`
		ParamsHash string `json:"parameters_hash"`
	}
	require.NoError(t, json.Unmarshal(raw, &v))
	require.True(t, v.Valid)
	require.Equal(t, res.CheckID, v.CheckID)
	require.Equal(t, "allowed", v.Permission)
	require.Equal(t, "acme", v.Tenant)
	require.Len(t, v.ParamsHash, 64)

	// A tampered receipt does not.
	tampered := res.Receipt[:len(res.Receipt)-2] + "AA"
	if tampered == res.Receipt {
		tampered = res.Receipt[:len(res.Receipt)-2] + "BB"
	}
	status, raw = e.do(http.MethodPost, "/v1/receipts/verify", e.boot.StandardKey, map[string]any{"receipt": tampered})
	require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))
	require.Equal(t, "invalid_receipt", problemCode(t, raw))
}

func TestChecksStopAtZeroCreditAndFreeCallsContinue(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.seedTool("send_email", "", ptr("allowed"))
	// Leave exactly 3 calls of credit.
	_, err := e.st.Pool.Exec(context.Background(), "UPDATE team_balances SET free_micros = 15000 WHERE team_id = $1", e.boot.TeamID)
	require.NoError(t, err)
	for i := range 3 {
		status, _, raw := e.check(e.boot.StandardKey, map[string]any{"tool": "send_email"})
		require.Equal(t, http.StatusOK, status, "call %d: %s", i, raw)
	}
	status, _, raw := e.check(e.boot.StandardKey, map[string]any{"tool": "send_email"})
	require.Equal(t, http.StatusPaymentRequired, status, string(raw))
	require.Equal(t, CodeInsufficientCredits, problemCode(t, raw))

	status, raw = e.do(http.MethodGet, "/v1/credits", e.boot.StandardKey, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	var c struct {
		Balance  int64 `json:"balance_micros"`
		Billable int64 `json:"billable_calls"`
	}
	require.NoError(t, json.Unmarshal(raw, &c))
	require.Zero(t, c.Balance)
	require.Equal(t, int64(3), c.Billable)
	status, _ = e.do(http.MethodGet, "/v1/activity", e.boot.StandardKey, nil)
	require.Equal(t, http.StatusOK, status)
}

// TestChangesReachOtherReplicas runs two API servers on one database: a rule
// change and a key revocation made through one come into force on the other.
// Nothing reloads on a timer, so only the change notification can carry them;
// how long that took is logged.
func TestChangesReachOtherReplicas(t *testing.T) {
	t.Parallel()
	a := newTestEnv(t)
	b := startEnv(t, a.st, a.boot)
	tool := a.seedTool("send_email", "", nil)

	waitFor := func(what string, cond func() bool) time.Duration {
		start := time.Now()
		for time.Since(start) < hangDeadline {
			if cond() {
				return time.Since(start)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("%s not visible on the other replica after %s", what, hangDeadline)
		return 0
	}
	// Warm b's cache for the org first so the change must arrive by NOTIFY.
	_, res, _ := b.check(b.boot.StandardKey, map[string]any{"tool": "send_email"})
	require.Equal(t, "requires_approval", res.Permission)

	rule := store.NewID("rule")
	require.NoError(t, a.st.InTx(context.Background(), func(_ pgx.Tx, q *store.Queries) error {
		if _, err := q.CreateRule(context.Background(), store.CreateRuleParams{ID: rule, OrgID: a.boot.OrgID, ToolID: &tool,
			Permission: "allowed", CreatedAt: time.Now()}); err != nil {
			return err
		}
		return q.NotifyChange(context.Background(), "policy:"+a.boot.OrgID)
	}))
	took := waitFor("rule change", func() bool {
		_, res, _ := b.check(b.boot.StandardKey, map[string]any{"tool": "send_email"})
		return res.Permission == "allowed"
	})
	t.Logf("rule change visible on replica after %s", took)

	_, err := a.st.Pool.Exec(context.Background(), "UPDATE api_keys SET revoked_at = now() WHERE org_id = $1 AND tier = 'standard'", a.boot.OrgID)
	require.NoError(t, err)
	require.NoError(t, a.st.NotifyChange(context.Background(), "keys"))
	took = waitFor("key revocation", func() bool {
		status, _ := b.do(http.MethodGet, "/v1/credits", b.boot.StandardKey, nil)
		return status == http.StatusUnauthorized
	})
	t.Logf("key revocation visible on replica after %s", took)
}

// TestMeteringIsExactAcrossReplicas drives concurrent checks through two
// servers until the credit runs out: successful answers = billable audit
// rows = balance drop, and nothing succeeded without credit.
func TestMeteringIsExactAcrossReplicas(t *testing.T) {
	t.Parallel()
	a := newTestEnv(t)
	b := startEnv(t, a.st, a.boot)
	a.seedTool("send_email", "", ptr("allowed"))
	const budgetCalls = 137
	_, err := a.st.Pool.Exec(context.Background(), "UPDATE team_balances SET free_micros = $2 WHERE team_id = $1", a.boot.TeamID, budgetCalls*5000+4999)
	require.NoError(t, err)

	var ok, refused, other atomic.Int64
	var wg sync.WaitGroup
	for w := range 16 {
		env := a
		if w%2 == 1 {
			env = b
		}
		wg.Go(func() {
			for range 20 {
				status, _ := env.do(http.MethodPost, "/v1/permissions/check", env.boot.StandardKey, map[string]any{"tool": "send_email"})
				switch status {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusPaymentRequired:
					refused.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	require.Zero(t, other.Load())
	require.Equal(t, int64(budgetCalls), ok.Load())
	require.Equal(t, int64(16*20-budgetCalls), refused.Load())

	totals, err := a.st.BillingTotals(context.Background(), a.boot.TeamID)
	require.NoError(t, err)
	require.Equal(t, ok.Load(), totals.Calls)
	require.Equal(t, ok.Load()*5000, totals.CostMicros)
	bal, err := a.st.GetTeamBalance(context.Background(), a.boot.TeamID)
	require.NoError(t, err)
	require.Equal(t, ok.Load(), bal.BilledCalls)
	require.Equal(t, ok.Load()*5000, bal.BilledMicros)
	require.Equal(t, int64(4999), bal.FreeMicros+bal.PurchasedMicros, "the balance dropped by exactly the billed calls")
}

func TestCheckIdempotencyKeyReplaysTheFirstAnswerAndBillsOnce(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.seedTool("send_email", "", ptr("allowed"))
	send := func(body string) (int, []byte, string) {
		req, err := http.NewRequest(http.MethodPost, e.base+"/v1/permissions/check", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", e.boot.StandardKey)
		req.Header.Set("Idempotency-Key", "check-42")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, raw, resp.Header.Get("Idempotent-Replayed")
	}
	status, first, replayed := send(`{"tool":"send_email","method":"send"}`)
	require.Equal(t, http.StatusOK, status, string(first))
	require.NotEqual(t, "true", replayed)
	status, again, replayed := send(`{"method":"send","tool":"send_email"}`)
	require.Equal(t, http.StatusOK, status, string(again))
	require.Equal(t, "true", replayed)
	require.JSONEq(t, string(first), string(again), "same check id and receipt")

	status, raw, _ := send(`{"tool":"send_email","method":"read"}`)
	require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))
	require.Equal(t, "idempotency_key_reused", problemCode(t, raw))

	bal, err := e.st.GetTeamBalance(context.Background(), e.boot.TeamID)
	require.NoError(t, err)
	require.Equal(t, int64(1), bal.BilledCalls)
}
