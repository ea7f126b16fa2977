package tokens

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary strings to Verify and VerifyReceipt. Neither
// may panic, every failure must be one of the documented errors, and —
// because the MAC covers the exact bytes and base64url is decoded strictly
// — no string other than the genuine token (receipt) may ever verify.
func FuzzVerify(f *testing.F) {
	kr, err := NewKeyring("k2", testKey("k2", 2), testKey("k1", 1))
	if err != nil {
		f.Fatal(err)
	}
	tok, err := kr.Mint(testClaims())
	if err != nil {
		f.Fatal(err)
	}
	rcpt, err := kr.SignReceipt(testReceipt())
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		tok, rcpt, "", tokenPrefix, receiptPrefix, tokenPrefix + ".", tok + "=", strings.ToUpper(tok),
		tokenPrefix + "e30." + strings.Repeat("A", 43), receiptPrefix + strings.TrimPrefix(tok, tokenPrefix),
		tokenPrefix + strings.Repeat("A", MaxLen),
	} {
		f.Add(s)
	}
	known := []error{ErrMalformed, ErrUnknownKey, ErrBadSignature, ErrExpired, ErrNotYetValid}
	isKnown := func(err error) bool {
		for _, k := range known {
			if errors.Is(err, k) {
				return true
			}
		}
		return false
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := kr.Verify(s, t0); err == nil && s != tok {
			t.Fatalf("forged token verified: %q", s)
		} else if err != nil && !isKnown(err) {
			t.Fatalf("undocumented error %v", err)
		}
		if _, err := kr.VerifyReceipt(s); err == nil && s != rcpt {
			t.Fatalf("forged receipt verified: %q", s)
		} else if err != nil && !isKnown(err) {
			t.Fatalf("undocumented error %v", err)
		}
		_, _ = kr.Verify(s, time.Time{})
	})
}
