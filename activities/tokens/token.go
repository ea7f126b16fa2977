package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// ClockSkew is how far Verify tolerates clocks of different replicas
// disagreeing: a token is accepted until ExpiresAt + ClockSkew, and
// refused when issued more than ClockSkew after now. Replicas synchronised
// by NTP are within milliseconds of each other; ten seconds absorbs a
// slow sync without stretching a 5-minute token noticeably.
const ClockSkew = 10 * time.Second

// Source kinds: a token is minted either from an allowed check or from an
// approved approval request.
const (
	SourceCheck    = "check"
	SourceApproval = "approval"
)

// Source returns the Claims.Source value "<kind>:<id>".
func Source(kind, id string) string { return kind + ":" + id }

// ParseSource splits a Claims.Source value into its kind (SourceCheck or
// SourceApproval) and id; ok is false for anything else.
func ParseSource(src string) (kind, id string, ok bool) {
	kind, id, found := strings.Cut(src, ":")
	if !found || id == "" || (kind != SourceCheck && kind != SourceApproval) {
		return "", "", false
	}
	return kind, id, true
}

// Claims are the facts an execution token binds (SPEC §5).
type Claims struct {
	TokenID  string
	Org      string
	Tool     string
	Tenant   string
	Resource string
	Method   string
	// ParamsHash is HashParameters of the parameters the token was issued
	// for: 64 lower-case hex digits, or "" when there were none.
	ParamsHash string
	// Source is "check:<check_id>" or "approval:<approval_id>" (see Source).
	Source string
	// IssuedAt and ExpiresAt travel as unix seconds: sub-second parts are
	// dropped, and Verify returns them in UTC.
	IssuedAt  time.Time
	ExpiresAt time.Time
	// Nonce is at least 128 random bits, base64url (NewNonce); the verifier
	// spends it to make the token single-use.
	Nonce string
	// KeyID is the signing key's id; Mint sets it.
	KeyID string
}

// tokenClaims is the wire form of Claims. Member names are short because
// tokens travel in headers; their order is fixed by the struct.
type tokenClaims struct {
	Typ string `json:"typ"`
	Kid string `json:"kid"`
	Jti string `json:"jti"`
	Org string `json:"org"`
	Tl  string `json:"tl"`
	Tn  string `json:"tn,omitempty"`
	Rs  string `json:"rs,omitempty"`
	Mt  string `json:"mt,omitempty"`
	Ph  string `json:"ph,omitempty"`
	Src string `json:"src"`
	Iat int64  `json:"iat,omitempty"`
	Exp int64  `json:"exp"`
	Nc  string `json:"nc"`
}

func (t *tokenClaims) header() (string, string) { return t.Typ, t.Kid }

// Mint signs c with the active key and returns
// "oak_tok_<payload>.<mac>". It sets c.KeyID. TokenID, Org, Tool, Source,
// Nonce and ExpiresAt are required; ParamsHash must be "" or a
// HashParameters value; ExpiresAt must be after IssuedAt when that is set.
func (k *Keyring) Mint(c Claims) (string, error) {
	if err := c.validate(); err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	w := tokenClaims{
		Typ: typToken, Kid: k.active.id, Jti: c.TokenID, Org: c.Org, Tl: c.Tool,
		Tn: c.Tenant, Rs: c.Resource, Mt: c.Method, Ph: c.ParamsHash, Src: c.Source,
		Exp: c.ExpiresAt.Unix(), Nc: c.Nonce,
	}
	if !c.IssuedAt.IsZero() {
		w.Iat = c.IssuedAt.Unix()
	}
	payload, err := json.Marshal(&w)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	tok, err := k.seal(tokenPrefix, payload)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return tok, nil
}

func (c *Claims) validate() error {
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"token id", c.TokenID}, {"org", c.Org}, {"tool", c.Tool}, {"source", c.Source}, {"nonce", c.Nonce},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if c.ExpiresAt.IsZero() {
		missing = append(missing, "expiry")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrInvalidClaims, strings.Join(missing, ", "))
	}
	if _, _, ok := ParseSource(c.Source); !ok {
		return fmt.Errorf("%w: source must be check:<id> or approval:<id>", ErrInvalidClaims)
	}
	if n, err := base64.RawURLEncoding.DecodeString(c.Nonce); err != nil || len(n) < nonceBytes {
		return fmt.Errorf("%w: nonce must be at least %d random bytes, base64url", ErrInvalidClaims, nonceBytes)
	}
	if !validParamsHash(c.ParamsHash) {
		return fmt.Errorf("%w: params hash must be empty or 64 lower-case hex digits", ErrInvalidClaims)
	}
	if !c.IssuedAt.IsZero() && !c.ExpiresAt.After(c.IssuedAt) {
		return fmt.Errorf("%w: expiry is not after issue time", ErrInvalidClaims)
	}
	return nil
}

// Verify authenticates token and returns its claims: the MAC under the key
// it names (constant-time compare), then expiry against now with
// ClockSkew of tolerance. Errors wrap ErrMalformed, ErrUnknownKey,
// ErrBadSignature, ErrExpired or ErrNotYetValid. Verify does not spend the
// nonce; see the package documentation.
func (k *Keyring) Verify(token string, now time.Time) (Claims, error) {
	var w tokenClaims
	if err := k.open(token, tokenPrefix, typToken, &w); err != nil {
		return Claims{}, fmt.Errorf("verify token: %w", err)
	}
	c := Claims{
		TokenID: w.Jti, Org: w.Org, Tool: w.Tl, Tenant: w.Tn, Resource: w.Rs, Method: w.Mt,
		ParamsHash: w.Ph, Source: w.Src, ExpiresAt: time.Unix(w.Exp, 0).UTC(), Nonce: w.Nc, KeyID: w.Kid,
	}
	if w.Iat != 0 {
		c.IssuedAt = time.Unix(w.Iat, 0).UTC()
	}
	// Authentic claims are complete because Mint checked them; re-checking
	// guards against a signing bug elsewhere ever producing a token that
	// binds nothing.
	if err := c.validate(); err != nil {
		return Claims{}, fmt.Errorf("verify token: %w: %w", ErrMalformed, err)
	}
	if !now.Before(c.ExpiresAt.Add(ClockSkew)) {
		return Claims{}, fmt.Errorf("verify token: %w", ErrExpired)
	}
	if !c.IssuedAt.IsZero() && c.IssuedAt.After(now.Add(ClockSkew)) {
		return Claims{}, fmt.Errorf("verify token: %w", ErrNotYetValid)
	}
	return c, nil
}

// nonceBytes is the nonce size: 128 bits, so a collision between any two
// of the tokens an installation will ever mint is negligible.
const nonceBytes = 16

// NewNonce returns 128 random bits, base64url without padding.
func NewNonce() (string, error) {
	var b [nonceBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// idEncoding is lower-case unpadded base32, like the project's other ids.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewTokenID returns "tok_" followed by 128 random bits in lower-case
// base32 (26 characters).
func NewTokenID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new token id: %w", err)
	}
	return "tok_" + idEncoding.EncodeToString(b[:]), nil
}

func validParamsHash(h string) bool {
	if h == "" {
		return true
	}
	if len(h) != 2*sha256.Size {
		return false
	}
	for i := range len(h) {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
