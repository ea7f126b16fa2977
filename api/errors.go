package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/api/billing"
	"oakallow/api/passkeys"
	"oakallow/api/runtime"
	"oakallow/store"
)

// Problem is an RFC 9457 problem document with oakallow's stable machine
// readable Code. It is the only error body the API sends.
type Problem struct {
	Type      string              `json:"type,omitempty" doc:"A URI reference that identifies the problem type."`
	Title     string              `json:"title" doc:"Short summary of the problem type."`
	Status    int                 `json:"status" doc:"HTTP status code."`
	Detail    string              `json:"detail,omitempty" doc:"Explanation specific to this occurrence."`
	Code      string              `json:"code" doc:"Stable machine-readable error code, e.g. invalid_key, wrong_key_tier, validation_failed."`
	RequestID string              `json:"request_id,omitempty" doc:"The request id, also sent as the X-Request-Id header."`
	Errors    []*huma.ErrorDetail `json:"errors,omitempty" doc:"Field-level details, e.g. schema validation errors."`
	// Approval is set on a refused decision (409): the approval's standing, with the
	// decision that won.
	Approval *ApprovalStanding `json:"approval,omitempty" doc:"On a refused decision (409): the approval's status, level and the decisions that won."`

	headers http.Header
}

// Error implements error.
func (p *Problem) Error() string { return p.Code + ": " + p.Detail }

// GetStatus implements huma.StatusError.
func (p *Problem) GetStatus() int { return p.Status }

// GetHeaders implements huma.HeadersError (e.g. WWW-Authenticate).
func (p *Problem) GetHeaders() http.Header { return p.headers }

// ContentType makes huma send application/problem+json.
func (p *Problem) ContentType(ct string) string {
	if ct == "application/json" {
		return "application/problem+json"
	}
	return ct
}

// Stable problem codes.
const (
	CodeBadRequest          = "bad_request"
	CodeInvalidKey          = "invalid_key"
	CodeWrongKeyTier        = "wrong_key_tier"
	CodeForbidden           = "forbidden"
	CodeNotFound            = "not_found"
	CodeConflict            = "conflict"
	CodeBodyTooLarge        = "body_too_large"
	CodeValidationFailed    = "validation_failed"
	CodeInsufficientCredits = "insufficient_credits"
	CodeToolNotRegistered   = "tool_not_registered"
	CodeTokenReplayed       = "token_replayed"
	CodeRateLimited         = "rate_limited"
	CodeUnavailable         = "unavailable"
	CodeInternal            = "internal_error"
	// CodeBillingNotEnabled: a purchase or Stripe event while the billing mode is not stripe.
	CodeBillingNotEnabled = "billing_not_enabled"
	// CodeUnknownPack: no credit pack with that id.
	CodeUnknownPack = "unknown_pack"
	// CodeInvalidSignature: a Stripe webhook whose Stripe-Signature does not verify or is stale.
	CodeInvalidSignature = "invalid_signature"
	// CodeInvalidEvent: a signed Stripe webhook body that is not a readable event.
	CodeInvalidEvent = "invalid_event"
	// CodePaymentProviderUnavailable: Stripe did not create the Checkout session.
	CodePaymentProviderUnavailable = "payment_provider_unavailable"
)

// problem builds a Problem for a known condition.
func problem(status int, code, detail string, errs ...*huma.ErrorDetail) *Problem {
	return &Problem{Title: http.StatusText(status), Status: status, Code: code, Detail: detail, Errors: errs}
}

// codeForStatus is the default code for problems huma raises itself
// (malformed JSON, validation, body size).
func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeBadRequest
	case http.StatusUnauthorized:
		return CodeInvalidKey
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusConflict:
		return CodeConflict
	case http.StatusRequestEntityTooLarge:
		return CodeBodyTooLarge
	case http.StatusUnprocessableEntity:
		return CodeValidationFailed
	case http.StatusTooManyRequests:
		return CodeRateLimited
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	}
	if status >= 500 {
		return CodeInternal
	}
	return CodeBadRequest
}

func init() {
	// huma builds its own errors (validation, malformed bodies, size limits)
	// through this hook; make them Problems with a stable code.
	huma.NewErrorWithContext = func(ctx huma.Context, status int, msg string, errs ...error) huma.StatusError {
		if status >= 500 && unreadableBody(errs) {
			// huma answers any body read failure other than a timeout with 500.
			status, msg, errs = http.StatusBadRequest, "the request body could not be read: its framing is "+
				"malformed or it ended early (check Content-Length and Transfer-Encoding: chunked)", nil
		}
		details := make([]*huma.ErrorDetail, 0, len(errs))
		for _, e := range errs {
			if _, ok := e.(bodyStatus); ok || e == nil {
				continue // it set the status (see checkbody.go)
			}
			if d, ok := e.(huma.ErrorDetailer); ok {
				details = append(details, d.ErrorDetail())
			} else if status < 500 {
				details = append(details, &huma.ErrorDetail{Message: e.Error()})
			}
		}
		for _, d := range details {
			// Huma echoes the offending value; for an unparsable body that is
			// the whole body, which may carry secrets. Never send it back.
			if d.Location == "body" && status == http.StatusBadRequest {
				d.Value = nil
			}
		}
		if status >= 500 {
			// Never leak internals: the cause is in errs, which we drop here.
			msg = "internal error"
		}
		p := problem(status, codeForStatus(status), msg, details...)
		if ctx != nil {
			p.RequestID = requestIDFrom(ctx.Context())
		}
		return p
	}
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		return huma.NewErrorWithContext(nil, status, msg, errs...)
	}
}

// unreadableBody reports whether errs hold a failure to read the request
// body, which is the client's (see bodyReadError).
func unreadableBody(errs []error) bool {
	for _, err := range errs {
		var be *bodyReadError
		if errors.As(err, &be) {
			return true
		}
	}
	return false
}

// toProblem is the one function that maps errors to HTTP problems. Known
// domain and store errors get their status and code; anything else is a 500
// with a generic message, and its cause is logged with the request id.
func toProblem(ctx context.Context, logger *slog.Logger, err error) error {
	var p *Problem
	if errors.As(err, &p) {
		if p.RequestID == "" {
			p.RequestID = requestIDFrom(ctx)
		}
		return p
	}
	if re, ok := runtime.AsError(err); ok {
		out := runtimeProblem(re)
		out.RequestID = requestIDFrom(ctx)
		return out
	}
	var se huma.StatusError
	if errors.As(err, &se) {
		return err
	}
	var pe *passkeys.Error
	if errors.As(err, &pe) {
		return passkeyProblem(ctx, pe)
	}
	var out *Problem
	switch {
	case errors.Is(err, store.ErrNotFound):
		out = problem(http.StatusNotFound, CodeNotFound, "not found")
	case errors.Is(err, store.ErrConflict):
		out = problem(http.StatusConflict, CodeConflict, "already exists")
	case errors.Is(err, store.ErrReferenced):
		out = problem(http.StatusConflict, CodeConflict, "still referenced by other objects, or refers to a missing one")
	case errors.Is(err, store.ErrInvalid):
		out = problem(http.StatusUnprocessableEntity, CodeValidationFailed, "a value is out of range")
	case errors.Is(err, store.ErrInsufficientCredits):
		out = problem(http.StatusPaymentRequired, CodeInsufficientCredits, "the account has no credit left; billable calls are refused until credit is added")
	case errors.Is(err, billing.ErrNotStripe):
		out = problem(http.StatusConflict, CodeBillingNotEnabled, "purchases are not enabled on this installation: its billing mode is not stripe")
	case errors.Is(err, billing.ErrUnknownPack):
		out = problem(http.StatusUnprocessableEntity, CodeUnknownPack, "no credit pack with that id; GET /v1/credits lists the packs on sale")
	case errors.Is(err, billing.ErrBadSignature):
		out = problem(http.StatusBadRequest, CodeInvalidSignature, "the Stripe-Signature header is missing, does not verify, or is older than 300 s")
	case errors.Is(err, billing.ErrBadEvent):
		out = problem(http.StatusBadRequest, CodeInvalidEvent, "the body is not a Stripe event this installation can read (is the endpoint's API version the one stripe-go expects?)")
	case errors.Is(err, billing.ErrStripeUnavailable):
		logger.WarnContext(ctx, "Stripe unavailable", "request_id", requestIDFrom(ctx), "err", err)
		out = problem(http.StatusServiceUnavailable, CodePaymentProviderUnavailable, "the payment provider did not answer; retry shortly")
		out.headers = http.Header{"Retry-After": []string{"5"}}
	case errors.Is(err, store.ErrUnavailable):
		// Fail closed: nothing was decided or recorded, and the client can retry.
		logger.WarnContext(ctx, "database unavailable", "request_id", requestIDFrom(ctx), "err", err)
		out = problem(http.StatusServiceUnavailable, CodeUnavailable, "the database is unavailable; retry shortly (with the same Idempotency-Key for writes)")
		out.headers = http.Header{"Retry-After": []string{"1"}}
	case errors.Is(err, context.Canceled):
		out = problem(499, CodeBadRequest, "request cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		out = problem(http.StatusServiceUnavailable, CodeUnavailable, "timed out; retry with the same Idempotency-Key")
	default:
		logger.ErrorContext(ctx, "request failed", "request_id", requestIDFrom(ctx), "err", err)
		out = problem(http.StatusInternalServerError, CodeInternal, "internal error")
	}
	out.RequestID = requestIDFrom(ctx)
	return out
}

// runtimeProblem is a runtime refusal as a problem: its kind gives the
// status, its code and detail are sent as they are, and each field it names
// is located in the request body.
func runtimeProblem(e *runtime.Error) *Problem {
	status := http.StatusInternalServerError
	switch e.Kind {
	case runtime.KindInvalid:
		status = http.StatusUnprocessableEntity
	case runtime.KindBadRequest:
		status = http.StatusBadRequest
	case runtime.KindForbidden:
		status = http.StatusForbidden
	case runtime.KindNotFound:
		status = http.StatusNotFound
	case runtime.KindConflict:
		status = http.StatusConflict
	case runtime.KindUnavailable:
		status = http.StatusServiceUnavailable
	}
	details := make([]*huma.ErrorDetail, 0, len(e.Fields))
	for _, f := range e.Fields {
		loc := "body"
		if f.Location != "" {
			loc += "." + f.Location
		}
		details = append(details, &huma.ErrorDetail{Location: loc, Message: f.Message})
	}
	return problem(status, e.Code, e.Detail, details...)
}
