package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"oakallow/activities/tokens"
	"oakallow/resolver"
)

// IsEmptyObject reports whether a JSON document is absent or {}.
func IsEmptyObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return true
	}
	return b[0] == '{' && bytes.Equal(bytes.TrimSpace(b[1:]), []byte("}"))
}

// parameters returns a call's parameters for hashing and storage (nil for
// none: absent or {}), refusing what cannot be bound exactly
// (tokens.CheckParameters: nested deeper than tokens.MaxDepth, or a number
// RFC 8785 would change).
func parameters(raw json.RawMessage) (json.RawMessage, error) {
	return document(raw, "parameters", "parameters cannot be bound exactly", tokens.CheckParameters)
}

// callContext returns a call's context for storage (nil for none), refusing
// a context nested deeper than tokens.MaxDepth or with a number outside the
// double range (tokens.CheckNumbersInRange). Context is not hashed, so its
// numbers are kept exactly as written whatever their precision.
func callContext(raw json.RawMessage) (json.RawMessage, error) {
	return document(raw, "context", "context is not acceptable", tokens.CheckNumbersInRange)
}

// document is raw (nil for none) once rule accepts it; a refusal names the
// place, under the field's location where.
func document(raw json.RawMessage, where, title string, rule func([]byte) error) (json.RawMessage, error) {
	if IsEmptyObject(raw) {
		return nil, nil
	}
	if err := rule(raw); err != nil {
		var je *tokens.JSONError
		if !errors.As(err, &je) {
			return nil, refuse(KindInvalid, CodeValidationFailed, title)
		}
		return nil, refuse(KindInvalid, CodeValidationFailed, title+": "+where+je.Path+": "+je.Reason,
			FieldError{Location: where + je.Path, Message: je.Reason})
	}
	return raw, nil
}

// JSONHasNUL reports whether JSON text (as encoding/json writes it) has a
// string holding a NUL character, i.e. an unescaped "\u0000" escape.
func JSONHasNUL(raw []byte) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' || i+1 >= len(raw) {
			continue
		}
		if raw[i+1] == 'u' && i+6 <= len(raw) && string(raw[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character: \\u0000 (a backslash, then "u0000") is no NUL
	}
	return false
}

// rejectNUL refuses NUL characters anywhere in a call: PostgreSQL text and
// jsonb cannot store them, and no tool name, reason or parameter needs one.
// Parameters and context are checked in their JSON encoding.
func rejectNUL(fields []namedValue, rawParams, rawContext json.RawMessage) error {
	for _, f := range fields {
		if strings.IndexByte(f.v, 0) >= 0 {
			return nulError(f.name)
		}
	}
	if JSONHasNUL(rawParams) {
		return nulError("parameters")
	}
	if JSONHasNUL(rawContext) {
		return nulError("context")
	}
	return nil
}

type namedValue struct{ name, v string }

func nulError(where string) error {
	return refuse(KindInvalid, CodeValidationFailed, "strings must not contain NUL characters",
		FieldError{Location: where, Message: "contains a NUL character"})
}

// NormalizedName returns value, a tenant, resource or method name ("" when
// absent), in its normal form (resolver.NormalizeName), or a refusal naming
// the field at location.
func NormalizedName(location, value string) (string, error) {
	if value == "" {
		return "", nil
	}
	n, err := resolver.NormalizeName(value)
	if err != nil {
		return "", invalidField(location, err.Error())
	}
	return n, nil
}

// normalizeNames returns a call's tenant, resource and method in their
// normal form. Plain lower-case ASCII names, the usual case, are kept
// without allocating.
func normalizeNames(tenant, resource, method string) (string, string, string, error) {
	t, err := NormalizedName("tenant", tenant)
	if err != nil {
		return "", "", "", err
	}
	r, err := NormalizedName("resource", resource)
	if err != nil {
		return "", "", "", err
	}
	m, err := NormalizedName("method", method)
	if err != nil {
		return "", "", "", err
	}
	return t, r, m, nil
}
