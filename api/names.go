package api

import (
	"oakallow/resolver"
)

// Tenant, resource and method names are normalised on write and on check
// (SPEC §2, resolver.NormalizeName): trimmed, NFC, case-folded, so a rule
// on "DELETE" also decides "delete" and "DELETE ". A name holding an
// invisible or control character is refused with 422.

// normalizedName returns value, a request's tenant, resource or method
// name ("" when absent), in its normal form, or a 422 on the field at
// location.
func normalizedName(location, value string) (string, error) {
	if value == "" {
		return "", nil
	}
	n, err := resolver.NormalizeName(value)
	if err != nil {
		return "", fieldProblem(location, err.Error(), nil)
	}
	return n, nil
}

// optionalName is normalizedName for an optional field: nil when not sent.
func optionalName(location string, value *string) (*string, error) {
	if value == nil {
		return nil, nil
	}
	n, err := normalizedName(location, *value)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

// nameRef is ref, an id or a tenant or resource name, as stored names
// compare with it: a name in its normal form (ids are normal already). A
// ref with no normal form names nothing, so it is returned as is and finds
// nothing.
func nameRef(ref string) string {
	if n, err := resolver.NormalizeName(ref); err == nil {
		return n
	}
	return ref
}
