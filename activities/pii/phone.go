package pii

// phoneGroup is one group of a phone number candidate: digits, or digits in
// parentheses ("(415)"); sep is the byte joining it to the next group, 0
// for none ("(415)555") or for the last group.
type phoneGroup struct {
	start, end int // the digits, without parentheses
	open       int // index of "(" for a parenthesised group, else -1
	close      int // index just past ")" for a parenthesised group, else end
	sep        byte
}

func (g phoneGroup) digits() int { return g.end - g.start }
func (g phoneGroup) paren() bool { return g.open >= 0 }
func (g phoneGroup) from() int {
	if g.paren() {
		return g.open
	}
	return g.start
}

const (
	phoneIntlMin     = 8  // shortest international number we call a phone
	phoneIntlMax     = 15 // ITU-T E.164 §6.1: at most 15 digits
	phoneNationalMin = 10
	phoneNationalMax = 11
	phoneMaxGroups   = 8
)

// findPhones finds sequences of digit groups joined by single spaces,
// dashes or dots, optionally led by "+" and with parenthesised groups, and
// keeps the windows of whole groups that look like phone numbers (see
// phoneShape). Windows start and end only where the sequence is split by a
// space, so "ticket 2024 415-555-2671" still loses the phone number.
func findPhones(s string, dst []span) []span {
	var buf [16]phoneGroup
	for i := 0; i < len(s); {
		c := s[i]
		if !isDigit(c) && c != '+' && c != '(' {
			i++
			continue
		}
		plus := c == '+'
		groups, next := scanPhoneGroups(s, i, plus, buf[:0])
		if len(groups) == 0 {
			i++
			continue
		}
		dst = phoneWindows(s, groups, plus, dst)
		i = next
	}
	return dst
}

// scanPhoneGroups parses the sequence starting at s[i] (after the "+" when
// plus) and returns its groups and the offset just past it.
func scanPhoneGroups(s string, i int, plus bool, groups []phoneGroup) ([]phoneGroup, int) {
	if plus {
		i++
	}
	for i < len(s) {
		g := phoneGroup{open: -1}
		if s[i] == '(' {
			j := i + 1
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			if j == i+1 || j-(i+1) > 5 || j >= len(s) || s[j] != ')' {
				break
			}
			g.open, g.start, g.end, g.close = i, i+1, j, j+1
		} else if isDigit(s[i]) {
			j := i
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			g.start, g.end, g.close = i, j, j
		} else {
			break
		}
		i = g.close
		// A separator counts only when another group follows it.
		if i+1 < len(s) && (s[i] == ' ' || s[i] == '-' || s[i] == '.') && (isDigit(s[i+1]) || s[i+1] == '(') {
			g.sep = s[i]
			groups = append(groups, g)
			i++
			continue
		}
		if g.paren() && i < len(s) && isDigit(s[i]) {
			groups = append(groups, g) // "(415)555-2671"
			continue
		}
		groups = append(groups, g)
		break
	}
	if len(groups) > 0 {
		// A separator is only consumed with the group after it, so the
		// sequence ends with its last group.
		i = groups[len(groups)-1].close
	}
	return groups, i
}

// phoneWindows appends the phone numbers among groups, greedily from the
// left, preferring the longest window.
func phoneWindows(s string, groups []phoneGroup, plus bool, dst []span) []span {
	n := len(groups)
	for a := 0; a < n; a++ {
		if a > 0 && groups[a-1].sep != ' ' {
			continue
		}
		intl := plus && a == 0
		start := groups[a].from()
		if intl {
			start--
		}
		if !numberStartOK(s, start) {
			continue
		}
		best := -1
		digits := 0
		for b := a; b < n && b-a < phoneMaxGroups; b++ {
			digits += groups[b].digits()
			if digits > phoneIntlMax {
				break
			}
			if b < n-1 && groups[b].sep != ' ' {
				continue
			}
			if b == n-1 && !numberEndOK(s, groups[b].close) {
				continue
			}
			if phoneShape(groups[a:b+1], digits, intl) {
				best = b
			}
		}
		if best >= 0 {
			dst = append(dst, span{start, groups[best].close, replPhone})
			a = best
		}
	}
	return dst
}

// phoneShape decides whether a window of groups holding digits digits is
// written like a phone number.
//
// International ("+" first): 8 to 15 digits (E.164), any grouping.
//
// National: 10 or 11 digits, three or more groups joined by one kind of
// separator (separators next to a parenthesised group do not count), and
//   - dashes or dots: the NANP shape 415-555-2671 / 415.555.2671, with an
//     optional trunk digit (1-800-555-0199) and area code in parentheses
//     ((415) 555-2671). Other dashed and dotted digit groups are ids,
//     versions and dates far more often than phones.
//   - spaces: groups of 2 to 4 digits (020 7946 0958, 01 23 45 67 89,
//     415 555 2671), the first possibly a single trunk digit or in
//     parentheses, but not a thousands grouping (1 000 000 000).
func phoneShape(groups []phoneGroup, digits int, intl bool) bool {
	if intl {
		return digits >= phoneIntlMin && digits <= phoneIntlMax
	}
	if digits < phoneNationalMin || digits > phoneNationalMax || len(groups) < 3 {
		return false
	}
	var sep byte
	for k, g := range groups[:len(groups)-1] {
		if g.paren() || groups[k+1].paren() {
			continue
		}
		if sep == 0 {
			sep = g.sep
		} else if g.sep != sep {
			return false
		}
	}
	// Parentheses only around the area code: first group, or second after
	// a trunk digit.
	for k, g := range groups {
		if g.paren() && (k > 1 || (k == 1 && groups[0].digits() != 1)) {
			return false
		}
	}
	if sep == '-' || sep == '.' || sep == 0 {
		rest := groups
		if len(rest) == 4 && rest[0].digits() == 1 && !rest[0].paren() {
			rest = rest[1:]
		}
		return len(rest) == 3 && rest[0].digits() == 3 && rest[1].digits() == 3 &&
			rest[2].digits() == 4 && !rest[1].paren() && !rest[2].paren()
	}
	allThree := true
	for k, g := range groups {
		d := g.digits()
		if d > 4 || (d < 2 && k > 0) {
			return false
		}
		if k > 0 && d != 3 {
			allThree = false
		}
	}
	return !allThree
}
