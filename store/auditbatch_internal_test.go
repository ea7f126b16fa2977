package store

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The recorder reads the batch statement's boolean[] answer itself (text
// format); anything but a well-formed array of t and f is an error, never a
// guess, since it decides which calls were paid for.
func TestAppendBoolArray(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		text string
		want []bool
	}{
		{"{}", []bool{}},
		{"{t}", []bool{true}},
		{"{f}", []bool{false}},
		{"{t,f,t,t}", []bool{true, false, true, true}},
	} {
		got, err := appendBoolArray([]bool{}, []byte(tc.text))
		require.NoError(t, err, tc.text)
		require.Equal(t, tc.want, got, tc.text)
	}
	for _, bad := range []string{"", "{", "}", "t", "{t,}", "{,t}", "{t,,f}", "{tf}", "{true}", "{NULL}", "{t f}", "[t]", "{t,f"} {
		_, err := appendBoolArray(nil, []byte(bad))
		require.Error(t, err, "%q", bad)
	}
}

// The one-entry statement answers one boolean in text format: t or f, and
// nothing else is taken for either.
func TestAppendBool(t *testing.T) {
	t.Parallel()
	got, err := appendBool(nil, []byte("t"))
	require.NoError(t, err)
	got, err = appendBool(got, []byte("f"))
	require.NoError(t, err)
	require.Equal(t, []bool{true, false}, got)
	for _, bad := range []string{"", "true", "false", "T", "1", "0", "{t}", "tt", "NULL"} {
		_, err := appendBool(nil, []byte(bad))
		require.Error(t, err, "%q", bad)
	}
}
