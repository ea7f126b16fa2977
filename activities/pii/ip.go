package pii

import (
	"net/netip"
	"strings"
)

// findIPv6 takes maximal runs of hex digits, colons and dots (dots for the
// embedded IPv4 form ::ffff:192.0.2.1) that contain at least two colons
// and a hex digit, trims punctuation that belongs to the sentence, and
// keeps the run if netip parses it as an IPv6 address. Zones ("%eth0") are
// left in place; the address before them is redacted.
func findIPv6(s string, dst []span) []span {
	if strings.IndexByte(s, ':') < 0 {
		return dst
	}
	for i := 0; i < len(s); {
		if !isHex(s[i]) && s[i] != ':' {
			i++
			continue
		}
		start := i
		colons := 0
		for i < len(s) && (isHex(s[i]) || s[i] == ':' || s[i] == '.') {
			if s[i] == ':' {
				colons++
			}
			i++
		}
		end := i
		if colons < 2 {
			continue
		}
		// "addr:2001:db8::1" — a single leading colon is a field separator,
		// whatever precedes it; otherwise the run must start a token.
		if s[start] == ':' && (start+1 >= end || s[start+1] != ':') {
			start++
		} else if start > 0 && isWord(s[start-1]) {
			continue
		}
		// "…at 2001:db8::1." or "…2001:db8::1: refused" — sentence punctuation.
		for end > start && s[end-1] == '.' {
			end--
		}
		if end-start >= 2 && s[end-1] == ':' && s[end-2] != ':' {
			end--
		}
		if end < len(s) && isWord(s[end]) {
			continue
		}
		if !hasHexDigit(s[start:end]) {
			continue
		}
		if addr, err := netip.ParseAddr(s[start:end]); err == nil && addr.Is6() {
			dst = append(dst, span{start, end, replIP})
		}
	}
	return dst
}

func hasHexDigit(s string) bool {
	for i := range len(s) {
		if isHex(s[i]) {
			return true
		}
	}
	return false
}

// findIPv4 takes maximal runs of digits and dots with exactly three dots
// between four numbers, on number boundaries (so "v1.2.3.4" and
// "1.2.3.4.5" are versions, not addresses), and keeps those netip accepts.
// netip rejects leading zeros ("010.0.0.1"), whose meaning is ambiguous.
func findIPv4(s string, dst []span) []span {
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		start := i
		dots := 0
		for i < len(s) && (isDigit(s[i]) || s[i] == '.') {
			if s[i] == '.' {
				dots++
			}
			i++
		}
		end := i
		for end > start && s[end-1] == '.' {
			end--
			dots--
		}
		if dots != 3 {
			continue
		}
		if start > 0 && (isWord(s[start-1]) || s[start-1] == '.') {
			continue
		}
		if end < len(s) && isWord(s[end]) {
			continue
		}
		if addr, err := netip.ParseAddr(s[start:end]); err == nil && addr.Is4() {
			dst = append(dst, span{start, end, replIP})
		}
	}
	return dst
}
