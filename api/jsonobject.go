package api

import (
	"bytes"
	"encoding/json"

	"github.com/danielgtaylor/huma/v2"
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
