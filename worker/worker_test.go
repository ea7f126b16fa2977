package worker_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/activities/notify/notifytest"
	"oakallow/activities/pii"
	"oakallow/activities/sealed"
	"oakallow/activities/tokens"
	"oakallow/dev/devtest"
	"oakallow/store"
	"oakallow/worker"
	"oakallow/workflows"
)

func TestMain(m *testing.M) { devtest.Main(m) }

// Values that must never reach a notification channel.
const (
	secretParam = "cust_4417_secret_param"
	tenantName  = "acme-tenant-7781"
	reason      = "Refund alice.smith@example.com with key oak_live_0123456789abcdef0123456789abcdef now"
	orgSecret   = "whsec_org_secret_0123456789abcdef"
	hookSecret  = "whsec_channel_secret_0123456789ab"
)

// world is one test's installation: PostgreSQL, a worker on its own task queue of the
// shared Temporal server, an org with a webhook receiver, a Slack channel and a
// PagerDuty channel, all local fakes.
type world struct {
	t      *testing.T
	st     *store.Store
	tc     client.Client
	queue  string
	kr     *tokens.Keyring
	box    *sealed.Box
	acts   *activities.Activities
	orgID  string
	toolID string
	tenant string
	rcv    *notifytest.WebhookReceiver
	slack  *notifytest.Slack
	pd     *notifytest.PagerDuty
	hook   *notifytest.WebhookReceiver
	// warnings keeps what the SDK and the worker logged at warning level or above, so a
	// test that times out can say why (a failing activity, a timed-out task).
	warnings *warningLog
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{t: t, st: devtest.Store(t), queue: "test-" + store.NewID("q"), warnings: &warningLog{}}
	srv := devtest.Temporal(t)
	var err error
	w.tc, err = client.Dial(client.Options{HostPort: srv.Address(), Namespace: srv.Namespace(),
		Logger: log.NewStructuredLogger(slog.New(w.warnings))})
	require.NoError(t, err)
	t.Cleanup(w.tc.Close)

	key, err := tokens.GenerateKey("k1")
	require.NoError(t, err)
	w.kr, err = tokens.NewKeyring("k1", key)
	require.NoError(t, err)
	boxKey := make([]byte, 32)
	_, _ = rand.Read(boxKey)
	w.box, err = sealed.NewBox(boxKey)
	require.NoError(t, err)
	w.acts = w.newActivities()

	now := time.Now().UTC()
	teamID := store.NewID("team")
	w.orgID, w.toolID, w.tenant = store.NewID("org"), store.NewID("tool"), store.NewID("ten")
	require.NoError(t, w.st.CreateTeam(ctx, store.CreateTeamParams{ID: teamID, Name: "Team", CreatedAt: now}))
	require.NoError(t, w.st.CreateOrg(ctx, store.CreateOrgParams{ID: w.orgID, TeamID: teamID, Name: "Org", CreatedAt: now}))
	w.exec(`INSERT INTO tools (id, org_id, name, created_at, updated_at) VALUES ($1, $2, 'refund_payment', $3, $3)`, w.toolID, w.orgID, now)
	w.exec(`INSERT INTO tenants (id, org_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)`, w.tenant, w.orgID, tenantName, now)

	w.rcv = notifytest.NewWebhookReceiver(t, orgSecret)
	sealedOrgSecret, err := w.box.Seal([]byte(orgSecret), store.OrgWebhookSecretAAD(w.orgID))
	require.NoError(t, err)
	w.exec(`UPDATE orgs SET webhook_url = $2, webhook_secret_sealed = $3 WHERE id = $1`, w.orgID, w.rcv.URL(), sealedOrgSecret)
	w.slack = notifytest.NewSlack(t)
	w.pd = notifytest.NewPagerDuty(t)
	w.hook = notifytest.NewWebhookReceiver(t, hookSecret)
	w.addChannel(w.box, activities.ChannelSlack, activities.SlackChannelConfig{Channel: "#approvals"}, w.slack.WebhookURL())
	w.addChannel(w.box, activities.ChannelPagerDuty, activities.PagerDutyChannelConfig{
		FromEmail: w.pd.FromEmail, ServiceID: w.pd.ServiceID, BaseURL: w.pd.URL()}, w.pd.APIKey)
	w.addChannel(w.box, activities.ChannelWebhook, activities.WebhookChannelConfig{URL: w.hook.URL()}, hookSecret)
	return w
}

// newActivities wires a worker process's activities to the world (a process restart
// gets new ones: Worker.Stop closes the old ones' direct attempts).
func (w *world) newActivities() *activities.Activities {
	w.t.Helper()
	return w.newActivitiesOn(w.tc)
}

// newActivitiesOn is newActivities whose Temporal calls go to tc.
func (w *world) newActivitiesOn(tc client.Client) *activities.Activities {
	w.t.Helper()
	hc, err := notify.NewHTTPClient(notify.HTTPClientConfig{AllowInsecure: true, AllowPrivateAddresses: true})
	require.NoError(w.t, err)
	n, err := notify.New(notify.Config{HTTPClient: hc, Scrub: pii.Scrub})
	require.NoError(w.t, err)
	acts, err := activities.New(activities.Deps{
		Store: w.st, Keyring: w.kr, Temporal: tc, Notifier: n, HTTPClient: hc, SecretBox: w.box,
		PublicURL: "https://oak.example.com", TaskQueue: w.queue,
		DeliveryRetry: workflows.DeliveryInput{InitialInterval: 200 * time.Millisecond, MaximumInterval: time.Second},
	})
	require.NoError(w.t, err)
	return acts
}

func (w *world) exec(sql string, args ...any) {
	w.t.Helper()
	_, err := w.st.Pool.Exec(context.Background(), sql, args...)
	require.NoError(w.t, err)
}

func (w *world) count(sql string, args ...any) int {
	w.t.Helper()
	var n int
	require.NoError(w.t, w.st.Pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func (w *world) addChannel(box *sealed.Box, kind string, config any, secret string) {
	w.t.Helper()
	id := store.NewID("ch")
	cfg, err := json.Marshal(config)
	require.NoError(w.t, err)
	ct, err := box.Seal([]byte(secret), activities.ChannelSecretAAD(id))
	require.NoError(w.t, err)
	w.exec(`INSERT INTO notification_channels (id, org_id, kind, name, scope, config, secret_ciphertext, created_at, updated_at)
		VALUES ($1, $2, $3, $3, 'all', $4, $5, now(), now())`, id, w.orgID, kind, cfg, ct)
}

// startWorker starts a worker with acts (the world's when nil) on the world's queue,
// stopped when the test ends.
func (w *world) startWorker(acts *activities.Activities, opts ...worker.Option) *worker.Worker {
	w.t.Helper()
	if acts == nil {
		acts = w.acts
	}
	wk, err := worker.New(w.tc, acts, slog.New(w.warnings), append([]worker.Option{worker.WithTaskQueue(w.queue)}, opts...)...)
	require.NoError(w.t, err)
	require.NoError(w.t, wk.Start())
	w.t.Cleanup(wk.Stop)
	return wk
}

// startApproval inserts a pending approval as the API does and starts its workflow.
func (w *world) startApproval() (workflows.ApprovalInput, client.WorkflowRun) {
	w.t.Helper()
	return w.startApprovalExpiring(time.Now().Add(time.Hour))
}

// startApprovalExpiring is startApproval for an approval whose level 1 expires at
// deadline: it was created an hour before it.
func (w *world) startApprovalExpiring(deadline time.Time) (workflows.ApprovalInput, client.WorkflowRun) {
	w.t.Helper()
	in := w.insertApproval(deadline.Add(-time.Hour), time.Hour)
	opts := workflows.StartWorkflowOptions(in)
	opts.TaskQueue = w.queue
	run, err := w.tc.ExecuteWorkflow(context.Background(), opts, workflows.ApprovalWorkflowName, in)
	require.NoError(w.t, err)
	return in, run
}

// insertApproval inserts a pending approval created at createdAt, waiting timeout per
// level, as the API does before it starts the workflow, and returns the workflow input
// the API builds for it.
func (w *world) insertApproval(createdAt time.Time, timeout time.Duration) workflows.ApprovalInput {
	w.t.Helper()
	in := workflows.ApprovalInput{
		ApprovalID: store.NewID("apr"), Reference: newRef(), OrgID: w.orgID, ToolName: "refund_payment",
		TenantID: w.tenant, LevelTimeout: timeout, CreatedAt: createdAt.UTC().Truncate(time.Millisecond),
	}
	params := json.RawMessage(`{"customer":"` + secretParam + `","amount":125}`)
	hash, err := tokens.HashParameters(params)
	require.NoError(w.t, err)
	w.exec(`INSERT INTO approvals (id, org_id, reference, tool_id, tool_name, tenant_id, tenant_name, resource, method,
		parameters, params_hash, reasoning, status, level, two_levels, level_timeout_seconds, expires_at,
		created_at, updated_at, workflow_id, created_by_kind, created_by_id)
		VALUES ($1, $2, $3, $4, 'refund_payment', $5, $6, 'payments-db', 'write', $7, $8, $9, 'pending', 1, false,
		$10, $11, $12, $12, $3, 'api_key', 'key_1')`,
		in.ApprovalID, w.orgID, in.Reference, w.toolID, w.tenant, tenantName, params, hash, reason,
		int32(timeout/time.Second), in.CreatedAt.Add(in.LevelTimeout), in.CreatedAt)
	return in
}

func newRef() string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "REF-" + string(b[:8]) + "-" + string(b[8:])
}

func (w *world) decide(ref string, req workflows.DecideRequest) workflows.DecideResult {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := w.tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: ref, UpdateID: req.RequestID, UpdateName: workflows.UpdateDecide,
		Args: []any{req}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	require.NoError(w.t, err)
	var res workflows.DecideResult
	require.NoError(w.t, h.Get(ctx, &res))
	return res
}

// projectPatience is how long a test waits for a workflow to project a transition.
// A projection is one local activity, milliseconds on an idle machine; the bound is
// for -race runs beside other packages on two cores, where one attempt can time out
// and the retry waits its backoff.
const projectPatience = 60 * time.Second

// waitProjected waits until approvalID's row shows projection seq (or a later one).
// When it gives up it says what the workflow's history and the logged warnings show.
func (w *world) waitProjected(approvalID string, seq int) {
	w.t.Helper()
	deadline := time.Now().Add(projectPatience)
	for w.count(`SELECT projection_seq FROM approvals WHERE id = $1`, approvalID) < seq {
		if time.Now().After(deadline) {
			var ref string
			require.NoError(w.t, w.st.Pool.QueryRow(context.Background(),
				`SELECT reference FROM approvals WHERE id = $1`, approvalID).Scan(&ref))
			w.t.Fatalf("approval %s (%s) not projected to seq %d within %s\nhistory: %s\nwarnings:\n%s",
				approvalID, ref, seq, projectPatience, w.historySummary(ref), w.warnings)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// historySummary lists the event types of workflow ref's history, with the failure
// of any failed or timed-out workflow task, for a test's failure message.
func (w *world) historySummary(ref string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	it := w.tc.GetWorkflowHistory(ctx, ref, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var b strings.Builder
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			fmt.Fprintf(&b, " (reading history: %v)", err)
			break
		}
		fmt.Fprintf(&b, " %s", ev.GetEventType())
		if f := ev.GetWorkflowTaskFailedEventAttributes(); f != nil {
			fmt.Fprintf(&b, "[%s: %s]", f.GetCause(), f.GetFailure().GetMessage())
		}
		if ev.GetWorkflowTaskTimedOutEventAttributes() != nil {
			b.WriteString("[timed out]")
		}
	}
	return b.String()
}

// warningLog is a slog handler that keeps the newest records at warning level or above.
type warningLog struct {
	mu      sync.Mutex
	records []string
}

const keptWarnings = 200

func (l *warningLog) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelWarn
}

func (l *warningLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", r.Time.Format("15:04:05.000"), r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s", a)
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, b.String())
	if len(l.records) > keptWarnings {
		l.records = l.records[len(l.records)-keptWarnings:]
	}
	return nil
}

// WithAttrs shares the parent's records; the attributes go into each record's text.
func (l *warningLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &derivedWarningLog{parent: l, attrs: attrs}
}

func (l *warningLog) WithGroup(string) slog.Handler { return l }

func (l *warningLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.records) == 0 {
		return "(none)"
	}
	return strings.Join(l.records, "\n")
}

// derivedWarningLog is a warningLog with attributes of its own.
type derivedWarningLog struct {
	parent *warningLog
	attrs  []slog.Attr
}

func (d *derivedWarningLog) Enabled(ctx context.Context, level slog.Level) bool {
	return d.parent.Enabled(ctx, level)
}

func (d *derivedWarningLog) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(d.attrs...)
	return d.parent.Handle(ctx, r)
}

func (d *derivedWarningLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &derivedWarningLog{parent: d.parent, attrs: append(append([]slog.Attr{}, d.attrs...), attrs...)}
}

func (d *derivedWarningLog) WithGroup(string) slog.Handler { return d }

func (w *world) waitDeliveriesSettled() {
	w.t.Helper()
	require.Eventually(w.t, func() bool {
		return w.count(`SELECT count(*) FROM webhook_deliveries WHERE org_id = $1 AND status = 'pending'`, w.orgID) == 0
	}, 30*time.Second, 50*time.Millisecond)
}

// deliveryIDs are the ids of the org's deliveries.
func (w *world) deliveryIDs() []string {
	w.t.Helper()
	rows, err := w.st.Pool.Query(context.Background(), `SELECT id FROM webhook_deliveries WHERE org_id = $1 ORDER BY created_at`, w.orgID)
	require.NoError(w.t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(w.t, err)
	return ids
}

// requireNoWorkflow fails unless Temporal has never heard of workflow id.
func (w *world) requireNoWorkflow(id string) {
	w.t.Helper()
	_, err := w.tc.DescribeWorkflowExecution(context.Background(), id, "")
	var notFound *serviceerror.NotFound
	require.ErrorAs(w.t, err, &notFound, "workflow %s must not exist", id)
}

func approve(who string) workflows.DecideRequest {
	return workflows.DecideRequest{
		Level: 1, Decision: workflows.Approve, RequestID: "req-" + who, Note: "ledger checked",
		Decider: workflows.Decider{Kind: workflows.DeciderUser, ID: "usr_" + who, Display: "Alice Reviewer"},
	}
}

// requireNoCustomerData fails if b carries anything a channel must never see.
func requireNoCustomerData(t *testing.T, b []byte) {
	t.Helper()
	for _, leak := range []string{secretParam, tenantName, "alice.smith@example.com",
		"oak_live_0123456789abcdef0123456789abcdef", "payments-db", "oak_tok_", "whsec_", "tok_"} {
		require.NotContains(t, string(b), leak)
	}
}

func TestApprovalEndToEnd(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.startWorker(nil)
	ctx := context.Background()
	began := time.Now()
	in, run := w.startApproval()

	created := w.rcv.WaitForDeliveries(t, 1, 20*time.Second)
	require.Equal(t, "approval.created", created[0].Event)
	t.Logf("start → approval.created received: %s", created[0].ReceivedAt.Sub(began).Round(time.Millisecond))
	w.waitProjected(in.ApprovalID, 1)

	began = time.Now()
	res := w.decide(in.Reference, approve("alice"))
	t.Logf("decide → token minted and projected: %s", time.Since(began).Round(time.Millisecond))
	require.Equal(t, workflows.StatusApproved, res.State.Status)
	require.NotEmpty(t, res.State.TokenID)
	var final workflows.State
	require.NoError(t, run.Get(ctx, &final))
	require.Equal(t, res.State.TokenID, final.TokenID)

	// PostgreSQL holds the outcome: row, decision, exactly one token, the audit trail.
	var status, tokenID string
	require.NoError(t, w.st.Pool.QueryRow(ctx, `SELECT status, token_id FROM approvals WHERE id = $1`, in.ApprovalID).Scan(&status, &tokenID))
	require.Equal(t, "approved", status)
	require.Equal(t, res.State.TokenID, tokenID)
	require.Equal(t, 1, w.count(`SELECT count(*) FROM approval_decisions WHERE approval_id = $1 AND decider_id = 'usr_alice'`, in.ApprovalID))
	require.Equal(t, 1, w.count(`SELECT count(*) FROM execution_tokens WHERE source_kind = 'approval' AND source_id = $1`, in.ApprovalID))
	for _, kind := range []string{"approval.created", "approval.decided", "token.minted"} {
		require.Equal(t, 1, w.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = $2`, w.orgID, kind), kind)
	}

	// The org webhook got both events, verified by the receiver's own signature check.
	got := w.rcv.WaitForDeliveries(t, 2, 20*time.Second)
	require.Equal(t, []string{"approval.created", "approval.decided"}, []string{got[0].Event, got[1].Event})
	require.Empty(t, w.rcv.Rejections())
	var decided struct {
		Data map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(got[1].Body, &decided))
	require.Equal(t, "approved", decided.Data["status"])
	require.Equal(t, "approve", decided.Data["decision"])
	require.NotContains(t, decided.Data, "parameters")

	w.waitDeliveriesSettled()
	require.Zero(t, w.count(`SELECT count(*) FROM webhook_deliveries WHERE org_id = $1 AND status <> 'delivered'`, w.orgID))
	// Every receiver was up: each delivery took one direct attempt and no workflow.
	require.Zero(t, w.count(`SELECT count(*) FROM webhook_deliveries WHERE org_id = $1 AND (attempts <> 1 OR handed_off_at IS NOT NULL)`, w.orgID))
	for _, id := range w.deliveryIDs() {
		w.requireNoWorkflow(id)
	}

	// Slack: one valid Block Kit card per event. PagerDuty: an incident, then resolved.
	msgs := w.slack.Messages()
	require.Len(t, msgs, 2)
	for _, m := range msgs {
		require.NoError(t, notifytest.ValidateWebhookMessage(m))
		require.Contains(t, string(m), in.Reference)
		requireNoCustomerData(t, m)
	}
	// The resolution is the decided event's alert, sent on its own; wait for it rather than
	// assume it arrived with the org webhook.
	require.Eventually(t, func() bool {
		inc, ok := w.pd.Incident(notify.PagerDutyIncidentKey(in.Reference))
		return ok && inc.Status == "resolved"
	}, 30*time.Second, 20*time.Millisecond, "the PagerDuty incident was never resolved")
	require.Empty(t, w.pd.Rejections())
	for _, r := range w.pd.Requests() {
		requireNoCustomerData(t, r.Body)
		requireNoCustomerData(t, []byte(r.RawQuery))
	}
	for _, d := range w.hook.WaitForDeliveries(t, 2, 10*time.Second) {
		requireNoCustomerData(t, d.Body)
	}
}

func TestWorkerRestartMidApprovalMintsExactlyOneToken(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	first := w.startWorker(nil)
	ctx := context.Background()
	in, run := w.startApproval()
	w.waitProjected(in.ApprovalID, 1)
	first.Stop()

	// A new worker process (new activities, same database) takes over.
	w.startWorker(w.newActivities())
	res := w.decide(in.Reference, approve("alice"))
	require.Equal(t, workflows.StatusApproved, res.State.Status)
	var final workflows.State
	require.NoError(t, run.Get(ctx, &final))
	require.Equal(t, workflows.StatusApproved, final.Status)
	require.Equal(t, 1, w.count(`SELECT count(*) FROM execution_tokens WHERE source_id = $1`, in.ApprovalID))
	require.Equal(t, 1, w.count(`SELECT count(*) FROM audit_events WHERE kind = 'token.minted' AND subject = $1`, in.ApprovalID))
	require.Equal(t, 1, w.count(`SELECT count(*) FROM audit_events WHERE kind = 'approval.created' AND subject = $1`, in.ApprovalID))
}

func TestWebhookReceiverDownThenUpIsDeliveredOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.rcv.SetMode(notifytest.Down503)
	w.startWorker(nil)
	ctx := context.Background()
	in, run := w.startApproval()

	// The approval is not held up by the receiver: it is projected and waiting.
	w.waitProjected(in.ApprovalID, 1)
	require.Eventually(t, func() bool { return w.rcv.Attempts() >= 3 }, 20*time.Second, 20*time.Millisecond)
	w.rcv.SetMode(notifytest.Up)
	got := w.rcv.WaitForDeliveries(t, 1, 20*time.Second)
	require.Equal(t, "approval.created", got[0].Event)

	var deliveryID string
	require.NoError(t, w.st.Pool.QueryRow(ctx,
		`SELECT id FROM webhook_deliveries WHERE org_id = $1 AND target_kind = 'org_webhook'`, w.orgID).Scan(&deliveryID))
	require.Equal(t, deliveryID, got[0].ID)
	wrun := w.tc.GetWorkflow(ctx, deliveryID, "")
	require.NoError(t, wrun.Get(ctx, nil), "the delivery workflow completes once delivered")

	var status string
	var attempts int
	require.NoError(t, w.st.Pool.QueryRow(ctx, `SELECT status, attempts FROM webhook_deliveries WHERE id = $1`, deliveryID).Scan(&status, &attempts))
	require.Equal(t, "delivered", status)
	require.GreaterOrEqual(t, attempts, 4)
	require.Equal(t, attempts, w.count(`SELECT count(*) FROM webhook_attempts WHERE delivery_id = $1`, deliveryID))
	require.Equal(t, attempts-1, w.count(`SELECT count(*) FROM webhook_attempts WHERE delivery_id = $1 AND status_code = 503`, deliveryID))
	require.Equal(t, 1, w.count(`SELECT count(*) FROM webhook_attempts WHERE delivery_id = $1 AND status_code = 204 AND error = ''`, deliveryID))
	require.Len(t, w.rcv.Deliveries(), 1, "delivered exactly once")

	var st workflows.State
	v, err := w.tc.QueryWorkflow(ctx, in.Reference, "", workflows.QueryState)
	require.NoError(t, err)
	require.NoError(t, v.Get(&st))
	require.Equal(t, workflows.StatusPending, st.Status)
	require.NoError(t, w.tc.TerminateWorkflow(ctx, in.Reference, run.GetRunID(), "test done"))

	if os.Getenv("OAKALLOW_RECORD") == "1" {
		recordHistory(t, w.tc, deliveryID, filepath.Join("..", "workflows", "testdata", "delivery_retried.json"))
	}
}

// recordHistory writes the history of workflow id to path, for the workflows package's
// replay test. Run with OAKALLOW_RECORD=1 after a versioned change to DeliveryWorkflow.
func recordHistory(t *testing.T, c client.Client, id, path string) {
	t.Helper()
	hist := &historypb.History{}
	iter := c.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		hist.Events = append(hist.Events, ev)
	}
	out, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, append(out, '\n'), 0o644))
	t.Logf("wrote %s: %d events", path, len(hist.Events))
}

func TestNewRefusesMissingDependencies(t *testing.T) {
	t.Parallel()
	_, err := worker.New(nil, nil, nil)
	require.ErrorContains(t, err, "temporal client is required")
	w := newWorld(t)
	_, err = worker.New(w.tc, nil, nil)
	require.ErrorContains(t, err, "activities are required")
	_, err = worker.New(w.tc, w.acts, nil, worker.WithTaskQueue(""))
	require.ErrorContains(t, err, "task queue is empty")
}

// TestCancelledApprovalEndsExpired: cancelling a pending approval from the
// Temporal UI or CLI ends it as expired — projected, so PostgreSQL never
// shows it pending and the tool can never run — and closes the run.
func TestCancelledApprovalEndsExpired(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.startWorker(nil)
	ctx := context.Background()
	in, run := w.startApproval()
	w.waitProjected(in.ApprovalID, 1)

	require.NoError(t, w.tc.CancelWorkflow(ctx, in.Reference, run.GetRunID()))
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var final workflows.State
	err := run.Get(wctx, &final)
	require.Error(t, err, "a cancelled run reports its cancellation")
	require.NoError(t, wctx.Err(), "the cancelled run must close, not retry its workflow task forever")

	require.Eventually(t, func() bool {
		return w.count(`SELECT count(*) FROM approvals WHERE id = $1 AND status = 'expired'`, in.ApprovalID) == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, 1, w.count(`SELECT count(*) FROM audit_events WHERE kind = 'approval.expired' AND subject = $1`, in.ApprovalID))
	require.Zero(t, w.count(`SELECT count(*) FROM execution_tokens WHERE source_id = $1`, in.ApprovalID))
}

// TestWorkerSweepsStrandedDeliveries: the worker's sweeper starts a workflow for a
// delivery left pending without one, and it is delivered — also when the delivery's
// own workflow id is spent (a redelivery that died before starting its workflow).
func TestWorkerSweepsStrandedDeliveries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		spentWorkflow  bool
		wantWorkflowID func(id, got string) bool
	}{
		{name: "never attempted nor handed off", wantWorkflowID: func(id, got string) bool { return got == id }},
		{name: "reopened after its workflow closed", spentWorkflow: true,
			wantWorkflowID: func(id, got string) bool { return strings.HasPrefix(got, id+":swp_") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			ctx := context.Background()
			body, err := json.Marshal(map[string]any{"id": "evt_sweep", "type": "approval.created", "created_at": time.Now(), "data": map[string]any{}})
			require.NoError(t, err)
			id := store.NewID("whd")
			_, err = w.st.InsertWebhookDelivery(ctx, store.InsertWebhookDeliveryParams{
				ID: id, OrgID: w.orgID, DedupKey: "sweep:" + id, EventID: "evt_sweep", EventType: "approval.created",
				TargetKind: "org_webhook", Url: w.rcv.URL(), Payload: body, CreatedAt: time.Now().UTC().Add(-10 * time.Minute),
			})
			require.NoError(t, err)
			if tc.spentWorkflow {
				opts := workflows.DeliveryStartWorkflowOptions(id)
				opts.TaskQueue = w.queue
				_, err := w.tc.ExecuteWorkflow(ctx, opts, workflows.DeliveryWorkflowName, workflows.DeliveryInput{DeliveryID: id, OrgID: w.orgID})
				require.NoError(t, err)
				require.NoError(t, w.tc.TerminateWorkflow(ctx, id, "", "spent before the test's worker runs"))
			}

			w.startWorker(nil, worker.WithSweepInterval(100*time.Millisecond))
			require.Eventually(t, func() bool {
				return w.count(`SELECT count(*) FROM webhook_deliveries WHERE id = $1 AND status = 'delivered' AND handed_off_at IS NOT NULL`, id) == 1
			}, 20*time.Second, 50*time.Millisecond)
			got := w.rcv.Deliveries()
			require.Len(t, got, 1)
			require.Equal(t, id, got[0].ID)
			require.Equal(t, 1, w.count(`SELECT count(*) FROM webhook_attempts WHERE delivery_id = $1`, id))

			// Visibility lags the run: wait for the completed workflow to be listed.
			var completed []string
			require.Eventually(t, func() bool {
				resp, err := w.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
					Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Completed'", workflows.DeliveryWorkflowName),
				})
				require.NoError(t, err)
				completed = completed[:0]
				for _, e := range resp.GetExecutions() {
					if strings.HasPrefix(e.GetExecution().GetWorkflowId(), id) {
						completed = append(completed, e.GetExecution().GetWorkflowId())
					}
				}
				return len(completed) > 0
			}, 10*time.Second, 100*time.Millisecond)
			require.Len(t, completed, 1, "one workflow delivered it")
			require.True(t, tc.wantWorkflowID(id, completed[0]), completed[0])
		})
	}
}

// TestRetryAfterDirectAttempt: a 503 on the direct attempt hands the delivery to a
// DeliveryWorkflow, which delivers it on the next attempt under the same delivery id.
func TestRetryAfterDirectAttempt(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.rcv.FailNext(1)
	w.startWorker(nil)
	ctx := context.Background()
	in, run := w.startApproval()

	got := w.rcv.WaitForDeliveries(t, 1, 20*time.Second)
	require.Equal(t, "approval.created", got[0].Event)
	id := got[0].ID
	require.Equal(t, []string{id, id}, w.rcv.AttemptIDs(), "the same X-Oakallow-Delivery on both attempts")
	wrun := w.tc.GetWorkflow(ctx, id, "")
	require.NoError(t, wrun.Get(ctx, nil), "the retry's workflow completes once delivered")
	var status string
	var attempts int
	require.NoError(t, w.st.Pool.QueryRow(ctx, `SELECT status, attempts FROM webhook_deliveries WHERE id = $1`, id).Scan(&status, &attempts))
	require.Equal(t, []any{"delivered", 2}, []any{status, attempts})
	rows, err := w.st.Pool.Query(ctx, `SELECT status_code FROM webhook_attempts WHERE delivery_id = $1 ORDER BY seq`, id)
	require.NoError(t, err)
	codes, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(t, err)
	require.Equal(t, []int32{503, 204}, codes)
	require.NoError(t, w.tc.TerminateWorkflow(ctx, in.Reference, run.GetRunID(), "test done"))
}

// TestRetryAfterIsHonoured: a receiver that answers 503 with Retry-After gets its next
// attempt no sooner than it asked, both for the retry after the direct attempt (the
// workflow's start delay) and for the retries inside the DeliveryWorkflow (the
// activity's next retry delay), although the schedule here starts at 200 ms.
func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	const wait = 2 * time.Second
	w.rcv.SetRetryAfter("2")
	w.rcv.FailNext(2)
	w.startWorker(nil)
	ctx := context.Background()
	in, run := w.startApproval()

	got := w.rcv.WaitForDeliveries(t, 1, 30*time.Second)
	id := got[0].ID
	require.Equal(t, []string{id, id, id}, w.rcv.AttemptIDs())
	require.NoError(t, w.tc.GetWorkflow(ctx, id, "").Get(ctx, nil), "the retry's workflow completes once delivered")
	rows, err := w.st.Pool.Query(ctx, `SELECT attempted_at, status_code FROM webhook_attempts WHERE delivery_id = $1 ORDER BY seq`, id)
	require.NoError(t, err)
	type attempt struct {
		At   time.Time
		Code int32
	}
	atts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[attempt])
	require.NoError(t, err)
	require.Len(t, atts, 3)
	require.Equal(t, []int32{503, 503, 204}, []int32{atts[0].Code, atts[1].Code, atts[2].Code})
	for i := 1; i < len(atts); i++ {
		require.GreaterOrEqual(t, atts[i].At.Sub(atts[i-1].At), wait, "attempt %d came sooner than Retry-After", i+1)
	}
	require.NoError(t, w.tc.TerminateWorkflow(ctx, in.Reference, run.GetRunID(), "test done"))
}

// TestStopDrainsDirectAttempts: stopping a worker waits for the direct attempts under
// way; past its bound it leaves them to the sweep, which another worker runs.
func TestStopDrainsDirectAttempts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		drain   time.Duration
		release bool // let the receiver answer while Stop waits
	}{
		{name: "stop waits for the attempt in flight", drain: 20 * time.Second, release: true},
		{name: "stop gives up and the sweep delivers", drain: 300 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.rcv.SetMode(notifytest.Held)
			wk := w.startWorker(nil, worker.WithDrainTimeout(tc.drain), worker.WithSweepInterval(0))
			ctx := context.Background()
			in, run := w.startApproval()
			w.waitProjected(in.ApprovalID, 1)
			require.Eventually(t, func() bool { return w.rcv.Attempts() == 1 }, 20*time.Second, 10*time.Millisecond)
			var id string
			require.NoError(t, w.st.Pool.QueryRow(ctx,
				`SELECT id FROM webhook_deliveries WHERE org_id = $1 AND target_kind = 'org_webhook'`, w.orgID).Scan(&id))

			stopped := make(chan struct{})
			go func() { wk.Stop(); close(stopped) }()
			if tc.release {
				select {
				case <-stopped:
					t.Fatal("Stop returned while a direct attempt was in flight")
				case <-time.After(300 * time.Millisecond):
				}
				w.rcv.SetMode(notifytest.Up)
			}
			select {
			case <-stopped:
			case <-time.After(30 * time.Second):
				t.Fatal("Stop did not return")
			}
			if tc.release {
				require.Equal(t, 1, w.count(`SELECT count(*) FROM webhook_deliveries WHERE id = $1 AND status = 'delivered' AND attempts = 1`, id))
				w.requireNoWorkflow(id)
			} else {
				require.Equal(t, 1, w.count(`SELECT count(*) FROM webhook_deliveries WHERE id = $1 AND status = 'pending' AND handed_off_at IS NULL`, id))
				w.requireNoWorkflow(id)
				// Another worker, past the sweep's age, takes it over.
				w.rcv.SetMode(notifytest.Up)
				w.exec(`UPDATE webhook_deliveries SET updated_at = updated_at - interval '10 minutes' WHERE id = $1`, id)
				w.startWorker(w.newActivities(), worker.WithSweepInterval(100*time.Millisecond))
				require.Eventually(t, func() bool {
					return w.count(`SELECT count(*) FROM webhook_deliveries WHERE id = $1 AND status = 'delivered'`, id) == 1
				}, 20*time.Second, 50*time.Millisecond)
			}
			got := w.rcv.Deliveries()
			require.Len(t, got, 1)
			require.Equal(t, id, got[0].ID)
			require.NoError(t, w.tc.TerminateWorkflow(ctx, in.Reference, run.GetRunID(), "test done"))
		})
	}
}
