package pii

import (
	"encoding/json"
	"strings"
	"testing"
)

var fuzzSeeds = []string{
	"",
	"mail john.doe@example.com now",
	"card 4111 1111 1111 1111 and 4111111111111112",
	"5555555555554444,378282246310005;6011111111111117",
	"order 1234 4111-1111-1111-1111 ref 12-3456",
	"ssn 123-45-6789 666-12-3456",
	"DE89 3704 0044 0532 0130 00 GB82WEST12345698765432",
	"192.168.1.1 ::1 2001:db8::1 fe80::1%eth0 ::ffff:10.0.0.1",
	"+1 (415) 555-2671 415.555.2671 020 7946 0958",
	"Bearer abcDEF123456789xyz Basic dXNlcjpwYXNz sk_live_4155552671abcd",
	"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig AKIAIOSFODNN7EXAMPLE",
	"whsec_Zx81kQaabbccddeeff OAK_LIVE_0123456789ABCDEF AKIAIOSFODNN7EXAMPLEoak_tok_abcdefgh.ij",
	"[redacted:email]x@y.com [redacted:ip]4111111111111111",
	"a@b.co4111111111111111 1.2.3.4.5 v1.2.3.4 2024-01-15",
	"📞 +1 415 555 2671 — «jürgen@example.de» \xff\xfe",
}

// FuzzScrub checks the guarantees callers rely on, for any input: Scrub
// never panics, is idempotent, never lets a standalone Luhn-valid 16-digit
// number through, and leaves nothing for RedactSecrets (which notifications
// apply on top) to find; RedactSecrets is idempotent too.
func FuzzScrub(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := Scrub(in)
		if again := Scrub(out); again != out {
			t.Fatalf("not idempotent:\n in:   %q\n once: %q\n twice: %q", in, out, again)
		}
		if again := RedactSecrets(out); again != out {
			t.Fatalf("RedactSecrets found a secret Scrub left:\n in:  %q\n out: %q\n then: %q", in, out, again)
		}
		if secrets := RedactSecrets(in); RedactSecrets(secrets) != secrets {
			t.Fatalf("RedactSecrets not idempotent: %q", in)
		}
		if run, ok := standaloneLuhn16(out); ok {
			t.Fatalf("Luhn-valid 16-digit run %q survived:\n in:  %q\n out: %q", run, in, out)
		}
	})
}

// standaloneLuhn16 finds a run of exactly 16 ASCII digits that passes Luhn
// and is delimited on both sides by the start or end of the text or by one
// of the bytes below — the unambiguous way a card number appears in text.
func standaloneLuhn16(s string) (string, bool) {
	const delims = " \t\r\n,;:()\"'=/<>|"
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		left := i == 0 || strings.IndexByte(delims, s[i-1]) >= 0
		right := j == len(s) || strings.IndexByte(delims, s[j]) >= 0
		if j-i == 16 && left && right && luhn(s[i:j]) {
			return s[i:j], true
		}
		i = j
	}
	return "", false
}

// FuzzScrubJSON checks that any valid JSON document scrubs without error
// into valid JSON, idempotently.
func FuzzScrubJSON(f *testing.F) {
	for _, s := range []string{
		`{"a":"jane@example.com","b":[4111111111111111,"4111 1111 1111 1111"],"c":{"d":null}}`,
		`"+1 415 555 2671"`, `[1.5e3,-0,true,false]`, `{"\u2028":"\ud83d\ude00"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if !json.Valid([]byte(in)) {
			return
		}
		out, err := ScrubJSON(json.RawMessage(in))
		if err != nil {
			t.Fatalf("valid JSON %q rejected: %v", in, err)
		}
		if !json.Valid(out) {
			t.Fatalf("invalid output %q for %q", out, in)
		}
		again, err := ScrubJSON(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", in, out, again, err)
		}
	})
}
