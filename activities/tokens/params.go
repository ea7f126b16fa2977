package tokens

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gowebpki/jcs"
)

// ErrInvalidParameters: the parameters are not JSON that RFC 8785 can
// canonicalize (malformed, duplicate member names, numbers outside the
// IEEE 754 double range, invalid Unicode).
var ErrInvalidParameters = errors.New("parameters cannot be canonicalized")

// HashParameters returns the hex SHA-256 of the RFC 8785 canonical form of
// raw, or "" when raw is empty, white space or null ("no parameters").
//
// Canonicalization sorts members by their UTF-16 code units (§3.2.3),
// removes white space and writes numbers the ECMAScript way (§3.2.2.3), so
// {"b":1,"a":[1,2]} and {"a":[1,2],"b":1} hash alike, as do 1, 1.0 and
// 1e0. Numbers are IEEE 754 doubles (I-JSON, RFC 7493): integers beyond
// 2^53 that round to the same double hash alike too. Array order is
// significant. The error wraps ErrInvalidParameters; its text may quote
// up to 32 bytes of raw.
func HashParameters(raw json.RawMessage) (string, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return "", nil
	}
	canonical, err := jcs.Transform(trimmed)
	if err != nil {
		return "", fmt.Errorf("hash parameters: %w: %s", ErrInvalidParameters, err.Error())
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:]), nil
}

// ParamsMatch reports whether raw hashes to bound, a ParamsHash from a
// token or receipt. The hashes are compared in constant time. No
// parameters match only an empty bound hash.
func ParamsMatch(bound string, raw json.RawMessage) (bool, error) {
	h, err := HashParameters(raw)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare([]byte(bound), []byte(h)) == 1, nil
}
