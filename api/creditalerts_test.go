package api

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/activities/notify/notifytest"
	"oakallow/activities/pii"
	"oakallow/api/billing"
	"oakallow/api/mail"
	"oakallow/dev/devtest"
	"oakallow/store"
	"oakallow/worker"
	"oakallow/workflows"
)

// alertEnv is a team on its own database whose API servers deliver org
// events through their own worker (on a task queue of its own, so nothing of
// another test's database reaches it) and send mail to one mailbox.
type alertEnv struct {
	*testEnv
	deps    Deps
	mailbox *mail.Mailbox
}

func newAlertEnv(t *testing.T, bc billing.Config) *alertEnv {
	t.Helper()
	st, boot := bootstrappedStore(t)
	tm := devtest.Temporal(t)
	tc, err := client.Dial(client.Options{HostPort: tm.Address(), Namespace: tm.Namespace(),
		Logger: tlog.NewStructuredLogger(testLogger())})
	require.NoError(t, err)
	t.Cleanup(tc.Close)
	var b [6]byte
	_, _ = rand.Read(b[:])
	queue := "credit-alerts-" + hex.EncodeToString(b[:])
	hc, err := notify.NewHTTPClient(notify.HTTPClientConfig{AllowInsecure: true, AllowPrivateAddresses: true, Timeout: 5 * time.Second})
	require.NoError(t, err)
	n, err := notify.New(notify.Config{HTTPClient: hc, Scrub: pii.Scrub, Logger: testLogger()})
	require.NoError(t, err)
	acts, err := activities.New(activities.Deps{Store: st, Keyring: testKeyring, Temporal: tc, Notifier: n,
		HTTPClient: hc, SecretBox: testSecretBox, PublicURL: "http://localhost:8080", Logger: testLogger(), TaskQueue: queue,
		DeliveryRetry: workflows.DeliveryInput{InitialInterval: 100 * time.Millisecond, MaximumInterval: time.Second}})
	require.NoError(t, err)
	w, err := worker.New(tc, acts, testLogger(), worker.WithTaskQueue(queue))
	require.NoError(t, err)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	mb := mail.NewMailbox(nil)
	deps := Deps{Store: st, Billing: bc, Activities: acts, Temporal: tc, Mailer: mb}
	return &alertEnv{testEnv: startEnvWith(t, testConfig(), deps, boot), deps: deps, mailbox: mb}
}

// replica starts another API server of the env.
func (a *alertEnv) replica() *testEnv { return startEnvWith(a.t, testConfig(), a.deps, a.boot) }

// orgHook points the webhook of the org of key mk at a new receiver and
// returns it with its signing secret.
func orgHook(e *testEnv, mk string) (*notifytest.WebhookReceiver, string) {
	e.t.Helper()
	secret := expect[WebhookSecret](e, http.StatusOK, http.MethodPost, "/v1/webhook/rotate-secret", mk, nil)
	hook := notifytest.NewWebhookReceiver(e.t, secret.Secret)
	expect[map[string]any](e, http.StatusOK, http.MethodPatch, "/v1/settings", mk, map[string]any{"webhook_url": hook.URL()})
	return hook, secret.Secret
}

// spend makes workers×each allowed checks, spread over the replicas, and
// requires every one answered 200.
func spend(t *testing.T, replicas []*testEnv, workers, each int) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for w := range workers {
		env := replicas[w%len(replicas)]
		wg.Go(func() {
			for range each {
				status, raw := env.do(http.MethodPost, "/v1/permissions/check", env.boot.StandardKey, map[string]any{"tool": "send_email"})
				if status != http.StatusOK {
					mu.Lock()
					bad = append(bad, string(raw))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	require.Empty(t, bad)
}

// settled waits until every credits.low alert of the team was claimed and
// all its webhook deliveries and e-mails reached an end, so counting what
// arrived afterwards counts everything that ever will.
func (a *alertEnv) settled(alerts int) {
	a.t.Helper()
	ctx := context.Background()
	require.Eventually(a.t, func() bool {
		var n, unsent, open, mails int
		require.NoError(a.t, a.st.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE sent_at IS NULL),
			(SELECT count(*) FROM webhook_deliveries WHERE event_type = 'credits.low' AND status <> 'delivered'),
			(SELECT count(*) FROM credit_alert_mails WHERE status = 'pending')
			FROM credit_alerts WHERE team_id = $1`, a.boot.TeamID).Scan(&n, &unsent, &open, &mails))
		return n == alerts && unsent == 0 && open == 0 && mails == 0
	}, hangDeadline, 20*time.Millisecond, "credits.low alerts never settled")
}

// mailTo is the mailbox's messages to addr about low credit.
func (a *alertEnv) mailTo(addr string) []mail.Received {
	var out []mail.Received
	for _, m := range a.mailbox.Messages() {
		if m.To == addr && strings.HasPrefix(m.Subject, "oakallow: credit is running low") {
			out = append(out, m)
		}
	}
	return out
}

func (e *testEnv) userEmail(id string) string {
	e.t.Helper()
	var addr string
	require.NoError(e.t, e.st.Pool.QueryRow(context.Background(), "SELECT email FROM users WHERE id = $1", id).Scan(&addr))
	return addr
}

// requireSigned checks X-Oakallow-Signature as a receiver would (SPEC §4):
// t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>, at most 5 minutes old.
func requireSigned(t *testing.T, d notifytest.Delivery, secret string) {
	t.Helper()
	var ts, sig string
	for part := range strings.SplitSeq(d.Signature, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if sig == "" {
				sig = v
			}
		}
	}
	require.NotEmpty(t, ts, d.Signature)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(d.Body)))
	require.Equal(t, hex.EncodeToString(mac.Sum(nil)), sig, "signature over the raw body")
	unix, err := strconv.ParseInt(ts, 10, 64)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), time.Unix(unix, 0), 5*time.Minute, "receivers refuse older signatures")
}

// creditsLowEvent is an org webhook body of a credits.low event.
type creditsLowEvent struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	Data      struct {
		AlertID         string `json:"alert_id"`
		TeamID          string `json:"team_id"`
		OrgID           string `json:"org_id"`
		BalanceMicros   int64  `json:"balance_micros"`
		ThresholdMicros int64  `json:"threshold_micros"`
		BillingURL      string `json:"billing_url"`
	} `json:"data"`
}

// Spending across the threshold from many goroutines on two replicas sends
// exactly one signed credits.low event to the webhook of each org of the
// team and to each Slack and webhook channel, and one e-mail to each owner
// (not to admins, not to PagerDuty, which pages for approvals only); credit
// that lifts the balance back re-arms it, and the next crossing sends all of
// it once more.
func TestLowBalanceAlertOncePerCrossing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := newAlertEnv(t, billing.Config{Mode: billing.ModePrepaid, LowBalanceMicros: billing.DefaultLowBalanceMicros})
	e := a.testEnv
	b := a.replica()
	mk := e.boot.ManagementKey

	owner2 := e.person(RoleOwner)
	admin := e.person(RoleAdmin)
	hook, secret := orgHook(e, mk)
	// A second org of the team, with its own webhook.
	ownerSession := e.signIn(e.boot.UserID, true).Token
	org2 := sessionCall[Org](e, http.StatusCreated, http.MethodPost, "/v1/orgs", ownerSession, map[string]any{"name": "second-app"})
	mk2 := sessionCall[CreatedAPIKey](e, http.StatusCreated, http.MethodPost, "/v1/orgs/"+org2.ID+"/keys", ownerSession,
		map[string]any{"name": "setup", "tier": "management"}).Key
	e.waitForKey(mk2)
	hook2, secret2 := orgHook(e, mk2)
	// Channels of the first org: a generic webhook, Slack and PagerDuty.
	wh := expect[ChannelWithSecret](e, http.StatusCreated, http.MethodPost, "/v1/channels", mk,
		map[string]any{"kind": "webhook", "name": "siem", "url": "https://example.com/hook", "scope": "level_1"})
	channel := notifytest.NewWebhookReceiver(t, wh.Secret)
	expect[ChannelWithSecret](e, http.StatusOK, http.MethodPatch, "/v1/channels/"+wh.ID, mk,
		map[string]any{"url": channel.URL(), "secret": wh.Secret})
	slack := notifytest.NewSlack(t)
	expect[ChannelWithSecret](e, http.StatusCreated, http.MethodPost, "/v1/channels", mk,
		map[string]any{"kind": "slack", "name": "billing", "scope": "all", "webhook_url": slack.WebhookURL()})
	pd := notifytest.NewPagerDuty(t)
	expect[ChannelWithSecret](e, http.StatusCreated, http.MethodPost, "/v1/channels", mk,
		map[string]any{"kind": "pagerduty", "name": "oncall", "api_key": pd.APIKey, "from_email": pd.FromEmail,
			"service_id": pd.ServiceID, "base_url": pd.URL()})

	e.seedTool("send_email", "", ptr("allowed"))
	b.waitForKey(e.boot.StandardKey)
	// Twenty calls above the $1.00 threshold; the 21st crosses it.
	_, err := e.st.Pool.Exec(ctx, "UPDATE team_balances SET free_micros = $2 WHERE team_id = $1", e.boot.TeamID, 1_000_000+20*5000)
	require.NoError(t, err)

	spend(t, []*testEnv{e, b}, 16, 3) // 48 calls: $1.10 → $0.86
	a.settled(1)
	got := hook.Deliveries()
	require.Len(t, got, 1, "one event per crossing")
	require.Equal(t, "credits.low", got[0].Event)
	requireSigned(t, got[0], secret)
	var ev creditsLowEvent
	require.NoError(t, json.Unmarshal(got[0].Body, &ev))
	require.Equal(t, "credits.low", ev.Type)
	require.True(t, strings.HasPrefix(ev.ID, "evt_"), ev.ID)
	require.Equal(t, e.boot.TeamID, ev.Data.TeamID)
	require.Equal(t, e.boot.OrgID, ev.Data.OrgID)
	require.Equal(t, int64(1_000_000), ev.Data.ThresholdMicros)
	require.Less(t, ev.Data.BalanceMicros, int64(1_000_000))
	require.GreaterOrEqual(t, ev.Data.BalanceMicros, int64(860_000))
	require.Equal(t, "http://localhost:8080/billing", ev.Data.BillingURL)
	first := ev.Data.AlertID

	got2 := hook2.Deliveries()
	require.Len(t, got2, 1)
	requireSigned(t, got2[0], secret2)
	var ev2 creditsLowEvent
	require.NoError(t, json.Unmarshal(got2[0].Body, &ev2))
	require.Equal(t, org2.ID, ev2.Data.OrgID)
	require.Equal(t, first, ev2.Data.AlertID, "one alert, one event in each org")
	require.NotEqual(t, ev.ID, ev2.ID)

	alerts := channel.Deliveries()
	require.Len(t, alerts, 1)
	requireSigned(t, alerts[0], wh.Secret)
	require.Contains(t, string(alerts[0].Body), `"type":"credits.low"`)
	require.Contains(t, string(alerts[0].Body), "below the alert threshold of $1.00")
	require.Len(t, slack.Messages(), 1)
	require.Empty(t, slack.Rejections())
	require.Contains(t, string(slack.Messages()[0]), "Credits are running low")
	require.Empty(t, pd.Requests(), "PagerDuty pages for approvals only")

	for _, u := range []string{e.boot.UserID, owner2} {
		require.Len(t, a.mailTo(e.userEmail(u)), 1, "one e-mail per owner")
	}
	require.Empty(t, a.mailTo(e.userEmail(admin)), "owners only")
	require.Contains(t, a.mailTo(e.userEmail(owner2))[0].Text, "http://localhost:8080/billing")
	require.Equal(t, 2, e.countAudit(billing.KindCreditsLow), "audited in each org of the team")

	// Credit that leaves the balance at the threshold or above re-arms the
	// alert; the next crossing sends everything once more.
	_, err = e.srv.billing.GrantCredit(ctx, billing.GrantInput{TeamID: e.boot.TeamID, Micros: 500_000, By: "ops", Note: "top-up"})
	require.NoError(t, err)
	require.False(t, e.balance().LowBalanceAlerted)
	spend(t, []*testEnv{e, b}, 16, 5) // 80 calls: $1.36 → $0.96
	a.settled(2)
	got = hook.Deliveries()
	require.Len(t, got, 2)
	require.NoError(t, json.Unmarshal(got[1].Body, &ev))
	require.NotEqual(t, first, ev.Data.AlertID)
	requireSigned(t, got[1], secret)
	require.Len(t, hook2.Deliveries(), 2)
	require.Len(t, channel.Deliveries(), 2)
	require.Len(t, slack.Messages(), 2)
	for _, u := range []string{e.boot.UserID, owner2} {
		require.Len(t, a.mailTo(e.userEmail(u)), 2)
	}
	require.Equal(t, 4, e.countAudit(billing.KindCreditsLow))
	require.Empty(t, hook.Rejections())
}

// A crossing recorded by a server that stopped before sending it is sent by
// the next server to start.
func TestLowBalanceAlertSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := newAlertEnv(t, billing.Config{Mode: billing.ModePrepaid, LowBalanceMicros: billing.DefaultLowBalanceMicros})
	e := a.testEnv
	hook, _ := orgHook(e, e.boot.ManagementKey)
	e.srv.Stop()

	// What a server's recorder commits, with no server left to send it.
	_, err := e.st.Pool.Exec(ctx, "UPDATE team_balances SET free_micros = $2 WHERE team_id = $1", e.boot.TeamID, 1_000_000)
	require.NoError(t, err)
	rec, err := store.NewRecorder(e.st, store.RecorderConfig{LowBalanceMicros: billing.DefaultLowBalanceMicros})
	require.NoError(t, err)
	require.NoError(t, rec.Record(ctx, store.Entry{Billable: true, Event: store.AuditRecord{ID: store.NewID("evt"),
		OrgID: e.boot.OrgID, TeamID: e.boot.TeamID, OccurredAt: time.Now(), ActorKind: "api_key", ActorID: "key_x",
		Kind: "permission.check", Outcome: "allowed", Details: []byte(`{}`)}}))
	rec.Stop()
	var unsent int
	require.NoError(t, e.st.Pool.QueryRow(ctx, "SELECT count(*) FROM credit_alerts WHERE team_id = $1 AND sent_at IS NULL", e.boot.TeamID).Scan(&unsent))
	require.Equal(t, 1, unsent)

	a.replica()
	a.settled(1)
	got := hook.Deliveries()
	require.Len(t, got, 1)
	var ev creditsLowEvent
	require.NoError(t, json.Unmarshal(got[0].Body, &ev))
	require.Equal(t, int64(995_000), ev.Data.BalanceMicros)
	require.Len(t, a.mailTo(e.userEmail(e.boot.UserID)), 1)
}

// Billing mode off debits nothing, so a balance never crosses the threshold:
// no alert is recorded, even for a team at zero, and calls keep working.
func TestLowBalanceAlertNotInModeOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newBillingEnv(t, billing.Config{Mode: billing.ModeOff, LowBalanceMicros: billing.DefaultLowBalanceMicros})
	e.seedTool("send_email", "", ptr("allowed"))
	_, err := e.st.Pool.Exec(ctx, "UPDATE team_balances SET free_micros = $2 WHERE team_id = $1", e.boot.TeamID, 1_000_000+5000)
	require.NoError(t, err)
	spend(t, []*testEnv{e}, 4, 3)
	// A check is answered after its audit row (and any alert) committed.
	var alerts int
	require.NoError(t, e.st.Pool.QueryRow(ctx, "SELECT count(*) FROM credit_alerts WHERE team_id = $1", e.boot.TeamID).Scan(&alerts))
	require.Zero(t, alerts)
	bal := e.balance()
	require.Equal(t, int64(1_005_000), bal.FreeMicros, "nothing debited")
	require.False(t, bal.LowBalanceAlerted)
	require.Equal(t, int64(12), bal.BilledCalls, "still metered")
}
