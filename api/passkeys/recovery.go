package passkeys

import (
	"crypto/rand"
	"crypto/sha256"
	"strings"
)

// Recovery codes (SPEC §8): 10 codes of 26 Crockford base32 characters
// (130 random bits each), shown once, stored as SHA-256, each usable once.
const (
	// RecoveryCodeCount is how many codes a set has.
	RecoveryCodeCount = 10
	// RecoveryCodeLen is the length of a code in characters.
	RecoveryCodeLen = 26
)

// crockford is Crockford's base32 alphabet: digits and upper-case letters
// without I, L, O and U.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// newRecoveryCodes returns a fresh set of codes and their hashes.
func newRecoveryCodes() (codes []string, hashes [][]byte) {
	for range RecoveryCodeCount {
		var b [RecoveryCodeLen]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
		for i := range b {
			b[i] = crockford[b[i]&31] // 256 is a multiple of 32: no bias
		}
		code := string(b[:])
		h := sha256.Sum256([]byte(code))
		codes = append(codes, code)
		hashes = append(hashes, h[:])
	}
	return codes, hashes
}

// normalizeRecoveryCode reads a code as people type it: case, spaces and
// hyphens do not matter, and the letters Crockford decoding maps (I and L to
// 1, O to 0) are read as those digits. ok is false when the result is not 26
// characters of the alphabet.
func normalizeRecoveryCode(in string) (string, bool) {
	if len(in) > 4*RecoveryCodeLen {
		return "", false
	}
	var b strings.Builder
	b.Grow(RecoveryCodeLen)
	for _, r := range strings.ToUpper(in) {
		switch {
		case r == ' ' || r == '-' || r == '\t':
			continue
		case r == 'I' || r == 'L':
			r = '1'
		case r == 'O':
			r = '0'
		}
		if r > 127 || !strings.ContainsRune(crockford, r) {
			return "", false
		}
		b.WriteRune(r)
	}
	if b.Len() != RecoveryCodeLen {
		return "", false
	}
	return b.String(), true
}

// hashRecoveryCode returns the stored hash of a typed code, or ok false when
// it cannot be a code.
func hashRecoveryCode(in string) ([]byte, bool) {
	code, ok := normalizeRecoveryCode(in)
	if !ok {
		return nil, false
	}
	h := sha256.Sum256([]byte(code))
	return h[:], true
}
