package resolver

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Name normalisation (SPEC §2). Rules match names exactly, so tenant,
// resource and method names are brought to one normal form on write (rules,
// tenants, resources) and on check, and a deny rule on "DELETE" also
// catches "delete", "DELETE " and "Delete". The form is:
//
//   - white space (any Unicode White_Space: tab, no-break space, ideographic
//     space, line separators…) trimmed at both ends and collapsed to one
//     ASCII space inside;
//   - Unicode NFC, then full case folding (Unicode CaseFolding.txt, "ß"
//     folds to "ss"), then NFC again, since folding can undo composition.
//
// Names holding a character that cannot be seen or that steers rendering —
// control characters (Cc), format characters (Cf: zero-width space and
// joiners, bidi embeddings, overrides and isolates, soft hyphen, BOM, tag
// characters), other default-ignorable code points (Hangul fillers,
// combining grapheme joiner), variation selectors and private-use
// characters — are refused rather than cleaned: "DELETE\u200b" is not a
// sloppy spelling of DELETE but an attempt to look like it.

// ErrEmptyName: the name is empty once white space is trimmed.
var ErrEmptyName = errors.New("name is empty")

// NameError refuses a name with a character that cannot be seen or is not
// valid UTF-8.
type NameError struct {
	// Offset is the byte offset of the character in the name.
	Offset int
	// Rune is the character (utf8.RuneError for invalid UTF-8).
	Rune rune
}

func (e *NameError) Error() string {
	if e.Rune == utf8.RuneError {
		return fmt.Sprintf("name is not valid UTF-8 (byte %d)", e.Offset)
	}
	return fmt.Sprintf("name contains the invisible or control character U+%04X (byte %d)", e.Rune, e.Offset)
}

// NormalizeName returns the normal form of a tenant, resource or method
// name, or ErrEmptyName or a *NameError. NormalizeName of a normal name is
// that name, returned without allocating when it is plain ASCII (the
// common case on the check path); applying it twice gives the same result
// as once.
func NormalizeName(s string) (string, error) {
	ascii, normal := true, len(s) > 0 && s[0] != ' ' && s[len(s)-1] != ' '
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= utf8.RuneSelf:
			ascii, normal = false, false
		case c < 0x20 && !isASCIISpace(c) || c == 0x7f:
			return "", &NameError{Offset: i, Rune: rune(c)}
		case 'A' <= c && c <= 'Z', isASCIISpace(c) && c != ' ', c == ' ' && i > 0 && s[i-1] == ' ':
			normal = false
		}
	}
	if normal {
		return s, nil
	}
	if ascii {
		return normalizeASCII(s)
	}
	return normalizeUnicode(s)
}

func isASCIISpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// normalizeASCII is NormalizeName for ASCII without control characters
// other than white space.
func normalizeASCII(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isASCIISpace(c) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	if b.Len() == 0 {
		return "", ErrEmptyName
	}
	return b.String(), nil
}

// normalizeUnicode is NormalizeName for names with non-ASCII characters.
func normalizeUnicode(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			return "", &NameError{Offset: i, Rune: utf8.RuneError}
		case unicode.Is(unicode.White_Space, r):
			space = b.Len() > 0
			continue
		case invisible(r):
			return "", &NameError{Offset: i, Rune: r}
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	if b.Len() == 0 {
		return "", ErrEmptyName
	}
	folded := cases.Fold().String(norm.NFC.String(b.String()))
	if strings.ContainsFunc(folded, isCherokeeSmall) {
		folded = strings.Map(cherokeeFold, folded)
	}
	return norm.NFC.String(folded), nil
}

// Cherokee is the one script where golang.org/x/text's Fold (v0.42) does
// not follow CaseFolding.txt: it swaps the cases instead of folding small
// letters to capitals, so folding twice would undo itself. cherokeeFold
// applies CaseFolding.txt's direction to what Fold left small.
func isCherokeeSmall(r rune) bool {
	return 0xab70 <= r && r <= 0xabbf || 0x13f8 <= r && r <= 0x13fd
}

func cherokeeFold(r rune) rune {
	switch {
	case 0xab70 <= r && r <= 0xabbf:
		return r - 0xab70 + 0x13a0
	case 0x13f8 <= r && r <= 0x13fd:
		return r - 0x13f8 + 0x13f0
	}
	return r
}

// invisible reports whether r is a character names may not hold.
func invisible(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Other_Default_Ignorable_Code_Point,
		unicode.Variation_Selector)
}

// ErrToolNameForm: a tool name with white space at its ends, white space
// other than single ASCII spaces inside, or not in Unicode NFC.
var ErrToolNameForm = errors.New("name must be in its normal form: no white space at the ends, single spaces inside, Unicode NFC")

// CheckToolName reports whether s may name a tool that is registered
// automatically (SPEC §7). Tool names are matched exactly and keep their
// case, so nothing is folded; but a name that another differs from only
// invisibly must not become a tool of its own: a name with a control,
// format or other invisible character, or invalid UTF-8, is a *NameError,
// and one with stray white space or not in NFC is ErrToolNameForm (it
// would look like another tool's name). It does not allocate for plain
// ASCII names.
func CheckToolName(s string) error {
	if strings.TrimSpace(s) == "" {
		return ErrEmptyName
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' || strings.Contains(s, "  ") {
		return ErrToolNameForm
	}
	ascii := true
	for i, r := range s {
		if r >= utf8.RuneSelf {
			ascii = false
		}
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			return &NameError{Offset: i, Rune: utf8.RuneError}
		case r < utf8.RuneSelf && (r < 0x20 || r == 0x7f):
			return &NameError{Offset: i, Rune: r}
		case r >= utf8.RuneSelf && invisible(r):
			return &NameError{Offset: i, Rune: r}
		case r != ' ' && unicode.Is(unicode.White_Space, r):
			return ErrToolNameForm
		}
	}
	if !ascii && !norm.NFC.IsNormalString(s) {
		return ErrToolNameForm
	}
	return nil
}
