package pii

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestScrubJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		want string
	}{
		{
			name: "nested values scrubbed, keys and order kept",
			in:   `{"to": "jane@example.com", "cc": ["a@example.com", 3], "meta": {"ip": "10.0.0.1", "ok": true, "n": null}}`,
			want: `{"to":"[redacted:email]","cc":["[redacted:email]",3],"meta":{"ip":"[redacted:ip]","ok":true,"n":null}}`,
		},
		{
			name: "keys are never scrubbed",
			in:   `{"jane@example.com": "subscribed"}`,
			want: `{"jane@example.com":"subscribed"}`,
		},
		{
			name: "member order and duplicates preserved",
			in:   `{"b":1,"a":2,"b":"x@example.com"}`,
			want: `{"b":1,"a":2,"b":"[redacted:email]"}`,
		},
		{
			name: "numbers written exactly as given",
			in:   `[1.0, -0, 1e3, 12345678901234567890123, 4111111111111112]`,
			want: `[1.0,-0,1e3,12345678901234567890123,4111111111111112]`,
		},
		{
			name: "card stored as a number becomes a string",
			in:   `{"pan": 4111111111111111, "amount": 1999}`,
			want: `{"pan":"[redacted:card]","amount":1999}`,
		},
		{
			name: "escapes round trip",
			in:   `{"s": "line\nbreak \"quoted\" \\ tab\t \u0001 <b>&amp; \u2028 é 4111111111111111"}`,
			want: `{"s":"line\nbreak \"quoted\" \\ tab\t \u0001 <b>&amp; \u2028 é [redacted:card]"}`,
		},
		{
			name: "top level string",
			in:   `"call +1 415 555 2671"`,
			want: `"call [redacted:phone]"`,
		},
		{name: "top level null", in: `null`, want: `null`},
		{name: "empty containers", in: ` { "a" : [ ] , "b" : { } } `, want: `{"a":[],"b":{}}`},
		{name: "empty input", in: ``, want: ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ScrubJSON(json.RawMessage(tc.in))
			require.NoError(t, err)
			require.Equal(t, tc.want, string(got))
			if tc.in != "" {
				require.True(t, json.Valid(got), "output must be valid JSON")
				again, err := ScrubJSON(got)
				require.NoError(t, err)
				require.Equal(t, string(got), string(again), "ScrubJSON must be idempotent")
			}
		})
	}
}

func TestScrubJSONRejectsInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in string }{
		{"truncated object", `{"a": "b"`},
		{"trailing garbage", `{"a":1} x`},
		{"two values", `1 2`},
		{"bare word", `hello`},
		{"trailing comma", `[1,]`},
		{"single quotes", `{'a': 1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ScrubJSON(json.RawMessage(tc.in))
			require.Error(t, err)
		})
	}
}
