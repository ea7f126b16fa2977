package pii

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// The scrubber as it was before it read a parsed document (jsondoc): the
// oracle FuzzScrubJSONMatchesDecoder holds ScrubJSON to.

func oldScrubJSON(raw json.RawMessage) (json.RawMessage, error) {
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
			out = oldAppendJSONString(out, v)
		case json.Number:
			if oldIsCardNumber(string(v)) {
				out = oldAppendJSONString(out, replCard)
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

func oldIsCardNumber(lit string) bool {
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

func oldAppendJSONString(dst []byte, s string) []byte {
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

var scrubJSONSeeds = []string{
	`{}`, `[]`, `null`, `"x"`, `{"n":42}`, `{"to":"jane@example.com","cc":["a@example.com",3],"meta":{"ip":"10.0.0.1","ok":true,"n":null}}`,
	`{"jane@example.com":"subscribed"}`, `{"b":1,"a":2,"b":"x@example.com"}`, `[1.0, -0, 1e3, 12345678901234567890123, 4111111111111112]`,
	`{"pan": 4111111111111111, "amount": 1999}`, `["\u00e9\ud83d\ude00\ud800\udc00x\u0041"]`, "[\"\xff\xfe ok\"]",
	`["\u2028\u2029<>&\u0001\t\"\\\/"]`, `{"a\nb":"call me at +1 415 555 0100"}`, "\t{ \"a\" : [ 1 , \"b\" ] }\n",
	`{"a":1,}`, `[1 2]`, `{"a" 1}`, `{} {}`, `[`, `"\ud800"`, `[4111111111111111.0, -4111111111111111, 4111111111111111]`,
}

// FuzzScrubJSONMatchesDecoder: ScrubJSON writes exactly what the scrubber
// built on encoding/json's Decoder wrote, for any input, and refuses what it
// refused.
func FuzzScrubJSONMatchesDecoder(f *testing.F) {
	for _, s := range scrubJSONSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want, wantErr := oldScrubJSON(in)
		got, gotErr := ScrubJSON(in)
		if wantErr != nil {
			require.Error(t, gotErr, "%q: the old scrubber refused with %v, got %q", in, wantErr, got)
			return
		}
		require.NoError(t, gotErr, "%q", in)
		require.Equal(t, string(want), string(got), "%q", in)
	})
}

func TestScrubJSONMatchesDecoderOnSeeds(t *testing.T) {
	t.Parallel()
	for _, s := range scrubJSONSeeds {
		want, wantErr := oldScrubJSON([]byte(s))
		got, gotErr := ScrubJSON([]byte(s))
		if wantErr != nil {
			require.Error(t, gotErr, s)
			continue
		}
		require.NoError(t, gotErr, s)
		require.Equal(t, string(want), string(got), s)
	}
}
