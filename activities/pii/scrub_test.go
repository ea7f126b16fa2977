package pii

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type scrubCase struct {
	name string
	in   string
	want string
}

func runScrubCases(t *testing.T, cases []scrubCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Scrub(tc.in)
			require.Equal(t, tc.want, got)
			require.Equal(t, got, Scrub(got), "Scrub must be idempotent")
		})
	}
}

func TestScrubEmail(t *testing.T) {
	t.Parallel()
	runScrubCases(t, []scrubCase{
		{"plain", "mail john.doe@example.com now", "mail [redacted:email] now"},
		{"plus tag and subdomain", "cc: jane+billing@mail.corp.example.co.uk", "cc: [redacted:email]"},
		{"angle brackets", "From: Jane <jane@example.org>", "From: Jane <[redacted:email]>"},
		{"sentence end", "write to ops@example.com.", "write to [redacted:email]."},
		{"mailto", "mailto:sales@example.io?subject=hi", "mailto:[redacted:email]?subject=hi"},
		{"two adjacent", "a@example.com,b@example.com", "[redacted:email],[redacted:email]"},
		{"upper case", "JOHN@EXAMPLE.COM", "[redacted:email]"},
		{"userinfo in url keeps host", "https://user:hunter2@example.com/x", "https://user:[redacted:email]/x"},
		{"unicode local and domain", "Kontakt jürgen@müller.de bitte", "Kontakt [redacted:email] bitte"},
		{"cjk domain label", "联系 zhang@例え.jp 谢谢", "联系 [redacted:email] 谢谢"},
	})
}

func TestScrubPhone(t *testing.T) {
	t.Parallel()
	runScrubCases(t, []scrubCase{
		{"nanp dashes", "call 415-555-2671 now", "call [redacted:phone] now"},
		{"nanp parens", "call (415) 555-2671", "call [redacted:phone]"},
		{"nanp parens no space", "call (415)555-2671", "call [redacted:phone]"},
		{"nanp dots", "call 415.555.2671", "call [redacted:phone]"},
		{"nanp trunk digit", "call 1-800-555-0199 today", "call [redacted:phone] today"},
		{"trunk digit and parens", "call 1 (800) 555-0199", "call [redacted:phone]"},
		{"e164 compact", "sms +14155552671.", "sms [redacted:phone]."},
		{"international spaced", "tel: +44 20 7946 0958", "tel: [redacted:phone]"},
		{"international with parens", "+1 (415) 555-2671", "[redacted:phone]"},
		{"international long group", "Tel. +49 30 1234567", "Tel. [redacted:phone]"},
		{"uk national", "ring 020 7946 0958", "ring [redacted:phone]"},
		{"french pairs", "appelez 01 23 45 67 89", "appelez [redacted:phone]"},
		{"after unrelated number", "ticket 2024 415-555-2671", "ticket 2024 [redacted:phone]"},
		{"tel uri", "tel:+33123456789", "tel:[redacted:phone]"},
	})
}

func TestScrubCard(t *testing.T) {
	t.Parallel()
	runScrubCases(t, []scrubCase{
		{"visa spaced", "card 4111 1111 1111 1111 ok", "card [redacted:card] ok"},
		{"visa dashed", "card 4111-1111-1111-1111", "card [redacted:card]"},
		{"visa compact", "pan=4242424242424242;", "pan=[redacted:card];"},
		{"mastercard", "5555555555554444", "[redacted:card]"},
		{"amex 4-6-5", "amex 3782 822463 10005", "amex [redacted:card]"},
		{"amex compact 15", "378282246310005", "[redacted:card]"},
		{"discover", "6011111111111117", "[redacted:card]"},
		{"visa 13 digits", "old visa 4222222222222", "old visa [redacted:card]"},
		{"19 digits", "pan 4000000000000000006", "pan [redacted:card]"},
		{"after order number", "order 1234 4111 1111 1111 1111", "order 1234 [redacted:card]"},
		{"quoted", `"4111111111111111"`, `"[redacted:card]"`},
		{"two cards", "4111111111111111, 5555555555554444", "[redacted:card], [redacted:card]"},
		{"card wins over phone", "+378282246310005", "+[redacted:card]"},
	})
}

func TestScrubSSN(t *testing.T) {
	t.Parallel()
	runScrubCases(t, []scrubCase{
		{"plain", "ssn 123-45-6789", "ssn [redacted:ssn]"},
		{"in parentheses", "(SSN: 078-05-1120)", "(SSN: [redacted:ssn])"},
		{"area 000 never issued", "000-12-3456", "000-12-3456"},
		{"area 666 never issued", "666-12-3456", "666-12-3456"},
		{"area 9xx never issued", "912-12-3456", "912-12-3456"},
		{"group 00 never issued", "123-00-4567", "123-00-4567"},
		{"serial 0000 never issued", "123-45-0000", "123-45-0000"},
		{"part of a longer number", "1-123-45-6789", "1-123-45-6789"},
	})
}

func TestScrubIBAN(t *testing.T) {
	t.Parallel()
	runScrubCases(t, []scrubCase{
		{"german grouped", "IBAN DE89 3704 0044 0532 0130 00, thanks", "IBAN [redacted:iban], thanks"},
		{"german compact", "DE89370400440532013000", "[redacted:iban]"},
		{"uk with letters", "GB82WEST12345698765432", "[redacted:iban]"},
		{"french letter in bban", "FR14 2004 1010 0505 0001 3M02 606", "[redacted:iban]"},
		{"norway shortest", "konto NO93 8601 1117 947.", "konto [redacted:iban]."},
		{"followed by capitals", "DE89 3704 0044 0532 0130 00 AND MORE", "[redacted:iban] AND MORE"},
		{"bad check digits", "DE89370400440532013001", "DE89370400440532013001"},
		{"wrong length for country", "DE8937040044053201300", "DE8937040044053201300"},
	})
}

func TestScrubIP(t *testing.T) {
	t.Parallel()
	runScrubCases(t, []scrubCase{
		{"ipv4", "from 192.168.1.10 at noon", "from [redacted:ip] at noon"},
		{"ipv4 with port", "dial 10.0.0.1:5432", "dial [redacted:ip]:5432"},
		{"ipv4 cidr", "allow 10.0.0.0/8", "allow [redacted:ip]/8"},
		{"ipv4 sentence end", "host is 8.8.8.8.", "host is [redacted:ip]."},
		{"ipv4 after key", "ip=203.0.113.7", "ip=[redacted:ip]"},
		{"ipv6 compressed", "src 2001:db8::1, dst ::1", "src [redacted:ip], dst [redacted:ip]"},
		{"ipv6 full", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "[redacted:ip]"},
		{"ipv6 bracketed with port", "[2001:db8::1]:443", "[[redacted:ip]]:443"},
		{"ipv6 mapped ipv4", "::ffff:192.0.2.1", "[redacted:ip]"},
		{"ipv6 zone kept", "fe80::1%eth0", "[redacted:ip]%eth0"},
		{"ipv6 after field name", "addr:2001:db8::1", "addr:[redacted:ip]"},
		{"ipv4 octet out of range", "999.1.1.1", "999.1.1.1"},
		{"ipv4 leading zero", "010.0.0.1", "010.0.0.1"},
	})
}

func TestScrubSecret(t *testing.T) {
	t.Parallel()
	jwt := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	runScrubCases(t, []scrubCase{
		{"bearer header", "Authorization: Bearer abcDEF123456789xyz", "Authorization: Bearer [redacted:secret]"},
		{"bearer lower case", "bearer 0123456789abcdef0123", "bearer [redacted:secret]"},
		{"bearer jwt", "Bearer " + jwt, "Bearer [redacted:secret]"},
		{"bare jwt", "token=" + jwt + "&x=1", "token=[redacted:secret]&x=1"},
		{"basic credentials", "Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [redacted:secret]"},
		{"oak api key", "key oak_live_0123456789abcdef0123456789abcdef.", "key [redacted:secret]."},
		{"oak agent token", "oak_agent_Zx81kQ_aa-bb", "[redacted:secret]"},
		{"oak execution token", "use oak_tok_eyJ0IjoidG9rIn0.c2ln now", "use [redacted:secret] now"},
		{"stripe live", "sk_live_51HxyzABCdef", "[redacted:secret]"},
		{"stripe test", "STRIPE=sk_test_4eC39HqLyjWDarjtT1zdp7dc", "STRIPE=[redacted:secret]"},
		{"stripe restricted", "rk_live_abcdefgh12", "[redacted:secret]"},
		{"slack bot", "xoxb-4155552671-415555267123-AbCdEfGhIj", "[redacted:secret]"},
		{"github pat", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[redacted:secret]"},
		{"github fine grained", "github_pat_11ABCDEFG0abcdefghijklmnop", "[redacted:secret]"},
		{"aws access key id", "aws AKIAIOSFODNN7EXAMPLE ok", "aws [redacted:secret] ok"},
		{"aws temporary key id", "ASIAIOSFODNN7EXAMPLE", "[redacted:secret]"},
		{"digits in key are not a phone", "sk_live_4155552671abcd", "[redacted:secret]"},
		{"oak webhook secret", "signed with whsec_3q2-7wH_p0aLk9nVbRz1Xc4yT8uIoE5sDfGhJkLmNqA, see", "signed with [redacted:secret], see"},
		{"oak key in upper case", "KEY OAK_LIVE_0123456789ABCDEF0123456789ABCDEF", "KEY [redacted:secret]"},
		{"oak secret in mixed case", "Whsec_abcdefghijkl", "[redacted:secret]"},
		{"secret glued after a key", "AKIAIOSFODNN7EXAMPLEoak_tok_abcdefgh.ij", "[redacted:secret][redacted:secret]"},
	})
}

// TestRedactSecrets: the credentials Scrub finds, and nothing else.
func TestRedactSecrets(t *testing.T) {
	t.Parallel()
	in := "mail bob@example.com, call +1 415 555 2671, key oak_live_0123456789abcdef, whsec_abcdefghijkl, Bearer abcDEF123456789xyz"
	require.Equal(t, "mail bob@example.com, call +1 415 555 2671, key [redacted:secret], [redacted:secret], Bearer [redacted:secret]",
		RedactSecrets(in))
	require.Equal(t, Scrub(in), Scrub(RedactSecrets(in)))
}

// TestScrubNearMisses pins text that looks like data but must survive:
// over-redaction destroys the audit trail it is meant to protect.
func TestScrubNearMisses(t *testing.T) {
	t.Parallel()
	var cases []scrubCase
	for _, s := range []struct{ name, in string }{
		{"iso date", "due 2024-01-15"},
		{"iso timestamp", "at 2024-01-15T10:20:30Z"},
		{"timestamp with space", "2024-01-15 10:20:30"},
		{"european date", "am 15.01.2024"},
		{"us date", "on 01/15/2024"},
		{"time", "at 12:30:45"},
		{"semver", "upgrade to v1.2.3"},
		{"plain version", "go 1.26.8"},
		{"four part build", "build 10.0.19041.1"},
		{"five part version", "1.2.3.4.5"},
		{"v-prefixed four part", "v1.2.3.4"},
		{"order id dashed", "ORD-2024-001234"},
		{"order id hash", "order #123456789"},
		{"order id glued to card digits", "ORD-4111111111111111"},
		{"unix timestamp", "ts 1700000000"},
		{"ten digit id", "id 4155552671"},
		{"short numbers", "retry 3 times, 42 rows, 12345 bytes"},
		{"local seven digit number", "ext 555-1234"},
		{"16 digits failing luhn", "ref 4111111111111112"},
		{"16 digits failing luhn grouped", "ref 1234 5678 9012 3456"},
		{"decimal", "ratio 0.4111111111111111"},
		{"thousands", "1 000 000 000 tokens"},
		{"money", "$1,234,567.89"},
		{"isbn", "ISBN 978-3-16-148410-0"},
		{"uuid", "123e4567-e89b-12d3-a456-426614174000"},
		{"sha256", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"mac address", "00:1a:2b:3c:4d:5e"},
		{"cpp scope", "std::vector<int>"},
		{"haskell signature", "f :: Int -> Int"},
		{"mention", "ping @channel"},
		{"no top level domain", "root@localhost"},
		{"numeric tld", "a@b.c1"},
		{"bearer in prose", "the bearer of bad news"},
		{"basic in prose", "Basic authentication is disabled"},
		{"key prefix alone", "keys look like sk_live_..."},
		{"webhook secret prefix alone", "secrets start with whsec_..."},
		{"prefix inside a word", "task_live_results_2024"},
		{"invalid ssn shape", "123-456-789"},
		{"list of small numbers", "1 2 3 4 5 6 7 8 9 10 11 12 13"},
		{"dotted quad out of range", "999.999.999.999"},
	} {
		cases = append(cases, scrubCase{s.name, s.in, s.in})
	}
	runScrubCases(t, cases)
}

func TestScrubMixed(t *testing.T) {
	t.Parallel()
	runScrubCases(t, []scrubCase{
		{
			name: "agent reason",
			in: "Refund order ORD-2024-001234 for jane.doe@example.com (card 4111 1111 1111 1111, " +
				"phone +1 415 555 2671) from 203.0.113.7 using Bearer sk_live_51HxyzABCdef0123456789.",
			want: "Refund order ORD-2024-001234 for [redacted:email] (card [redacted:card], " +
				"phone [redacted:phone]) from [redacted:ip] using Bearer [redacted:secret].",
		},
		{
			name: "multi line",
			in:   "name: Jane\nssn: 123-45-6789\niban: GB82 WEST 1234 5698 7654 32\nip: 2001:db8::42\n",
			want: "name: Jane\nssn: [redacted:ssn]\niban: [redacted:iban]\nip: [redacted:ip]\n",
		},
		{
			name: "unicode around matches",
			in:   "📞 +1 415 555 2671 — Karte 4111 1111 1111 1111 ✓ «jürgen@example.de»",
			want: "📞 [redacted:phone] — Karte [redacted:card] ✓ «[redacted:email]»",
		},
		{
			name: "already scrubbed",
			in:   "[redacted:email] [redacted:card] Bearer [redacted:secret]",
			want: "[redacted:email] [redacted:card] Bearer [redacted:secret]",
		},
		{"empty", "", ""},
		{"no candidates", "Delete the staging database after the backup finished.", "Delete the staging database after the backup finished."},
		{"invalid utf8 passes through", "\xff\xfe 4111111111111111 \xff", "\xff\xfe [redacted:card] \xff"},
	})
}

func TestScrubDoesNotAllocateOnCleanText(t *testing.T) {
	// Not parallel: AllocsPerRun is unreliable under concurrent tests.
	clean := strings.Repeat("The agent wants to rotate the staging credentials before the release. ", 30)
	allocs := testing.AllocsPerRun(100, func() { _ = Scrub(clean) })
	require.Zero(t, allocs)
}

func TestLuhn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		want bool
	}{
		{"visa", "4111111111111111", true},
		{"visa off by one", "4111111111111112", false},
		{"separators ignored", "4111-1111 1111-1111", true},
		{"amex", "378282246310005", true},
		{"no digits", "abc", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, luhn(tc.in))
		})
	}
}

func TestPlaceholder(t *testing.T) {
	t.Parallel()
	require.Equal(t, "[redacted:card]", Placeholder(KindCard))
	require.Equal(t, "[redacted:secret]", Placeholder(KindSecret))
}
