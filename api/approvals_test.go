package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/activities/pii"
	"oakallow/activities/sealed"
	"oakallow/dev/devtest"
	"oakallow/store"
	"oakallow/worker"
	"oakallow/workflows"
)

// The approval, token, channel, webhook and approver-group endpoints are
// tested through the real HTTP server with a real Temporal server and a
// real worker. Every approval workflow runs on the one task queue the API
// starts them on, so the tests share one database and one worker (a
// worker on another test's database would fail the workflows it picks up)
// and are isolated by org instead: each subtest bootstraps its own team.

// approvalSuite is the shared server, worker and database.
type approvalSuite struct {
	st   *store.Store
	tc   client.Client
	acts *activities.Activities
	box  *sealed.Box
	srv  *Server
	base string
}

func TestApprovalSuite(t *testing.T) {
	t.Parallel()
	s := newApprovalSuite(t)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *approvalSuite)
	}{
		{"approvals/create-decide-verify", testApprovalApproveFlow},
		{"approvals/deny", testApprovalDeny},
		{"approvals/refused-requests", testApprovalRefused},
		{"approvals/who-may-decide", testApprovalWhoMayDecide},
		{"approvals/idempotency-key", testApprovalIdempotency},
		{"approvals/two-levels", testApprovalTwoLevels},
		{"approvals/concurrent-decides-agree", testConcurrentDecides},
		{"approvals/notes-stay-out-of-history", testNotesStayOutOfHistory},
		{"approvals/list", testApprovalList},
		{"approvals/tool-annotations", testApprovalToolAnnotations},
		{"approvals/of-their-requester", testApprovalsOfTheirRequester},
		{"approvals/bad-input-is-4xx", testApprovalBadInput},
		{"approvals/start-failure", testApprovalStartFailure},
		{"approvals/late-start", testApprovalLateStart},
		{"approvals/workflow-gone", testApprovalWorkflowGone},
		{"approvals/token-follows-its-decision", testApprovalTokenFollowsItsDecision},
		{"approvals/unstarted-is-recovered", testApprovalUnstartedIsRecovered},
		{"approvals/unstarted-ended-is-listed", testApprovalUnstartedEndedIsListed},
		{"approvals/exact-numbers", testApprovalBindsExactNumbers},
		{"approvals/deep-input", testApprovalAndVerifyRefuseDeepInput},
		{"tokens/recheck-policy", testMintAndVerifyRecheckPolicy},
		{"approvals/normalised-names", testApprovalNamesAreNormalised},
		{"tokens/mint-from-check", testMintFromCheck},
		{"tokens/mint-refusals", testMintRefusals},
		{"tokens/verify-refusals", testVerifyRefusals},
		{"tokens/executions", testExecutions},
		{"tokens/concurrent-verify-two-replicas", testConcurrentVerify},
		{"channels/secrets-never-returned", testChannelSecrets},
		{"channels/validation-and-lifecycle", testChannelLifecycle},
		{"channels/destinations-need-the-secret", testChannelDestinationsNeedTheSecret},
		{"webhooks/rotate-secret", testRotateSecret},
		{"webhooks/deliveries-and-redeliver", testDeliveries},
		{"team/approver-groups", testApproverGroups},
		{"approvals/reviewer-decides-with-passkey", testReviewerDecidesWithPasskey},
		{"headers/no-store-on-secrets", testNoStoreOnSecrets},
		{"approvals/closed-workflow-errors-are-typed", testClosedWorkflowErrorsAreTyped},
		{"dashboard/approvals", testDashboardApprovals},
		{"dashboard/recent-under-a-full-queue", testDashboardRecentUnderFullQueue},
		{"dashboard/browser", testDashboardBrowser},
		{"dashboard/approval-notifications", testApprovalNotifications},
		{"mcp/approval-flow", testMCPApprovalFlow},
		{"mcp/auto-discovery-delivers", testAutoDiscoveryDelivers},
		{"people/account-deletion", testAccountDeletion},
		{"people/identity-activity", testIdentityActivity},
		{"dashboard/builder", testDashboardBuilder},
		{"dashboard/settings", testDashboardSettings},
		{"approvals/requester-cannot-decide", testRequesterCannotDecide},
		{"approvals/reviewer-idempotency-key-per-approval", testReviewerIdempotencyKeyPerApproval},
		{"approvals/decide-options-refuse-like-decide", testDecideOptionsRefuseLikeDecide},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, s)
		})
	}
}

func newApprovalSuite(t *testing.T) *approvalSuite {
	t.Helper()
	s := &approvalSuite{st: devtest.Store(t)}
	tm := devtest.Temporal(t)
	var err error
	s.tc, err = client.Dial(client.Options{HostPort: tm.Address(), Namespace: tm.Namespace(),
		Logger: tlog.NewStructuredLogger(testLogger())})
	require.NoError(t, err)
	t.Cleanup(s.tc.Close)

	key, err := sealed.NewKey()
	require.NoError(t, err)
	raw, err := sealed.ParseKey(key)
	require.NoError(t, err)
	s.box, err = sealed.NewBox(raw)
	require.NoError(t, err)

	// The fakes listen on loopback over http.
	hc, err := notify.NewHTTPClient(notify.HTTPClientConfig{AllowInsecure: true, AllowPrivateAddresses: true, Timeout: 5 * time.Second})
	require.NoError(t, err)
	n, err := notify.New(notify.Config{HTTPClient: hc, Scrub: pii.Scrub, Logger: testLogger()})
	require.NoError(t, err)
	s.acts, err = activities.New(activities.Deps{Store: s.st, Keyring: testKeyring, Temporal: s.tc, Notifier: n,
		HTTPClient: hc, SecretBox: s.box, PublicURL: "http://localhost:8080", Logger: testLogger(),
		DeliveryRetry: workflows.DeliveryInput{InitialInterval: 100 * time.Millisecond, MaximumInterval: time.Second}})
	require.NoError(t, err)
	w, err := worker.New(s.tc, s.acts, testLogger())
	require.NoError(t, err)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	s.srv = s.startServer(t)
	s.base = "http://" + s.srv.Addr()
	return s
}

// startServer starts an API server (a replica) on the suite's database,
// with its dependencies adjusted by the options.
func (s *approvalSuite) startServer(t *testing.T, opts ...func(*Deps)) *Server {
	t.Helper()
	deps := Deps{Store: s.st, Logger: testLogger(), Keyring: testKeyring, Temporal: s.tc, Activities: s.acts, SecretBox: s.box}
	for _, o := range opts {
		o(&deps)
	}
	srv, err := NewServer(testConfig(), deps)
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	t.Cleanup(srv.Stop)
	return srv
}

// org bootstraps a new team and org and returns an env bound to the suite's
// primary server, once the server knows the org's keys.
func (s *approvalSuite) org(t *testing.T) *testEnv {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	boot, err := Bootstrap(context.Background(), s.st, BootstrapInput{TeamName: "Team " + suffix,
		OwnerEmail: "owner-" + suffix + "@example.com", OwnerName: "Owner", OrgName: "app-" + suffix}, time.Now())
	require.NoError(t, err)
	e := &testEnv{t: t, st: s.st, srv: s.srv, base: s.base, boot: boot}
	e.waitForKey(boot.ManagementKey)
	e.waitForKey(boot.StandardKey)
	return e
}

// on returns e bound to another server (replica).
func (e *testEnv) on(srv *Server) *testEnv {
	c := *e
	c.srv, c.base = srv, "http://"+srv.Addr()
	return &c
}

// waitForKey waits until the server authenticates key (keys reach the
// cache through a change notification).
func (e *testEnv) waitForKey(key string) {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		status, _ := e.do(http.MethodGet, "/v1/team/approver-groups", key, nil)
		return status == http.StatusOK
	}, hangDeadline, 10*time.Millisecond, "the server never learned the key")
}

// send is do with request headers, returning the response headers too.
func (e *testEnv) send(method, path, key string, hdr map[string]string, body any) (int, http.Header, []byte) {
	e.t.Helper()
	return e.sendVia(http.DefaultClient, method, path, key, hdr, body)
}

// sendVia is send through client c (e.g. one that connects from another address).
func (e *testEnv) sendVia(c *http.Client, method, path, key string, hdr map[string]string, body any) (int, http.Header, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, ok := body.([]byte)
		if !ok {
			var err error
			raw, err = json.Marshal(body)
			require.NoError(e.t, err)
		}
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
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp.StatusCode, resp.Header, raw
}

// expect sends a request, requires the status and decodes the body into T.
func expect[T any](e *testEnv, status int, method, path, key string, body any) T {
	e.t.Helper()
	got, raw := e.do(method, path, key, body)
	require.Equal(e.t, status, got, "%s %s: %s", method, path, raw)
	var v T
	if len(raw) > 0 {
		require.NoError(e.t, json.Unmarshal(raw, &v), string(raw))
	}
	return v
}

// expectProblem sends a request and requires a problem with status and code.
func (e *testEnv) expectProblem(status int, code, method, path, key string, body any) []byte {
	e.t.Helper()
	got, raw := e.do(method, path, key, body)
	require.Equal(e.t, status, got, "%s %s: %s", method, path, raw)
	require.Equal(e.t, code, problemCode(e.t, raw), string(raw))
	return raw
}

// allowDecide turns the org's management_keys_may_decide setting on or off.
func (e *testEnv) allowDecide(on bool) {
	e.t.Helper()
	expect[map[string]any](e, http.StatusOK, http.MethodPatch, "/v1/settings", e.boot.ManagementKey,
		map[string]any{"management_keys_may_decide": on})
}

// keyID is the id of the org's bootstrap key of tier.
func (e *testEnv) keyID(tier string) string {
	e.t.Helper()
	var id string
	require.NoError(e.t, e.st.Pool.QueryRow(context.Background(),
		`SELECT id FROM api_keys WHERE org_id = $1 AND tier = $2 ORDER BY created_at LIMIT 1`, e.boot.OrgID, tier).Scan(&id))
	return id
}

// secondManagementKey creates another management key of the org (another decider) and
// waits until the server knows it.
func (e *testEnv) secondManagementKey() string {
	e.t.Helper()
	return e.newKey(TierManagement)
}

// count runs a count(*) query with the org id as $1.
func (e *testEnv) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.st.Pool.QueryRow(context.Background(), query, append([]any{e.boot.OrgID}, args...)...).Scan(&n))
	return n
}

// requestApproval creates an approval and returns it.
func (e *testEnv) requestApproval(body map[string]any) ApprovalCreated {
	e.t.Helper()
	return expect[ApprovalCreated](e, http.StatusCreated, http.MethodPost, "/v1/approvals", e.boot.StandardKey, body)
}

var referencePattern = regexp.MustCompile(`^REF-[0-9A-HJKMNP-TV-Z]{8}-[0-9A-HJKMNP-TV-Z]{4}$`)

func testApprovalApproveFlow(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	toolID := e.seedTool("send_email", "", nil)
	params := map[string]any{"to": "bob@example.com", "subject": "Invoice 42", "amount": 12.5}

	before := time.Now()
	created := e.requestApproval(map[string]any{"tool": "send_email", "method": "send", "parameters": params,
		"reasoning": "Send the invoice to bob@example.com as he asked", "reference_id": "ticket-7", "timeout_seconds": 120})
	require.True(t, strings.HasPrefix(created.ID, "apr_"), created.ID)
	require.Regexp(t, referencePattern, created.Reference)
	require.Equal(t, "pending", created.Status)
	require.Equal(t, 1, created.Level)
	require.Equal(t, 1, created.Levels)
	require.WithinRange(t, created.ExpiresAt, before.Add(119*time.Second), time.Now().Add(121*time.Second))

	// The request's timeout became the tool's stored override.
	var override int32
	require.NoError(t, s.st.Pool.QueryRow(context.Background(), `SELECT approval_timeout_seconds FROM tools WHERE id = $1`, toolID).Scan(&override))
	require.EqualValues(t, 120, override)

	got := expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+created.ID, e.boot.StandardKey, nil)
	require.Equal(t, created.Reference, got.Reference)
	require.Equal(t, "pending", got.Status)
	require.Empty(t, got.Decisions)
	require.Empty(t, got.Token)
	require.Equal(t, "ticket-7", got.ReferenceID)
	require.True(t, created.ExpiresAt.Equal(got.ExpiresAt), "%s vs %s", created.ExpiresAt, got.ExpiresAt)
	// PII never reaches storage: not in the reasoning, not in the stored parameters.
	require.NotContains(t, got.Reasoning, "bob@example.com")
	require.Contains(t, got.Reasoning, "[redacted:email]")
	require.NotContains(t, string(got.Parameters), "bob@example.com")
	require.NotEmpty(t, got.ParamsHash)
	// The REF finds it too, with a management key.
	byRef := expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+created.Reference, e.boot.ManagementKey, nil)
	require.Equal(t, created.ID, byRef.ID)

	decided := expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+created.ID+"/decide", e.boot.ManagementKey,
		map[string]any{"decision": "approve", "note": "fine"})
	require.Equal(t, "approved", decided.Status)
	require.Len(t, decided.Decisions, 1)
	d := decided.Decisions[0]
	require.Equal(t, 1, d.Level)
	require.Equal(t, "approve", d.Decision)
	require.Equal(t, "fine", d.Note)
	require.Equal(t, "management_key", d.Decider.Kind)
	require.Equal(t, e.keyID(TierManagement), d.Decider.ID)
	require.True(t, strings.HasPrefix(d.Decider.Display, "oak_live_"), d.Decider.Display)
	require.Less(t, len(d.Decider.Display), apiKeyLen, "the display must be a prefix, never the key")
	require.True(t, strings.HasPrefix(decided.Token, "oak_tok_"), "the decide answer carries the token")
	require.NotNil(t, decided.DecidedAt)

	polled := expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+created.Reference, e.boot.StandardKey, nil)
	require.Equal(t, decided.Token, polled.Token)
	require.Equal(t, decided.TokenID, polled.TokenID)
	require.NotNil(t, polled.TokenExpiresAt)
	// The token minted by the worker is handed out again from its sealed
	// copy: the table never holds it in clear.
	require.Zero(t, e.count(`SELECT count(*) FROM execution_tokens t WHERE org_id = $1 AND strpos(t::text, $2) > 0`,
		strings.TrimPrefix(polled.Token, "oak_tok_")[:24]))

	// The tool server verifies the token with the parameters it received
	// (member order differs; the canonical hash does not).
	claims := expect[TokenClaims](e, http.StatusOK, http.MethodPost, "/v1/tokens/verify", e.boot.StandardKey,
		json.RawMessage(`{"token":"`+polled.Token+`","parameters":{"amount":12.5,"subject":"Invoice 42","to":"bob@example.com"}}`))
	require.True(t, claims.Valid)
	require.Equal(t, "send_email", claims.Tool)
	require.Equal(t, "send", claims.Method)
	require.Equal(t, "approval", claims.SourceKind)
	require.Equal(t, created.ID, claims.SourceID)
	require.True(t, claims.ParamsVerified)
	e.expectProblem(http.StatusConflict, CodeTokenReplayed, http.MethodPost, "/v1/tokens/verify", e.boot.StandardKey,
		map[string]any{"token": polled.Token})

	// The request was billed once and everything is in the audit log.
	require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'approval.requested' AND billable AND subject = $2`, created.ID))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'approval.decided' AND subject = $2`, created.ID))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'tool.timeout_set' AND subject = $2`, toolID))
}

func testApprovalDeny(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	e.seedTool("drop_table", "", nil)
	created := e.requestApproval(map[string]any{"tool": "drop_table", "reasoning": "cleanup"})

	denied := expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+created.Reference+"/decide", e.boot.ManagementKey,
		map[string]any{"decision": "deny", "note": "not today"})
	require.Equal(t, "denied", denied.Status)
	require.Empty(t, denied.Token)
	require.Len(t, denied.Decisions, 1)
	require.Equal(t, "deny", denied.Decisions[0].Decision)

	e.expectProblem(http.StatusConflict, CodeAlreadyDecided, http.MethodPost, "/v1/approvals/"+created.ID+"/decide",
		e.boot.ManagementKey, map[string]any{"decision": "approve"})
	e.expectProblem(http.StatusConflict, CodeApprovalNotApproved, http.MethodPost, "/v1/tokens/mint",
		e.boot.StandardKey, map[string]any{"approval_id": created.ID})
	require.Zero(t, e.count(`SELECT count(*) FROM execution_tokens WHERE org_id = $1`))
}

func testApprovalRefused(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.seedTool("nuke", "", ptr("disabled"))
	e.seedTool("pay", `{"type":"object","properties":{"amount":{"type":"integer","minimum":1}},"required":["amount"]}`, nil)
	sk := e.boot.StandardKey

	cases := []struct {
		name   string
		body   map[string]any
		status int
		code   string
	}{
		{"disabled verdict", map[string]any{"tool": "nuke", "reasoning": "r"}, http.StatusForbidden, CodeToolDisabled},
		{"unknown tool", map[string]any{"tool": "launch", "reasoning": "r"}, http.StatusForbidden, CodeToolNotRegistered},
		{"parameters fail the schema", map[string]any{"tool": "pay", "reasoning": "r", "parameters": map[string]any{"amount": 0}}, http.StatusUnprocessableEntity, CodeValidationFailed},
		{"reasoning missing", map[string]any{"tool": "pay", "parameters": map[string]any{"amount": 1}}, http.StatusUnprocessableEntity, CodeValidationFailed},
		{"reasoning too long", map[string]any{"tool": "pay", "reasoning": strings.Repeat("r", 2001)}, http.StatusUnprocessableEntity, CodeValidationFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := e.expectProblem(tc.status, tc.code, http.MethodPost, "/v1/approvals", sk, tc.body)
			if tc.code == CodeToolDisabled {
				require.Contains(t, string(raw), "level 9 tool_default", "the refusal names the deciding level")
			}
		})
	}
	// A management key cannot request approvals (runtime endpoint).
	e.expectProblem(http.StatusForbidden, CodeWrongKeyTier, http.MethodPost, "/v1/approvals", e.boot.ManagementKey,
		map[string]any{"tool": "pay", "reasoning": "r", "parameters": map[string]any{"amount": 1}})
	// Nothing was created or billed.
	require.Zero(t, e.count(`SELECT count(*) FROM approvals WHERE org_id = $1`))
	require.Zero(t, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'approval.requested'`))
}

func testApprovalWhoMayDecide(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.seedTool("send_email", "", nil)
	created := e.requestApproval(map[string]any{"tool": "send_email", "reasoning": "r"})
	path := "/v1/approvals/" + created.ID + "/decide"
	approve := map[string]any{"decision": "approve"}

	// Off by default: management keys may not decide.
	raw := e.expectProblem(http.StatusForbidden, CodeForbidden, http.MethodPost, path, e.boot.ManagementKey, approve)
	require.Contains(t, string(raw), "management_keys_may_decide")
	// Standard keys never decide, whatever the setting.
	e.expectProblem(http.StatusForbidden, CodeWrongKeyTier, http.MethodPost, path, e.boot.StandardKey, approve)
	e.allowDecide(true)
	e.expectProblem(http.StatusForbidden, CodeWrongKeyTier, http.MethodPost, path, e.boot.StandardKey, approve)
	// Another org's management key cannot see it.
	other := s.org(t)
	other.allowDecide(true)
	e.expectProblem(http.StatusNotFound, CodeNotFound, http.MethodPost, path, other.boot.ManagementKey, approve)

	got := expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+created.ID, e.boot.StandardKey, nil)
	require.Equal(t, "pending", got.Status)
	require.Empty(t, got.Decisions)
}

func testApprovalIdempotency(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	e.seedTool("send_email", "", nil)
	body := map[string]any{"tool": "send_email", "reasoning": "r", "parameters": map[string]any{"n": 1}}
	hdr := map[string]string{"Idempotency-Key": "create-1"}

	status, h1, raw1 := e.send(http.MethodPost, "/v1/approvals", e.boot.StandardKey, hdr, body)
	require.Equal(t, http.StatusCreated, status, string(raw1))
	require.Empty(t, h1.Get("Idempotent-Replayed"))
	status, h2, raw2 := e.send(http.MethodPost, "/v1/approvals", e.boot.StandardKey, hdr, body)
	require.Equal(t, http.StatusCreated, status, string(raw2))
	require.Equal(t, "true", h2.Get("Idempotent-Replayed"))
	require.JSONEq(t, string(raw1), string(raw2))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM approvals WHERE org_id = $1`))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'approval.requested' AND billable`))

	// The same key for another request is refused.
	status, _, raw := e.send(http.MethodPost, "/v1/approvals", e.boot.StandardKey, hdr,
		map[string]any{"tool": "send_email", "reasoning": "other"})
	require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))
	require.Equal(t, CodeIdempotencyKeyReused, problemCode(t, raw))
	// Keys are per caller: another key may use the same string.
	other := s.org(t)
	other.seedTool("send_email", "", nil)
	status, _, raw = other.send(http.MethodPost, "/v1/approvals", other.boot.StandardKey, hdr, body)
	require.Equal(t, http.StatusCreated, status, string(raw))

	// A decision retried with its key gets the first answer, replayed.
	var created ApprovalCreated
	require.NoError(t, json.Unmarshal(raw1, &created))
	dh := map[string]string{"Idempotency-Key": "decide-1"}
	path := "/v1/approvals/" + created.ID + "/decide"
	status, _, d1 := e.send(http.MethodPost, path, e.boot.ManagementKey, dh, map[string]any{"decision": "approve"})
	require.Equal(t, http.StatusOK, status, string(d1))
	status, h, d2 := e.send(http.MethodPost, path, e.boot.ManagementKey, dh, map[string]any{"decision": "approve"})
	require.Equal(t, http.StatusOK, status, string(d2))
	require.Equal(t, "true", h.Get("Idempotent-Replayed"))
	require.JSONEq(t, string(d1), string(d2))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM approval_decisions d JOIN approvals a ON a.id = d.approval_id WHERE a.org_id = $1`))

	// A problem answer is replayed too; a key longer than 255 is refused.
	status, _, p1 := e.send(http.MethodPost, path, e.boot.ManagementKey, map[string]string{"Idempotency-Key": "decide-2"}, map[string]any{"decision": "deny"})
	require.Equal(t, http.StatusConflict, status, string(p1))
	status, h, p2 := e.send(http.MethodPost, path, e.boot.ManagementKey, map[string]string{"Idempotency-Key": "decide-2"}, map[string]any{"decision": "deny"})
	require.Equal(t, http.StatusConflict, status, string(p2))
	require.Equal(t, "true", h.Get("Idempotent-Replayed"))
	require.Equal(t, CodeAlreadyDecided, problemCode(t, p2))
	status, _, raw = e.send(http.MethodPost, "/v1/approvals", e.boot.StandardKey,
		map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, body)
	require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))
}

func testApprovalTwoLevels(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	toolID := e.seedTool("wire_money", "", nil)
	_, err := s.st.Pool.Exec(context.Background(), `UPDATE tools SET requires_second_approval = true WHERE id = $1`, toolID)
	require.NoError(t, err)
	require.NoError(t, s.st.NotifyChange(context.Background(), "policy:"+e.boot.OrgID))

	// With an empty Approval 2 group the tool gets one level. (The org's
	// policy is first loaded by this request, after the update above.)
	require.Equal(t, 1, e.requestApproval(map[string]any{"tool": "wire_money", "reasoning": "r"}).Levels)
	e.setApproverGroup(2, []string{e.boot.UserID})
	created := e.requestApproval(map[string]any{"tool": "wire_money", "reasoning": "pay the supplier"})
	require.Equal(t, 2, created.Levels)

	path := "/v1/approvals/" + created.ID + "/decide"
	l1 := expect[Approval](e, http.StatusOK, http.MethodPost, path, e.boot.ManagementKey, map[string]any{"decision": "approve"})
	require.Equal(t, "pending", l1.Status)
	require.Equal(t, 2, l1.Level)
	require.Empty(t, l1.Token)
	require.True(t, l1.ExpiresAt.After(created.ExpiresAt) || l1.ExpiresAt.Equal(created.ExpiresAt))

	// The level-1 approver cannot approve level 2.
	e.expectProblem(http.StatusForbidden, CodeSameApprover, http.MethodPost, path, e.boot.ManagementKey, map[string]any{"decision": "approve"})

	// A second management key can.
	second := e.secondManagementKey()
	final := expect[Approval](e, http.StatusOK, http.MethodPost, path, second, map[string]any{"decision": "approve"})
	require.Equal(t, "approved", final.Status)
	require.Len(t, final.Decisions, 2)
	require.Equal(t, 2, final.Decisions[1].Level)
	require.NotEqual(t, final.Decisions[0].Decider.ID, final.Decisions[1].Decider.ID)
	require.True(t, strings.HasPrefix(final.Token, "oak_tok_"))
}

func testApprovalList(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	e.seedTool("a_tool", "", nil)
	e.seedTool("b_tool", "", nil)
	first := e.requestApproval(map[string]any{"tool": "a_tool", "reasoning": "1"})
	second := e.requestApproval(map[string]any{"tool": "b_tool", "reasoning": "2"})
	third := e.requestApproval(map[string]any{"tool": "a_tool", "reasoning": "3"})
	expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+second.ID+"/decide", e.boot.ManagementKey, map[string]any{"decision": "deny"})

	type list struct {
		Items      []Approval `json:"items"`
		NextCursor string     `json:"next_cursor"`
	}
	ids := func(l list) []string {
		var out []string
		for _, a := range l.Items {
			out = append(out, a.ID)
			require.Empty(t, a.Token, "lists never carry tokens")
		}
		return out
	}
	all := expect[list](e, http.StatusOK, http.MethodGet, "/v1/approvals", e.boot.StandardKey, nil)
	require.Equal(t, []string{third.ID, second.ID, first.ID}, ids(all), "newest first")
	pending := expect[list](e, http.StatusOK, http.MethodGet, "/v1/approvals?status=pending", e.boot.ManagementKey, nil)
	require.Equal(t, []string{third.ID, first.ID}, ids(pending))
	byTool := expect[list](e, http.StatusOK, http.MethodGet, "/v1/approvals?tool=b_tool", e.boot.StandardKey, nil)
	require.Equal(t, []string{second.ID}, ids(byTool))
	require.Len(t, byTool.Items[0].Decisions, 1)

	p1 := expect[list](e, http.StatusOK, http.MethodGet, "/v1/approvals?limit=2", e.boot.StandardKey, nil)
	require.Equal(t, []string{third.ID, second.ID}, ids(p1))
	require.NotEmpty(t, p1.NextCursor)
	p2 := expect[list](e, http.StatusOK, http.MethodGet, "/v1/approvals?limit=2&cursor="+p1.NextCursor, e.boot.StandardKey, nil)
	require.Equal(t, []string{first.ID}, ids(p2))
	require.Empty(t, p2.NextCursor)

	e.expectProblem(http.StatusBadRequest, CodeBadRequest, http.MethodGet, "/v1/approvals?cursor=bm90LWEtY3Vyc29y", e.boot.StandardKey, nil)
	e.expectProblem(http.StatusUnprocessableEntity, CodeValidationFailed, http.MethodGet, "/v1/approvals?status=maybe", e.boot.StandardKey, nil)
	// Another org sees none of them.
	other := s.org(t)
	require.Empty(t, expect[list](other, http.StatusOK, http.MethodGet, "/v1/approvals", other.boot.StandardKey, nil).Items)
	other.expectProblem(http.StatusNotFound, CodeNotFound, http.MethodGet, "/v1/approvals/"+first.ID, other.boot.StandardKey, nil)
}

// testApprovalBadInput sends malformed requests to every write this file
// adds: each is answered with a 4xx problem, never a 5xx.
func testApprovalBadInput(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	e.seedTool("t", "", nil)
	created := e.requestApproval(map[string]any{"tool": "t", "reasoning": "r"})
	mk, sk := e.boot.ManagementKey, e.boot.StandardKey
	cases := []struct {
		name, method, path, key string
		body                    any
	}{
		{"create: not JSON", http.MethodPost, "/v1/approvals", sk, []byte(`{"tool":`)},
		{"create: unknown field", http.MethodPost, "/v1/approvals", sk, map[string]any{"tool": "t", "reasoning": "r", "x": 1}},
		{"create: huge timeout", http.MethodPost, "/v1/approvals", sk, map[string]any{"tool": "t", "reasoning": "r", "timeout_seconds": 1e30}},
		{"create: parameters not an object", http.MethodPost, "/v1/approvals", sk, map[string]any{"tool": "t", "reasoning": "r", "parameters": "x"}},
		{"decide: bad decision", http.MethodPost, "/v1/approvals/" + created.ID + "/decide", mk, map[string]any{"decision": "maybe"}},
		{"decide: note too long", http.MethodPost, "/v1/approvals/" + created.ID + "/decide", mk, map[string]any{"decision": "approve", "note": strings.Repeat("n", 1001)}},
		{"decide: unknown approval", http.MethodPost, "/v1/approvals/REF-00000000-0000/decide", mk, map[string]any{"decision": "approve"}},
		{"get: unknown approval", http.MethodGet, "/v1/approvals/apr_nope", sk, nil},
		{"mint: empty", http.MethodPost, "/v1/tokens/mint", sk, map[string]any{}},
		{"verify: garbage", http.MethodPost, "/v1/tokens/verify", sk, map[string]any{"token": "oak_tok_!!!.???"}},
		{"verify: too long", http.MethodPost, "/v1/tokens/verify", sk, map[string]any{"token": strings.Repeat("a", 5000)}},
		{"execution: bad status", http.MethodPost, "/v1/executions", sk, map[string]any{"token": "x", "status": "meh", "duration_ms": 1}},
		{"execution: negative duration", http.MethodPost, "/v1/executions", sk, map[string]any{"token": "x", "status": "success", "duration_ms": -1}},
		{"channel: unknown kind", http.MethodPost, "/v1/channels", mk, map[string]any{"kind": "fax", "name": "n"}},
		{"channel: bad scope", http.MethodPost, "/v1/channels", mk, map[string]any{"kind": "webhook", "name": "n", "url": "https://example.com/h", "scope": "level_3"}},
		{"group: level 3", http.MethodPut, "/v1/team/approver-groups/3", mk, map[string]any{"user_ids": []string{}}},
		{"group: not a list", http.MethodPut, "/v1/team/approver-groups/1", mk, map[string]any{"user_ids": "usr_x"}},
		{"delivery: unknown", http.MethodPost, "/v1/webhook-deliveries/whd_nope/redeliver", mk, nil},
		// PostgreSQL stores neither NUL nor invalid UTF-8: refused, never a failed write.
		{"get: NUL id", http.MethodGet, "/v1/approvals/%00", sk, nil},
		{"get: invalid UTF-8 id", http.MethodGet, "/v1/approvals/%FF", sk, nil},
		{"list: NUL filter", http.MethodGet, "/v1/approvals?tool=%00", sk, nil},
		{"list: invalid UTF-8 filter", http.MethodGet, "/v1/approvals?tenant=%FF", sk, nil},
		{"decide: NUL id", http.MethodPost, "/v1/approvals/%00/decide", mk, map[string]any{"decision": "approve"}},
		{"decide: NUL note", http.MethodPost, "/v1/approvals/" + created.ID + "/decide", mk, []byte(`{"decision":"approve","note":"a\u0000b"}`)},
		{"create: NUL reasoning", http.MethodPost, "/v1/approvals", sk, []byte(`{"tool":"t","reasoning":"a\u0000b"}`)},
		{"create: NUL in parameters", http.MethodPost, "/v1/approvals", sk, []byte(`{"tool":"t","reasoning":"r","parameters":{"k\u0000":"v"}}`)},
		{"execution: NUL summary", http.MethodPost, "/v1/executions", sk, []byte(`{"token":"x","status":"success","duration_ms":1,"result_summary":"\u0000"}`)},
		{"channel: NUL name", http.MethodPost, "/v1/channels", mk, []byte(`{"kind":"webhook","name":"a\u0000","url":"https://example.com/h"}`)},
		{"channel: invalid UTF-8 id", http.MethodGet, "/v1/channels/%FF", sk, nil},
		{"channel: NUL id", http.MethodDelete, "/v1/channels/%00", mk, nil},
		{"delivery: invalid UTF-8 id", http.MethodGet, "/v1/webhook-deliveries/%FF", mk, nil},
		{"deliveries: forged cursor", http.MethodGet, "/v1/webhook-deliveries?cursor=ZGVsaXZlcnk6MjAyNi0wMS0wMVQwMDowMDowMFovAA", mk, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, raw := e.do(tc.method, tc.path, tc.key, tc.body)
			require.GreaterOrEqual(t, status, 400, string(raw))
			require.NotEqual(t, http.StatusNotImplemented, status)
			require.Less(t, status, 500, string(raw))
			require.NotEmpty(t, problemCode(t, raw))
		})
	}
}

// unstartable is a Temporal client on which no workflow can be started.
type unstartable struct {
	client.Client
	terminated []string
	mu         sync.Mutex
}

func (u *unstartable) ExecuteWorkflow(context.Context, client.StartWorkflowOptions, any, ...any) (client.WorkflowRun, error) {
	return nil, serviceerror.NewUnavailable("temporal is down")
}

func (u *unstartable) DescribeWorkflowExecution(context.Context, string, string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	return nil, serviceerror.NewNotFound("workflow not found")
}

func (u *unstartable) TerminateWorkflow(_ context.Context, id, _, _ string, _ ...any) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.terminated = append(u.terminated, id)
	return serviceerror.NewNotFound("workflow not found")
}

// testApprovalStartFailure: when the workflow cannot be started, the
// caller gets 503 and nothing is left pending.
func testApprovalStartFailure(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.seedTool("send_email", "", nil)
	ctx := context.Background()
	before, err := e.st.GetTeamBalance(ctx, e.boot.TeamID)
	require.NoError(t, err)
	down := &unstartable{Client: s.tc}
	broken := e.on(s.startServer(t, func(d *Deps) { d.Temporal = down }))
	broken.waitForKey(e.boot.StandardKey)

	hdr := map[string]string{"Idempotency-Key": "start-1"}
	body := map[string]any{"tool": "send_email", "reasoning": "r"}
	status, _, raw := broken.send(http.MethodPost, "/v1/approvals", e.boot.StandardKey, hdr, body)
	require.Equal(t, http.StatusServiceUnavailable, status, string(raw))
	require.Equal(t, CodeUnavailable, problemCode(t, raw))
	require.Zero(t, e.count(`SELECT count(*) FROM approvals WHERE org_id = $1`), "no approval is left pending")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'approval.start_failed'`))
	// Charged, then refunded with the abort: the failed call costs nothing
	// (SPEC §9), and the metering identity still holds.
	after, err := e.st.GetTeamBalance(ctx, e.boot.TeamID)
	require.NoError(t, err)
	require.Equal(t, before, after, "the failed request is not billed")
	totals, err := e.st.BillingTotals(ctx, e.boot.TeamID)
	require.NoError(t, err)
	require.Equal(t, before.BilledCalls, totals.Calls)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM call_refunds WHERE org_id = $1`))
	down.mu.Lock()
	require.Len(t, down.terminated, 1, "a workflow that might have started is terminated")
	require.Regexp(t, referencePattern, down.terminated[0])
	down.mu.Unlock()

	// The failure was not kept for the key: the retry runs again and, with
	// Temporal back, succeeds.
	status, h, raw := e.send(http.MethodPost, "/v1/approvals", e.boot.StandardKey, hdr, body)
	require.Equal(t, http.StatusCreated, status, string(raw))
	require.Empty(t, h.Get("Idempotent-Replayed"))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM approvals WHERE org_id = $1`))
	// The retry with the same Idempotency-Key is charged once in all.
	final, err := e.st.GetTeamBalance(ctx, e.boot.TeamID)
	require.NoError(t, err)
	require.Equal(t, before.BilledCalls+1, final.BilledCalls)
	require.Equal(t, before.FreeMicros+before.PurchasedMicros-5000, final.FreeMicros+final.PurchasedMicros)
	totals, err = e.st.BillingTotals(ctx, e.boot.TeamID)
	require.NoError(t, err)
	require.Equal(t, final.BilledCalls, totals.Calls)
	status, _, raw = e.send(http.MethodPost, "/v1/approvals", e.boot.StandardKey, hdr, body)
	require.Equal(t, http.StatusCreated, status, string(raw))
	again, err := e.st.GetTeamBalance(ctx, e.boot.TeamID)
	require.NoError(t, err)
	require.Equal(t, final, again, "a replayed answer costs nothing")
}

// lateStarter is a Temporal client whose start reports a failure although
// the workflow started and has already run its first task: the answer of
// an overloaded server that accepted the start too late. Neither Describe
// nor Terminate get through.
type lateStarter struct {
	client.Client
	pool       *pgxpool.Pool
	terminated atomic.Int32
}

func (l *lateStarter) ExecuteWorkflow(ctx context.Context, o client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	if _, err := l.Client.ExecuteWorkflow(ctx, o, wf, args...); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var touched bool
		err := l.pool.QueryRow(ctx, `SELECT a.projection_seq > 0 OR EXISTS (SELECT 1 FROM workflow_effects e WHERE e.approval_id = a.id)
			FROM approvals a WHERE a.reference = $1`, o.ID).Scan(&touched)
		if err == nil && touched {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, serviceerror.NewDeadlineExceeded("context deadline exceeded")
}

func (l *lateStarter) DescribeWorkflowExecution(context.Context, string, string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	return nil, serviceerror.NewUnavailable("temporal is overloaded")
}

func (l *lateStarter) TerminateWorkflow(context.Context, string, string, string, ...any) error {
	l.terminated.Add(1)
	return serviceerror.NewUnavailable("temporal is overloaded")
}

// testApprovalLateStart: a start that fails after the workflow ran is not
// answered "nothing was created" while the approval lives — the caller is
// told it was created, it is billed once, and PostgreSQL and Temporal agree
// that it is pending.
func testApprovalLateStart(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.seedTool("send_email", "", nil)
	ctx := context.Background()
	before, err := e.st.GetTeamBalance(ctx, e.boot.TeamID)
	require.NoError(t, err)
	late := &lateStarter{Client: s.tc, pool: e.st.Pool}
	slow := e.on(s.startServer(t, func(d *Deps) { d.Temporal = late }))
	slow.waitForKey(e.boot.StandardKey)

	created := expect[ApprovalCreated](slow, http.StatusCreated, http.MethodPost, "/v1/approvals", e.boot.StandardKey,
		map[string]any{"tool": "send_email", "reasoning": "r"})
	require.Equal(t, "pending", created.Status)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM approvals WHERE org_id = $1 AND id = $2 AND status = 'pending'`, created.ID))
	require.Zero(t, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'approval.start_failed'`))
	require.Zero(t, e.count(`SELECT count(*) FROM call_refunds WHERE org_id = $1`), "a created approval is billed")
	require.Zero(t, late.terminated.Load(), "the running approval is not terminated")
	desc, err := s.tc.DescribeWorkflowExecution(ctx, created.Reference, "")
	require.NoError(t, err)
	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.GetWorkflowExecutionInfo().GetStatus())
	after, err := e.st.GetTeamBalance(ctx, e.boot.TeamID)
	require.NoError(t, err)
	require.Equal(t, before.BilledCalls+1, after.BilledCalls)

	// It is a real approval: deciding it through a healthy server works.
	e.allowDecide(true)
	expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+created.ID+"/decide", e.boot.ManagementKey,
		map[string]any{"decision": "deny"})
}

func TestJSONHasNUL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		json string
		want bool
	}{
		{"plain", `{"a":"b"}`, false},
		{"NUL in a value", `{"a":"x\u0000"}`, true},
		{"NUL in a key", `{"\u0000":1}`, true},
		{"escaped backslash before u0000", `{"a":"\\u0000"}`, false},
		{"escaped backslash then NUL", `{"a":"\\\u0000"}`, true},
		{"other escape", `{"a":"\u0001\n"}`, false},
		{"truncated escape", `"\u00`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, jsonHasNUL([]byte(tc.json)))
		})
	}
}

// testApprovalWorkflowGone: a decision for an approval whose workflow no
// longer runs (an operator terminated it) is refused with 409, answered from
// the stored status.
func testApprovalWorkflowGone(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	e.seedTool("send_email", "", nil)
	created := e.requestApproval(map[string]any{"tool": "send_email", "reasoning": "r"})
	require.NoError(t, s.tc.TerminateWorkflow(context.Background(), created.Reference, "", "operator test"))
	raw := e.expectProblem(http.StatusConflict, CodeConflict, http.MethodPost, "/v1/approvals/"+created.ID+"/decide",
		e.boot.ManagementKey, map[string]any{"decision": "approve"})
	require.Contains(t, string(raw), "no longer running")
	require.Zero(t, e.count(`SELECT count(*) FROM execution_tokens WHERE org_id = $1`))
}

func TestDecideRejectionsMapToProblems(t *testing.T) {
	t.Parallel()
	s := &Server{log: testLogger()}
	cases := []struct {
		reason string
		status int
		code   string
	}{
		{workflows.RejectAlreadyDecided, http.StatusConflict, CodeAlreadyDecided},
		{workflows.RejectExpired, http.StatusConflict, CodeApprovalExpired},
		{workflows.RejectWrongLevel, http.StatusConflict, CodeWrongLevel},
		{workflows.RejectSameApprover, http.StatusForbidden, CodeSameApprover},
		{workflows.RejectRequestIDReused, http.StatusUnprocessableEntity, CodeIdempotencyKeyReused},
		{workflows.RejectInvalidRequest, http.StatusUnprocessableEntity, CodeValidationFailed},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			t.Parallel()
			// As the SDK hands it back: the validator's error wrapped in the update failure.
			err := fmt.Errorf("update failed: %w", temporal.NewNonRetryableApplicationError("level 1 said no", tc.reason, nil))
			var p *Problem
			require.ErrorAs(t, s.decideProblem(context.Background(), "org_x", "apr_x", err), &p)
			require.Equal(t, tc.status, p.Status)
			require.Equal(t, tc.code, p.Code)
			if tc.reason != workflows.RejectRequestIDReused { // that message would name the internal request id
				require.Contains(t, p.Detail, "level 1 said no")
			}
		})
	}
	t.Run("temporal unavailable", func(t *testing.T) {
		t.Parallel()
		var p *Problem
		require.ErrorAs(t, s.decideProblem(context.Background(), "org_x", "apr_x", serviceerror.NewUnavailable("down")), &p)
		require.Equal(t, http.StatusServiceUnavailable, p.Status)
	})
}
