package tokens

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
