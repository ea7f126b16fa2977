package tokens

import (
	"encoding/json"
	"testing"
	"time"
)

func BenchmarkMint(b *testing.B) {
	kr := mustKeyring(b, "k1", testKey("k1", 1))
	c := testClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.Mint(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	kr := mustKeyring(b, "k1", testKey("k1", 1))
	tok, err := kr.Mint(testClaims())
	if err != nil {
		b.Fatal(err)
	}
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.Verify(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignReceipt(b *testing.B) {
	kr := mustKeyring(b, "k1", testKey("k1", 1))
	r := testReceipt()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.SignReceipt(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyReceipt(b *testing.B) {
	kr := mustKeyring(b, "k1", testKey("k1", 1))
	s, err := kr.SignReceipt(testReceipt())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.VerifyReceipt(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHashParameters(b *testing.B) {
	raw := json.RawMessage(`{"to":"jane@example.com","subject":"Refund","body":"Hello Jane, your refund of 42.00 EUR is on its way.","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"dry_run":false}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := HashParameters(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckParameters(b *testing.B) {
	raw := []byte(`{"to":"jane@example.com","subject":"Refund","amount":42.5,"items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"dry_run":false}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckParameters(raw); err != nil {
			b.Fatal(err)
		}
	}
}
