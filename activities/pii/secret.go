package pii

import (
	"bytes"
	"encoding/base64"
	"strings"
)

// keyFormat is a credential recognised by a literal prefix followed by at
// least minTail characters from its alphabet.
type keyFormat struct {
	prefix  string
	minTail int
	tail    func(byte) bool
	// exact, when non-zero, is the exact tail length; a longer word is not
	// this credential.
	exact int
	// fold matches the prefix in any case (ASCII): oakallow's own formats,
	// so that a credential shouted in upper case is still recognised.
	fold bool
}

func isKeyAlnum(c byte) bool      { return isAlnum(c) }
func isKeyUpperNum(c byte) bool   { return isUpper(c) || isDigit(c) }
func isKeyDash(c byte) bool       { return isAlnum(c) || c == '-' }
func isKeyUnderscore(c byte) bool { return isAlnum(c) || c == '_' }

// isKeyBase64URL is the alphabet of base64url without padding (RFC 4648 §5).
func isKeyBase64URL(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }

// isKeyOak is the alphabet of oakallow credentials: hex for keys, base64url
// and "." for execution tokens.
func isKeyOak(c byte) bool { return isAlnum(c) || c == '_' || c == '-' || c == '.' }

// allKeyFormats lists the key formats Scrub and RedactSecrets know: the one
// list of credential shapes, used before storage and before anything is
// sent to a webhook or a notification channel.
var allKeyFormats = [...]keyFormat{
	{prefix: "oak_live_", minTail: 8, tail: isKeyOak, fold: true}, // oakallow API keys
	{prefix: "oak_agent_", minTail: 8, tail: isKeyOak, fold: true},
	{prefix: "oak_tok_", minTail: 8, tail: isKeyOak, fold: true},
	{prefix: "whsec_", minTail: 8, tail: isKeyBase64URL, fold: true}, // oakallow webhook signing secrets
	{prefix: "sk_live_", minTail: 8, tail: isKeyAlnum},               // Stripe secret keys
	{prefix: "sk_test_", minTail: 8, tail: isKeyAlnum},
	{prefix: "rk_live_", minTail: 8, tail: isKeyAlnum}, // Stripe restricted keys
	{prefix: "rk_test_", minTail: 8, tail: isKeyAlnum},
	{prefix: "xoxa-", minTail: 10, tail: isKeyDash}, // Slack app, bot, user, refresh tokens
	{prefix: "xoxb-", minTail: 10, tail: isKeyDash},
	{prefix: "xoxp-", minTail: 10, tail: isKeyDash},
	{prefix: "xoxr-", minTail: 10, tail: isKeyDash},
	{prefix: "ghp_", minTail: 20, tail: isKeyAlnum}, // GitHub tokens
	{prefix: "gho_", minTail: 20, tail: isKeyAlnum},
	{prefix: "ghu_", minTail: 20, tail: isKeyAlnum},
	{prefix: "ghs_", minTail: 20, tail: isKeyAlnum},
	{prefix: "ghr_", minTail: 20, tail: isKeyAlnum},
	{prefix: "github_pat_", minTail: 20, tail: isKeyUnderscore},
	{prefix: "AKIA", tail: isKeyUpperNum, exact: 16}, // AWS access key ids, long-term
	{prefix: "ASIA", tail: isKeyUpperNum, exact: 16}, // and temporary
}

// keyFormats indexes allKeyFormats by first byte, so the scan tries only
// the prefixes that can match.
var keyFormats = func() (t [256][]keyFormat) {
	for _, f := range allKeyFormats {
		c := f.prefix[0]
		t[c] = append(t[c], f)
		if f.fold && isLower(c) {
			t[c-'a'+'A'] = append(t[c-'a'+'A'], f)
		}
	}
	return t
}()

// findSecrets scans once for credentials starting at a word boundary:
// the vendor formats above, JSON Web Tokens, and HTTP "Bearer" and "Basic"
// credentials (RFC 6750 §2.1, RFC 7617 §2), whose scheme name is kept so
// the text still says what was there. Hand-written rather than one big
// regular expression, which measured an order of magnitude slower.
func findSecrets(s string, dst []span) []span {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i > 0 && isWord(s[i-1]) {
			continue
		}
		var start, end int
		switch {
		case c == 'e' && strings.HasPrefix(s[i:], "eyJ"):
			end = jwtEnd(s, i)
			start = i
		case c|0x20 == 'b':
			start, end = authCredential(s, i)
		default:
			for _, f := range keyFormats[c] {
				if end = f.match(s, i); end > 0 {
					start = i
					break
				}
			}
		}
		if end > 0 {
			dst = append(dst, span{start, end, replSecret})
			i = end - 1
		}
	}
	return dst
}

// match returns the end of the credential of format f starting at s[i],
// or 0.
func (f keyFormat) match(s string, i int) int {
	if f.fold {
		if !hasPrefixFold(s[i:], f.prefix) {
			return 0
		}
	} else if !strings.HasPrefix(s[i:], f.prefix) {
		return 0
	}
	j := i + len(f.prefix)
	for j < len(s) && f.tail(s[j]) {
		j++
	}
	n := j - i - len(f.prefix)
	if f.exact > 0 {
		if n != f.exact {
			return 0
		}
		return j
	}
	if f.tail('.') {
		// A sentence-ending period is not part of the token.
		for s[j-1] == '.' {
			j--
		}
		n = j - i - len(f.prefix)
	}
	if n < f.minTail {
		return 0
	}
	return j
}

func isBase64URL(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }

// jwtEnd returns the end of a JWS compact serialization (RFC 7515 §7.1)
// starting at s[i] with "eyJ" — base64url of `{"` — or 0. The header and
// payload need at least four characters after the prefix; the signature
// may be empty (alg "none").
func jwtEnd(s string, i int) int {
	j := i + len("eyJ")
	for part := range 3 {
		from := j
		for j < len(s) && isBase64URL(s[j]) {
			j++
		}
		if part == 2 {
			return j
		}
		if j-from < 4 || j >= len(s) || s[j] != '.' {
			return 0
		}
		j++
	}
	return 0
}

// authCredential recognises "Bearer <token>" and "Basic <credentials>"
// (scheme names are case-insensitive, RFC 9110 §11.1) starting at s[i] and
// returns the span of the credential alone, or 0, 0.
func authCredential(s string, i int) (int, int) {
	var scheme string
	switch {
	case hasPrefixFold(s[i:], "bearer"):
		scheme = "bearer"
	case hasPrefixFold(s[i:], "basic"):
		scheme = "basic"
	default:
		return 0, 0
	}
	j := i + len(scheme)
	if j >= len(s) || (s[j] != ' ' && s[j] != '\t') {
		return 0, 0
	}
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	start := j
	if scheme == "bearer" {
		// token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
		for j < len(s) && (isAlnum(s[j]) || strings.IndexByte("-._~+/", s[j]) >= 0) {
			j++
		}
		for j > start && s[j-1] == '.' {
			j-- // sentence punctuation
		}
		for j < len(s) && s[j] == '=' {
			j++
		}
		if !looksLikeBearerToken(s[start:j]) {
			return 0, 0
		}
		return start, j
	}
	for j < len(s) && (isAlnum(s[j]) || s[j] == '+' || s[j] == '/') {
		j++
	}
	for k := 0; k < 2 && j < len(s) && s[j] == '='; k++ {
		j++
	}
	if (j < len(s) && isWord(s[j])) || !isBasicCredential(s[start:j]) {
		return 0, 0
	}
	return start, j
}

func hasPrefixFold(s, lowerPrefix string) bool {
	if len(s) < len(lowerPrefix) {
		return false
	}
	for k := range len(lowerPrefix) {
		c := s[k]
		if isUpper(c) {
			c += 'a' - 'A'
		}
		if c != lowerPrefix[k] {
			return false
		}
	}
	return true
}

// looksLikeBearerToken separates credentials from prose such as
// "bearer of bad news": at least 16 characters drawn from at least two of
// lower case, upper case, digits and symbols.
func looksLikeBearerToken(tok string) bool {
	tok = strings.TrimRight(tok, "=")
	if len(tok) < 16 {
		return false
	}
	var lower, upper, digit, other int
	for i := range len(tok) {
		switch c := tok[i]; {
		case isLower(c):
			lower = 1
		case isUpper(c):
			upper = 1
		case isDigit(c):
			digit = 1
		default:
			other = 1
		}
	}
	return lower+upper+digit+other >= 2
}

// isBasicCredential reports whether tok decodes as RFC 7617 user-pass,
// which always contains a colon after a non-empty user id; "Basic
// authentication" does not decode at all.
func isBasicCredential(tok string) bool {
	if len(tok) < 4 {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(tok)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(tok, "="))
		if err != nil {
			return false
		}
	}
	return bytes.IndexByte(raw, ':') > 0
}
