package pii

import (
	"strings"
	"unicode"
)

// Ellipsis is appended by Truncate when it cuts.
const Ellipsis = "…"

// Truncate returns s cut to at most n runes, the last of which is Ellipsis
// when anything was cut; white space left in front of the ellipsis is
// dropped. It never splits a UTF-8 sequence (an invalid byte counts as one
// rune). n <= 0 yields "".
//
// Truncate after Scrub, not before: cutting first could shorten a card or
// account number below what the detectors recognise.
func Truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	runes, cut := 0, 0
	for i := range s {
		if runes == n-1 {
			cut = i
		}
		if runes == n {
			return strings.TrimRightFunc(s[:cut], unicode.IsSpace) + Ellipsis
		}
		runes++
	}
	return s
}
