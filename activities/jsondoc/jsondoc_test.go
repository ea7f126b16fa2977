package jsondoc

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/gowebpki/jcs"
	"github.com/stretchr/testify/require"
)

// seeds are documents at the edges of the readers' semantics.
var seeds = []string{
	`{}`, `[]`, `null`, ` true `, `"x"`, `0`, `-0`, `1.0`, `1e3`, `1E+2`, `-1.5e-7`, `123456789012345`,
	`1234567890123456`, `9007199254740993`, `1e400`, `-1e400`, `1e-400`, `0.1000000000000000001`,
	`{"n":42}`, `{"b":1,"a":[1,2,{"c":null}],"":"e"}`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`,
	`{"\u00e9":1,"é":2}`, `{"\ud83d\ude00":1,"\ufb01":2,"z":3}`, `{"€":1,"😀":2,"ﬁ":3}`,
	`["\ud800"]`, `["\udc00"]`, `["\ud800\u0041"]`, `["\ud800x"]`, `["\ud800\n"]`, `"\ud800"`, `["\ud800é"]`,
	`["\ud800aé"]`, `["\ud83d\ude00"]`, "[\"\xff\"]", "{\"\xff\":1}", "[\"\xed\xa0\x80\"]", "[\"\xef\xbf\xbd\"]",
	`["\u0000\u001f\u007f\b\f\n\r\t\"\\\/"]`, "[\"\x7f\"]", `["\u2028\u2029<>&"]`, `{"a":{"x":1,"x":2},"b":"\ud800"}`,
	`{"a":1,"a":{"b":"\udc00"}}`, `[1,2,`, `{"a" 1}`, `{"a":1,}`, `[01]`, `[1.]`, `[.5]`, `[+1]`, `tru`, `[1 2]`,
	`{} x`, "[\"a\x01\"]", `["\x"]`, `["\u12"]`, `[[[[[[[[[[]]]]]]]]]]`, `{"to":"jane@example.com","n":4111111111111111}`,
	"\t{ \"a\" : [ 1 , \"b\" ] }\n", `[1e21,1e20,0.000001,0.0000001,5e-324,1.7976931348623157e308]`,
}

func addSeeds(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
}

// FuzzParseMatchesEncodingJSON: Parse accepts exactly what encoding/json
// accepts, and Value is what encoding/json decodes with UseNumber.
func FuzzParseMatchesEncodingJSON(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := Parse(in)
		if !json.Valid(in) {
			require.Error(t, err, "%q", in)
			return
		}
		require.NoError(t, err, "%q", in)
		defer d.Release()
		dec := json.NewDecoder(bytes.NewReader(in))
		dec.UseNumber()
		var want any
		require.NoError(t, dec.Decode(&want))
		if got := d.Value(); !reflect.DeepEqual(got, want) {
			t.Fatalf("Value of %q:\n got  %#v\n want %#v", in, got, want)
		}
	})
}

// FuzzCanonicalMatchesJCS: on every document encoding/json accepts,
// AppendCanonical writes what jcs.Transform writes, or fails with its error.
func FuzzCanonicalMatchesJCS(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		if !json.Valid(in) {
			return
		}
		d, err := Parse(in)
		require.NoError(t, err)
		defer d.Release()
		got, gotErr := d.AppendCanonical(nil)
		want, wantErr := jcs.Transform(in)
		if wantErr != nil {
			require.Error(t, gotErr, "%q: jcs refused with %v, got %q", in, wantErr, got)
			require.Equal(t, wantErr.Error(), gotErr.Error(), "%q", in)
			return
		}
		require.NoError(t, gotErr, "%q", in)
		require.Equal(t, string(want), string(got), "%q", in)
	})
}

func TestCanonicalSeeds(t *testing.T) {
	t.Parallel()
	for _, s := range seeds {
		if !json.Valid([]byte(s)) {
			continue
		}
		d, err := Parse([]byte(s))
		require.NoError(t, err)
		got, gotErr := d.AppendCanonical(nil)
		want, wantErr := jcs.Transform([]byte(s))
		if wantErr != nil {
			require.EqualError(t, gotErr, wantErr.Error(), s)
		} else {
			require.NoError(t, gotErr, s)
			require.Equal(t, string(want), string(got), s)
		}
		d.Release()
	}
}

func TestParseRefusesDeepNesting(t *testing.T) {
	t.Parallel()
	deep := bytes.Repeat([]byte("["), MaxDepth+1)
	_, err := Parse(append(deep, bytes.Repeat([]byte("]"), MaxDepth+1)...))
	require.ErrorContains(t, err, "nested too deeply")
	ok := append(bytes.Repeat([]byte("["), MaxDepth), bytes.Repeat([]byte("]"), MaxDepth)...)
	d, err := Parse(ok)
	require.NoError(t, err)
	got, err := d.AppendCanonical(nil)
	require.NoError(t, err)
	require.Equal(t, string(ok), string(got))
	d.Release()
}

func TestCompactKeepsOrderAndDuplicates(t *testing.T) {
	t.Parallel()
	d, err := Parse([]byte(` { "b" : 1 , "a" : [ "x" , null , true ] , "b" : {} } `))
	require.NoError(t, err)
	defer d.Release()
	var names, values []string
	out := d.AppendCompact(nil, func(dst, s []byte, name bool) []byte {
		if name {
			names = append(names, string(s))
		} else {
			values = append(values, string(s))
		}
		return append(append(append(dst, '"'), s...), '"')
	}, func(dst, lit []byte) []byte { return append(dst, lit...) })
	require.Equal(t, `{"b":1,"a":["x",null,true],"b":{}}`, string(out))
	require.Equal(t, []string{"b", "a", "b"}, names)
	require.Equal(t, []string{"x"}, values)
}

func BenchmarkParams(b *testing.B) {
	in := []byte(`{"to":"someone","n":42,"note":"call me at +1 415 555 0100"}`)
	b.ReportAllocs()
	for b.Loop() {
		d, err := Parse(in)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := d.AppendCanonical(nil); err != nil {
			b.Fatal(err)
		}
		d.Release()
	}
}

// FuzzDecodeStringMatchesEncodingJSON: DecodeString reads a string at the
// start of its input as encoding/json decodes it, and refuses a malformed one.
func FuzzDecodeStringMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{`"x"`, `"a\"b" tail`, `"\u00e9\ud800\udc00\ud800x"`, "\"\xff\"", `"\x"`, `"ab`, `x`, `""`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s, end, ok := DecodeString(in)
		if !ok {
			var v string
			if len(in) > 0 && in[0] == '"' {
				require.Error(t, json.Unmarshal(in, &v), "%q", in)
			}
			return
		}
		var want string
		require.NoError(t, json.Unmarshal(in[:end], &want), "%q", in)
		require.Equal(t, want, s, "%q", in)
	})
}
