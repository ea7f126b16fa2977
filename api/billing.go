package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/api/billing"
	"oakallow/store"
)

const tagBilling = "Billing"

// StripeWebhookPath is where Stripe delivers events (public: the signature
// is the authentication).
const StripeWebhookPath = "/v1/billing/stripe/webhook"

type checkoutInput struct {
	IdempotencyHeader
	Body struct {
		Pack string `json:"pack" minLength:"1" maxLength:"64" doc:"The credit pack to buy (GET /v1/credits lists them)."`
	}
}

type checkoutOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed"`
	Body     billing.Checkout
}

type stripeWebhookInput struct {
	Signature string `header:"Stripe-Signature" maxLength:"4096" doc:"Stripe's signature of the raw body: t=<unix seconds>,v1=<hex HMAC-SHA256>."`
	RawBody   []byte `contentType:"application/json"`
}

type stripeWebhookOutput struct {
	Body billing.WebhookResult
}

type usageInput struct {
	Days int `query:"days" default:"30" minimum:"1" maximum:"90" doc:"How many days back, today (UTC) included: 1 to 90 (the Billing page shows 30 or 90)."`
}

// UsageDay is one org's billable calls on one UTC day.
type UsageDay struct {
	Day         string `json:"day" doc:"The UTC day, YYYY-MM-DD."`
	OrgID       string `json:"org_id" doc:"The org whose keys made the calls."`
	Calls       int64  `json:"calls" doc:"Billable calls."`
	SpendMicros int64  `json:"spend_micros" doc:"Their cost in micro-dollars (in billing mode off: what they would have cost)."`
}

type usageOutput struct {
	Body struct {
		Mode        billing.Mode `json:"mode" doc:"The installation's billing mode: stripe, prepaid or off."`
		Since       string       `json:"since" doc:"The first day counted (UTC)."`
		Days        []UsageDay   `json:"days" doc:"Per day and org, oldest first; days without calls are left out."`
		Calls       int64        `json:"calls" doc:"Billable calls in the period."`
		SpendMicros int64        `json:"spend_micros" doc:"Their cost in micro-dollars."`
	}
}

func registerBilling(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "create-checkout", Method: http.MethodPost, Path: "/v1/billing/checkout",
		Summary: "Buy credit",
		Description: "Starts a Stripe Checkout for a credit pack and returns the URL to send the buyer to. The team " +
			"is credited once Stripe reports the payment (POST " + StripeWebhookPath + "). Only in billing mode stripe. " +
			"A signed-in owner or admin of the team buys; API keys cannot spend the team's money. Free.",
		Tags: []string{tagBilling}, DefaultStatus: http.StatusCreated,
		Errors: append([]int{http.StatusConflict, http.StatusServiceUnavailable}, manageWriteErrors...),
	}, accessTeamAdmin), func(ctx context.Context, in *checkoutInput) (*checkoutOutput, error) {
		status, body, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "create-checkout", in.Body,
			func(ctx context.Context) (int, billing.Checkout, error) {
				p := mustPrincipal(ctx)
				c, err := s.billing.StartCheckout(ctx, p.TeamID, billing.Actor{Kind: p.Kind, ID: p.ActorID()}, in.Body.Pack)
				return http.StatusCreated, c, err
			})
		if err != nil {
			return nil, err
		}
		return &checkoutOutput{Status: status, Replayed: replayedHeader(replayed), Body: body}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "stripe-webhook", Method: http.MethodPost, Path: StripeWebhookPath,
		Summary: "Stripe events",
		Description: "Stripe delivers checkout.session.completed, checkout.session.async_payment_succeeded, charge.refunded " +
			"and charge.dispute.created here. The Stripe-Signature header is verified over the raw body (300 s tolerance); " +
			"each event acts once, however often it is delivered. Other event types are acknowledged and ignored.",
		Tags: []string{tagBilling}, Errors: []int{http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge},
		MaxBodyBytes: s.billing.Config().WebhookMaxBytes,
		// The raw body is what Stripe signed; it is verified, then parsed, by stripe-go.
		SkipValidateBody: true,
	}, accessPublic), func(ctx context.Context, in *stripeWebhookInput) (*stripeWebhookOutput, error) {
		res, err := s.billing.HandleWebhook(ctx, in.RawBody, in.Signature)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &stripeWebhookOutput{Body: res}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-billing-usage", Method: http.MethodGet, Path: "/v1/billing/usage",
		Summary: "Usage", Description: "Billable calls and spend of the team per UTC day and org, for the last 1 to 90 days (default 30), " +
			"for the team's owners and admins. Free.",
		Tags: []string{tagBilling}, Errors: manageReadErrors,
	}, accessTeamAdmin), func(ctx context.Context, in *usageInput) (*usageOutput, error) {
		p := mustPrincipal(ctx)
		today := s.now().UTC().Truncate(24 * time.Hour)
		since := today.AddDate(0, 0, 1-in.Days)
		rows, err := s.deps.Store.UsageByDay(ctx, store.UsageByDayParams{TeamID: p.TeamID, Since: since})
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &usageOutput{}
		out.Body.Mode, out.Body.Since, out.Body.Days = s.billing.Config().Mode, since.Format(time.DateOnly), make([]UsageDay, 0, len(rows))
		for _, r := range rows {
			out.Body.Days = append(out.Body.Days, UsageDay{Day: r.Day.Time.Format(time.DateOnly), OrgID: r.OrgID, Calls: r.Calls, SpendMicros: r.CostMicros})
			out.Body.Calls += r.Calls
			out.Body.SpendMicros += r.CostMicros
		}
		return out, nil
	})
}
