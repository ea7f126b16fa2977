package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
)

type receiptVerifyInput struct {
	Body struct {
		Receipt string `json:"receipt" minLength:"1" maxLength:"4096" doc:"A receipt (oak_rcpt_…) returned by a permission check."`
	} `additionalProperties:"false"`
}

type receiptVerifyOutput struct {
	Body struct {
		Valid      bool      `json:"valid" doc:"The signature is ours and the receipt belongs to your org."`
		CheckID    string    `json:"check_id"`
		Permission string    `json:"permission"`
		Level      int       `json:"level"`
		Scope      string    `json:"scope"`
		RuleID     string    `json:"rule_id,omitempty"`
		Tool       string    `json:"tool"`
		Tenant     string    `json:"tenant,omitempty"`
		Resource   string    `json:"resource,omitempty"`
		Method     string    `json:"method,omitempty"`
		ParamsHash string    `json:"parameters_hash,omitempty" doc:"SHA-256 of the RFC 8785 canonical JSON of the checked parameters."`
		DecidedAt  time.Time `json:"decided_at"`
		KeyID      string    `json:"key_id" doc:"Signing key id."`
	}
}

func registerReceipts(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "verify-receipt", Method: http.MethodPost, Path: "/v1/receipts/verify",
		Summary:     "Verify a decision receipt",
		Description: "Checks a receipt's signature and answers what oakallow decided and for which request. Receipts do not expire and can be verified any number of times; a receipt signed with a retired key no longer verifies. Free.",
		Tags:        []string{"Runtime"},
		Errors:      []int{http.StatusUnprocessableEntity},
	}, accessManageRead), func(ctx context.Context, in *receiptVerifyInput) (*receiptVerifyOutput, error) {
		p := mustPrincipal(ctx)
		r, err := s.keyring.VerifyReceipt(in.Body.Receipt)
		if err != nil || r.Org != p.OrgID {
			// One answer for forged, tampered, foreign and retired receipts.
			return nil, problem(http.StatusUnprocessableEntity, "invalid_receipt", "the receipt is not a valid oakallow receipt for this org")
		}
		out := &receiptVerifyOutput{}
		b := &out.Body
		b.Valid, b.CheckID, b.Permission, b.Level, b.Scope, b.RuleID = true, r.CheckID, r.Permission, r.Level, r.Scope, r.RuleID
		b.Tool, b.Tenant, b.Resource, b.Method, b.ParamsHash, b.DecidedAt, b.KeyID = r.Tool, r.Tenant, r.Resource, r.Method, r.ParamsHash, r.DecidedAt, r.KeyID
		return out, nil
	})
}
