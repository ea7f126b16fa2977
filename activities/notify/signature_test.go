package notify_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/activities/notify"
)

// Golden values computed outside Go:
//
//	printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
const (
	goldenBody      = `{"a":1}`
	goldenMACTest   = "38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
	goldenMACOther  = "6e92b6b473427af428b944e567fd928ccc5b2db939622f43f853dab511367715"
	goldenTimestamp = 1700000000
)

func TestSign(t *testing.T) {
	t.Parallel()
	at := time.Unix(goldenTimestamp, 0)
	tests := []struct {
		name    string
		secrets [][]byte
		want    string
	}{
		{"one secret", [][]byte{[]byte("whsec_test")}, "t=1700000000,v1=" + goldenMACTest},
		{"rotation overlap signs with both, in order", [][]byte{[]byte("whsec_other"), []byte("whsec_test")},
			"t=1700000000,v1=" + goldenMACOther + ",v1=" + goldenMACTest},
		{"empty secret is skipped", [][]byte{{}, []byte("whsec_test")}, "t=1700000000,v1=" + goldenMACTest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, notify.Sign(tc.secrets, at, []byte(goldenBody)))
		})
	}
}

func TestVerifySignature(t *testing.T) {
	t.Parallel()
	now := time.Unix(goldenTimestamp, 0)
	body := []byte(goldenBody)
	secret := []byte("whsec_test")
	good := "t=1700000000,v1=" + goldenMACTest
	tests := []struct {
		name      string
		header    string
		body      []byte
		secret    []byte
		now       time.Time
		tolerance time.Duration
		wantErr   error
	}{
		{name: "good", header: good, now: now},
		{name: "good with spaces after commas", header: "t=1700000000, v1=" + goldenMACTest, now: now},
		{name: "two secrets, receiver holds the new one", header: notify.Sign([][]byte{[]byte("whsec_other"), secret}, now, body), now: now},
		{name: "two secrets, receiver holds the old one", header: notify.Sign([][]byte{secret, []byte("whsec_other")}, now, body), now: now},
		{name: "unknown scheme ignored", header: "t=1700000000,v0=abc,v1=" + goldenMACTest, now: now},
		{name: "4m59s old is accepted", header: good, now: now.Add(4*time.Minute + 59*time.Second)},
		{name: "exactly 5m old is accepted", header: good, now: now.Add(5 * time.Minute)},
		{name: "5m01s old is rejected", header: good, now: now.Add(5*time.Minute + time.Second), wantErr: notify.ErrSignatureExpired},
		{name: "one hour old is rejected", header: good, now: now.Add(time.Hour), wantErr: notify.ErrSignatureExpired},
		{name: "10 minutes in the future is rejected", header: good, now: now.Add(-10 * time.Minute), wantErr: notify.ErrSignatureExpired},
		{name: "custom tolerance", header: good, now: now.Add(2 * time.Minute), tolerance: time.Minute, wantErr: notify.ErrSignatureExpired},
		{name: "tampered body", header: good, body: []byte(`{"a":2}`), now: now, wantErr: notify.ErrSignatureMismatch},
		{name: "body with trailing newline", header: good, body: []byte(goldenBody + "\n"), now: now, wantErr: notify.ErrSignatureMismatch},
		{name: "timestamp changed", header: "t=1700000001,v1=" + goldenMACTest, now: now, wantErr: notify.ErrSignatureMismatch},
		{name: "wrong secret", header: good, secret: []byte("whsec_wrong"), now: now, wantErr: notify.ErrSignatureMismatch},
		{name: "signature of another secret only", header: "t=1700000000,v1=" + goldenMACOther, now: now, wantErr: notify.ErrSignatureMismatch},
		{name: "missing header", header: "", now: now, wantErr: notify.ErrSignatureMissing},
		{name: "no timestamp", header: "v1=" + goldenMACTest, now: now, wantErr: notify.ErrSignatureMalformed},
		{name: "no v1", header: "t=1700000000", now: now, wantErr: notify.ErrSignatureMalformed},
		{name: "two timestamps", header: "t=1700000000,t=1700000000,v1=" + goldenMACTest, now: now, wantErr: notify.ErrSignatureMalformed},
		{name: "non-decimal timestamp", header: "t=1.7e9,v1=" + goldenMACTest, now: now, wantErr: notify.ErrSignatureMalformed},
		{name: "negative timestamp", header: "t=-1,v1=" + goldenMACTest, now: now, wantErr: notify.ErrSignatureMalformed},
		{name: "v1 not hex", header: "t=1700000000,v1=zz", now: now, wantErr: notify.ErrSignatureMalformed},
		{name: "v1 truncated", header: "t=1700000000,v1=" + goldenMACTest[:62], now: now, wantErr: notify.ErrSignatureMalformed},
		{name: "entry without equals", header: "t=1700000000,v1", now: now, wantErr: notify.ErrSignatureMalformed},
		{name: "oversized header", header: "t=1700000000,v1=" + goldenMACTest + strings.Repeat(",x=y", 300), now: now, wantErr: notify.ErrSignatureMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, s := tc.body, tc.secret
			if b == nil {
				b = body
			}
			if s == nil {
				s = secret
			}
			err := notify.VerifySignature(tc.header, b, s, tc.now, tc.tolerance)
			if tc.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.wantErr)
		})
	}
}

func TestVerifySignatureRefusesEmptySecret(t *testing.T) {
	t.Parallel()
	// An empty key would make every forged header verify against an
	// HMAC anyone can compute.
	header := notify.Sign([][]byte{[]byte("x")}, time.Unix(goldenTimestamp, 0), []byte(goldenBody))
	require.Error(t, notify.VerifySignature(header, []byte(goldenBody), nil, time.Unix(goldenTimestamp, 0), 0))
}

func TestNewWebhookSecret(t *testing.T) {
	t.Parallel()
	a, err := notify.NewWebhookSecret()
	require.NoError(t, err)
	b, err := notify.NewWebhookSecret()
	require.NoError(t, err)
	require.NotEqual(t, a, b)
	for _, s := range []string{a, b} {
		require.True(t, strings.HasPrefix(s, "whsec_"), s)
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		require.NoError(t, err)
		require.Len(t, raw, 32)
	}
}

func BenchmarkSign(b *testing.B) {
	secrets := [][]byte{[]byte("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"), []byte("whsec_b2xkLXNlY3JldC1vbGQtc2VjcmV0LW9sZC1zZWNyZXQtb2xk")}
	body := []byte(strings.Repeat(`{"k":"v"},`, 100))
	now := time.Unix(goldenTimestamp, 0)
	b.ReportAllocs()
	for b.Loop() {
		_ = notify.Sign(secrets, now, body)
	}
}
