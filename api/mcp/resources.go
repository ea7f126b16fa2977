package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"oakallow/store"
)

// Resource URIs (SPEC §7). Neither is billed.
const (
	uriStatus  = "oakallow://status"
	uriCredits = "oakallow://credits"
)

func (c *connector) addResources(srv *sdk.Server) {
	srv.AddResource(&sdk.Resource{URI: uriStatus, Name: "status", Title: "oakallow status",
		Description: "Liveness, versions and the scopes this credential was granted. No personal data.",
		MIMEType:    "application/json"}, c.readStatus)
	srv.AddResource(&sdk.Resource{URI: uriCredits, Name: "credits", Title: "Can this account pay for calls",
		Description: "can_fund: whether the account can pay for one more billable call now. Never balances.",
		MIMEType:    "application/json"}, c.readCredits)
}

func (c *connector) readStatus(ctx context.Context, req *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
	id, ok := identityFrom(ctx)
	if !ok || !id.can(ScopeRead) {
		return nil, errors.New("this credential may not read oakallow://status")
	}
	return jsonResource(uriStatus, map[string]any{
		"status": "ok", "server": "oakallow", "version": c.cfg.Version, "transport": "streamable-http",
		"org": id.Caller.OrgID, "scopes": id.Scopes,
	})
}

func (c *connector) readCredits(ctx context.Context, req *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
	id, ok := identityFrom(ctx)
	if !ok || !id.can(ScopeRead) {
		return nil, errors.New("this credential may not read oakallow://credits")
	}
	can, err := c.d.Runtime.CanFund(ctx, id.Caller)
	if err != nil {
		c.d.Logger.ErrorContext(ctx, "mcp read credits", "request_id", c.d.RequestID(ctx), "err", err)
		_, msg := storeErrorCode(err)
		return nil, errors.New(msg)
	}
	return jsonResource(uriCredits, map[string]bool{"can_fund": can})
}

func jsonResource(uri string, v any) (*sdk.ReadResourceResult, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", uri, err)
	}
	return &sdk.ReadResourceResult{Contents: []*sdk.ResourceContents{{URI: uri, MIMEType: "application/json", Text: string(b)}}}, nil
}

// storeErrorCode is the tool error code and message of an error that is not
// a refusal: the store's known conditions, or internal_error.
func storeErrorCode(err error) (string, string) {
	switch {
	case errors.Is(err, store.ErrInsufficientCredits):
		return "insufficient_credits", "the account has no credit left; billable calls are refused until credit is added"
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return "unavailable", "the service is briefly unavailable; nothing was decided or billed, retry shortly"
	case errors.Is(err, context.Canceled):
		return "cancelled", "the request was cancelled"
	case errors.Is(err, store.ErrNotFound):
		return "not_found", "not found"
	}
	return "internal_error", "internal error"
}
