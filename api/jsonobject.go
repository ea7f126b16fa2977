package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/activities/tokens"
)

// jsonObject is a free-form JSON object of a request (a tool call's
// parameters, a check's context), kept as the bytes the client sent.
// Decoding it into map[string]any would turn every number into a float64:
// 12345678901234567891 would be stored and shown as 12345678901234567000,
// and 9007199254740993 would hash like 9007199254740992. Kept as text,
// numbers keep their exact decimal value through hashing, storage (jsonb
// numbers are exact decimals) and display.
type jsonObject json.RawMessage

// UnmarshalJSON keeps the bytes; null is "absent". huma has already
// validated the body against Schema, so anything else is an object.
func (o *jsonObject) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*o = nil
		return nil
	}
	*o = append((*o)[:0], b...)
	return nil
}

// MarshalJSON writes the bytes back (encoding/json compacts them), e.g.
// for the Idempotency-Key request hash.
func (o jsonObject) MarshalJSON() ([]byte, error) {
	if len(o) == 0 {
		return []byte("null"), nil
	}
	return o, nil
}

// Schema documents the field as the object it is.
func (jsonObject) Schema(huma.Registry) *huma.Schema {
	return &huma.Schema{Type: huma.TypeObject, AdditionalProperties: true}
}

// isEmpty reports whether o is absent or {}.
func (o jsonObject) isEmpty() bool {
	b := bytes.TrimSpace(o)
	if len(b) == 0 {
		return true
	}
	return b[0] == '{' && bytes.Equal(bytes.TrimSpace(b[1:]), []byte("}"))
}

// requestParameters returns a request's parameters for hashing and
// storage (nil for none: absent or {}), refusing with 422 what cannot be
// bound exactly (tokens.CheckParameters: nested deeper than
// tokens.MaxDepth, or a number RFC 8785 would change).
func requestParameters(o jsonObject) (json.RawMessage, error) {
	return requestDocument(o, "body.parameters", "parameters cannot be bound exactly", tokens.CheckParameters)
}

// requestContext returns a request's context for storage (nil for none),
// refusing with 422 a context nested deeper than tokens.MaxDepth or with a
// number outside the double range (tokens.CheckNumbersInRange). Context is
// not hashed, so its numbers are kept exactly as written whatever their
// precision.
func requestContext(o jsonObject) (json.RawMessage, error) {
	return requestDocument(o, "body.context", "context is not acceptable", tokens.CheckNumbersInRange)
}

// requestDocument is o (nil for none) once rule accepts it; a refusal is a
// 422 that names the place, under the field's location where.
func requestDocument(o jsonObject, where, title string, rule func([]byte) error) (json.RawMessage, error) {
	if o.isEmpty() {
		return nil, nil
	}
	if err := rule(o); err != nil {
		return nil, jsonProblem(where, title, err)
	}
	return json.RawMessage(o), nil
}

// jsonProblem is the 422 for a tokens.JSONError found in the field at
// location where.
func jsonProblem(where, title string, err error) error {
	var je *tokens.JSONError
	if !errors.As(err, &je) {
		return problem(http.StatusUnprocessableEntity, CodeValidationFailed, title)
	}
	return problem(http.StatusUnprocessableEntity, CodeValidationFailed, title+": "+where+je.Path+": "+je.Reason,
		&huma.ErrorDetail{Location: where + je.Path, Message: je.Reason})
}
