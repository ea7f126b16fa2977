package notify

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names and fixed values sent with every signed request.
const (
	// HeaderSignature carries "t=<unix seconds>,v1=<hex mac>[,v1=<hex mac>]".
	HeaderSignature = "X-Oakallow-Signature"
	// HeaderEvent carries the event type, e.g. "approval.created".
	HeaderEvent = "X-Oakallow-Event"
	// HeaderDelivery carries the delivery id; it is the same on every retry
	// of one delivery, so receivers can discard duplicates.
	HeaderDelivery = "X-Oakallow-Delivery"
	// UserAgent identifies oakallow's webhook sender.
	UserAgent = "oakallow-webhooks/1"
	// DefaultSignatureTolerance is how far a signature timestamp may be from
	// the receiver's clock (SPEC §4: receivers reject timestamps more than
	// 5 minutes old).
	DefaultSignatureTolerance = 5 * time.Minute
	// WebhookSecretPrefix starts every webhook secret.
	WebhookSecretPrefix = "whsec_"

	webhookSecretBytes = 32
	// maxSignatureHeader bounds the header a verifier will parse; a real
	// header with two secrets is about 150 bytes.
	maxSignatureHeader = 1024
)

// Errors returned by VerifySignature. They are distinct so that a receiver
// can log why a request was refused; all of them mean "reject the request".
var (
	ErrSignatureMissing   = errors.New("signature header missing")
	ErrSignatureMalformed = errors.New("signature header malformed")
	ErrSignatureExpired   = errors.New("signature timestamp outside tolerance")
	ErrSignatureMismatch  = errors.New("no signature matches")
)

// NewWebhookSecret returns a fresh webhook signing secret: "whsec_" followed
// by 32 random bytes in unpadded base64url. The whole string, as UTF-8 bytes,
// is the HMAC key; it is shown to the user once.
func NewWebhookSecret() (string, error) {
	var b [webhookSecretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate webhook secret: %w", err)
	}
	return WebhookSecretPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Sign returns the X-Oakallow-Signature header value for body sent at time t:
// "t=<unix seconds>" followed by one ",v1=<hex HMAC-SHA256(secret, "<t>.<body>")>"
// per secret, in the order given. Pass two secrets during a rotation overlap
// (SPEC §4) so that receivers holding either one accept the request. Empty
// secrets are skipped: an empty HMAC key would let anyone forge the header.
func Sign(secrets [][]byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	var sb strings.Builder
	sb.Grow(len("t=") + len(ts) + len(secrets)*(len(",v1=")+2*sha256.Size))
	sb.WriteString("t=")
	sb.WriteString(ts)
	for _, secret := range secrets {
		if len(secret) == 0 {
			continue
		}
		sb.WriteString(",v1=")
		sb.WriteString(hex.EncodeToString(signatureMAC(secret, ts, body)))
	}
	return sb.String()
}

// signatureMAC computes HMAC-SHA256(secret, ts + "." + body).
func signatureMAC(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifySignature checks an X-Oakallow-Signature header as a webhook
// receiver must, and is written to be copied:
//
//  1. Parse the header into one "t" and one or more "v1" entries; other
//     schemes are ignored so that a future v2 can be added alongside.
//  2. Reject when t is further than tolerance from now, in either direction
//     (a replayed old request, or a clock far ahead). tolerance <= 0 means
//     DefaultSignatureTolerance (5 minutes).
//  3. Compute HMAC-SHA256 over the t string exactly as it appears in the
//     header, ".", and the raw body bytes, keyed with the secret.
//  4. Compare with every v1 entry in constant time (hmac.Equal); accept if
//     any matches.
//
// body must be the raw request body, before any JSON decoding.
func VerifySignature(header string, body []byte, secret []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultSignatureTolerance
	}
	if header == "" {
		return ErrSignatureMissing
	}
	if len(header) > maxSignatureHeader {
		return fmt.Errorf("%w: header longer than %d bytes", ErrSignatureMalformed, maxSignatureHeader)
	}
	if len(secret) == 0 {
		return fmt.Errorf("verify signature: empty secret")
	}
	var (
		ts   string
		macs [][]byte
	)
	for part := range strings.SplitSeq(header, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: entry without '='", ErrSignatureMalformed)
		}
		switch key {
		case "t":
			if ts != "" {
				return fmt.Errorf("%w: more than one timestamp", ErrSignatureMalformed)
			}
			if !isDecimal(value) {
				return fmt.Errorf("%w: timestamp is not a decimal number", ErrSignatureMalformed)
			}
			ts = value
		case "v1":
			mac, err := hex.DecodeString(value)
			if err != nil || len(mac) != sha256.Size {
				return fmt.Errorf("%w: v1 is not a hex SHA-256 MAC", ErrSignatureMalformed)
			}
			macs = append(macs, mac)
		}
	}
	if ts == "" {
		return fmt.Errorf("%w: no timestamp", ErrSignatureMalformed)
	}
	if len(macs) == 0 {
		return fmt.Errorf("%w: no v1 signature", ErrSignatureMalformed)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp out of range", ErrSignatureMalformed)
	}
	if skew := now.Sub(time.Unix(sec, 0)); skew > tolerance || skew < -tolerance {
		return fmt.Errorf("%w: timestamp %s is %s from now", ErrSignatureExpired, ts, skew.Round(time.Second))
	}
	expected := signatureMAC(secret, ts, body)
	matched := false
	// Check every entry without stopping early, so timing does not reveal
	// which position matched.
	for _, mac := range macs {
		if hmac.Equal(mac, expected) {
			matched = true
		}
	}
	if !matched {
		return ErrSignatureMismatch
	}
	return nil
}

// isDecimal reports whether s is 1–19 ASCII digits (fits in an int64).
func isDecimal(s string) bool {
	if s == "" || len(s) > 19 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
