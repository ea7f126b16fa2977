package tokens

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func testReceipt() Receipt {
	return Receipt{
		CheckID: "chk_1", Org: "org_1", Tool: "delete_rows", Tenant: "acme", Resource: "db", Method: "DELETE",
		ParamsHash: strings.Repeat("cd", 32), Permission: "requires_approval", Level: 3, Scope: "tenant",
		RuleID: "rul_1", DecidedAt: t0.Add(123 * time.Millisecond),
	}
}

func TestReceiptRoundTrip(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, "k1", testKey("k1", 1))
	for _, tc := range []struct {
		name string
		edit func(*Receipt)
	}{
		{"all fields", func(*Receipt) {}},
		{"fallback decision without rule or tenant", func(r *Receipt) {
			r.Tenant, r.Resource, r.Method, r.ParamsHash, r.RuleID, r.Scope = "", "", "", "", "", "fallback"
			r.Level, r.Permission = 12, "requires_approval"
		}},
		{"level zero gate", func(r *Receipt) { r.Level, r.Permission, r.Scope = 0, "disabled", "" }},
		{"sub-millisecond time truncated", func(r *Receipt) { r.DecidedAt = t0.Add(1500 * time.Microsecond) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := testReceipt()
			tc.edit(&r)
			s, err := kr.SignReceipt(r)
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(s, "oak_rcpt_"))

			got, err := kr.VerifyReceipt(s)
			require.NoError(t, err)
			want := r
			want.KeyID = "k1"
			want.DecidedAt = r.DecidedAt.Truncate(time.Millisecond)
			require.Equal(t, want, got)
		})
	}
}

func TestVerifyReceiptRejectsTampering(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, "k1", testKey("k1", 1))
	s, err := kr.SignReceipt(testReceipt())
	require.NoError(t, err)
	signed, mac, _ := strings.Cut(s, ".")
	payload, err := b64.DecodeString(strings.TrimPrefix(signed, receiptPrefix))
	require.NoError(t, err)
	forged := strings.Replace(string(payload), `"perm":"requires_approval"`, `"perm":"allowed"`, 1)
	require.NotEqual(t, string(payload), forged)

	for _, tc := range []struct {
		name    string
		receipt string
		want    error
	}{
		{"verdict changed", receiptPrefix + b64.EncodeToString([]byte(forged)) + "." + mac, ErrBadSignature},
		{"signature from another keyring", mustSign(t, mustKeyring(t, "k1", testKey("k1", 7))), ErrBadSignature},
		{"token prefix", tokenPrefix + strings.TrimPrefix(s, receiptPrefix), ErrMalformed},
		{"truncated", s[:len(s)-3], ErrMalformed},
		{"oversized", s + strings.Repeat("A", MaxLen), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := kr.VerifyReceipt(tc.receipt)
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func mustSign(t *testing.T, kr *Keyring) string {
	t.Helper()
	s, err := kr.SignReceipt(testReceipt())
	require.NoError(t, err)
	return s
}

func TestSignReceiptRejectsInvalid(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, "k1", testKey("k1", 1))
	for _, tc := range []struct {
		name string
		edit func(*Receipt)
	}{
		{"no check id", func(r *Receipt) { r.CheckID = "" }},
		{"no org", func(r *Receipt) { r.Org = "" }},
		{"no tool", func(r *Receipt) { r.Tool = "" }},
		{"no permission", func(r *Receipt) { r.Permission = "" }},
		{"no decision time", func(r *Receipt) { r.DecidedAt = time.Time{} }},
		{"bad params hash", func(r *Receipt) { r.ParamsHash = "xyz" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := testReceipt()
			tc.edit(&r)
			_, err := kr.SignReceipt(r)
			require.ErrorIs(t, err, ErrInvalidClaims)
		})
	}
}
