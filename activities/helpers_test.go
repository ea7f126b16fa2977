package activities_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/activities/pii"
	"oakallow/activities/sealed"
	"oakallow/activities/tokens"
	"oakallow/dev/devtest"
	"oakallow/store"
	"oakallow/workflows"
)

func TestMain(m *testing.M) { devtest.Main(m) }

// Values that must never reach a notification channel.
const (
	secretParam  = "cust_4417_secret_param"
	tenantName   = "acme-tenant-7781"
	leakyReason  = "Refund alice.smith@example.com with key oak_live_0123456789abcdef0123456789abcdef now"
	reasonLeakEm = "alice.smith@example.com"
	reasonLeakKy = "oak_live_0123456789abcdef0123456789abcdef"
)

// env is one test's world: a fresh database with a team, an org and a tool, and
// activities wired to it.
type env struct {
	t   *testing.T
	st  *store.Store
	kr  *tokens.Keyring
	box *sealed.Box
	// channelBox seals the channels addChannel inserts: box, unless foreignSecrets.
	channelBox *sealed.Box
	acts       *activities.Activities
	tc         client.Client
	queue      string
	teamID     string
	orgID      string
	toolID     string
	tenantID   string
	now        time.Time
}

type envOptions struct {
	// foreignSecrets seals channel secrets with another key than the activities'
	// (a server whose secret key changed).
	foreignSecrets bool
	temporal       bool // dial the shared test Temporal server (for activities that start workflows)
	// noDirect closes the activities' direct attempts, so every delivery goes to its
	// DeliveryWorkflow at once (tests that drive DeliverNotification themselves).
	noDirect bool
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, st: devtest.Store(t), now: time.Now().UTC().Truncate(time.Second)}
	key, err := tokens.GenerateKey("k1")
	require.NoError(t, err)
	e.kr, err = tokens.NewKeyring("k1", key)
	require.NoError(t, err)
	e.box = newBox(t)
	e.channelBox = e.box
	if o.foreignSecrets {
		e.channelBox = newBox(t)
	}
	e.teamID, e.orgID = store.NewID("team"), store.NewID("org")
	e.toolID, e.tenantID = store.NewID("tool"), store.NewID("ten")
	require.NoError(t, e.st.CreateTeam(ctx, store.CreateTeamParams{ID: e.teamID, Name: "Team", CreatedAt: e.now}))
	require.NoError(t, e.st.CreateOrg(ctx, store.CreateOrgParams{ID: e.orgID, TeamID: e.teamID, Name: "Org", CreatedAt: e.now}))
	e.exec(`INSERT INTO tools (id, org_id, name, created_at, updated_at) VALUES ($1, $2, 'refund_payment', $3, $3)`, e.toolID, e.orgID, e.now)
	e.exec(`INSERT INTO tenants (id, org_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)`, e.tenantID, e.orgID, tenantName, e.now)

	e.queue = "test-" + strings.ToLower(store.NewID("q"))
	if o.temporal {
		srv := devtest.Temporal(t)
		e.tc, err = client.Dial(client.Options{HostPort: srv.Address(), Namespace: srv.Namespace(), Logger: quietTemporalLogger()})
		require.NoError(t, err)
		t.Cleanup(e.tc.Close)
	}
	e.acts = e.newActivities(t, e.tc, 0)
	if o.noDirect {
		require.NoError(t, e.acts.Close(ctx))
	}
	return e
}

// newActivities wires activities to e's store, with at most maxDirect direct delivery
// attempts at once (0: the default); a nil client gets a placeholder that fails every
// call (tests of activities that never reach Temporal). Their direct attempts are
// drained before the test's database goes away.
func (e *env) newActivities(t *testing.T, tc client.Client, maxDirect int) *activities.Activities {
	t.Helper()
	hc := loopbackClient(t)
	n, err := notify.New(notify.Config{HTTPClient: hc, Scrub: pii.Scrub})
	require.NoError(t, err)
	if tc == nil {
		tc = unreachableClient{}
	}
	acts, err := activities.New(activities.Deps{
		Store: e.st, Keyring: e.kr, Temporal: tc, Notifier: n, HTTPClient: hc, SecretBox: e.box,
		PublicURL: "https://oak.example.com/", TaskQueue: e.queue, MaxDirectAttempts: maxDirect,
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return time.Now().UTC() },
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, acts.Close(ctx))
	})
	return acts
}

func nopSlog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// unreachableClient satisfies client.Client for tests that must not start workflows:
// any call panics through the nil embedded interface.
type unreachableClient struct{ client.Client }

// refusingClient is a Temporal that is down: every workflow start fails.
type refusingClient struct{ client.Client }

func (refusingClient) ExecuteWorkflow(context.Context, client.StartWorkflowOptions, any, ...any) (client.WorkflowRun, error) {
	return nil, serviceerror.NewUnavailable("temporal is down (test)")
}

func loopbackClient(t *testing.T) *http.Client {
	t.Helper()
	c, err := notify.NewHTTPClient(notify.HTTPClientConfig{AllowInsecure: true, AllowPrivateAddresses: true})
	require.NoError(t, err)
	return c
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	_, err := e.st.Pool.Exec(context.Background(), sql, args...)
	require.NoError(e.t, err)
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.st.Pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// approval inserts a pending level-1 approval as the API does and returns its id and REF.
type approvalRow struct {
	id, ref    string
	paramsHash string
	params     json.RawMessage
}

func (e *env) insertApproval(twoLevels bool) approvalRow {
	e.t.Helper()
	params := json.RawMessage(fmt.Sprintf(`{"customer":%q,"amount":125}`, secretParam))
	hash, err := tokens.HashParameters(params)
	require.NoError(e.t, err)
	a := approvalRow{id: store.NewID("apr"), ref: newRef(), paramsHash: hash, params: params}
	e.exec(`INSERT INTO approvals (id, org_id, reference, tool_id, tool_name, tenant_id, tenant_name, resource, method,
		parameters, params_hash, reasoning, reference_id, status, level, two_levels, level_timeout_seconds, expires_at,
		created_at, updated_at, workflow_id, created_by_kind, created_by_id)
		VALUES ($1, $2, $3, $4, 'refund_payment', $5, $6, 'payments-db', 'write', $7, $8, $9, 'ticket-991', 'pending', 1, $10,
		3600, $11, $12, $12, $3, 'api_key', 'key_1')`,
		a.id, e.orgID, a.ref, e.toolID, e.tenantID, tenantName, params, hash, leakyReason, twoLevels,
		e.now.Add(time.Hour), e.now)
	return a
}

// newRef returns a random REF-XXXXXXXX-XXXX in Crockford base32.
func newRef() string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "REF-" + string(b[:8]) + "-" + string(b[8:])
}

func (e *env) status(approvalID string) (string, int, int) {
	e.t.Helper()
	var status string
	var level, seq int
	require.NoError(e.t, e.st.Pool.QueryRow(context.Background(),
		`SELECT status, level, projection_seq FROM approvals WHERE id = $1`, approvalID).Scan(&status, &level, &seq))
	return status, level, seq
}

func (e *env) audits(kind string) int {
	return e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = $2`, e.orgID, kind)
}

// newBox is a secret box with a fresh key.
func newBox(t *testing.T) *sealed.Box {
	t.Helper()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	box, err := sealed.NewBox(raw)
	require.NoError(t, err)
	return box
}

// sealOrgSecret seals an org webhook secret as the API stores it.
func (e *env) sealOrgSecret(secret string) []byte {
	e.t.Helper()
	ct, err := e.box.Seal([]byte(secret), store.OrgWebhookSecretAAD(e.orgID))
	require.NoError(e.t, err)
	return ct
}

// setWebhook configures the org webhook.
func (e *env) setWebhook(url, secret string, includeParams bool) {
	e.exec(`UPDATE orgs SET webhook_url = $2, webhook_secret_sealed = $3, webhook_include_parameters = $4 WHERE id = $1`,
		e.orgID, url, e.sealOrgSecret(secret), includeParams)
}

// addChannel inserts an enabled channel with its secret sealed for its row.
func (e *env) addChannel(kind, scope string, config any, secret string) string {
	e.t.Helper()
	id := store.NewID("ch")
	cfg, err := json.Marshal(config)
	require.NoError(e.t, err)
	ct, err := e.channelBox.Seal([]byte(secret), activities.ChannelSecretAAD(id))
	require.NoError(e.t, err)
	e.exec(`INSERT INTO notification_channels (id, org_id, kind, name, scope, config, secret_ciphertext, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`, id, e.orgID, kind, kind+" channel", scope, cfg, ct, e.now)
	return id
}

var (
	alice = workflows.Decider{Kind: workflows.DeciderUser, ID: "usr_alice", Display: "Alice"}
	bob   = workflows.Decider{Kind: workflows.DeciderUser, ID: "usr_bob", Display: "Bob"}
)

// projection builds a ProjectApprovalInput for a.
func (e *env) projection(a approvalRow, runID string, ev workflows.Event, status workflows.Status, level int, d *workflows.Decision) workflows.ProjectApprovalInput {
	key := fmt.Sprintf("project:%s:L%d", ev, level)
	return workflows.ProjectApprovalInput{
		RunID: runID, Key: key, OrgID: e.orgID, ApprovalID: a.id, Reference: a.ref, Event: ev, Decision: d,
		State: workflows.State{Status: status, Level: level, ExpiresAt: e.now.Add(time.Hour)},
		At:    e.now.Add(time.Minute),
	}
}

func decision(level int, v workflows.DecisionValue, who workflows.Decider, at time.Time) *workflows.Decision {
	return &workflows.Decision{Level: level, Decision: v, Decider: who, Note: "checked the ledger", At: at, RequestID: "req-" + who.ID}
}

// approve projects creation and an approval at level 1, leaving a approved.
func (e *env) approve(a approvalRow) {
	e.t.Helper()
	ctx := context.Background()
	require.NoError(e.t, e.acts.ProjectApproval(ctx, e.projection(a, "run-1", workflows.EventCreated, workflows.StatusPending, 1, nil)))
	require.NoError(e.t, e.acts.ProjectApproval(ctx, e.projection(a, "run-1", workflows.EventDecided, workflows.StatusApproved, 1,
		decision(1, workflows.Approve, alice, e.now))))
}
