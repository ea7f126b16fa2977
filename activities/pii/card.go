package pii

// digitGroup is a maximal run of ASCII digits s[start:end]; sep is the byte
// that joins it to the next group of the same sequence (0 for the last).
type digitGroup struct {
	start, end int
	sep        byte
}

func (g digitGroup) len() int { return g.end - g.start }

const (
	cardMinDigits = 13
	cardMaxDigits = 19
)

// findCards splits the text into sequences of digit groups joined by a
// single space or dash, then looks for payment card numbers inside each
// sequence: windows of whole groups holding 13 to 19 digits that pass Luhn,
// either one unbroken group or several groups of 3 to 6 digits joined by
// the same separator (4-4-4-4, 4-6-5, 4-4-4-4-3…). Windows start at any
// group, so "order 1234 4111 1111 1111 1111" loses only the card, and a
// non-Luhn run such as an order id is never redacted.
func findCards(s string, dst []span) []span {
	var buf [16]digitGroup
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		groups := scanDigitGroups(s, i, buf[:0], " -")
		last := groups[len(groups)-1]
		i = last.end
		if !numberStartOK(s, groups[0].start) {
			// The first group belongs to an identifier; later groups are
			// still candidates on their own.
			groups = groups[1:]
			if len(groups) == 0 {
				continue
			}
		}
		dst = cardWindows(s, groups, numberEndOK(s, last.end), dst)
	}
	return dst
}

// scanDigitGroups collects the digit groups of the sequence starting at
// s[i], joined by exactly one byte from seps followed by a digit.
func scanDigitGroups(s string, i int, groups []digitGroup, seps string) []digitGroup {
	for {
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		g := digitGroup{start: start, end: i}
		if i+1 < len(s) && isSep(s[i], seps) && isDigit(s[i+1]) {
			g.sep = s[i]
			groups = append(groups, g)
			i++
			continue
		}
		return append(groups, g)
	}
}

func isSep(c byte, seps string) bool {
	for i := range len(seps) {
		if seps[i] == c {
			return true
		}
	}
	return false
}

// cardWindows appends the card numbers found in groups, greedily from the
// left and preferring the longest window. endOK says whether the last group
// may end a window (it is not glued to an identifier).
func cardWindows(s string, groups []digitGroup, endOK bool, dst []span) []span {
	n := len(groups)
	for a := 0; a < n; a++ {
		best := -1
		digits := 0
		for b := a; b < n; b++ {
			digits += groups[b].len()
			if digits > cardMaxDigits {
				break
			}
			if digits < cardMinDigits || (b == n-1 && !endOK) {
				continue
			}
			if cardShape(groups[a:b+1]) && luhn(s[groups[a].start:groups[b].end]) {
				best = b
			}
		}
		if best >= 0 {
			dst = append(dst, span{groups[a].start, groups[best].end, replCard})
			a = best
		}
	}
	return dst
}

// cardShape reports whether the groups are written the way card numbers
// are: one unbroken run, or groups of 3 to 6 digits with one separator.
func cardShape(groups []digitGroup) bool {
	if len(groups) == 1 {
		return true
	}
	sep := groups[0].sep
	for k, g := range groups {
		if g.len() < 3 || g.len() > 6 {
			return false
		}
		if k < len(groups)-1 && g.sep != sep {
			return false
		}
	}
	return true
}
