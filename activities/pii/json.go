package pii

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
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
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()

	type frame struct {
		object bool
		items  int // tokens written in this container: keys and values for objects
	}
	var (
		out   = make([]byte, 0, len(raw))
		stack []frame
		done  bool // a complete top-level value has been written
	)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("scrub json: %w", err)
		}
		if done {
			return nil, errors.New("scrub json: more than one top-level value")
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			out = append(out, byte(d))
			stack = stack[:len(stack)-1]
			done = len(stack) == 0
			continue
		}
		isKey := false
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			switch {
			case top.object && top.items%2 == 1:
				out = append(out, ':')
			case top.items > 0:
				out = append(out, ',')
			}
			isKey = top.object && top.items%2 == 0
			top.items++
		}
		switch v := tok.(type) {
		case json.Delim: // '{' or '['
			out = append(out, byte(v))
			stack = append(stack, frame{object: v == '{'})
			continue
		case string:
			if !isKey {
				v = Scrub(v)
			}
			out = appendJSONString(out, v)
		case json.Number:
			if isCardNumber(string(v)) {
				out = appendJSONString(out, replCard)
			} else {
				out = append(out, v...)
			}
		case bool:
			if v {
				out = append(out, "true"...)
			} else {
				out = append(out, "false"...)
			}
		case nil:
			out = append(out, "null"...)
		}
		done = len(stack) == 0
	}
	if !done {
		return nil, errors.New("scrub json: unexpected end of input")
	}
	return out, nil
}

// isCardNumber reports whether a JSON number literal is a bare integer of
// card length that passes Luhn.
func isCardNumber(lit string) bool {
	if len(lit) < cardMinDigits || len(lit) > cardMaxDigits {
		return false
	}
	for i := range len(lit) {
		if !isDigit(lit[i]) {
			return false
		}
	}
	return luhn(lit)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string (RFC 8259 §7). HTML
// characters are left alone, unlike encoding/json, since the output is
// data, not markup; U+2028 and U+2029 are escaped so the result is also
// valid JavaScript. s is valid UTF-8: the decoder replaced invalid bytes.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
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
