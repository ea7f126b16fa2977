package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/store"
)

type creditsOutput struct {
	Body struct {
		BalanceMicros   int64      `json:"balance_micros" doc:"Spendable credit in micro-dollars (1,000,000 = $1)."`
		FreeMicros      int64      `json:"free_micros" doc:"Unexpired free credit; spent first."`
		FreeExpiresAt   *time.Time `json:"free_expires_at,omitempty" doc:"When the free credit expires."`
		PurchasedMicros int64      `json:"purchased_micros" doc:"Purchased credit; never expires."`
		CallCostMicros  int64      `json:"call_cost_micros" doc:"Price of one billable call."`
		BillableCalls   int64      `json:"billable_calls" doc:"Billable calls made so far by the account."`
	}
}

func registerCredits(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-credits", Method: http.MethodGet, Path: "/v1/credits",
		Summary: "Credit balance", Description: "The account's prepaid balance: free credit (with expiry) and purchased credit. Free.",
		Tags: []string{"Runtime"},
	}, accessManageRead), func(ctx context.Context, _ *struct{}) (*creditsOutput, error) {
		p := mustPrincipal(ctx)
		bal, err := s.deps.Store.GetTeamBalance(ctx, p.TeamID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &creditsOutput{}
		if bal.FreeExpiresAt != nil && bal.FreeExpiresAt.After(s.deps.Now()) && bal.FreeMicros > 0 {
			out.Body.FreeMicros = bal.FreeMicros
			out.Body.FreeExpiresAt = bal.FreeExpiresAt
		}
		out.Body.PurchasedMicros = bal.PurchasedMicros
		out.Body.BalanceMicros = out.Body.FreeMicros + bal.PurchasedMicros
		out.Body.CallCostMicros = s.recorder.CostMicros()
		out.Body.BillableCalls = bal.BilledCalls
		return out, nil
	})
}
