package resolver

import (
	"errors"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"
)

func TestNormalizeName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"already normal", "delete", "delete"},
		{"upper case", "DELETE", "delete"},
		{"mixed case", "Delete", "delete"},
		{"trailing space", "DELETE ", "delete"},
		{"tab and newline around", "\tdelete\n", "delete"},
		{"inner white space collapsed", "acme   corp", "acme corp"},
		{"no-break space", "acme\u00a0Corp", "acme corp"},
		{"ideographic space", "\u3000acme\u3000", "acme"},
		{"punctuation kept", "repo/main:v2.1_x-y", "repo/main:v2.1_x-y"},
		{"NFC composes", "Cafe\u0301", "café"},
		{"precomposed stays", "CAFÉ", "café"},
		{"full case folding", "STRASSE", "strasse"},
		{"sharp s folds to ss", "straße", "strasse"},
		{"capital sharp s", "STRAẞE", "strasse"},
		{"Kelvin sign", "\u212a", "k"},
		{"Angstrom sign", "\u212b", "å"},
		{"Greek final sigma", "ΟΔΟΣ", "οδοσ"},
		{"emoji kept", "deploy 🚀", "deploy 🚀"},
		{"replacement character is visible", "a\ufffdb", "a\ufffdb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := NormalizeName(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			again, err := NormalizeName(got)
			require.NoError(t, err)
			require.Equal(t, got, again, "normalising a normal name changes nothing")
		})
	}
}

func TestNormalizeNameIsIdempotent(t *testing.T) {
	t.Parallel()
	// Characters whose folding decomposes or recomposes.
	for _, in := range []string{"\u0130", "\u01f0", "\u0390", "\u1e96", "\u1fb3", "\u1fbc", "\ufb03", "\u01c5",
		"\uab70", "\u13f8", "J\u030c", "\u0345", "I\u0307", "\u1e9e", "\u0149", "ǈǋ", "Ǆ"} {
		once, err := NormalizeName(in)
		require.NoError(t, err, "%q", in)
		twice, err := NormalizeName(once)
		require.NoError(t, err)
		require.Equal(t, once, twice, "%q", in)
	}
}

// Every visible character, alone: normalising twice is normalising once.
// (golang.org/x/text's Fold swaps Cherokee cases; NormalizeName must not.)
func TestNormalizeNameIsIdempotentForEveryCharacter(t *testing.T) {
	t.Parallel()
	for r := rune(0x21); r <= unicode.MaxRune; r++ {
		if !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.S, unicode.P) {
			continue
		}
		once, err := NormalizeName(string(r))
		if err != nil {
			continue // a lone combining mark may be refused as invisible
		}
		twice, err := NormalizeName(once)
		require.NoError(t, err, "%U", r)
		require.Equal(t, once, twice, "%U", r)
	}
	// Both cases of a Cherokee letter are one name.
	upper, err := NormalizeName("\u13a0")
	require.NoError(t, err)
	lower, err := NormalizeName("\uab70")
	require.NoError(t, err)
	require.Equal(t, upper, lower)
}

func TestNormalizeNameRefusesInvisibleCharacters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		offset   int
		r        rune
	}{
		{"NUL", "del\x00ete", 3, 0},
		{"escape", "\x1b[31mDELETE", 0, 0x1b},
		{"DEL", "DELETE\x7f", 6, 0x7f},
		{"zero-width space", "DELETE\u200b", 6, 0x200b},
		{"zero-width joiner", "DEL\u200dETE", 3, 0x200d},
		{"zero-width non-joiner", "\u200cdelete", 0, 0x200c},
		{"word joiner", "del\u2060ete", 3, 0x2060},
		{"byte order mark", "\ufeffdelete", 0, 0xfeff},
		{"soft hyphen", "de\u00adlete", 2, 0xad},
		{"right-to-left override", "\u202eetele", 0, 0x202e},
		{"left-to-right isolate", "a\u2066b", 1, 0x2066},
		{"right-to-left mark", "a\u200fb", 1, 0x200f},
		{"Hangul filler", "a\u3164b", 1, 0x3164},
		{"combining grapheme joiner", "a\u034fb", 1, 0x34f},
		{"variation selector", "a\ufe0fb", 1, 0xfe0f},
		{"tag character", "a\U000e0041b", 1, 0xe0041},
		{"private use", "a\ue000b", 1, 0xe000},
		{"C1 control", "a\u0085\u0090b", 3, 0x90},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NormalizeName(tc.in)
			var ne *NameError
			require.True(t, errors.As(err, &ne), "%v", err)
			require.Equal(t, tc.offset, ne.Offset)
			require.Equal(t, tc.r, ne.Rune)
		})
	}
	_, err := NormalizeName("a\xffb")
	var ne *NameError
	require.ErrorAs(t, err, &ne)
	require.Contains(t, ne.Error(), "UTF-8")
	for _, in := range []string{"", " ", "\t\n", "\u00a0\u3000"} {
		_, err := NormalizeName(in)
		require.ErrorIs(t, err, ErrEmptyName, "%q", in)
	}
}

func BenchmarkNormalizeName(b *testing.B) {
	for _, in := range []string{"delete", "DELETE", "Straße"} {
		b.Run(in, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NormalizeName(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestCheckToolName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"plain", "send_email", nil},
		{"case is kept", "Send_Email", nil},
		{"inner space", "send email", nil},
		{"composed unicode", "caf\u00e9.order", nil},
		{"empty", "", ErrEmptyName},
		{"blank", " \t", ErrEmptyName},
		{"leading space", " send_email", ErrToolNameForm},
		{"trailing space", "send_email ", ErrToolNameForm},
		{"double space", "send  email", ErrToolNameForm},
		{"no-break space", "send\u00a0email", ErrToolNameForm},
		{"decomposed", "cafe\u0301.order", ErrToolNameForm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.ErrorIs(t, CheckToolName(tc.in), tc.want)
		})
	}
	for _, bad := range []string{"send_email\x00", "send\temail", "send\u200bemail", "send\u202eemail", "send\xffemail", "\u2060x", "x\ufe0f"} {
		var ne *NameError
		require.ErrorAs(t, CheckToolName(bad), &ne, "%q", bad)
	}
}

func TestCheckToolNameDoesNotAllocate(t *testing.T) {
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = CheckToolName("send_email") }))
}
