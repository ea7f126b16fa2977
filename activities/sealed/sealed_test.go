package sealed

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSealOpen(t *testing.T) {
	t.Parallel()
	key, err := NewKey()
	require.NoError(t, err)
	raw, err := ParseKey(key)
	require.NoError(t, err)
	box, err := NewBox(raw)
	require.NoError(t, err)
	other, _ := NewKey()
	otherRaw, _ := ParseKey(other)
	otherBox, _ := NewBox(otherRaw)

	ct, err := box.Seal([]byte("pd-api-key"), "channel:ch_1")
	require.NoError(t, err)
	require.NotContains(t, string(ct), "pd-api-key")

	pt, err := box.Open(ct, "channel:ch_1")
	require.NoError(t, err)
	require.Equal(t, "pd-api-key", string(pt))

	tampered := append([]byte{}, ct...)
	tampered[len(tampered)-1] ^= 1
	cases := map[string]func() ([]byte, error){
		"other row":   func() ([]byte, error) { return box.Open(ct, "channel:ch_2") },
		"other key":   func() ([]byte, error) { return otherBox.Open(ct, "channel:ch_1") },
		"tampered":    func() ([]byte, error) { return box.Open(tampered, "channel:ch_1") },
		"truncated":   func() ([]byte, error) { return box.Open(ct[:10], "channel:ch_1") },
		"bad version": func() ([]byte, error) { c := append([]byte{9}, ct[1:]...); return box.Open(c, "channel:ch_1") },
	}
	for name, open := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := open()
			require.ErrorIs(t, err, ErrOpen)
		})
	}
}

func TestParseKeyNeverEchoesInput(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "short", strings.Repeat("A", 40), "not base64 !!!"} {
		_, err := ParseKey(bad)
		require.Error(t, err)
		if bad != "" {
			require.NotContains(t, err.Error(), bad)
		}
	}
	_, err := NewBox(make([]byte, 16))
	require.Error(t, err)
}
