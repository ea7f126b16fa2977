package pii

import "strings"

// Kind names a category of redacted data; it appears in the placeholder.
type Kind string

// The kinds Scrub recognises, in the order they are applied.
const (
	KindSecret Kind = "secret"
	KindEmail  Kind = "email"
	KindIBAN   Kind = "iban"
	KindCard   Kind = "card"
	KindSSN    Kind = "ssn"
	KindIP     Kind = "ip"
	KindPhone  Kind = "phone"
)

// Placeholder returns the text that replaces a match of kind k.
func Placeholder(k Kind) string { return "[redacted:" + string(k) + "]" }

// span is one match to replace: s[start:end] becomes repl.
type span struct {
	start, end int
	repl       string
}

// detector appends the matches it finds in s, in order and non-overlapping.
type detector func(s string, dst []span) []span

// pipeline is the fixed order described in the package documentation.
// Secrets come first so key material is never half-eaten by the number
// detectors; IBANs precede cards because IBAN digit groups can pass Luhn;
// cards precede phones because a grouped card number looks like a phone.
var pipeline = [...]detector{
	findSecrets,
	findEmails,
	findIBANs,
	findCards,
	findSSNs,
	findIPv6,
	findIPv4,
	findPhones,
}

// maxPasses bounds the fixed-point loop in Scrub. Every pass that changes
// the text replaces at least one character outside a placeholder, so the
// loop terminates on its own; in practice the second pass finds nothing.
const maxPasses = 8

// Scrub replaces e-mail addresses, phone numbers, payment card numbers, US
// SSNs, IBANs, IP addresses and credentials in s with "[redacted:<kind>]".
// The result is stable: Scrub(Scrub(s)) == Scrub(s).
func Scrub(s string) string { return scrubWith(s, pipeline[:]) }

// secretsOnly is the pipeline of RedactSecrets.
var secretsOnly = [...]detector{findSecrets}

// RedactSecrets replaces credentials alone — the same shapes Scrub
// recognises — with "[redacted:secret]", leaving personal data as it is.
// Notifications apply it whatever scrubber is configured: a credential of
// ours must never reach a chat channel. RedactSecrets(Scrub(s)) == Scrub(s).
func RedactSecrets(s string) string { return scrubWith(s, secretsOnly[:]) }

// scrubWith runs the detectors until nothing changes (at most maxPasses).
func scrubWith(s string, detectors []detector) string {
	var spans []span // allocated on the first match only
	for range maxPasses {
		var changed bool
		s, spans, changed = scrubPass(s, spans, detectors)
		if !changed {
			return s
		}
	}
	return s
}

// scrubPass runs each detector once, each on the output of the previous.
func scrubPass(s string, spans []span, detectors []detector) (string, []span, bool) {
	changed := false
	for _, find := range detectors {
		spans = find(s, spans[:0])
		if len(spans) == 0 {
			continue
		}
		s = replaceSpans(s, spans)
		changed = true
	}
	return s, spans, changed
}

func replaceSpans(s string, spans []span) string {
	var b strings.Builder
	n := len(s)
	for _, sp := range spans {
		n += len(sp.repl) - (sp.end - sp.start)
	}
	b.Grow(n)
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp.start])
		b.WriteString(sp.repl)
		last = sp.end
	}
	b.WriteString(s[last:])
	return b.String()
}

// Placeholders, precomputed so detectors do not concatenate per match.
var (
	replSecret = Placeholder(KindSecret)
	replEmail  = Placeholder(KindEmail)
	replIBAN   = Placeholder(KindIBAN)
	replCard   = Placeholder(KindCard)
	replSSN    = Placeholder(KindSSN)
	replIP     = Placeholder(KindIP)
	replPhone  = Placeholder(KindPhone)
)

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isAlnum(c byte) bool { return isDigit(c) || isUpper(c) || isLower(c) }

// isWord reports whether c continues an identifier; a match touching such a
// byte is part of a larger token and is not redacted.
func isWord(c byte) bool { return isAlnum(c) || c == '_' }

func isHex(c byte) bool { return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F') }

// numberStartOK reports whether a number starting at s[i] stands on its own:
// not glued to an identifier, and not the fractional part of a decimal or
// the tail of a dotted/dashed identifier such as "ORD-1234".
func numberStartOK(s string, i int) bool {
	if i == 0 {
		return true
	}
	p := s[i-1]
	if isWord(p) {
		return false
	}
	if (p == '.' || p == '-') && i >= 2 && isAlnum(s[i-2]) {
		return false
	}
	return true
}

// numberEndOK is numberStartOK for the byte after a number ending at s[j].
func numberEndOK(s string, j int) bool {
	if j >= len(s) {
		return true
	}
	c := s[j]
	if isWord(c) {
		return false
	}
	if (c == '.' || c == '-') && j+1 < len(s) && isAlnum(s[j+1]) {
		return false
	}
	return true
}

// luhn reports whether the ASCII digits in s (other bytes ignored) pass the
// Luhn mod-10 check.
func luhn(s string) bool {
	sum, double, n := 0, false, 0
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if !isDigit(c) {
			continue
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
		n++
	}
	return n > 0 && sum%10 == 0
}
