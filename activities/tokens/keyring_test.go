package tokens

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNewKeyring(t *testing.T) {
	t.Parallel()
	k1, k2 := testKey("k1", 1), testKey("k2", 2)
	retired := testKey("k3", 3)
	retired.Retired = true
	for _, tc := range []struct {
		name    string
		active  string
		keys    []Key
		wantErr string
	}{
		{"single key", "k1", []Key{k1}, ""},
		{"active need not come first", "k2", []Key{k1, k2}, ""},
		{"with a retired key", "k1", []Key{k1, retired}, ""},
		{"no keys", "k1", nil, "not among the keys"},
		{"active missing", "k9", []Key{k1}, "not among the keys"},
		{"active retired", "k3", []Key{k1, retired}, "is retired"},
		{"duplicate id", "k1", []Key{k1, testKey("k1", 5)}, "appears twice"},
		{"duplicate of a retired id", "k1", []Key{k1, retired, testKey("k3", 5)}, "appears twice"},
		{"short secret", "k1", []Key{{ID: "k1", Secret: make([]byte, MinSecretLen-1)}}, "at least 32"},
		{"empty id", "", []Key{{ID: "", Secret: k1.Secret}}, "key id"},
		{"id with separator", "a:b", []Key{{ID: "a:b", Secret: k1.Secret}}, "key id"},
		{"id too long", strings.Repeat("k", 65), []Key{{ID: strings.Repeat("k", 65), Secret: k1.Secret}}, "key id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kr, err := NewKeyring(tc.active, tc.keys...)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.active, kr.ActiveID())
		})
	}
}

func TestNewKeyringCopiesSecrets(t *testing.T) {
	t.Parallel()
	k := testKey("k1", 1)
	kr := mustKeyring(t, "k1", k)
	tok, err := kr.Mint(testClaims())
	require.NoError(t, err)
	for i := range k.Secret {
		k.Secret[i] = 0xff // the caller reuses its buffer
	}
	_, err = kr.Verify(tok, t0)
	require.NoError(t, err)
}

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	a, err := GenerateKey("a")
	require.NoError(t, err)
	b, err := GenerateKey("b")
	require.NoError(t, err)
	require.Len(t, a.Secret, 32)
	require.NotEqual(t, a.Secret, b.Secret)
	require.False(t, a.Retired)
	_, err = NewKeyring("a", a, b)
	require.NoError(t, err)

	_, err = GenerateKey("bad id!")
	require.Error(t, err)
}

func TestParseKeyring(t *testing.T) {
	t.Parallel()
	s1, s2, s3 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{0xfb}, 40), bytes.Repeat([]byte{3}, 32)
	std := base64.StdEncoding.EncodeToString
	for _, tc := range []struct {
		name       string
		spec       string
		wantActive string
		verifies   []string // key ids whose tokens must verify
		refuses    []string // key ids whose tokens must not
	}{
		{"one key", "k1:" + std(s1), "k1", []string{"k1"}, nil},
		{"two keys", "k2:" + std(s2) + ",k1:" + std(s1), "k2", []string{"k1", "k2"}, nil},
		{"retired key", "k2:" + std(s2) + ",k1:" + std(s1) + ",!k3:" + std(s3), "k2", []string{"k1", "k2"}, []string{"k3"}},
		{"white space and newlines", " k2:" + std(s2) + " ,\n k1:" + std(s1) + "\n", "k2", []string{"k1", "k2"}, nil},
		{"unpadded", "k1:" + base64.RawStdEncoding.EncodeToString(s1), "k1", []string{"k1"}, nil},
		{"url-safe alphabet", "k2:" + base64.URLEncoding.EncodeToString(s2), "k2", []string{"k2"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kr, err := ParseKeyring(tc.spec)
			require.NoError(t, err)
			require.Equal(t, tc.wantActive, kr.ActiveID())
			secrets := map[string][]byte{"k1": s1, "k2": s2, "k3": s3}
			for _, id := range tc.verifies {
				tok, err := mustKeyring(t, id, Key{ID: id, Secret: secrets[id]}).Mint(testClaims())
				require.NoError(t, err)
				_, err = kr.Verify(tok, t0)
				require.NoError(t, err, "token of %s", id)
			}
			for _, id := range tc.refuses {
				tok, err := mustKeyring(t, id, Key{ID: id, Secret: secrets[id]}).Mint(testClaims())
				require.NoError(t, err)
				_, err = kr.Verify(tok, t0)
				require.ErrorIs(t, err, ErrUnknownKey, "token of %s", id)
			}
		})
	}
}

func TestParseKeyringErrorsNeverEchoSecrets(t *testing.T) {
	t.Parallel()
	secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("s3cr3t-material!"), 2)) // 32 bytes
	short := base64.StdEncoding.EncodeToString([]byte("short-but-secret"))
	for _, tc := range []struct {
		name     string
		spec     string
		wantErr  string
		mustHide []string
	}{
		{"empty", "", "entry 1 is empty", nil},
		{"trailing comma", "k1:" + secret + ",", "entry 2 is empty", []string{secret}},
		{"secret without id", secret, "want <key id>:<base64 secret>", []string{secret}},
		{"secret pasted as id", secret + ":" + secret, "key id must be", []string{secret}},
		{"not base64", "k1:" + secret + "%%", "not base64", []string{secret}},
		{"empty secret", "k1:", "secret is 0 bytes", nil},
		{"short secret", "k1:" + short, "secret is 16 bytes", []string{short, "short-but-secret"}},
		{"active retired", "!k1:" + secret, "active key and cannot be retired", []string{secret}},
		{"duplicate id", "k1:" + secret + ",k1:" + secret, "appears twice", []string{secret}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseKeyring(tc.spec)
			require.ErrorContains(t, err, tc.wantErr)
			for _, s := range tc.mustHide {
				require.NotContains(t, err.Error(), s)
				require.NotContains(t, err.Error(), s[:12], "not even a prefix of it")
			}
		})
	}
}

func TestFormatKeyringRoundTrip(t *testing.T) {
	t.Parallel()
	a, err := GenerateKey("a")
	require.NoError(t, err)
	b, err := GenerateKey("b")
	require.NoError(t, err)
	c, err := GenerateKey("c")
	require.NoError(t, err)
	c.Retired = true

	spec := FormatKeyring(a, b, c)
	require.True(t, strings.HasPrefix(spec, "a:"))
	require.Contains(t, spec, ",!c:")
	kr, err := ParseKeyring(spec)
	require.NoError(t, err)
	require.Equal(t, "a", kr.ActiveID())

	tok, err := mustKeyring(t, "b", b).Mint(testClaims())
	require.NoError(t, err)
	_, err = kr.Verify(tok, t0)
	require.NoError(t, err)
}

func TestKeysDoNotPrintSecrets(t *testing.T) {
	t.Parallel()
	k := Key{ID: "k1", Secret: []byte(strings.Repeat("TOPSECRET", 4))}
	kr := mustKeyring(t, "k1", k, testKey("k0", 0))
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	logger.Info("keys", "key", k, "keys", []Key{k}, "keyring", kr)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("keys", "key", k)
	printed := fmt.Sprintf("%v %+v %#v %s %v %+v", k, k, k, k, kr, kr) + logs.String()

	require.Contains(t, printed, "k1")
	for _, leak := range []string{"TOPSECRET", base64.StdEncoding.EncodeToString(k.Secret)[:12], "VE9QU0VDUkVU"} {
		require.NotContains(t, printed, leak)
	}
}
