package runtime

import (
	"errors"
	"fmt"
)

// Kind classifies a refused runtime call in domain terms; each surface maps a
// Kind to its own answer (an HTTP status, an MCP tool error).
type Kind int

// The kinds of refusal.
const (
	// KindInvalid: the input is unacceptable (schema, limits, names).
	KindInvalid Kind = iota + 1
	// KindBadRequest: the input is malformed in a way no retry fixes (a cursor
	// this API never issued).
	KindBadRequest
	// KindForbidden: the org's policy or setup refuses the call.
	KindForbidden
	// KindNotFound: the org has no such object (other orgs' objects are equally invisible).
	KindNotFound
	// KindConflict: the object's state does not allow the call.
	KindConflict
	// KindUnavailable: a dependency is missing or unreachable; retry later.
	KindUnavailable
)

// Stable error codes of the runtime (SPEC §3); surfaces send them as is.
const (
	CodeBadRequest          = "bad_request"
	CodeNotFound            = "not_found"
	CodeConflict            = "conflict"
	CodeValidationFailed    = "validation_failed"
	CodeToolNotRegistered   = "tool_not_registered"
	CodeToolDisabled        = "tool_disabled"
	CodeUnavailable         = "unavailable"
	CodeTokenReplayed       = "token_replayed"
	CodeTokenInvalid        = "token_invalid"
	CodeTokenExpired        = "token_expired"
	CodeParametersMismatch  = "parameters_mismatch"
	CodeCheckNotAllowed     = "check_not_allowed"
	CodeApprovalNotApproved = "approval_not_approved"
	CodeCheckTooOld         = "check_too_old"
)

// FieldError names one offending input field. Location is the field's path
// in the call's input ("parameters.to", "tenant"); a surface may prefix it
// with where the input sits in its own protocol ("body.").
type FieldError struct {
	Location string
	Message  string
}

// Error is a refused runtime call. Detail is safe to show to the caller.
type Error struct {
	Kind   Kind
	Code   string
	Detail string
	Fields []FieldError
	// cause is the underlying domain error (activities.ErrTokenReplayed, …),
	// kept for errors.Is; never shown.
	cause error
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Detail }

// Unwrap exposes the cause to errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.cause }

func refuse(kind Kind, code, detail string, fields ...FieldError) *Error {
	return &Error{Kind: kind, Code: code, Detail: detail, Fields: fields}
}

func refusef(kind Kind, code, format string, args ...any) *Error {
	return refuse(kind, code, fmt.Sprintf(format, args...))
}

// invalidField is a KindInvalid validation_failed naming one field.
func invalidField(location, message string) *Error {
	return refuse(KindInvalid, CodeValidationFailed, message, FieldError{Location: location, Message: message})
}

// notFound is the refusal for an object the org does not have.
func notFound(what, ref string) *Error {
	return refusef(KindNotFound, CodeNotFound, "no %s %q in this org", what, ref)
}

// AsError returns err's *Error, if it is or wraps one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
