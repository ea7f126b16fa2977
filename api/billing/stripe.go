package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-go/v85"
	"github.com/stripe/stripe-go/v85/webhook"

	"oakallow/store"
)

// WebhookTolerance is how old a Stripe-Signature timestamp may be (Stripe's
// recommended 300 s): an older delivery is refused as a possible replay.
const WebhookTolerance = 300 * time.Second

// checkoutMetadataKey carries our checkout id on the Checkout session (and its
// PaymentIntent): the webhook credits what was recorded under it.
const checkoutMetadataKey = "oakallow_checkout"

// Checkout is a started purchase.
type Checkout struct {
	ID        string `json:"id" doc:"The purchase's id (chk_…)."`
	SessionID string `json:"session_id" doc:"The Stripe Checkout session id."`
	URL       string `json:"url" doc:"Where to send the buyer: Stripe's hosted Checkout page."`
	Pack      Pack   `json:"pack" doc:"The pack being bought."`
}

// StartCheckout records a purchase of the pack for the team and creates its
// Stripe Checkout session (the team as client_reference_id, the purchase id
// as Stripe's Idempotency-Key and in the metadata), audited.
func (s *Service) StartCheckout(ctx context.Context, teamID string, actor Actor, packID string) (Checkout, error) {
	if s.cfg.Mode != ModeStripe {
		return Checkout{}, ErrNotStripe
	}
	pack, ok := s.cfg.Pack(packID)
	if !ok {
		return Checkout{}, ErrUnknownPack
	}
	now := s.now().UTC()
	c := Checkout{ID: store.NewID("chk"), Pack: pack}
	if err := s.st.InsertCheckout(ctx, store.InsertCheckoutParams{ID: c.ID, TeamID: teamID, Pack: pack.ID,
		CreditMicros: pack.CreditMicros, AmountCents: pack.PriceCents, Currency: "usd",
		CreatedBy: actor.Kind + ":" + actor.ID, CreatedAt: now}); err != nil {
		return Checkout{}, fmt.Errorf("record checkout: %w", err)
	}
	meta := map[string]string{checkoutMetadataKey: c.ID, "oakallow_team": teamID, "oakallow_pack": pack.ID}
	params := &stripe.CheckoutSessionCreateParams{
		Mode:              stripe.String(string(stripe.CheckoutSessionModePayment)),
		ClientReferenceID: stripe.String(teamID),
		SuccessURL:        stripe.String(s.cfg.SuccessURL),
		CancelURL:         stripe.String(s.cfg.CancelURL),
		LineItems: []*stripe.CheckoutSessionCreateLineItemParams{{
			Quantity: stripe.Int64(1),
			PriceData: &stripe.CheckoutSessionCreateLineItemPriceDataParams{
				Currency:   stripe.String("usd"),
				UnitAmount: stripe.Int64(pack.PriceCents),
				ProductData: &stripe.CheckoutSessionCreateLineItemPriceDataProductDataParams{
					Name: stripe.String(fmt.Sprintf("oakallow credit: %s (%s)", formatUSD(pack.CreditMicros), pack.ID)),
				},
			},
		}},
		Metadata:          meta,
		PaymentIntentData: &stripe.CheckoutSessionCreatePaymentIntentDataParams{Metadata: meta},
	}
	params.SetIdempotencyKey("oakallow-" + c.ID)
	sess, err := s.stripe.V1CheckoutSessions.Create(ctx, params)
	if err != nil {
		s.log.ErrorContext(ctx, "create Stripe Checkout session", "checkout", c.ID, "err", err)
		return Checkout{}, fmt.Errorf("%w: %v", ErrStripeUnavailable, stripeErrorCode(err))
	}
	c.SessionID, c.URL = sess.ID, sess.URL
	err = s.st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		if err := q.SetCheckoutSession(ctx, store.SetCheckoutSessionParams{ID: c.ID, StripeSessionID: sess.ID, UpdatedAt: now}); err != nil {
			return err
		}
		return audit(ctx, q, teamID, actor, now, KindCheckoutStarted, c.ID, "started",
			map[string]any{"pack": pack.ID, "price_cents": pack.PriceCents, "credit_micros": pack.CreditMicros, "session_id": sess.ID})
	})
	if err != nil {
		return Checkout{}, fmt.Errorf("record checkout session: %w", err)
	}
	return c, nil
}

// stripeErrorCode is the safe part of a Stripe error (its type and code,
// never the request).
func stripeErrorCode(err error) string {
	var se *stripe.Error
	if errors.As(err, &se) {
		return fmt.Sprintf("%s %s (HTTP %d)", se.Type, se.Code, se.HTTPStatusCode)
	}
	return "no answer"
}

func formatUSD(micros int64) string {
	return "$" + new(big.Rat).SetFrac64(micros, 1_000_000).FloatString(2)
}

// WebhookResult says what a Stripe event did.
type WebhookResult struct {
	EventID string `json:"event_id"`
	Type    string `json:"type"`
	// Outcome: credited, reversed, duplicate (handled before), ignored (not
	// ours, or a type we do not act on), awaiting_payment, nothing_to_reverse.
	Outcome string `json:"outcome"`
}

// handled event types.
const (
	evCheckoutCompleted    = "checkout.session.completed"
	evCheckoutAsyncSuccess = "checkout.session.async_payment_succeeded"
	evChargeRefunded       = "charge.refunded"
	evDisputeCreated       = "charge.dispute.created"
)

// HandleWebhook verifies a Stripe webhook delivery (the raw body and its
// Stripe-Signature header, with stripe-go's webhook package and a 300 s
// tolerance) and acts on it exactly once: the event id is recorded in the
// transaction that grants or takes back credit, so a redelivery — after
// the first committed, or concurrently with it — changes nothing.
func (s *Service) HandleWebhook(ctx context.Context, payload []byte, signature string) (WebhookResult, error) {
	if s.cfg.Mode != ModeStripe {
		return WebhookResult{}, ErrNotStripe
	}
	ev, err := webhook.ConstructEventWithOptions(payload, signature, s.cfg.StripeWebhookSecret,
		webhook.ConstructEventOptions{Tolerance: WebhookTolerance})
	if err != nil {
		switch {
		case errors.Is(err, webhook.ErrNotSigned), errors.Is(err, webhook.ErrInvalidHeader),
			errors.Is(err, webhook.ErrNoValidSignature), errors.Is(err, webhook.ErrTooOld):
			return WebhookResult{}, ErrBadSignature
		default:
			s.log.WarnContext(ctx, "unreadable Stripe event", "err", err)
			return WebhookResult{}, fmt.Errorf("%w: %v", ErrBadEvent, err)
		}
	}
	res := WebhookResult{EventID: ev.ID, Type: string(ev.Type)}
	if ev.ID == "" || len(ev.ID) > 255 || len(ev.Type) > 255 || ev.Data == nil {
		return res, fmt.Errorf("%w: event without id, type or data", ErrBadEvent)
	}
	var act func(ctx context.Context, q *store.Queries, ev stripe.Event, now time.Time) (string, string, error)
	switch ev.Type {
	case evCheckoutCompleted, evCheckoutAsyncSuccess:
		act = s.checkoutPaid
	case evChargeRefunded:
		act = s.chargeRefunded
	case evDisputeCreated:
		act = s.disputeCreated
	default:
		res.Outcome = "ignored"
		return res, nil
	}
	now := s.now().UTC()
	err = s.st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		// Concurrent deliveries of one event wait here for the first
		// transaction; once it committed they insert nothing.
		n, err := q.InsertStripeEvent(ctx, store.InsertStripeEventParams{ID: ev.ID, Type: string(ev.Type), Outcome: "processing", ReceivedAt: now})
		if err != nil {
			return fmt.Errorf("record Stripe event: %w", err)
		}
		if n == 0 {
			res.Outcome = "duplicate"
			return nil
		}
		outcome, teamID, err := act(ctx, q, ev, now)
		if err != nil {
			return err
		}
		res.Outcome = outcome
		var team *string
		if teamID != "" {
			team = &teamID
		}
		return q.SetStripeEventOutcome(ctx, store.SetStripeEventOutcomeParams{ID: ev.ID, Outcome: outcome, TeamID: team})
	})
	if err != nil {
		return WebhookResult{}, err
	}
	return res, nil
}

// checkoutPaid credits a paid Checkout session's recorded purchase once.
func (s *Service) checkoutPaid(ctx context.Context, q *store.Queries, ev stripe.Event, now time.Time) (string, string, error) {
	var sess stripe.CheckoutSession
	if err := json.Unmarshal(ev.Data.Raw, &sess); err != nil {
		return "", "", fmt.Errorf("%w: checkout session: %v", ErrBadEvent, err)
	}
	chkID := sess.Metadata[checkoutMetadataKey]
	if chkID == "" || len(chkID) > 64 {
		return "ignored", "", nil // a Checkout session this installation did not start
	}
	chk, err := q.GetCheckoutForUpdate(ctx, chkID)
	if errors.Is(err, store.ErrNotFound) {
		s.log.WarnContext(ctx, "Stripe event names an unknown checkout", "event", ev.ID, "checkout", chkID)
		return "ignored", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("load checkout: %w", err)
	}
	switch {
	case sess.ClientReferenceID != chk.TeamID:
		s.log.ErrorContext(ctx, "Stripe event's client reference is not the checkout's team", "event", ev.ID, "checkout", chk.ID)
		return "ignored", chk.TeamID, nil
	case sess.PaymentStatus != stripe.CheckoutSessionPaymentStatusPaid:
		// An asynchronous payment (bank debit) completes later with
		// checkout.session.async_payment_succeeded.
		return "awaiting_payment", chk.TeamID, nil
	case sess.AmountTotal != chk.AmountCents || string(sess.Currency) != chk.Currency:
		s.log.ErrorContext(ctx, "Stripe session paid another amount than the pack's price; not credited",
			"event", ev.ID, "checkout", chk.ID, "paid_cents", sess.AmountTotal, "price_cents", chk.AmountCents)
		return "amount_mismatch", chk.TeamID, nil
	case chk.GrantID != nil:
		return "duplicate", chk.TeamID, nil // the other of completed / async_payment_succeeded
	}
	grantID := store.NewID("grant")
	n, err := q.CreateCreditGrant(ctx, store.CreateCreditGrantParams{ID: grantID, TeamID: chk.TeamID, Kind: "purchased",
		AmountMicros: chk.CreditMicros, Source: "stripe-checkout:" + chk.ID, GrantedBy: "stripe", Note: "pack " + chk.Pack, CreatedAt: now})
	if err != nil {
		return "", "", fmt.Errorf("grant purchased credit: %w", err)
	}
	if n == 0 {
		return "duplicate", chk.TeamID, nil
	}
	pi := ""
	if sess.PaymentIntent != nil {
		pi = sess.PaymentIntent.ID
	}
	if err := q.CompleteCheckout(ctx, store.CompleteCheckoutParams{ID: chk.ID, GrantID: &grantID, PaymentIntent: pi,
		StripeSessionID: sess.ID, UpdatedAt: now}); err != nil {
		return "", "", fmt.Errorf("complete checkout: %w", err)
	}
	if err := s.credited(ctx, q, chk.TeamID, now); err != nil {
		return "", "", err
	}
	err = audit(ctx, q, chk.TeamID, Actor{Kind: "stripe", ID: ev.ID}, now, KindCreditPurchased, grantID, "credited",
		map[string]any{"checkout": chk.ID, "pack": chk.Pack, "amount_micros": chk.CreditMicros, "paid_cents": sess.AmountTotal,
			"session_id": sess.ID, "payment_intent": pi})
	return "credited", chk.TeamID, err
}

// chargeRefunded takes back the refunded share of a purchase: the charge's
// amount_refunded is cumulative, so each event takes what its refunds add.
func (s *Service) chargeRefunded(ctx context.Context, q *store.Queries, ev stripe.Event, now time.Time) (string, string, error) {
	var ch stripe.Charge
	if err := json.Unmarshal(ev.Data.Raw, &ch); err != nil {
		return "", "", fmt.Errorf("%w: charge: %v", ErrBadEvent, err)
	}
	if ch.PaymentIntent == nil {
		return "ignored", "", nil
	}
	return s.takeBack(ctx, q, ev, ch.PaymentIntent.ID, "refund", now, func(chk store.BillingCheckout) (int64, int64) {
		target := share(chk, ch.AmountRefunded)
		return max(0, target-chk.RefundedMicros), target
	})
}

// disputeCreated takes back the disputed share of a purchase at once: the
// money is held by the bank from that moment.
func (s *Service) disputeCreated(ctx context.Context, q *store.Queries, ev stripe.Event, now time.Time) (string, string, error) {
	var d stripe.Dispute
	if err := json.Unmarshal(ev.Data.Raw, &d); err != nil {
		return "", "", fmt.Errorf("%w: dispute: %v", ErrBadEvent, err)
	}
	if d.PaymentIntent == nil {
		return "ignored", "", nil
	}
	return s.takeBack(ctx, q, ev, d.PaymentIntent.ID, "dispute", now, func(chk store.BillingCheckout) (int64, int64) {
		return share(chk, d.Amount), chk.RefundedMicros
	})
}

// share is the credit that cents of the purchase's price bought.
func share(chk store.BillingCheckout, cents int64) int64 {
	if cents <= 0 {
		return 0
	}
	cents = min(cents, chk.AmountCents)
	v := new(big.Int).Mul(big.NewInt(chk.CreditMicros), big.NewInt(cents))
	return v.Quo(v, big.NewInt(chk.AmountCents)).Int64()
}

// takeBack removes credit from the team of the purchase paid by the
// PaymentIntent — even below zero — never more in total than the purchase
// credited, and audits it.
func (s *Service) takeBack(ctx context.Context, q *store.Queries, ev stripe.Event, paymentIntent, reason string, now time.Time,
	amount func(store.BillingCheckout) (take, refunded int64)) (string, string, error) {
	if paymentIntent == "" || len(paymentIntent) > 255 {
		return "ignored", "", nil
	}
	chk, err := q.GetCheckoutByPaymentIntentForUpdate(ctx, paymentIntent)
	if errors.Is(err, store.ErrNotFound) {
		return "ignored", "", nil // not a purchase of ours, or never credited
	}
	if err != nil {
		return "", "", fmt.Errorf("load checkout: %w", err)
	}
	take, refunded := amount(chk)
	take = min(take, chk.CreditMicros-chk.ReversedMicros)
	if take <= 0 {
		return "nothing_to_reverse", chk.TeamID, nil
	}
	revID := store.NewID("rev")
	n, err := q.InsertCreditReversal(ctx, store.InsertCreditReversalParams{ID: revID, TeamID: chk.TeamID, CheckoutID: chk.ID,
		Reason: reason, AmountMicros: take, Source: "stripe-event:" + ev.ID, CreatedAt: now})
	if err != nil {
		return "", "", fmt.Errorf("record reversal: %w", err)
	}
	if n == 0 {
		return "duplicate", chk.TeamID, nil
	}
	if err := q.AddCheckoutReversal(ctx, store.AddCheckoutReversalParams{ID: chk.ID, ReversedMicros: take,
		RefundedMicros: refunded, UpdatedAt: now}); err != nil {
		return "", "", fmt.Errorf("record reversal on checkout: %w", err)
	}
	bal, err := q.TakeBackCredit(ctx, store.TakeBackCreditParams{TeamID: chk.TeamID, AmountMicros: take})
	if err != nil {
		return "", "", fmt.Errorf("take back credit: %w", err)
	}
	if err := s.debited(ctx, q, bal, now); err != nil {
		return "", "", err
	}
	err = audit(ctx, q, chk.TeamID, Actor{Kind: "stripe", ID: ev.ID}, now, KindCreditReversed, revID, reason,
		map[string]any{"checkout": chk.ID, "amount_micros": take, "reason": reason, "payment_intent": paymentIntent,
			"balance_micros": Spendable(bal, now)})
	return "reversed", chk.TeamID, err
}
