package tokens

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/gowebpki/jcs"
	"github.com/stretchr/testify/require"
)

// oldHashParameters is HashParameters as it was before it read a parsed
// document (jsondoc): github.com/gowebpki/jcs's Transform on the text. It is
// the oracle FuzzHashParametersMatchesJCS holds HashParameters to.
func oldHashParameters(raw json.RawMessage) (string, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return "", nil
	}
	if err := CheckParameters(trimmed); err != nil {
		return "", fmt.Errorf("hash parameters: %w: %w", ErrInvalidParameters, err)
	}
	canonical, err := jcs.Transform(trimmed)
	if err != nil {
		return "", fmt.Errorf("hash parameters: %w: %s", ErrInvalidParameters, err.Error())
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:]), nil
}

var hashSeeds = []string{
	``, ` `, `null`, `{}`, `{"n":42}`, `{"b":1,"a":[1,2]}`, `{"a":[1,2],"b":1}`, `{"n":9007199254740993}`, `{"n":9007199254740992}`,
	`{"n":12345678901234567891}`, `{"n":1e400}`, `{"n":1.50}`, `{"n":1e2}`, `{"n":-0}`, `{"n":0.1000000000000000001}`,
	`{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"\ud83d\ude00":1,"\ufb01":2}`, `{"s":"\ud800"}`, `{"s":"\udc00"}`, `{"s":"\ud800\u0041"}`,
	"{\"s\":\"\xff\"}", `{"s":"\u0000"}`, `{"s":"\u2028 \"q\" \\ \/ \b\f\n\r\t"}`, `{"a":{"x":1,"x":2},"b":"\ud800"}`,
	`[1,2,`, `{"a":1,}`, `tru`, `{"to":"someone","n":42,"note":"call me at +1 415 555 0100"}`,
	"\n{ \"a\" : [ 1 , { \"c\" : null , \"b\" : true } ] }\t", `[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
}

// FuzzHashParametersMatchesJCS: for any input, HashParameters gives the
// hash the jcs-based implementation gave, or refuses with its error.
func FuzzHashParametersMatchesJCS(f *testing.F) {
	for _, s := range hashSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want, wantErr := oldHashParameters(in)
		got, gotErr := HashParameters(in)
		if wantErr != nil {
			require.EqualError(t, gotErr, wantErr.Error(), "%q", in)
			return
		}
		require.NoError(t, gotErr, "%q", in)
		require.Equal(t, want, got, "%q", in)
	})
}

func TestHashParametersMatchesJCSOnSeeds(t *testing.T) {
	t.Parallel()
	for _, s := range hashSeeds {
		want, wantErr := oldHashParameters([]byte(s))
		got, gotErr := HashParameters([]byte(s))
		if wantErr != nil {
			require.EqualError(t, gotErr, wantErr.Error(), s)
			continue
		}
		require.NoError(t, gotErr, s)
		require.Equal(t, want, got, s)
	}
}
