package tokens

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
)

// MinSecretLen is the shortest accepted signing secret: 256 bits, the
// HMAC-SHA256 output size (RFC 2104 §3 recommends at least L bytes).
const MinSecretLen = 32

// maxKeyIDLen bounds key ids; they travel in every token.
const maxKeyIDLen = 64

// Key is one signing key. ID names it in every token it signs; keep it
// short (letters, digits, "-", "_"; at most 64).
type Key struct {
	ID string
	// Secret is the HMAC key, at least MinSecretLen bytes.
	Secret []byte
	// Retired keys neither sign nor verify.
	Retired bool
}

// String describes the key without its secret, so a Key formatted with
// %v or %s by mistake leaks nothing.
func (k Key) String() string {
	if k.Retired {
		return "key " + k.ID + " (retired)"
	}
	return "key " + k.ID
}

// GoString is String for %#v.
func (k Key) GoString() string { return k.String() }

// LogValue keeps the secret out of structured logs, including JSON ones.
func (k Key) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", k.ID), slog.Bool("retired", k.Retired))
}

// MarshalJSON writes the id and the retired flag only: a Key that ends up
// in a JSON log line or API answer by mistake does not carry its secret.
// FormatKeyring is the one serialization that includes secrets.
func (k Key) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID      string `json:"id"`
		Retired bool   `json:"retired"`
	}{k.ID, k.Retired})
}

// GenerateKey returns a new key with 32 bytes from crypto/rand.
func GenerateKey(id string) (Key, error) {
	if err := validKeyID(id); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	secret := make([]byte, MinSecretLen)
	if _, err := rand.Read(secret); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	return Key{ID: id, Secret: secret}, nil
}

// Keyring is an immutable set of keys: one active key signs, every
// non-retired key verifies. Safe for concurrent use.
type Keyring struct {
	active  *signer
	signers map[string]*signer // non-retired keys by id
	retired map[string]bool
}

// signer is one usable key with a pool of keyed HMAC states: hmac.New
// re-derives the pads from the secret on every call, Reset does not.
type signer struct {
	id     string
	secret []byte
	pool   sync.Pool
}

func newSigner(id string, secret []byte) *signer {
	s := &signer{id: id, secret: append([]byte(nil), secret...)}
	s.pool.New = func() any { return hmac.New(sha256.New, s.secret) }
	return s
}

// mac appends HMAC-SHA256(secret, msg) to dst.
func (s *signer) mac(dst, msg []byte) []byte {
	h := s.pool.Get().(hash.Hash)
	h.Reset()
	h.Write(msg) // a hash.Hash never returns an error
	dst = h.Sum(dst)
	s.pool.Put(h)
	return dst
}

// NewKeyring builds a keyring whose active (signing) key is the one named
// active. Key ids must be unique; the active key must not be retired.
// Secrets are copied, so later changes to the caller's slices have no
// effect.
func NewKeyring(active string, keys ...Key) (*Keyring, error) {
	k := &Keyring{signers: make(map[string]*signer, len(keys)), retired: map[string]bool{}}
	for i, key := range keys {
		if err := validKeyID(key.ID); err != nil {
			return nil, fmt.Errorf("keyring: key %d: %w", i+1, err)
		}
		if _, dup := k.signers[key.ID]; dup || k.retired[key.ID] {
			return nil, fmt.Errorf("keyring: key id %q appears twice", key.ID)
		}
		if len(key.Secret) < MinSecretLen {
			return nil, fmt.Errorf("keyring: key %q: secret is %d bytes, want at least %d", key.ID, len(key.Secret), MinSecretLen)
		}
		if key.Retired {
			k.retired[key.ID] = true
			continue
		}
		k.signers[key.ID] = newSigner(key.ID, key.Secret)
	}
	switch {
	case k.retired[active]:
		return nil, fmt.Errorf("keyring: active key %q is retired", active)
	case k.signers[active] == nil:
		return nil, fmt.Errorf("keyring: active key %q is not among the keys", active)
	}
	k.active = k.signers[active]
	return k, nil
}

// ActiveID returns the id of the key that signs.
func (k *Keyring) ActiveID() string { return k.active.id }

// String lists the key ids, never secrets.
func (k *Keyring) String() string {
	var b strings.Builder
	b.WriteString("keyring(active=")
	b.WriteString(k.active.id)
	for _, id := range slices.Sorted(maps.Keys(k.signers)) {
		if id != k.active.id {
			b.WriteString(" verify=" + id)
		}
	}
	b.WriteByte(')')
	return b.String()
}

// signer returns the verifying key named id, or ErrUnknownKey.
func (k *Keyring) signer(id string) (*signer, error) {
	if s := k.signers[id]; s != nil {
		return s, nil
	}
	return nil, ErrUnknownKey
}

// ParseKeyring parses the environment form of a keyring:
//
//	kid1:base64secret,kid2:base64secret,!kid3:base64secret
//
// The first key is the active one; "!" marks a retired key. Secrets are
// standard or URL-safe base64, padded or not; white space around entries
// is ignored. Error messages name entries by position only: they never
// contain a secret, nor a key id, in case a secret was pasted where the
// id belongs.
func ParseKeyring(spec string) (*Keyring, error) {
	entries := strings.Split(spec, ",")
	keys := make([]Key, 0, len(entries))
	for i, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, fmt.Errorf("keyring: entry %d is empty", i+1)
		}
		retired := strings.HasPrefix(e, "!")
		e = strings.TrimPrefix(e, "!")
		id, b64, ok := strings.Cut(e, ":")
		if !ok {
			return nil, fmt.Errorf("keyring: entry %d: want <key id>:<base64 secret>", i+1)
		}
		if validKeyID(id) != nil {
			return nil, fmt.Errorf("keyring: entry %d: key id must be 1-%d letters, digits, '-' or '_'", i+1, maxKeyIDLen)
		}
		secret, err := decodeSecret(b64)
		if err != nil {
			return nil, fmt.Errorf("keyring: entry %d: secret is not base64", i+1)
		}
		if len(secret) < MinSecretLen {
			return nil, fmt.Errorf("keyring: entry %d: secret is %d bytes, want at least %d", i+1, len(secret), MinSecretLen)
		}
		keys = append(keys, Key{ID: id, Secret: secret, Retired: retired})
	}
	if keys[0].Retired {
		return nil, errors.New("keyring: entry 1 is the active key and cannot be retired")
	}
	kr, err := NewKeyring(keys[0].ID, keys...)
	if err != nil {
		// NewKeyring's only remaining failure here is a duplicate id;
		// say so without repeating what was pasted.
		return nil, errors.New("keyring: a key id appears twice")
	}
	return kr, nil
}

// FormatKeyring renders keys in the form ParseKeyring reads, the first
// one active. The result contains the secrets: store it like one.
func FormatKeyring(keys ...Key) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		if k.Retired {
			b.WriteByte('!')
		}
		b.WriteString(k.ID)
		b.WriteByte(':')
		b.WriteString(base64.StdEncoding.EncodeToString(k.Secret))
	}
	return b.String()
}

func decodeSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

func validKeyID(id string) error {
	if id == "" || len(id) > maxKeyIDLen {
		return fmt.Errorf("key id must be 1-%d characters", maxKeyIDLen)
	}
	for i := range len(id) {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return errors.New("key id may contain only letters, digits, '-' and '_'")
		}
	}
	return nil
}
