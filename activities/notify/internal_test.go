package notify

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestIsPublicAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"2606:4700:4700::1111", true},
		{"127.0.0.1", false},
		{"127.8.9.10", false},
		{"::1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"100.64.0.1", false},
		{"0.0.0.0", false},
		{"::", false},
		{"fe80::1", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"::ffff:127.0.0.1", false}, // IPv4-mapped loopback
		{"::ffff:10.0.0.1", false},
		{"224.0.0.1", false},
		{"ff02::1", false},
		{"255.255.255.255", false},
		{"198.18.0.1", false},
		{"::ffff:169.254.169.254", false},
		// IPv6 forms that embed an IPv4 address are judged by it, or refused.
		{"64:ff9b::a9fe:a9fe", false},                   // NAT64 to the metadata address
		{"64:ff9b::7f00:1", false},                      // NAT64 to loopback
		{"64:ff9b::a00:1", false},                       // NAT64 to 10.0.0.1
		{"64:ff9b::808:808", true},                      // NAT64 to 8.8.8.8
		{"64:ff9b:1::808:808", false},                   // local-use NAT64
		{"2002:a9fe:a9fe::1", false},                    // 6to4 via 169.254.169.254
		{"2002:7f00:1::1", false},                       // 6to4 via loopback
		{"2002:808:808::1", true},                       // 6to4 via 8.8.8.8
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", false}, // Teredo
		{"::a9fe:a9fe", false},                          // IPv4-compatible
		{"::808:808", false},                            // IPv4-compatible, deprecated whatever it embeds
		{"::ffff:0:a9fe:a9fe", false},                   // IPv4-translated
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, isPublicAddr(netip.MustParseAddr(tc.addr)))
		})
	}
}

func TestCleanText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{name: "short text unchanged", in: "hello world", max: 200, want: "hello world"},
		{name: "newlines and tabs flattened", in: "a\nb\r\n\tc", max: 200, want: "a b c"},
		{name: "leading and trailing space trimmed", in: "  \n a  ", max: 200, want: "a"},
		{name: "bidi override removed", in: "abc\u202Edef", max: 200, want: "abc def"},
		{name: "invalid utf-8 dropped", in: "a\xffb", max: 200, want: "ab"},
		{name: "exactly max kept", in: strings.Repeat("x", 10), max: 10, want: strings.Repeat("x", 10)},
		{name: "one over max cut with ellipsis", in: strings.Repeat("x", 11), max: 10, want: strings.Repeat("x", 9) + "…"},
		{name: "multibyte counted as characters", in: strings.Repeat("日", 300), max: 200, want: strings.Repeat("日", 199) + "…"},
		{name: "no trailing space before ellipsis", in: "aaaa bbbbbbbbbbbb", max: 6, want: "aaaa…"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := cleanText(tc.in, tc.max)
			require.Equal(t, tc.want, got)
			require.LessOrEqual(t, utf8.RuneCountInString(got), tc.max)
		})
	}
}

func TestSanitizeRedactsOwnCredentialsWithoutScrubber(t *testing.T) {
	t.Parallel()
	a := Alert{
		Type:      EventApprovalDecided,
		ToolName:  "tool oak_live_0123456789abcdef0123456789abcdef",
		Reason:    "OAK_LIVE_0123456789ABCDEF0123456789ABCDEF and whsec_abc-DEF_123",
		Reference: "REF-1",
		Decision:  DecisionApproved,
		Decider:   "oak_agent_0123456789abcdef",
		Note:      "token oak_tok_eyJ.c2ln.",
	}
	s := a.sanitize(nil)
	require.Equal(t, "tool [redacted:secret]", s.ToolName)
	require.Equal(t, "[redacted:secret] and [redacted:secret]", s.Reason)
	require.Equal(t, "[redacted:secret]", s.Decider)
	require.Equal(t, "token [redacted:secret].", s.Note) // the sentence keeps its period
}

func TestSanitizeDropsDecisionFieldsOutsideDecisions(t *testing.T) {
	t.Parallel()
	a := Alert{Type: EventApprovalCreated, ToolName: "t", Reference: "REF-1", Note: "x", Decider: "y", Decision: DecisionApproved}
	s := a.sanitize(nil)
	require.Empty(t, s.Note)
	require.Empty(t, s.Decider)
	require.Empty(t, s.Decision)
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		value string
		want  time.Duration
	}{
		{name: "absent", value: "", want: 0},
		{name: "delay seconds", value: "120", want: 2 * time.Minute},
		{name: "delay seconds with spaces", value: " 7 ", want: 7 * time.Second},
		{name: "zero", value: "0", want: 0},
		{name: "negative is not delay-seconds", value: "-5", want: 0},
		{name: "fraction is not delay-seconds", value: "1.5", want: 0},
		{name: "garbage", value: "soon", want: 0},
		{name: "HTTP-date ahead", value: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second},
		{name: "HTTP-date in the past", value: now.Add(-time.Hour).Format(http.TimeFormat), want: 0},
		{name: "capped", value: "86400", want: MaxRetryAfter},
		{name: "overflowing number", value: "99999999999999999999", want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, parseRetryAfter(tc.value, now))
		})
	}
}
