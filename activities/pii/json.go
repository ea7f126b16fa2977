package pii

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"oakallow/activities/jsondoc"
)

// ScrubJSON returns raw with Scrub applied to every string value, at any
// depth, keeping the structure, the member order and duplicate members as
// they were. The output is compact (insignificant white space dropped).
//
// Object keys are not scrubbed: they are the shape of the data (field
// names), and rewriting them could merge two members into one.
//
// Numbers stay numbers, written exactly as they came, with one exception:
// an integer literal of 13 to 19 digits that passes the Luhn check is a
// payment card number stored as a number, and it becomes the string
// "[redacted:card]". The scrubbed document is for storage and display, not
// for re-validation against the tool's schema, so the type change is the
// lesser harm.
//
// Empty input (or only white space) is returned as is; anything that is not
// a single well-formed JSON value is an error.
func ScrubJSON(raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return raw, nil
	}
	d, err := jsondoc.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("scrub json: %w", err)
	}
	defer d.Release()
	return ScrubDocument(make([]byte, 0, len(raw)), d), nil
}

// ScrubDocument appends the document d scrubbed as ScrubJSON scrubs it to
// dst: for a tool call's parameters, parsed once for validation, hashing
// and scrubbing.
func ScrubDocument(dst []byte, d *jsondoc.Doc) []byte {
	return d.AppendCompact(dst, scrubString, scrubNumber)
}

// scrubString writes a string of a document: a member name as it is (names
// are the shape of the data, and rewriting them could merge two members),
// a value scrubbed.
func scrubString(dst, s []byte, name bool) []byte {
	if name {
		return appendJSONString(dst, s)
	}
	scrubbed := Scrub(string(s))
	if scrubbed == string(s) {
		return appendJSONString(dst, s)
	}
	return appendJSONString(dst, []byte(scrubbed))
}

// scrubNumber writes a number literal of a document as it is, unless it is
// a payment card number.
func scrubNumber(dst, literal []byte) []byte {
	if isCardNumber(literal) {
		return appendJSONString(dst, []byte(replCard))
	}
	return append(dst, literal...)
}

// isCardNumber reports whether a JSON number literal is a bare integer of
// card length that passes Luhn.
func isCardNumber(lit []byte) bool {
	if len(lit) < cardMinDigits || len(lit) > cardMaxDigits {
		return false
	}
	for i := range len(lit) {
		if !isDigit(lit[i]) {
			return false
		}
	}
	return luhn(string(lit))
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string (RFC 8259 §7). HTML
// characters are left alone, unlike encoding/json, since the output is
// data, not markup; U+2028 and U+2029 are escaped so the result is also
// valid JavaScript. s is valid UTF-8: the decoder replaced invalid bytes.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(s[i:])
			if r != '\u2028' && r != '\u2029' {
				i += size
				continue
			}
			dst = append(dst, s[last:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xf])
			i += size
			last = i
			continue
		}
		dst = append(dst, s[last:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		last = i
	}
	dst = append(dst, s[last:]...)
	return append(dst, '"')
}
