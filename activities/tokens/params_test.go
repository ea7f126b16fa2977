package tokens

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestHashParameters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		raw  string
		want string
	}{
		// Fixed vector: computed independently of this code.
		{"known vector", `{"a":[1,2],"b":1}`, "94a786c3662bc7beeb598efa7d8cb58d7bea25d6c275ea9785a0230ff1f8c2ba"},
		{"members reordered", `{"b":1,"a":[1,2]}`, "94a786c3662bc7beeb598efa7d8cb58d7bea25d6c275ea9785a0230ff1f8c2ba"},
		{"white space", " {\n \"b\" : 1 ,\t\"a\" : [ 1 , 2 ] } ", "94a786c3662bc7beeb598efa7d8cb58d7bea25d6c275ea9785a0230ff1f8c2ba"},
		{"1.0 is 1 (RFC 8785 §3.2.2.3)", `{"a":[1.0,2.00],"b":10e-1}`, "94a786c3662bc7beeb598efa7d8cb58d7bea25d6c275ea9785a0230ff1f8c2ba"},
		{"escapes normalised", `{"\u0061":[1,2],"b":1}`, "94a786c3662bc7beeb598efa7d8cb58d7bea25d6c275ea9785a0230ff1f8c2ba"},
		{"keys sorted by UTF-16 code units (§3.2.3)", "{\"\ufb33\":1,\"\U0001F600\":2}", sha256Hex("{\"\U0001F600\":2,\"\ufb33\":1}")},
		{"nested objects sorted", `{"z":{"y":1,"x":2},"a":null}`, sha256Hex(`{"a":null,"z":{"x":2,"y":1}}`)},
		{"large exponent written the ECMAScript way", `{"n":1e21,"m":0.000001}`, sha256Hex(`{"m":0.000001,"n":1e+21}`)},
		{"scalar", `"hello"`, sha256Hex(`"hello"`)},
		{"empty object is not none", `{}`, sha256Hex(`{}`)},
		{"empty", ``, ""},
		{"white space only", " \n\t", ""},
		{"null", `null`, ""},
		{"null with white space", ` null `, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := HashParameters(json.RawMessage(tc.raw))
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestHashParametersDistinguishesValues(t *testing.T) {
	t.Parallel()
	base, err := HashParameters(json.RawMessage(`{"a":[1,2],"b":1}`))
	require.NoError(t, err)
	for _, tc := range []struct{ name, raw string }{
		{"different number", `{"a":[1,2],"b":2}`},
		{"number as string", `{"a":[1,2],"b":"1"}`},
		{"array order", `{"a":[2,1],"b":1}`},
		{"extra member", `{"a":[1,2],"b":1,"c":null}`},
		{"key case", `{"A":[1,2],"b":1}`},
		{"nested in array", `[{"a":[1,2],"b":1}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := HashParameters(json.RawMessage(tc.raw))
			require.NoError(t, err)
			require.NotEqual(t, base, got)
		})
	}
}

func TestHashParametersRejectsInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, raw string }{
		{"truncated", `{"a":`},
		{"duplicate member (§3.1)", `{"a":1,"a":2}`},
		{"trailing data", `{} {}`},
		{"number out of double range", `{"a":1e400}`},
		{"lone surrogate", `{"a":"\ud800"}`},
		{"single quotes", `{'a':1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := HashParameters(json.RawMessage(tc.raw))
			require.ErrorIs(t, err, ErrInvalidParameters)
		})
	}
}

func TestParamsMatch(t *testing.T) {
	t.Parallel()
	bound, err := HashParameters(json.RawMessage(`{"to":"a@example.com","n":1}`))
	require.NoError(t, err)
	for _, tc := range []struct {
		name  string
		bound string
		raw   string
		want  bool
	}{
		{"same parameters reordered", bound, `{"n":1.0,"to":"a@example.com"}`, true},
		{"different parameters", bound, `{"n":2,"to":"a@example.com"}`, false},
		{"parameters missing", bound, ``, false},
		{"no parameters bound, none given", "", `null`, true},
		{"no parameters bound, some given", "", `{"n":1}`, false},
		{"bound hash truncated", bound[:63], `{"n":1,"to":"a@example.com"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ok, err := ParamsMatch(tc.bound, json.RawMessage(tc.raw))
			require.NoError(t, err)
			require.Equal(t, tc.want, ok)
		})
	}
	_, err = ParamsMatch(bound, json.RawMessage(`{"n":`))
	require.ErrorIs(t, err, ErrInvalidParameters)
}

func TestCheckParametersExactNumbers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, raw string
		path      string // "" when the number is accepted
	}{
		{"small integer", `{"n":42}`, ""},
		{"negative zero", `{"n":-0}`, ""},
		{"2^53 is a double", `{"n":9007199254740992}`, ""},
		{"2^53+1 is not", `{"amount":9007199254740993}`, ".amount"},
		{"20 digits", `{"id":12345678901234567891}`, ".id"},
		{"0.1 is its own shortest form", `{"n":0.1}`, ""},
		{"trailing zeros are the same value", `{"n":1.50}`, ""},
		{"exponent", `{"n":1e2}`, ""},
		{"1e21 is written 1e+21", `{"n":1e21}`, ""},
		{"largest double", `{"n":1.7976931348623157e308}`, ""},
		{"smallest subnormal", `{"n":5e-324}`, ""},
		{"more precision than a double", `{"n":0.1000000000000000001}`, ".n"},
		{"overflow", `{"n":1e400}`, ".n"},
		{"underflow", `{"n":1e-400}`, ".n"},
		{"rounds to a subnormal", `{"n":3e-324}`, ".n"},
		{"huge exponent of zero", `{"n":0e99999999999999999999}`, ""},
		{"in an array", `{"a":[1,2,{"b":[0,9007199254740993]}]}`, ".a[2].b[1]"},
		{"escaped member name", `{"x\"y":{"z":12345678901234567891}}`, `.x"y.z`},
		{"digits inside strings are text", `{"s":"12345678901234567891","t":"-9e999"}`, ""},
		{"member name of digits", `{"12345678901234567891":1}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckParameters([]byte(tc.raw))
			if tc.path == "" {
				require.NoError(t, err)
				_, err := HashParameters(json.RawMessage(tc.raw))
				require.NoError(t, err)
				return
			}
			var je *JSONError
			require.ErrorAs(t, err, &je)
			require.Equal(t, tc.path, je.Path)
			_, err = HashParameters(json.RawMessage(tc.raw))
			require.ErrorIs(t, err, ErrInvalidParameters)
			require.ErrorAs(t, err, &je)
		})
	}
}

// The defect this guards against: 9007199254740993 was approved and
// 9007199254740992 verified, because both hashed alike.
func TestParamsMatchRefusesARoundedNeighbour(t *testing.T) {
	t.Parallel()
	_, err := HashParameters(json.RawMessage(`{"amount":9007199254740993}`))
	require.ErrorIs(t, err, ErrInvalidParameters)
	bound, err := HashParameters(json.RawMessage(`{"amount":9007199254740992}`))
	require.NoError(t, err)
	_, err = ParamsMatch(bound, json.RawMessage(`{"amount":9007199254740993}`))
	require.ErrorIs(t, err, ErrInvalidParameters)
}

func TestCheckNumbersInRangeKeepsExactValues(t *testing.T) {
	t.Parallel()
	require.NoError(t, CheckNumbersInRange([]byte(`{"id":12345678901234567891,"n":0.1000000000000000001,"m":3e-324}`)))
	for _, raw := range []string{`{"n":1e400}`, `{"a":[-1e-400]}`} {
		var je *JSONError
		require.ErrorAs(t, CheckNumbersInRange([]byte(raw)), &je, raw)
	}
}

func TestCheckParametersDepth(t *testing.T) {
	t.Parallel()
	nest := func(levels int) string {
		// levels nested containers, alternating objects and arrays.
		var open, closing string
		for i := range levels {
			if i%2 == 0 {
				open += `{"k":`
				closing = `}` + closing
			} else {
				open += `[`
				closing = `]` + closing
			}
		}
		return open + `1` + closing
	}
	require.NoError(t, CheckParameters([]byte(nest(MaxDepth))))
	require.NoError(t, CheckNumbersInRange([]byte(nest(MaxDepth))))
	for _, levels := range []int{MaxDepth + 1, 5000} {
		var je *JSONError
		require.ErrorAs(t, CheckParameters([]byte(nest(levels))), &je)
		require.Contains(t, je.Reason, "nested deeper than 64 levels")
		require.True(t, strings.HasPrefix(je.Path, ".k[0].k[0]"), je.Path)
		require.ErrorAs(t, CheckNumbersInRange([]byte(nest(levels))), &je)
		_, err := HashParameters(json.RawMessage(nest(levels)))
		require.ErrorIs(t, err, ErrInvalidParameters)
	}
	// Brackets inside strings are text.
	require.NoError(t, CheckParameters([]byte(`{"s":"`+strings.Repeat("[{", 100)+`"}`)))
}
