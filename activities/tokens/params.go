package tokens

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/gowebpki/jcs"

	"oakallow/activities/jsondoc"
)

// ErrInvalidParameters: the parameters are not JSON that RFC 8785 can
// canonicalize (malformed, duplicate member names, numbers outside the
// IEEE 754 double range, invalid Unicode), or they break the binding rules
// of CheckParameters (too deep, a number RFC 8785 would change).
var ErrInvalidParameters = errors.New("parameters cannot be canonicalized")

// MaxDepth is how deeply parameters and context may nest: the document
// itself is level 1, so an object in an array in the parameters object is
// level 3. Deeper input is refused, not truncated.
const MaxDepth = 64

// JSONError says where a JSON document breaks a rule of CheckParameters or
// CheckNumbersInRange, and why.
type JSONError struct {
	// Path is where, as ".member[index].member"; "" is the document itself.
	Path string
	// Reason is a sentence fragment for the caller, e.g. "nested deeper
	// than 64 levels". It quotes at most 32 bytes of a number.
	Reason string
}

func (e *JSONError) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// HashParameters returns the hex SHA-256 of the RFC 8785 canonical form of
// raw, or "" when raw is empty, white space or null ("no parameters").
//
// Canonicalization sorts members by their UTF-16 code units (§3.2.3),
// removes white space and writes numbers the ECMAScript way (§3.2.2.3), so
// {"b":1,"a":[1,2]} and {"a":[1,2],"b":1} hash alike, as do 1, 1.0 and
// 1e0. Array order is significant.
//
// RFC 8785 is defined over I-JSON (RFC 7493), whose numbers are IEEE 754
// doubles: it would write 9007199254740993 as 9007199254740992, so two
// different requests would hash alike. Such input is refused instead
// (CheckParameters): every number that is hashed denotes exactly the value
// its canonical form denotes, so the hash binds exact values.
//
// The error wraps ErrInvalidParameters, and a *JSONError when a rule of
// CheckParameters was broken; its text may quote up to 32 bytes of raw.
func HashParameters(raw json.RawMessage) (string, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return "", nil
	}
	d, err := jsondoc.Parse(trimmed)
	if err != nil {
		// Not JSON: the canonicalizer itself says why, as it always did.
		if err := CheckParameters(trimmed); err != nil {
			return "", fmt.Errorf("hash parameters: %w: %w", ErrInvalidParameters, err)
		}
		canonical, err := jcs.Transform(trimmed)
		if err != nil {
			return "", fmt.Errorf("hash parameters: %w: %s", ErrInvalidParameters, err.Error())
		}
		sum := sha256.Sum256(canonical)
		return hex.EncodeToString(sum[:]), nil
	}
	defer d.Release()
	return HashDocument(d)
}

// HashDocument is HashParameters of a parsed document: for a tool call's
// parameters, parsed once for validation, hashing and scrubbing.
func HashDocument(d *jsondoc.Doc) (string, error) {
	if d.Kind() == jsondoc.Null {
		return "", nil
	}
	if err := CheckParameters(d.Text()); err != nil {
		return "", fmt.Errorf("hash parameters: %w: %w", ErrInvalidParameters, err)
	}
	buf := canonicalBuffers.Get().(*[]byte)
	defer canonicalBuffers.Put(buf)
	canonical, err := d.AppendCanonical((*buf)[:0])
	if err != nil {
		return "", fmt.Errorf("hash parameters: %w: %s", ErrInvalidParameters, err.Error())
	}
	if cap(canonical) <= maxPooledCanonical {
		*buf = canonical
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:]), nil
}

// canonicalBuffers holds buffers for canonical forms, which only live until
// they are hashed.
var canonicalBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledCanonical keeps an unusually large canonical form's buffer out
// of the pool.
const maxPooledCanonical = 64 << 10

// ParamsMatch reports whether raw hashes to bound, a ParamsHash from a
// token or receipt. The hashes are compared in constant time. No
// parameters match only an empty bound hash.
func ParamsMatch(bound string, raw json.RawMessage) (bool, error) {
	h, err := HashParameters(raw)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare([]byte(bound), []byte(h)) == 1, nil
}

// CheckParameters reports (as a *JSONError) the first place where raw, a
// JSON document, breaks a rule of parameter binding:
//
//   - it nests deeper than MaxDepth;
//   - a number's RFC 8785 form (the shortest ECMAScript spelling of the
//     nearest IEEE 754 double) denotes another decimal value than the one
//     written: 9007199254740993, 12345678901234567891 or 0.1000000000000000001
//     would be bound as a neighbour, and 1e400 has no double at all. 0.1,
//     1.50 and 1e2 are fine: their canonical forms 0.1, 1.5 and 100 are the
//     same values.
//
// Numbers that are identifiers rather than quantities belong in strings.
// The scan does not allocate unless it finds something. raw is assumed to
// be well-formed JSON (malformed input is the canonicalizer's to refuse).
func CheckParameters(raw []byte) error {
	if e := scanJSON(raw, numbersExact); e != nil {
		return e
	}
	return nil
}

// CheckNumbersInRange is CheckParameters for documents that are stored and
// shown but not hashed (a check's or approval's context): the depth limit
// holds, and numbers are kept exactly as written, so they need only be
// within the IEEE 754 double range (which also keeps them within what
// PostgreSQL's jsonb can store).
func CheckNumbersInRange(raw []byte) error {
	if e := scanJSON(raw, numbersInRange); e != nil {
		return e
	}
	return nil
}

type numberRule int

const (
	numbersExact numberRule = iota
	numbersInRange
)

// scanFrame is one open container while scanning: which member or element
// of it the scan is in.
type scanFrame struct {
	array     bool
	expectKey bool // in an object, the next string is a member name
	index     int  // in an array, the element's index
	key       []byte
}

// scanJSON walks raw once, byte by byte, keeping only the open containers.
func scanJSON(raw []byte, rule numberRule) *JSONError {
	var stack [MaxDepth]scanFrame
	depth := 0
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '"':
			end := stringEnd(raw, i)
			if depth > 0 && stack[depth-1].expectKey {
				stack[depth-1].key = raw[i : end+1]
				stack[depth-1].expectKey = false
			}
			i = end
		case c == '{' || c == '[':
			if depth == MaxDepth {
				return &JSONError{Path: scanPath(stack[:depth]), Reason: fmt.Sprintf("nested deeper than %d levels", MaxDepth)}
			}
			stack[depth] = scanFrame{array: c == '[', expectKey: c == '{'}
			depth++
		case c == '}' || c == ']':
			if depth > 0 {
				depth--
			}
		case c == ',':
			if depth > 0 {
				if f := &stack[depth-1]; f.array {
					f.index++
				} else {
					f.expectKey = true
				}
			}
		case c == '-' || ('0' <= c && c <= '9'):
			end := i + 1
			for end < len(raw) && isNumberByte(raw[end]) {
				end++
			}
			if reason := checkNumber(raw[i:end], rule); reason != "" {
				return &JSONError{Path: scanPath(stack[:depth]), Reason: reason}
			}
			i = end - 1
		}
	}
	return nil
}

// stringEnd returns the index of the quote closing the string that opens
// at raw[i] (the last index when it is not closed).
func stringEnd(raw []byte, i int) int {
	for j := i + 1; j < len(raw); j++ {
		switch raw[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return len(raw) - 1
}

func isNumberByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// maxPathKey bounds each member name quoted in a path.
const maxPathKey = 64

// scanPath renders the open containers' positions as ".a[0].b".
func scanPath(stack []scanFrame) string {
	var b strings.Builder
	for _, f := range stack {
		if f.array {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(f.index))
			b.WriteByte(']')
			continue
		}
		if f.key == nil {
			continue
		}
		var name string
		if json.Unmarshal(f.key, &name) != nil {
			name = string(f.key)
		}
		if len(name) > maxPathKey {
			name = strings.ToValidUTF8(name[:maxPathKey], "") + "…"
		}
		b.WriteByte('.')
		b.WriteString(name)
	}
	return b.String()
}

// checkNumber returns why the number literal n breaks rule, or "".
func checkNumber(n []byte, rule numberRule) string {
	if plainShortDecimal(n) {
		return ""
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
			return "the number " + quoteNumber(n) + " is outside the IEEE 754 double range"
		}
		return quoteNumber(n) + " is not a JSON number"
	}
	canonical, err := jcs.NumberToJSON(f)
	if err != nil {
		return "the number " + quoteNumber(n) + " is outside the IEEE 754 double range"
	}
	n0, c0 := decimalOf(n), decimalOf([]byte(canonical))
	if n0.zero() != c0.zero() {
		// Non-zero but below the smallest double: it would be stored and
		// shown, but PostgreSQL's numeric cannot hold every such literal.
		return "the number " + quoteNumber(n) + " is outside the IEEE 754 double range"
	}
	if rule == numbersExact && n0 != c0 {
		return "the number " + quoteNumber(n) + " has no exact IEEE 754 double form, so RFC 8785 canonical JSON would bind it as " +
			canonical + "; send it as a string"
	}
	return ""
}

// plainShortDecimal reports whether n is a decimal without exponent of at
// most 15 digits in all. Every such number survives RFC 8785 unchanged in
// value: it lies between 1e-14 and 1e15 (or is zero), where doubles tell
// apart all decimals of 15 significant digits (DBL_DIG), so the shortest
// spelling of its nearest double is itself.
func plainShortDecimal(n []byte) bool {
	digits := 0
	for i, c := range n {
		switch {
		case '0' <= c && c <= '9':
			digits++
		case c == '-' && i == 0, c == '.':
		default:
			return false
		}
	}
	return digits <= 15
}

// decimal is a decimal number's exact value: ±0.digits × 10^exp, digits
// without leading or trailing zeros (empty for zero, whose sign and
// exponent are then zero too).
type decimal struct {
	neg    bool
	digits string
	exp    int64
}

func (d decimal) zero() bool { return d.digits == "" }

// maxExp saturates exponents: any number beyond it is outside the double
// range and compares unequal to every canonical form anyway.
const maxExp = 1 << 40

// decimalOf reads a JSON number literal exactly.
func decimalOf(n []byte) decimal {
	var d decimal
	if len(n) > 0 && n[0] == '-' {
		d.neg, n = true, n[1:]
	}
	mant := n
	var exp int64
	if k := bytes.IndexAny(n, "eE"); k >= 0 {
		mant = n[:k]
		e := n[k+1:]
		neg := false
		if len(e) > 0 && (e[0] == '+' || e[0] == '-') {
			neg, e = e[0] == '-', e[1:]
		}
		for _, c := range e {
			if exp < maxExp {
				exp = exp*10 + int64(c-'0')
			}
		}
		if neg {
			exp = -exp
		}
	}
	intPart, frac, _ := bytes.Cut(mant, []byte("."))
	all := make([]byte, 0, len(intPart)+len(frac))
	all = append(append(all, intPart...), frac...)
	point := int64(len(intPart))
	for len(all) > 0 && all[0] == '0' {
		all = all[1:]
		point--
	}
	for len(all) > 0 && all[len(all)-1] == '0' {
		all = all[:len(all)-1]
	}
	if len(all) == 0 {
		return decimal{}
	}
	d.digits = string(all)
	d.exp = exp + point
	return d
}

// quoteNumber bounds a number literal for a message.
func quoteNumber(n []byte) string {
	if len(n) > 32 {
		return string(n[:32]) + "…"
	}
	return string(n)
}
