package store

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"strings"
	"time"
)

// idEncoding is lowercase base32 whose alphabet is in ascending byte order
// ("2"…"7", then "a"…"z"), without padding: ids are easy to read, copy and
// put in URLs, and two ids compare as the bytes they encode.
var idEncoding = base32.NewEncoding("234567abcdefghijklmnopqrstuvwxyz").WithPadding(base32.NoPadding)

// idLen is the length of an id after its prefix and underscore: 16 bytes in
// base32.
const idLen = 26

// NewID returns prefix + "_" + 26 base32 characters, e.g. "chk_6f3…": 48 bits
// of milliseconds since the Unix epoch, then 80 random bits, as ULIDs and
// UUIDv7 lay them out. Public ids carry their type so a misplaced id is
// obvious. Ids made later sort later, so the unique indexes on them — the
// audit log's above all, one row per check — grow at their right edge instead
// of dirtying a random page per insert (and, after each checkpoint, writing
// that page whole to the WAL); 80 random bits keep ids unguessable and
// distinct within a millisecond.
func NewID(prefix string) string {
	return newIDAt(prefix, time.Now())
}

func newIDAt(prefix string, now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails on supported platforms
	var sb strings.Builder
	sb.Grow(len(prefix) + 1 + idLen)
	sb.WriteString(prefix)
	sb.WriteByte('_')
	sb.WriteString(idEncoding.EncodeToString(b[:]))
	return sb.String()
}
