package pii

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// findEmails anchors on each "@" and grows the local part to the left and
// the domain to the right. Hand-written rather than a regular expression:
// an unanchored e-mail pattern makes the regexp engine try every byte as a
// start, and this way text without "@" costs one IndexByte.
func findEmails(s string, dst []span) []span {
	from := 0
	for {
		at := strings.IndexByte(s[from:], '@')
		if at < 0 {
			return dst
		}
		at += from
		start := emailLocalStart(s, at)
		end := emailDomainEnd(s, at+1)
		if start < at && end > at+1 && (len(dst) == 0 || start >= dst[len(dst)-1].end) {
			dst = append(dst, span{start, end, replEmail})
			from = end
			continue
		}
		from = at + 1
	}
}

// isLocalRune reports whether r may appear in the local part: RFC 5322
// atext minus the characters that in practice delimit addresses in prose
// (quotes, slashes, braces…), plus any Unicode letter or digit (RFC 6531).
func isLocalRune(r rune) bool {
	if r < utf8.RuneSelf {
		c := byte(r)
		return isAlnum(c) || strings.IndexByte("._%+-", c) >= 0
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)
}

func isLabelRune(r rune) bool {
	if r < utf8.RuneSelf {
		c := byte(r)
		return isAlnum(c) || c == '-'
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)
}

// emailLocalStart returns where the local part ending at s[at] begins, or
// at when there is none. Leading dots are sentence punctuation, not address.
func emailLocalStart(s string, at int) int {
	i := at
	for i > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:i])
		if !isLocalRune(r) {
			break
		}
		i -= size
	}
	for i < at && s[i] == '.' {
		i++
	}
	return i
}

// emailDomainEnd returns the end of a valid domain starting at s[from], or
// from when there is none: dot-separated labels that do not begin or end
// with "-", at least two of them, the last one letters only and at least
// two long. A trailing dot (end of sentence) is left out.
func emailDomainEnd(s string, from int) int {
	i := from
	labels, labelStart, lastLetters := 0, from, true
	end := from
	for i <= len(s) {
		var r rune
		size := 0
		if i < len(s) {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		if size > 0 && isLabelRune(r) {
			if !unicode.IsLetter(r) {
				lastLetters = false
			}
			i += size
			continue
		}
		// End of a label at s[i].
		label := s[labelStart:i]
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			break
		}
		labels++
		if labels >= 2 && lastLetters && utf8.RuneCountInString(label) >= 2 {
			end = i
		}
		if size == 0 || r != '.' {
			break
		}
		i++
		labelStart, lastLetters = i, true
	}
	return end
}
