package store

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
)

// idEncoding is lowercase RFC 4648 base32 without padding: ids are easy to
// read, copy and put in URLs.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns prefix + "_" + 20 random base32 characters (100 bits), e.g.
// "org_k3x…". Public ids carry their type so a misplaced id is obvious.
func NewID(prefix string) string {
	var b [13]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	var sb strings.Builder
	sb.Grow(len(prefix) + 21)
	sb.WriteString(prefix)
	sb.WriteByte('_')
	sb.WriteString(idEncoding.EncodeToString(b[:])[:20])
	return sb.String()
}
