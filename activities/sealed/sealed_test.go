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

func newTestKey(t *testing.T) []byte {
	t.Helper()
	spec, err := NewKey()
	require.NoError(t, err)
	k, err := ParseKey(spec)
	require.NoError(t, err)
	return k
}

// TestRotation follows a key rotation: values sealed under the old key
// open with a box that has it as previous, Reseal moves them to the new
// key, and once the old key is dropped only resealed values open.
func TestRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey, otherKey := newTestKey(t), newTestKey(t), newTestKey(t)
	oldBox, err := NewBox(oldKey)
	require.NoError(t, err)
	ct, err := oldBox.Seal([]byte("whsec_1"), "org_webhook_secret:org_1")
	require.NoError(t, err)

	rotating, err := NewBox(newKey, otherKey, oldKey)
	require.NoError(t, err)
	pt, err := rotating.Open(ct, "org_webhook_secret:org_1")
	require.NoError(t, err)
	require.Equal(t, "whsec_1", string(pt))
	_, err = rotating.Open(ct, "org_webhook_secret:org_2")
	require.ErrorIs(t, err, ErrOpen, "a previous key does not lift the row binding")

	resealed, changed, err := rotating.Reseal(ct, "org_webhook_secret:org_1")
	require.NoError(t, err)
	require.True(t, changed)
	again, changed, err := rotating.Reseal(resealed, "org_webhook_secret:org_1")
	require.NoError(t, err)
	require.False(t, changed, "a value under the current key is left alone")
	require.Equal(t, resealed, again)
	_, _, err = rotating.Reseal(ct, "org_webhook_secret:org_2")
	require.ErrorIs(t, err, ErrOpen)

	rotated, err := NewBox(newKey)
	require.NoError(t, err)
	_, err = rotated.Open(ct, "org_webhook_secret:org_1")
	require.ErrorIs(t, err, ErrOpen, "without the previous key, the old ciphertext does not open")
	pt, err = rotated.Open(resealed, "org_webhook_secret:org_1")
	require.NoError(t, err)
	require.Equal(t, "whsec_1", string(pt))

	_, err = NewBox(newKey, newKey)
	require.Error(t, err, "the current key listed as previous is a configuration mistake")
	_, err = NewBox(newKey, make([]byte, 16))
	require.Error(t, err)
}

func TestParseKeys(t *testing.T) {
	t.Parallel()
	a, _ := NewKey()
	b, _ := NewKey()
	keys, err := ParseKeys(" " + a + " , " + b)
	require.NoError(t, err)
	require.Len(t, keys, 2)
	keys, err = ParseKeys("  ")
	require.NoError(t, err)
	require.Empty(t, keys)
	_, err = ParseKeys(a + ",,")
	require.ErrorContains(t, err, "key 2")
	_, err = ParseKeys(a + ",secret-ish")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secret-ish")
}
