//lint:file-ignore ST1005 the messages are github.com/gowebpki/jcs's, word for word: callers and the oracle fuzz tests compare them byte for byte.

package jsondoc

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/gowebpki/jcs"
)

// AppendCanonical appends the document's RFC 8785 canonical form: members
// sorted by the UTF-16 code units of their names (§3.2.3), no insignificant
// white space, strings with only the required escapes (§3.2.2.2), numbers
// in their ECMAScript form (§3.2.2.3).
//
// It writes what github.com/gowebpki/jcs's Transform writes for the same
// text and refuses what Transform refuses, with Transform's error, first
// error first: invalid UTF-8 and unpaired surrogate escapes in strings,
// duplicate member names (after decoding) and numbers outside the IEEE 754
// double range. (A test compares the two on fuzzed documents.)
func (d *Doc) AppendCanonical(dst []byte) ([]byte, error) {
	d.members, d.names = d.members[:0], d.names[:0]
	if err := d.checkCanonical(0); err != nil {
		return dst, err
	}
	return d.appendCanonical(dst, 0), nil
}

// checkCanonical finds the first error Transform would report in node i's
// value, in the order Transform parses (a duplicate name is found when its
// object ends), and puts each object's members in canonical order.
func (d *Doc) checkCanonical(i int32) error {
	n := &d.nodes[i]
	switch n.kind {
	case Object:
		for c := i + 1; c < n.next; c = d.nodes[c+1].next {
			if _, err := d.appendJCSDecoded(d.buf[:0], c); err != nil {
				return err
			}
			if err := d.checkCanonical(c + 1); err != nil {
				return err
			}
		}
		start := int32(len(d.members))
		for c := i + 1; c < n.next; c = d.nodes[c+1].next {
			m := member{nameStart: d.nodes[c].start + 1, nameEnd: d.nodes[c].end - 1, value: c + 1}
			if !d.nodes[c].plain {
				m.inNames, m.nameStart = true, int32(len(d.names))
				d.names, _ = d.appendJCSDecoded(d.names, c)
				m.nameEnd = int32(len(d.names))
			}
			d.members = append(d.members, m)
		}
		ms := d.members[start:]
		slices.SortFunc(ms, func(a, b member) int { return compareUTF16(d.name(a), d.name(b)) })
		for k := 1; k < len(ms); k++ {
			if compareUTF16(d.name(ms[k-1]), d.name(ms[k])) == 0 {
				return fmt.Errorf("Duplicate key: %s", forError(string(d.name(ms[k]))))
			}
		}
		// n may have moved: d.nodes does not grow here, but take it again.
		n = &d.nodes[i]
		n.sorted, n.count = start, int32(len(ms))
	case Array:
		for c := i + 1; c < n.next; c = d.nodes[c].next {
			if err := d.checkCanonical(c); err != nil {
				return err
			}
		}
	case String:
		if _, err := d.appendJCSDecoded(d.buf[:0], i); err != nil {
			return err
		}
	case Number:
		if _, err := canonicalNumber(d.text[n.start:n.end]); err != nil {
			return err
		}
	}
	return nil
}

// appendCanonical writes node i's value (checked by checkCanonical).
func (d *Doc) appendCanonical(dst []byte, i int32) []byte {
	n := &d.nodes[i]
	switch n.kind {
	case Object:
		dst = append(dst, '{')
		for k, m := range d.members[n.sorted : n.sorted+n.count] {
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = appendJCSString(dst, d.name(m))
			dst = append(dst, ':')
			dst = d.appendCanonical(dst, m.value)
		}
		return append(dst, '}')
	case Array:
		dst = append(dst, '[')
		for c := i + 1; c < n.next; c = d.nodes[c].next {
			if c > i+1 {
				dst = append(dst, ',')
			}
			dst = d.appendCanonical(dst, c)
		}
		return append(dst, ']')
	case String:
		if n.plain {
			return append(dst, d.text[n.start:n.end]...)
		}
		d.buf, _ = d.appendJCSDecoded(d.buf[:0], i)
		return appendJCSString(dst, d.buf)
	case Number:
		lit := d.text[n.start:n.end]
		if plainInteger(lit) {
			return append(dst, lit...)
		}
		s, _ := canonicalNumber(lit)
		return append(dst, s...)
	}
	return append(dst, d.text[n.start:n.end]...)
}

// name is a member's decoded name.
func (d *Doc) name(m member) []byte {
	if m.inNames {
		return d.names[m.nameStart:m.nameEnd]
	}
	return d.text[m.nameStart:m.nameEnd]
}

// plainInteger reports whether a number literal is an integer of at most 15
// digits other than -0: its canonical form is itself (every such integer is
// a double, and ECMAScript writes it in plain digits).
func plainInteger(lit []byte) bool {
	digits := lit
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 15 || (len(digits) != len(lit) && string(digits) == "0") {
		return false
	}
	for _, c := range digits {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// canonicalNumber is a number literal's canonical form, or Transform's
// error for it.
func canonicalNumber(lit []byte) (string, error) {
	if plainInteger(lit) {
		return "", nil // written from the literal by appendCanonical
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return "", fmt.Errorf("Number out of range: %s", forError(string(lit)))
	}
	return jcs.NumberToJSON(f)
}

// forError quotes a fragment of the document for an error, as Transform does.
func forError(value string) string {
	const maxErrorTokenLength = 32
	if len(value) > maxErrorTokenLength {
		return fmt.Sprintf("%q (truncated from %d bytes)", value[:maxErrorTokenLength], len(value))
	}
	return fmt.Sprintf("%q", value)
}

// compareUTF16 orders two UTF-8 strings by their UTF-16 code units
// (RFC 8785 §3.2.3). Byte order is code point order, which differs from
// UTF-16 order only between U+E000–U+FFFF and the supplementary planes.
func compareUTF16(a, b []byte) int {
	for len(a) > 0 && len(b) > 0 {
		if a[0] == b[0] && a[0] < utf8.RuneSelf {
			a, b = a[1:], b[1:]
			continue
		}
		ra, na := utf8.DecodeRune(a)
		rb, nb := utf8.DecodeRune(b)
		if ra != rb {
			if ua, ub := firstUnit(ra), firstUnit(rb); ua != ub {
				return int(ua) - int(ub)
			}
			// Both supplementary with the same high surrogate.
			return int(ra&0x3ff) - int(rb&0x3ff)
		}
		a, b = a[na:], b[nb:]
	}
	return len(a) - len(b)
}

// firstUnit is the first UTF-16 code unit of r.
func firstUnit(r rune) rune {
	if r < 0x10000 {
		return r
	}
	return 0xD800 + (r-0x10000)>>10
}

// appendJCSString writes a decoded string as Transform does: quoted, with
// the two-character escapes for '"', '\', BS, FF, LF, CR and TAB, \u00xx
// for the other control characters, and every other byte as it is.
func appendJCSString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range s {
		switch c {
		case '\\', '"':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			if c < 0x20 {
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			} else {
				dst = append(dst, c)
			}
		}
	}
	return append(dst, '"')
}

// Transform's errors for strings.
var (
	errEOF         = errors.New("Unexpected EOF reached")
	errNonASCII    = errors.New("Unexpected non-ASCII character")
	errNoSurrogate = errors.New("Missing surrogate")
)

// appendJCSDecoded appends string node i's content decoded as Transform
// decodes it, or returns Transform's error: invalid UTF-8, a low surrogate
// escape first, a high one not followed by a low one. Checking the second
// half of a pair reads on from the escape like Transform, past the string's
// end if need be.
func (d *Doc) appendJCSDecoded(dst []byte, i int32) ([]byte, error) {
	n := &d.nodes[i]
	t := d.text
	if n.plain {
		return append(dst, t[n.start+1:n.end-1]...), nil
	}
	for p := int(n.start) + 1; p < int(n.end)-1; {
		c := t[p]
		switch {
		case c == '\\' && t[p+1] == 'u':
			first := getU4(t[p+2:])
			p += 6
			if first < 0xD800 || first > 0xDFFF {
				dst = utf8.AppendRune(dst, first)
				continue
			}
			if first > 0xDBFF {
				return dst, fmt.Errorf("Invalid high surrogate: \\u%04x", first)
			}
			var pair [2]byte
			for k := range pair {
				if p >= len(t) {
					return dst, errEOF
				}
				if t[p] > 0x7f {
					return dst, errNonASCII
				}
				pair[k] = t[p]
				p++
			}
			if pair != [2]byte{'\\', 'u'} {
				return dst, errNoSurrogate
			}
			for k := range 4 {
				if p+k >= len(t) {
					return dst, errEOF
				}
				if t[p+k] > 0x7f {
					return dst, errNonASCII
				}
			}
			u16, err := strconv.ParseUint(string(t[p:p+4]), 16, 64)
			if err != nil {
				return dst, err
			}
			p += 4
			second := rune(u16)
			if second < 0xDC00 || second > 0xDFFF {
				return dst, fmt.Errorf("Invalid low surrogate: \\u%04x", second)
			}
			dst = utf8.AppendRune(dst, (first-0xD800)<<10|(second-0xDC00)+0x10000)
		case c == '\\':
			dst = append(dst, unescape(t[p+1]))
			p += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			p++
		default:
			r, size := utf8.DecodeRune(t[p:])
			if r == utf8.RuneError && size <= 1 {
				return dst, fmt.Errorf("Invalid UTF-8 sequence at byte 0x%02x", c)
			}
			dst = append(dst, t[p:p+size]...)
			p += size
		}
	}
	return dst, nil
}
