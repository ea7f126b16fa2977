package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/api/billing"
	"oakallow/store"
)

// maxListedGrants bounds the grants and reversals GET /v1/credits lists.
const maxListedGrants = 100

// CreditGrant is credit added to the team.
type CreditGrant struct {
	ID           string     `json:"id" doc:"Grant id."`
	Kind         string     `json:"kind" doc:"free (sign-up credit, expires), purchased (Stripe) or prepaid (granted by the operator); only free credit expires."`
	AmountMicros int64      `json:"amount_micros" doc:"Credit added, in micro-dollars."`
	ExpiresAt    *time.Time `json:"expires_at,omitempty" doc:"When free credit expires; absent for credit that never does."`
	Expired      bool       `json:"expired" doc:"Whether the expiry has passed."`
	CreatedAt    time.Time  `json:"created_at" doc:"When it was granted."`
}

// CreditReversal is credit taken back by a refund or dispute.
type CreditReversal struct {
	ID           string    `json:"id" doc:"Reversal id."`
	Reason       string    `json:"reason" doc:"refund or dispute."`
	AmountMicros int64     `json:"amount_micros" doc:"Credit taken back, in micro-dollars."`
	CheckoutID   string    `json:"checkout_id" doc:"The purchase it reverses."`
	CreatedAt    time.Time `json:"created_at" doc:"When it was taken back."`
}

type creditsOutput struct {
	Body struct {
		Mode            billing.Mode     `json:"mode" doc:"Billing mode: stripe (buy credit), prepaid (the operator grants credit) or off (metered, never refused)."`
		BalanceMicros   int64            `json:"balance_micros" doc:"Spendable credit in micro-dollars (1,000,000 = $1); below zero after a refund of spent credit."`
		FreeMicros      int64            `json:"free_micros" doc:"Unexpired free credit; spent first."`
		FreeExpiresAt   *time.Time       `json:"free_expires_at,omitempty" doc:"When the free credit expires."`
		PurchasedMicros int64            `json:"purchased_micros" doc:"Purchased and operator-granted credit; never expires."`
		CallCostMicros  int64            `json:"call_cost_micros" doc:"Price of one billable call."`
		BillableCalls   int64            `json:"billable_calls" doc:"Billable calls made so far by the account."`
		Grants          []CreditGrant    `json:"grants" doc:"Credit added, newest first (at most 100)."`
		Reversals       []CreditReversal `json:"reversals" doc:"Credit taken back by refunds and disputes, newest first (at most 100)."`
		Packs           []billing.Pack   `json:"packs" doc:"Credit packs on sale (billing mode stripe)."`
	}
}

func registerCredits(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-credits", Method: http.MethodGet, Path: "/v1/credits",
		Summary: "Credit balance", Description: "The account's prepaid balance: free credit (with expiry) and purchased credit, the grants that added it and the refunds that took it back. Free.",
		Tags: []string{"Runtime"},
	}, accessManageRead), func(ctx context.Context, _ *struct{}) (*creditsOutput, error) {
		p := mustPrincipal(ctx)
		st := s.deps.Store
		bal, err := st.GetTeamBalance(ctx, p.TeamID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, toProblem(ctx, s.log, err)
		}
		grants, err := st.ListCreditGrants(ctx, store.ListCreditGrantsParams{TeamID: p.TeamID, RowLimit: maxListedGrants})
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		reversals, err := st.ListCreditReversals(ctx, store.ListCreditReversalsParams{TeamID: p.TeamID, RowLimit: maxListedGrants})
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		now := s.deps.Now()
		cfg := s.billing.Config()
		out := &creditsOutput{}
		out.Body.Mode = cfg.Mode
		if out.Body.FreeMicros = billing.FreeNow(bal, now); out.Body.FreeMicros > 0 {
			out.Body.FreeExpiresAt = bal.FreeExpiresAt
		}
		out.Body.PurchasedMicros = bal.PurchasedMicros
		out.Body.BalanceMicros = billing.Spendable(bal, now)
		out.Body.CallCostMicros = s.recorder.CostMicros()
		out.Body.BillableCalls = bal.BilledCalls
		out.Body.Grants = make([]CreditGrant, len(grants))
		for i, g := range grants {
			out.Body.Grants[i] = CreditGrant{ID: g.ID, Kind: g.Kind, AmountMicros: g.AmountMicros, ExpiresAt: g.ExpiresAt,
				Expired: g.ExpiresAt != nil && !g.ExpiresAt.After(now), CreatedAt: g.CreatedAt}
		}
		out.Body.Reversals = make([]CreditReversal, len(reversals))
		for i, r := range reversals {
			out.Body.Reversals[i] = CreditReversal{ID: r.ID, Reason: r.Reason, AmountMicros: r.AmountMicros, CheckoutID: r.CheckoutID, CreatedAt: r.CreatedAt}
		}
		out.Body.Packs = make([]billing.Pack, 0, len(cfg.Packs))
		if cfg.Mode == billing.ModeStripe {
			out.Body.Packs = append(out.Body.Packs, cfg.Packs...)
		}
		return out, nil
	})
}
