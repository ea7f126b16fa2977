package tokens

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func testKey(id string, fill byte) Key {
	return Key{ID: id, Secret: bytes.Repeat([]byte{fill}, MinSecretLen)}
}

func mustKeyring(t testing.TB, active string, keys ...Key) *Keyring {
	t.Helper()
	kr, err := NewKeyring(active, keys...)
	require.NoError(t, err)
	return kr
}

func testClaims() Claims {
	return Claims{
		TokenID:    "tok_aaaaaaaaaaaaaaaaaaaaaaaaaa",
		Org:        "org_1",
		Tool:       "send_email",
		Tenant:     "acme",
		Resource:   "mailbox",
		Method:     "send",
		ParamsHash: strings.Repeat("ab", 32),
		Source:     Source(SourceApproval, "apr_1"),
		IssuedAt:   t0,
		ExpiresAt:  t0.Add(5 * time.Minute),
		Nonce:      "AAECAwQFBgcICQoLDA0ODw", // 16 bytes
	}
}

func TestMintVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, "k1", testKey("k1", 1))
	for _, tc := range []struct {
		name   string
		claims func(*Claims)
	}{
		{"all claims", func(*Claims) {}},
		{"only required claims", func(c *Claims) {
			c.Tenant, c.Resource, c.Method, c.ParamsHash, c.IssuedAt = "", "", "", "", time.Time{}
		}},
		{"check source", func(c *Claims) { c.Source = Source(SourceCheck, "chk_1") }},
		{"unicode and quotes survive", func(c *Claims) { c.Tool, c.Resource = `crm.update "contact"`, "Ürün <&> 日本" }},
		{"sub-second times are truncated", func(c *Claims) {
			c.IssuedAt, c.ExpiresAt = t0.Add(400*time.Millisecond), t0.Add(5*time.Minute+900*time.Millisecond)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := testClaims()
			tc.claims(&c)
			tok, err := kr.Mint(c)
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(tok, "oak_tok_"))
			require.LessOrEqual(t, len(tok), MaxLen)

			got, err := kr.Verify(tok, t0.Add(time.Minute))
			require.NoError(t, err)
			want := c
			want.KeyID = "k1"
			want.ExpiresAt = c.ExpiresAt.Truncate(time.Second)
			if !c.IssuedAt.IsZero() {
				want.IssuedAt = c.IssuedAt.Truncate(time.Second)
			}
			require.Equal(t, want, got)
		})
	}
}

// TestMintIsCompact pins the size budget: a token travels in a header.
func TestMintIsCompact(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, "k1", testKey("k1", 1))
	tok, err := kr.Mint(testClaims())
	require.NoError(t, err)
	require.Less(t, len(tok), 450, tok)
}

func TestVerifyRejectsTampering(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, "k1", testKey("k1", 1))
	tok, err := kr.Mint(testClaims())
	require.NoError(t, err)
	signed, mac, _ := strings.Cut(tok, ".")
	payload, err := b64.DecodeString(strings.TrimPrefix(signed, tokenPrefix))
	require.NoError(t, err)

	reencode := func(edit func(string) string) string {
		return tokenPrefix + b64.EncodeToString([]byte(edit(string(payload)))) + "." + mac
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}

	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"org changed", reencode(func(p string) string { return strings.Replace(p, `"org_1"`, `"org_2"`, 1) }), ErrBadSignature},
		{"expiry extended", reencode(func(p string) string { return strings.Replace(p, `"exp":`, `"exp":9`, 1) }), ErrBadSignature},
		{"params hash dropped", reencode(func(p string) string { return strings.Replace(p, `"ph":"`+strings.Repeat("ab", 32)+`",`, "", 1) }), ErrBadSignature},
		{"mac byte flipped", flip(tok, len(signed)+5), ErrBadSignature},
		{"mac of another token", signed + "." + b64.EncodeToString(make([]byte, 32)), ErrBadSignature},
		{"receipt prefix", "oak_rcpt_" + strings.TrimPrefix(tok, tokenPrefix), ErrMalformed},
		{"no prefix", strings.TrimPrefix(tok, tokenPrefix), ErrMalformed},
		{"upper-case prefix", "OAK_TOK_" + strings.TrimPrefix(tok, tokenPrefix), ErrMalformed},
		{"mac removed", signed, ErrMalformed},
		{"mac empty", signed + ".", ErrMalformed},
		{"mac truncated", tok[:len(tok)-1], ErrMalformed},
		{"mac with padding", tok + "=", ErrMalformed},
		{"mac non-canonical last character", tok[:len(tok)-1] + nonCanonical(tok[len(tok)-1]), ErrMalformed},
		{"extra dot", signed + ".x." + mac, ErrMalformed},
		{"payload not base64url", tokenPrefix + "!!!!." + mac, ErrMalformed},
		{"payload not json", tokenPrefix + b64.EncodeToString([]byte("hello")) + "." + mac, ErrMalformed},
		{"empty", "", ErrMalformed},
		{"prefix only", tokenPrefix, ErrMalformed},
		{"oversized", tok + strings.Repeat("A", MaxLen), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.NotEqual(t, tok, tc.token)
			_, err := kr.Verify(tc.token, t0.Add(time.Minute))
			require.ErrorIs(t, err, tc.want)
		})
	}
}

// nonCanonical returns another base64url character that decodes to the
// same final byte when the last 2 bits are padding (43 characters encode
// 32 bytes): strict decoding must refuse it.
func nonCanonical(c byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return string(alphabet[i^1])
}

// TestVerifyStrictPayload signs payloads the minting code never produces
// and checks the verifier still refuses them: the MAC is not the only
// guard on what a token may contain.
func TestVerifyStrictPayload(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, "k1", testKey("k1", 1))
	good := `{"typ":"tok","kid":"k1","jti":"tok_1","org":"org_1","tl":"t","src":"check:chk_1","exp":` +
		jsonInt(t0.Add(time.Hour).Unix()) + `,"nc":"AAECAwQFBgcICQoLDA0ODw"}`
	for _, tc := range []struct {
		name    string
		payload string
		want    error
	}{
		{"well formed", good, nil},
		{"unknown member", strings.Replace(good, `{`, `{"admin":true,`, 1), ErrMalformed},
		{"receipt type", strings.Replace(good, `"typ":"tok"`, `"typ":"rcpt"`, 1), ErrMalformed},
		{"missing type", strings.Replace(good, `"typ":"tok",`, ``, 1), ErrMalformed},
		{"missing org", strings.Replace(good, `"org":"org_1",`, ``, 1), ErrMalformed},
		{"missing nonce", strings.Replace(good, `,"nc":"AAECAwQFBgcICQoLDA0ODw"`, ``, 1), ErrMalformed},
		{"bad source", strings.Replace(good, `check:chk_1`, `chk_1`, 1), ErrMalformed},
		{"trailing data", good + `{}`, ErrMalformed},
		{"array", `[` + good + `]`, ErrMalformed},
		{"wrong member type", strings.Replace(good, `"tl":"t"`, `"tl":1`, 1), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tok, err := kr.seal(tokenPrefix, []byte(tc.payload))
			require.NoError(t, err)
			_, err = kr.Verify(tok, t0)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestVerifyExpiry(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, "k1", testKey("k1", 1))
	c := testClaims()
	tok, err := kr.Mint(c)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		now  time.Time
		want error
	}{
		{"at issue", c.IssuedAt, nil},
		{"just before expiry", c.ExpiresAt.Add(-time.Second), nil},
		{"within clock skew after expiry", c.ExpiresAt.Add(ClockSkew - time.Nanosecond), nil},
		{"at expiry plus skew", c.ExpiresAt.Add(ClockSkew), ErrExpired},
		{"a day later", c.ExpiresAt.Add(24 * time.Hour), ErrExpired},
		{"issued within skew in the future", c.IssuedAt.Add(-ClockSkew), nil},
		{"issued beyond skew in the future", c.IssuedAt.Add(-ClockSkew - time.Second), ErrNotYetValid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := kr.Verify(tok, tc.now)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	k1, k2 := testKey("k1", 1), testKey("k2", 2)
	retired1 := k1
	retired1.Retired = true
	sameIDOtherSecret := testKey("k1", 9)

	before := mustKeyring(t, "k1", k1)
	oldTok, err := before.Mint(testClaims())
	require.NoError(t, err)
	oldRcpt, err := before.SignReceipt(testReceipt())
	require.NoError(t, err)

	rotated := mustKeyring(t, "k2", k2, k1)
	newTok, err := rotated.Mint(testClaims())
	require.NoError(t, err)

	for _, tc := range []struct {
		name    string
		keyring *Keyring
		token   string
		want    error
		wantKey string
	}{
		{"old key still verifies after rotation", rotated, oldTok, nil, "k1"},
		{"new key signs after rotation", rotated, newTok, nil, "k2"},
		{"old keyring does not know the new key", before, newTok, ErrUnknownKey, ""},
		{"retired key no longer verifies", mustKeyring(t, "k2", k2, retired1), oldTok, ErrUnknownKey, ""},
		{"dropped key no longer verifies", mustKeyring(t, "k2", k2), oldTok, ErrUnknownKey, ""},
		{"same id with another secret", mustKeyring(t, "k1", sameIDOtherSecret), oldTok, ErrBadSignature, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := tc.keyring.Verify(tc.token, t0)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantKey, c.KeyID)
		})
	}

	t.Run("retired key no longer verifies receipts", func(t *testing.T) {
		t.Parallel()
		_, err := rotated.VerifyReceipt(oldRcpt)
		require.NoError(t, err)
		_, err = mustKeyring(t, "k2", k2, retired1).VerifyReceipt(oldRcpt)
		require.ErrorIs(t, err, ErrUnknownKey)
	})
}

func TestMintRejectsInvalidClaims(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, "k1", testKey("k1", 1))
	for _, tc := range []struct {
		name string
		edit func(*Claims)
	}{
		{"no token id", func(c *Claims) { c.TokenID = "" }},
		{"no org", func(c *Claims) { c.Org = "" }},
		{"no tool", func(c *Claims) { c.Tool = "" }},
		{"no source", func(c *Claims) { c.Source = "" }},
		{"no nonce", func(c *Claims) { c.Nonce = "" }},
		{"no expiry", func(c *Claims) { c.ExpiresAt = time.Time{} }},
		{"source without kind", func(c *Claims) { c.Source = "chk_1" }},
		{"source of unknown kind", func(c *Claims) { c.Source = "webhook:wh_1" }},
		{"source without id", func(c *Claims) { c.Source = "check:" }},
		{"nonce too short", func(c *Claims) { c.Nonce = "AAECAwQFBgcICQoLDA0O" }},
		{"nonce not base64url", func(c *Claims) { c.Nonce = "not a nonce, not at all!" }},
		{"params hash upper case", func(c *Claims) { c.ParamsHash = strings.Repeat("AB", 32) }},
		{"params hash short", func(c *Claims) { c.ParamsHash = "abcd" }},
		{"expiry before issue", func(c *Claims) { c.ExpiresAt = c.IssuedAt.Add(-time.Second) }},
		{"expiry equal to issue", func(c *Claims) { c.ExpiresAt = c.IssuedAt }},
		{"too large to verify", func(c *Claims) { c.Resource = strings.Repeat("r", MaxLen) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := testClaims()
			tc.edit(&c)
			_, err := kr.Mint(c)
			require.ErrorIs(t, err, ErrInvalidClaims)
		})
	}
}

func TestMintIgnoresCallerKeyID(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, "k2", testKey("k2", 2), testKey("k1", 1))
	c := testClaims()
	c.KeyID = "k1"
	tok, err := kr.Mint(c)
	require.NoError(t, err)
	got, err := kr.Verify(tok, t0)
	require.NoError(t, err)
	require.Equal(t, "k2", got.KeyID)
}

func TestTokenAndReceiptAreNotInterchangeable(t *testing.T) {
	t.Parallel()
	kr := mustKeyring(t, "k1", testKey("k1", 1))
	tok, err := kr.Mint(testClaims())
	require.NoError(t, err)
	rcpt, err := kr.SignReceipt(testReceipt())
	require.NoError(t, err)

	t.Run("receipt presented as token", func(t *testing.T) {
		t.Parallel()
		_, err := kr.Verify(rcpt, t0)
		require.ErrorIs(t, err, ErrMalformed)
	})
	t.Run("token presented as receipt", func(t *testing.T) {
		t.Parallel()
		_, err := kr.VerifyReceipt(tok)
		require.ErrorIs(t, err, ErrMalformed)
	})
	t.Run("token payload signed under the receipt prefix", func(t *testing.T) {
		t.Parallel()
		// Even a token payload MACed by the right key is refused when the
		// MAC was made for the other prefix: the prefix is in the MAC input.
		signed, _, _ := strings.Cut(tok, ".")
		payload, err := b64.DecodeString(strings.TrimPrefix(signed, tokenPrefix))
		require.NoError(t, err)
		asReceipt, err := kr.seal(receiptPrefix, payload)
		require.NoError(t, err)
		_, mac, _ := strings.Cut(asReceipt, ".")
		_, err = kr.Verify(signed+"."+mac, t0)
		require.ErrorIs(t, err, ErrBadSignature)
	})
}

func TestNewNonceAndTokenID(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		n, err := NewNonce()
		require.NoError(t, err)
		raw, err := b64.DecodeString(n)
		require.NoError(t, err)
		require.Len(t, raw, 16)
		require.False(t, seen[n], "nonce repeated")
		seen[n] = true

		id, err := NewTokenID()
		require.NoError(t, err)
		require.Regexp(t, `^tok_[a-z2-7]{26}$`, id)
		require.False(t, seen[id], "token id repeated")
		seen[id] = true
	}
}

func TestParseSource(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, kind, id string
		ok                 bool
	}{
		{"check", "check:chk_1", SourceCheck, "chk_1", true},
		{"approval", "approval:apr_1", SourceApproval, "apr_1", true},
		{"id with colon", "approval:a:b", SourceApproval, "a:b", true},
		{"unknown kind", "mint:x", "", "", false},
		{"no id", "check:", "", "", false},
		{"no colon", "check", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kind, id, ok := ParseSource(tc.in)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.kind, kind)
			require.Equal(t, tc.id, id)
		})
	}
}
