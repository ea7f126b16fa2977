package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"
	"github.com/stripe/stripe-go/v85/webhook"

	"oakallow/api/billing"
	"oakallow/dev/devtest"
	"oakallow/store"
)

const testWebhookSecret = "whsec_oakallow_test"

// stripeConfig is billing mode stripe against stripe-mock.
func stripeConfig(t testing.TB) billing.Config {
	packs, err := billing.ParsePacks("starter:10:10,scale:200:220")
	require.NoError(t, err)
	return billing.Config{Mode: billing.ModeStripe, Packs: packs, StripeSecretKey: "sk_test_oakallow",
		StripeWebhookSecret: testWebhookSecret, StripeAPIURL: devtest.StripeMock(t), LowBalanceMicros: billing.DefaultLowBalanceMicros}
}

func newBillingEnv(t *testing.T, cfg billing.Config) *testEnv {
	t.Helper()
	st, boot := bootstrappedStore(t)
	return startEnvWith(t, testConfig(), Deps{Store: st, Billing: cfg}, boot)
}

// startCheckout buys a pack as the team's owner and returns the purchase.
func (e *testEnv) startCheckout(pack string) billing.Checkout {
	e.t.Helper()
	owner := e.signIn(e.boot.UserID, true)
	status, raw := e.asSession(http.MethodPost, "/v1/billing/checkout", bearer(owner.Token), map[string]any{"pack": pack})
	require.Equal(e.t, http.StatusCreated, status, string(raw))
	var c billing.Checkout
	require.NoError(e.t, json.Unmarshal(raw, &c))
	return c
}

// stripeEvent is a Stripe event body of the API version stripe-go reads.
func stripeEvent(t testing.TB, id, typ string, object map[string]any) []byte {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"id": id, "object": "event", "type": typ, "api_version": stripe.APIVersion,
		"created": time.Now().Unix(), "livemode": false, "data": map[string]any{"object": object}})
	require.NoError(t, err)
	return raw
}

// paidSession is the object of checkout.session.completed for c.
func paidSession(c billing.Checkout, team, paymentIntent string) map[string]any {
	return map[string]any{"id": c.SessionID, "object": "checkout.session", "client_reference_id": team,
		"payment_status": "paid", "status": "complete", "amount_total": c.Pack.PriceCents, "currency": "usd",
		"payment_intent": paymentIntent, "metadata": map[string]string{"oakallow_checkout": c.ID}}
}

// deliver posts a Stripe event signed with secret at ts, as Stripe would.
func (e *testEnv) deliver(body []byte, secret string, ts time.Time) (int, []byte) {
	e.t.Helper()
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: ts})
	return e.deliverSigned(body, signed.Header)
}

func (e *testEnv) deliverSigned(body []byte, header string) (int, []byte) {
	e.t.Helper()
	var h map[string]string
	if header != "" {
		h = map[string]string{"Stripe-Signature": header}
	}
	status, _, raw := e.send(http.MethodPost, StripeWebhookPath, "", h, body)
	return status, raw
}

func webhookOutcome(t testing.TB, raw []byte) string {
	t.Helper()
	var r billing.WebhookResult
	require.NoError(t, json.Unmarshal(raw, &r), string(raw))
	return r.Outcome
}

func (e *testEnv) balance() store.TeamBalance {
	e.t.Helper()
	b, err := e.st.GetTeamBalance(context.Background(), e.boot.TeamID)
	require.NoError(e.t, err)
	return b
}

func (e *testEnv) countAudit(kind string) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.st.Pool.QueryRow(context.Background(),
		"SELECT count(*) FROM audit_events WHERE team_id = $1 AND kind = $2", e.boot.TeamID, kind).Scan(&n))
	return n
}

func TestStripePurchaseCreditsExactlyOnce(t *testing.T) {
	t.Parallel()
	e := newBillingEnv(t, stripeConfig(t))
	c := e.startCheckout("starter")
	require.True(t, strings.HasPrefix(c.ID, "chk_"))
	require.NotEmpty(t, c.SessionID, "stripe-mock created a session")
	require.NotEmpty(t, c.URL)
	require.Equal(t, int64(1000), c.Pack.PriceCents)
	require.Equal(t, 1, e.countAudit(billing.KindCheckoutStarted))
	before := e.balance()

	// The same event delivered five times in a row credits once.
	body := stripeEvent(t, "evt_seq_1", "checkout.session.completed", paidSession(c, e.boot.TeamID, "pi_seq_1"))
	for i := range 5 {
		status, raw := e.deliver(body, testWebhookSecret, time.Now())
		require.Equal(t, http.StatusOK, status, string(raw))
		want := "duplicate"
		if i == 0 {
			want = "credited"
		}
		require.Equal(t, want, webhookOutcome(t, raw), "delivery %d", i)
	}
	// So does the async-payment event for the same session (another event id).
	async := stripeEvent(t, "evt_seq_2", "checkout.session.async_payment_succeeded", paidSession(c, e.boot.TeamID, "pi_seq_1"))
	status, raw := e.deliver(async, testWebhookSecret, time.Now())
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Equal(t, "duplicate", webhookOutcome(t, raw))

	after := e.balance()
	require.Equal(t, before.PurchasedMicros+10_000_000, after.PurchasedMicros)
	require.Equal(t, before.FreeMicros, after.FreeMicros)
	require.Equal(t, 1, e.countAudit(billing.KindCreditPurchased))

	// Five concurrent deliveries of another purchase's event credit once.
	c2 := e.startCheckout("scale")
	body2 := stripeEvent(t, "evt_conc_1", "checkout.session.completed", paidSession(c2, e.boot.TeamID, "pi_conc_1"))
	var wg sync.WaitGroup
	outcomes := make([]string, 5)
	for i := range 5 {
		wg.Go(func() {
			signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body2, Secret: testWebhookSecret})
			req, _ := http.NewRequest(http.MethodPost, e.base+StripeWebhookPath, bytes.NewReader(body2))
			req.Header.Set("Stripe-Signature", signed.Header)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				outcomes[i] = err.Error()
				return
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var r billing.WebhookResult
			_ = json.Unmarshal(raw, &r)
			outcomes[i] = fmt.Sprintf("%d %s", resp.StatusCode, r.Outcome)
		})
	}
	wg.Wait()
	credited := 0
	for _, o := range outcomes {
		switch o {
		case "200 credited":
			credited++
		case "200 duplicate":
		default:
			t.Fatalf("unexpected answer %q", o)
		}
	}
	require.Equal(t, 1, credited, "%v", outcomes)
	require.Equal(t, after.PurchasedMicros+220_000_000, e.balance().PurchasedMicros)
	require.Equal(t, 2, e.countAudit(billing.KindCreditPurchased))

	// GET /v1/credits shows the grants: free with its expiry, purchases without.
	status, raw = e.do(http.MethodGet, "/v1/credits", e.boot.ManagementKey, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	var credits struct {
		Mode            string        `json:"mode"`
		BalanceMicros   int64         `json:"balance_micros"`
		PurchasedMicros int64         `json:"purchased_micros"`
		Grants          []CreditGrant `json:"grants"`
		Packs           []billing.Pack
	}
	require.NoError(t, json.Unmarshal(raw, &credits))
	require.Equal(t, "stripe", credits.Mode)
	require.Equal(t, int64(FreeCreditMicros+230_000_000), credits.BalanceMicros)
	require.Len(t, credits.Grants, 3)
	require.Len(t, credits.Packs, 2)
	for _, g := range credits.Grants {
		if g.Kind == "free" {
			require.NotNil(t, g.ExpiresAt)
		} else {
			require.Equal(t, "purchased", g.Kind)
			require.Nil(t, g.ExpiresAt, "purchased credit never expires")
		}
	}
}

func TestStripeWebhookRefusesBadSignatures(t *testing.T) {
	t.Parallel()
	e := newBillingEnv(t, stripeConfig(t))
	c := e.startCheckout("starter")
	body := stripeEvent(t, "evt_sig_1", "checkout.session.completed", paidSession(c, e.boot.TeamID, "pi_sig_1"))
	before := e.balance()

	cases := []struct {
		name   string
		header string
		body   []byte
	}{
		{"missing", "", body},
		{"wrong secret", webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: "whsec_other"}).Header, body},
		{"stale", webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: testWebhookSecret,
			Timestamp: time.Now().Add(-billing.WebhookTolerance - 10*time.Second)}).Header, body},
		{"body changed", webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: testWebhookSecret}).Header,
			bytes.Replace(body, []byte(`"amount_total":1000`), []byte(`"amount_total":100000`), 1)},
		{"garbage header", "t=abc,v1=zz", body},
	}
	for _, tc := range cases {
		status, raw := e.deliverSigned(tc.body, tc.header)
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", tc.name, raw)
		require.Equal(t, CodeInvalidSignature, problemCode(t, raw), tc.name)
	}
	// Signed but not an event this version reads: 400 too, never a 500.
	for name, b := range map[string][]byte{
		"not json":      []byte("{"),
		"other version": bytes.Replace(body, []byte(stripe.APIVersion), []byte("2019-01-01"), 1),
		"no id":         stripeEvent(t, "", "checkout.session.completed", paidSession(c, e.boot.TeamID, "pi")),
		"bad object":    stripeEvent(t, "evt_bad_obj", "checkout.session.completed", map[string]any{"metadata": "x"}),
	} {
		status, raw := e.deliver(b, testWebhookSecret, time.Now())
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", name, raw)
		require.Equal(t, CodeInvalidEvent, problemCode(t, raw), name)
	}
	// Above the limit: 413 before anything is read.
	status, _ := e.deliver(bytes.Repeat([]byte(" "), billing.DefaultWebhookMaxBytes+1), testWebhookSecret, time.Now())
	require.Equal(t, http.StatusRequestEntityTooLarge, status)

	require.Equal(t, before, e.balance(), "nothing changed")
	var events int
	require.NoError(t, e.st.Pool.QueryRow(context.Background(), "SELECT count(*) FROM stripe_events").Scan(&events))
	require.Zero(t, events)
	require.Zero(t, e.countAudit(billing.KindCreditPurchased))

	// The genuine delivery still works afterwards.
	status, raw := e.deliver(body, testWebhookSecret, time.Now())
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Equal(t, "credited", webhookOutcome(t, raw))
}

func TestStripeRefundsAndDisputesTakeCreditBack(t *testing.T) {
	t.Parallel()
	e := newBillingEnv(t, stripeConfig(t))
	c := e.startCheckout("starter") // $10 buys $10
	status, raw := e.deliver(stripeEvent(t, "evt_buy", "checkout.session.completed", paidSession(c, e.boot.TeamID, "pi_ref")), testWebhookSecret, time.Now())
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Equal(t, int64(10_000_000), e.balance().PurchasedMicros)

	// Spend $8 of it (free credit gone), as calls would.
	_, err := e.st.Pool.Exec(context.Background(), "UPDATE team_balances SET free_micros = 0, purchased_micros = 2000000 WHERE team_id = $1", e.boot.TeamID)
	require.NoError(t, err)

	charge := func(refunded int64) map[string]any {
		return map[string]any{"id": "ch_ref", "object": "charge", "amount": 1000, "amount_refunded": refunded, "currency": "usd", "payment_intent": "pi_ref"}
	}
	// A partial refund of $4 takes $4 back: below zero, since it was spent.
	ev := stripeEvent(t, "evt_refund_1", "charge.refunded", charge(400))
	status, raw = e.deliver(ev, testWebhookSecret, time.Now())
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Equal(t, "reversed", webhookOutcome(t, raw))
	require.Equal(t, int64(-2_000_000), e.balance().PurchasedMicros)
	_, raw = e.deliver(ev, testWebhookSecret, time.Now())
	require.Equal(t, "duplicate", webhookOutcome(t, raw))
	require.Equal(t, int64(-2_000_000), e.balance().PurchasedMicros)

	// A check now is refused: the debt covers nothing.
	e.seedTool("send_email", "", ptr("allowed"))
	status, raw = e.do(http.MethodPost, "/v1/permissions/check", e.boot.StandardKey, map[string]any{"tool": "send_email"})
	require.Equal(t, http.StatusPaymentRequired, status, string(raw))

	// A dispute over the whole charge takes back the rest, never more than bought.
	dispute := map[string]any{"id": "dp_1", "object": "dispute", "amount": 1000, "currency": "usd", "charge": "ch_ref", "payment_intent": "pi_ref", "status": "needs_response"}
	status, raw = e.deliver(stripeEvent(t, "evt_dispute", "charge.dispute.created", dispute), testWebhookSecret, time.Now())
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Equal(t, "reversed", webhookOutcome(t, raw))
	require.Equal(t, int64(-8_000_000), e.balance().PurchasedMicros)
	// The full refund afterwards finds nothing left to take.
	status, raw = e.deliver(stripeEvent(t, "evt_refund_2", "charge.refunded", charge(1000)), testWebhookSecret, time.Now())
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Equal(t, "nothing_to_reverse", webhookOutcome(t, raw))
	require.Equal(t, int64(-8_000_000), e.balance().PurchasedMicros)
	require.Equal(t, 2, e.countAudit(billing.KindCreditReversed))

	// A refund of a payment that is not ours changes nothing.
	other := stripeEvent(t, "evt_refund_other", "charge.refunded", map[string]any{"id": "ch_x", "object": "charge", "amount": 500, "amount_refunded": 500, "payment_intent": "pi_unknown"})
	_, raw = e.deliver(other, testWebhookSecret, time.Now())
	require.Equal(t, "ignored", webhookOutcome(t, raw))

	// The low-balance alert was raised once for this crossing.
	var alerts int
	require.NoError(t, e.st.Pool.QueryRow(context.Background(), "SELECT count(*) FROM credit_alerts WHERE team_id = $1", e.boot.TeamID).Scan(&alerts))
	require.Equal(t, 1, alerts)
}

func TestCheckoutIsRefusedClearly(t *testing.T) {
	t.Parallel()
	e := newBillingEnv(t, stripeConfig(t))
	owner := bearer(e.signIn(e.boot.UserID, true).Token)
	status, raw := e.asSession(http.MethodPost, "/v1/billing/checkout", owner, map[string]any{"pack": "nope"})
	require.Equal(t, http.StatusUnprocessableEntity, status, string(raw))
	require.Equal(t, CodeUnknownPack, problemCode(t, raw))
	// Only a signed-in owner or admin spends the team's money: no key, no reviewer.
	for _, key := range []string{e.boot.StandardKey, e.boot.ManagementKey} {
		status, raw = e.do(http.MethodPost, "/v1/billing/checkout", key, map[string]any{"pack": "starter"})
		require.Equal(t, http.StatusForbidden, status, string(raw))
	}
	reviewer := bearer(e.signIn(e.person(RoleReviewer), true).Token)
	status, raw = e.asSession(http.MethodPost, "/v1/billing/checkout", reviewer, map[string]any{"pack": "starter"})
	requireStatusCode(t, http.StatusForbidden, CodeInsufficientRole, status, raw)
	admin := bearer(e.signIn(e.person(RoleAdmin), true).Token)
	status, raw = e.asSession(http.MethodPost, "/v1/billing/checkout", admin, map[string]any{"pack": "starter"})
	require.Equal(t, http.StatusCreated, status, string(raw))
	for _, body := range []string{`{}`, `{"pack":""}`, `[]`, `{"pack":"` + strings.Repeat("a", 65) + `"}`, `nul`} {
		status, raw = e.asSession(http.MethodPost, "/v1/billing/checkout", owner, []byte(body))
		require.True(t, status == http.StatusBadRequest || status == http.StatusUnprocessableEntity, "%s: %d %s", body, status, raw)
	}

	prepaid := newTestEnv(t)
	status, raw = prepaid.asSession(http.MethodPost, "/v1/billing/checkout", bearer(prepaid.signIn(prepaid.boot.UserID, true).Token), map[string]any{"pack": "starter"})
	require.Equal(t, http.StatusConflict, status, string(raw))
	require.Equal(t, CodeBillingNotEnabled, problemCode(t, raw))
	status, raw = prepaid.deliver([]byte(`{}`), testWebhookSecret, time.Now())
	require.Equal(t, http.StatusConflict, status, string(raw))
}

// Billing mode off: a team without any credit keeps working, and its calls
// are still metered as usage.
func TestBillingOffNeverRefuses(t *testing.T) {
	t.Parallel()
	e := newBillingEnv(t, billing.Config{Mode: billing.ModeOff})
	e.seedTool("send_email", "", ptr("allowed"))
	_, err := e.st.Pool.Exec(context.Background(), "UPDATE team_balances SET free_micros = 0, purchased_micros = 0 WHERE team_id = $1", e.boot.TeamID)
	require.NoError(t, err)
	for range 7 {
		status, raw := e.do(http.MethodPost, "/v1/permissions/check", e.boot.StandardKey, map[string]any{"tool": "send_email"})
		require.Equal(t, http.StatusOK, status, string(raw))
	}
	b := e.balance()
	require.Zero(t, b.FreeMicros+b.PurchasedMicros, "nothing is debited")
	require.Equal(t, int64(7), b.BilledCalls)

	status, raw := e.asSession(http.MethodGet, "/v1/billing/usage?days=90", bearer(e.signIn(e.boot.UserID, true).Token), nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	var usage struct {
		Mode  string     `json:"mode"`
		Days  []UsageDay `json:"days"`
		Calls int64      `json:"calls"`
	}
	require.NoError(t, json.Unmarshal(raw, &usage))
	require.Equal(t, "off", usage.Mode)
	require.Equal(t, int64(7), usage.Calls)
	require.Len(t, usage.Days, 1)
	require.Equal(t, e.boot.OrgID, usage.Days[0].OrgID)
	require.Equal(t, time.Now().UTC().Format(time.DateOnly), usage.Days[0].Day)
	require.Equal(t, int64(7*5000), usage.Days[0].SpendMicros)
}

func TestUsagePerDayAndOrg(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.seedTool("send_email", "", ptr("allowed"))
	for range 3 {
		status, raw := e.do(http.MethodPost, "/v1/permissions/check", e.boot.StandardKey, map[string]any{"tool": "send_email"})
		require.Equal(t, http.StatusOK, status, string(raw))
	}
	// Older billable rows: one 10 days ago (in both windows), one 60 days ago (90 only).
	ctx := context.Background()
	for i, age := range []int{10, 60} {
		_, err := e.st.Pool.Exec(ctx, `INSERT INTO audit_events (id, org_id, team_id, occurred_at, actor_kind, actor_id, kind, billable, cost_micros)
			VALUES ($1, $2, $3, $4, 'api_key', 'key', 'permission.check', true, 5000)`,
			fmt.Sprintf("evt_old_%d", i), e.boot.OrgID, e.boot.TeamID, time.Now().AddDate(0, 0, -age))
		require.NoError(t, err)
	}
	owner := bearer(e.signIn(e.boot.UserID, true).Token)
	get := func(q string) (int, []byte) { return e.asSession(http.MethodGet, "/v1/billing/usage"+q, owner, nil) }
	var u30, u90 struct {
		Days  []UsageDay `json:"days"`
		Calls int64      `json:"calls"`
	}
	status, raw := get("")
	require.Equal(t, http.StatusOK, status, string(raw))
	require.NoError(t, json.Unmarshal(raw, &u30))
	require.Equal(t, int64(4), u30.Calls)
	require.Len(t, u30.Days, 2)
	require.Equal(t, int64(3), u30.Days[1].Calls, "today last")
	status, raw = get("?days=90")
	require.Equal(t, http.StatusOK, status, string(raw))
	require.NoError(t, json.Unmarshal(raw, &u90))
	require.Equal(t, int64(5), u90.Calls)
	for _, q := range []string{"?days=91", "?days=0", "?days=abc", "?days=-1", "?days=99999999999999999999"} {
		status, raw = get(q)
		require.Equal(t, http.StatusUnprocessableEntity, status, "%s: %s", q, raw)
	}
	for _, key := range []string{e.boot.StandardKey, e.boot.ManagementKey} {
		status, _ = e.do(http.MethodGet, "/v1/billing/usage", key, nil)
		require.Equal(t, http.StatusForbidden, status)
	}
}

// Metering stays exact across two API servers with purchases in the mix:
// billed calls = billable audit rows = the drop in balance, free credit first.
func TestMeteringIsExactWithPurchasesAcrossReplicas(t *testing.T) {
	t.Parallel()
	cfg := stripeConfig(t)
	a := newBillingEnv(t, cfg)
	b := startEnvWith(t, testConfig(), Deps{Store: a.st, Billing: cfg}, a.boot)
	a.seedTool("send_email", "", ptr("allowed"))
	_, err := a.st.Pool.Exec(context.Background(), "UPDATE team_balances SET free_micros = 20*5000 WHERE team_id = $1", a.boot.TeamID)
	require.NoError(t, err)
	c := a.startCheckout("starter")
	status, raw := b.deliver(stripeEvent(t, "evt_meter", "checkout.session.completed", paidSession(c, a.boot.TeamID, "pi_meter")), testWebhookSecret, time.Now())
	require.Equal(t, http.StatusOK, status, string(raw))
	start := a.balance()
	require.Equal(t, int64(10_000_000), start.PurchasedMicros)

	var mu sync.Mutex
	ok := 0
	var wg sync.WaitGroup
	for w := range 8 {
		env := a
		if w%2 == 1 {
			env = b
		}
		wg.Go(func() {
			for range 15 {
				status, _ := env.do(http.MethodPost, "/v1/permissions/check", env.boot.StandardKey, map[string]any{"tool": "send_email"})
				if status == http.StatusOK {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, 120, ok)
	end := a.balance()
	totals, err := a.st.BillingTotals(context.Background(), a.boot.TeamID)
	require.NoError(t, err)
	require.Equal(t, int64(ok), totals.Calls)
	require.Equal(t, int64(ok), end.BilledCalls-start.BilledCalls)
	require.Equal(t, int64(ok)*5000, (start.FreeMicros+start.PurchasedMicros)-(end.FreeMicros+end.PurchasedMicros))
	require.Zero(t, end.FreeMicros, "free credit is spent first")
	require.Equal(t, int64(10_000_000-100*5000), end.PurchasedMicros)
}
