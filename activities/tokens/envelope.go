package tokens

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxLen is the longest token or receipt Verify and VerifyReceipt accept,
// and the longest Mint and SignReceipt produce. Longer input is refused
// before it is decoded.
const MaxLen = 4096

const (
	tokenPrefix   = "oak_tok_"
	receiptPrefix = "oak_rcpt_"

	typToken   = "tok"
	typReceipt = "rcpt"
)

// Errors returned by verification. They carry no token content; callers
// test for them with errors.Is.
var (
	// ErrMalformed: not a token (or receipt) of this kind: wrong prefix,
	// too long, bad encoding, wrong type, missing claims.
	ErrMalformed = errors.New("malformed")
	// ErrUnknownKey: signed with a key this keyring does not have, or has
	// retired.
	ErrUnknownKey = errors.New("unknown or retired signing key")
	// ErrBadSignature: the MAC does not match; the token was altered or
	// forged.
	ErrBadSignature = errors.New("bad signature")
	// ErrExpired: authentic but past its expiry (plus ClockSkew).
	ErrExpired = errors.New("expired")
	// ErrNotYetValid: authentic but issued more than ClockSkew in the
	// future, which only a badly wrong clock produces.
	ErrNotYetValid = errors.New("issued in the future")
	// ErrInvalidClaims: Mint or SignReceipt was given incomplete or
	// ill-formed claims.
	ErrInvalidClaims = errors.New("invalid claims")
)

// b64 is unpadded base64url in strict mode: a string that decodes has
// exactly one encoding, so a signed artefact cannot be re-spelled into a
// second string that also verifies.
var b64 = base64.RawURLEncoding.Strict()

// envelope is implemented by the JSON payloads; it exposes the members the
// envelope itself checks.
type envelope interface {
	header() (typ, kid string)
}

// seal signs payload (JSON carrying typ and kid) with the active key and
// returns prefix + base64url(payload) + "." + base64url(mac), the MAC taken
// over everything before the dot.
func (k *Keyring) seal(prefix string, payload []byte) (string, error) {
	size := len(prefix) + b64.EncodedLen(len(payload)) + 1 + b64.EncodedLen(sha256.Size)
	if size > MaxLen {
		return "", fmt.Errorf("%w: %d bytes encoded, at most %d", ErrInvalidClaims, size, MaxLen)
	}
	buf := make([]byte, 0, size)
	buf = append(buf, prefix...)
	buf = b64.AppendEncode(buf, payload)
	var sum [sha256.Size]byte
	mac := k.active.mac(sum[:0], buf)
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, mac)
	return string(buf), nil
}

// open authenticates s as prefix + payload + "." + mac and decodes the
// payload into v. The payload is parsed before the MAC is checked because
// it names the key; it is at most MaxLen bytes and parsed strictly
// (unknown members are an error), and nothing from it is used before the
// MAC has been compared.
func (k *Keyring) open(s, prefix, typ string, v envelope) error {
	if len(s) > MaxLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxLen)
	}
	if !strings.HasPrefix(s, prefix) {
		return fmt.Errorf("%w: want prefix %s", ErrMalformed, prefix)
	}
	dot := strings.LastIndexByte(s, '.')
	if dot < len(prefix) {
		return fmt.Errorf("%w: no signature", ErrMalformed)
	}
	signed, macText := s[:dot], s[dot+1:]
	if b64.DecodedLen(len(macText)) != sha256.Size {
		return fmt.Errorf("%w: signature has the wrong length", ErrMalformed)
	}
	var macBuf [sha256.Size]byte
	mac, err := b64.AppendDecode(macBuf[:0], []byte(macText))
	if err != nil || len(mac) != sha256.Size {
		return fmt.Errorf("%w: signature is not base64url", ErrMalformed)
	}
	payload, err := b64.DecodeString(signed[len(prefix):])
	if err != nil {
		return fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: payload is not a claims object", ErrMalformed)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: trailing data after claims", ErrMalformed)
	}
	gotTyp, kid := v.header()
	if gotTyp != typ {
		return fmt.Errorf("%w: wrong type", ErrMalformed)
	}
	key, err := k.signer(kid)
	if err != nil {
		return err
	}
	var wantBuf [sha256.Size]byte
	if !hmac.Equal(key.mac(wantBuf[:0], []byte(signed)), mac) {
		return ErrBadSignature
	}
	return nil
}
