// Package sealed encrypts secrets at rest (notification channel
// credentials, org webhook signing secrets, execution tokens, stored
// idempotent answers) with AES-256-GCM under a server key. The additional
// data binds a ciphertext to its row, so a sealed value copied into another
// row does not open.
//
// A Box seals with one key and opens with that key or any of its previous
// keys, so the key can be rotated without downtime: every process gets the
// new key and the old one as previous, `oakallow reseal` re-encrypts what
// is stored (Reseal), and the previous key is then dropped.
package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// version prefixes every ciphertext so the format can change later.
const version byte = 1

// ErrOpen is returned for any ciphertext that does not decrypt: wrong key,
// wrong row, truncated or tampered. It never says which.
var ErrOpen = errors.New("sealed: cannot open value")

// Box seals values under its key and opens values sealed under its key or
// one of its previous keys.
type Box struct {
	aead     cipher.AEAD
	previous []cipher.AEAD
}

// NewBox returns a Box that seals with key, a 32-byte key, and also opens
// what was sealed with any of previous (older keys, during a rotation).
func NewBox(key []byte, previous ...[]byte) (*Box, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	b := &Box{aead: aead}
	for i, k := range previous {
		if subtle.ConstantTimeCompare(k, key) == 1 {
			return nil, fmt.Errorf("sealed: previous key %d is the current key", i+1)
		}
		p, err := newAEAD(k)
		if err != nil {
			return nil, fmt.Errorf("previous key %d: %w", i+1, err)
		}
		b.previous = append(b.previous, p)
	}
	return b, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, errors.New("sealed: key must be 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealed: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sealed: %w", err)
	}
	return aead, nil
}

// ParseKey decodes a base64 (standard or URL, padded or not) 32-byte key,
// as given in OAKALLOW_SECRET_KEY. Errors never echo the input.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("sealed: key must be 32 bytes, base64-encoded")
}

// ParseKeys decodes a comma-separated list of keys in ParseKey's form, as
// given in OAKALLOW_SECRET_KEY_PREVIOUS; "" is no keys. Errors name a key by
// its position only.
func ParseKeys(s string) ([][]byte, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var keys [][]byte
	for i, part := range strings.Split(s, ",") {
		k, err := ParseKey(part)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// NewKey returns a random 32-byte key, base64-encoded.
func NewKey() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("sealed: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b[:]), nil
}

// Seal encrypts plaintext bound to aad (e.g. "channel:<id>").
func (b *Box) Seal(plaintext []byte, aad string) ([]byte, error) {
	out := make([]byte, 1+b.aead.NonceSize(), 1+b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	out[0] = version
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("sealed: %w", err)
	}
	return b.aead.Seal(out, out[1:], plaintext, []byte(aad)), nil
}

// Open decrypts a value sealed with the same aad under the box's key or one
// of its previous keys.
func (b *Box) Open(ciphertext []byte, aad string) ([]byte, error) {
	pt, _, err := b.open(ciphertext, aad)
	return pt, err
}

// open decrypts ciphertext and reports whether the current key opened it.
func (b *Box) open(ciphertext []byte, aad string) ([]byte, bool, error) {
	n := b.aead.NonceSize()
	if len(ciphertext) < 1+n+b.aead.Overhead() || ciphertext[0] != version {
		return nil, false, ErrOpen
	}
	nonce, body := ciphertext[1:1+n], ciphertext[1+n:]
	if pt, err := b.aead.Open(nil, nonce, body, []byte(aad)); err == nil {
		return pt, true, nil
	}
	for _, p := range b.previous {
		if pt, err := p.Open(nil, nonce, body, []byte(aad)); err == nil {
			return pt, false, nil
		}
	}
	return nil, false, ErrOpen
}

// Reseal returns ciphertext sealed under the box's current key: unchanged
// (and false) when the current key already opens it, sealed anew (and
// true) when only a previous key does, ErrOpen when no key does.
func (b *Box) Reseal(ciphertext []byte, aad string) ([]byte, bool, error) {
	pt, current, err := b.open(ciphertext, aad)
	if err != nil || current {
		return ciphertext, false, err
	}
	out, err := b.Seal(pt, aad)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}
