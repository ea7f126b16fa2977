package passkeys

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "dev on localhost", cfg: Config{RPID: "localhost", Origins: []string{"http://localhost:8080"}}},
		{name: "https subdomain", cfg: Config{RPID: "example.com", Origins: []string{"https://app.example.com"}}},
		{name: "no rp id", cfg: Config{Origins: []string{"https://example.com"}}, wantErr: "relying-party id is required"},
		{name: "no origins", cfg: Config{RPID: "example.com"}, wantErr: "at least one origin"},
		{name: "plain http elsewhere", cfg: Config{RPID: "example.com", Origins: []string{"http://example.com"}}, wantErr: "must be https"},
		{name: "origin outside rp", cfg: Config{RPID: "example.com", Origins: []string{"https://example.org"}}, wantErr: "not within"},
		{name: "suffix is not a subdomain", cfg: Config{RPID: "example.com", Origins: []string{"https://badexample.com"}}, wantErr: "not within"},
		{name: "origin with path", cfg: Config{RPID: "example.com", Origins: []string{"https://example.com/app"}}, wantErr: "scheme://host"},
		{name: "rp id with scheme", cfg: Config{RPID: "https://example.com", Origins: []string{"https://example.com"}}, wantErr: "bare host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestRecoveryCodeForms(t *testing.T) {
	t.Parallel()
	codes, hashes := newRecoveryCodes()
	require.Len(t, codes, RecoveryCodeCount)
	seen := map[string]bool{}
	for i, c := range codes {
		require.Len(t, c, RecoveryCodeLen)
		require.False(t, seen[c])
		seen[c] = true
		h, ok := hashRecoveryCode(c)
		require.True(t, ok)
		require.Equal(t, hashes[i], h)
	}
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{in: "0123456789ABCDEFGHJKMNPQRS", want: "0123456789ABCDEFGHJKMNPQRS", ok: true},
		{in: "o123456789abcdefghjkmnpqrs", want: "0123456789ABCDEFGHJKMNPQRS", ok: true},
		{in: "0I2L4-56789 ABCDE-FGHJKMNPQRS", want: "01214" + "56789ABCDEFGHJKMNPQRS", ok: true},
		{in: "0123456789ABCDEFGHJKMNPQR", ok: false},   // 25 characters
		{in: "0123456789ABCDEFGHJKMNPQRSU", ok: false}, // U is not in the alphabet
		{in: "0123456789ABCDEFGHJKMNPQRÉ", ok: false},  // not ASCII
	} {
		got, ok := normalizeRecoveryCode(tc.in)
		require.Equal(t, tc.ok, ok, tc.in)
		if ok {
			require.Equal(t, tc.want, got)
		}
	}
}
