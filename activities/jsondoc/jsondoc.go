// Package jsondoc parses a JSON document once into a flat index of its values
// over the document's text, which every reader of a tool call's parameters
// then walks instead of parsing the text again: schema validation ([Doc.Value]),
// RFC 8785 canonicalisation for the parameter hash ([Doc.AppendCanonical]) and
// PII scrubbing ([Doc.AppendCompact]).
//
// Each reader keeps the exact semantics of the parser it replaces: strings
// decode as encoding/json decodes them for validation and scrubbing, and as
// github.com/gowebpki/jcs decodes them (refusing what it refuses, with its
// messages) for canonicalisation; numbers stay the literal that was written.
// A Doc comes from a pool and goes back with [Doc.Release], so a parse
// allocates nothing once the pool is warm.
package jsondoc

import (
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"
)

// Kind is the type of a JSON value.
type Kind uint8

// The kinds of JSON values.
const (
	Object Kind = iota + 1
	Array
	String
	Number
	True
	False
	Null
)

// MaxDepth is the deepest nesting Parse accepts, encoding/json's limit.
const MaxDepth = 10000

// maxText bounds a document so that offsets fit the index's int32 fields.
const maxText = 1<<31 - 1

// node is one value of the document. An object's children are its members'
// names and values, alternating; an array's are its elements.
type node struct {
	kind Kind
	// plain: a string whose content is printable ASCII without '"' or '\',
	// which every reader takes as it is written.
	plain bool
	// start and end delimit the value's text; a string's includes its quotes.
	start, end int32
	// next is the index of the first node after this value's subtree.
	next int32
	// sorted is where an object's members start in Doc.members, in RFC 8785
	// order, and count how many it has (set by AppendCanonical).
	sorted, count int32
}

// member is an object member in canonical order: its decoded name (in the
// document's text when the name is plain, else in Doc.names) and the index
// of its value.
type member struct {
	nameStart, nameEnd int32
	inNames            bool
	value              int32
}

// Doc is a parsed JSON document. It refers to the text it was parsed from,
// which must not change while the Doc is in use.
type Doc struct {
	text    []byte
	nodes   []node
	members []member
	names   []byte // decoded non-plain member names, for canonical ordering
	buf     []byte // one decoded string at a time
	stack   []int32
}

var pool = sync.Pool{New: func() any { return new(Doc) }}

// maxPooledNodes keeps an unusually large document's index out of the pool.
const maxPooledNodes = 1 << 14

// Parse indexes text, one JSON value (RFC 8259) with optional white space
// around it, nested at most MaxDepth deep. It accepts what encoding/json
// accepts, invalid UTF-8 inside strings included (readers decide what to
// make of it). The Doc must be released with Release when no longer used.
func Parse(text []byte) (*Doc, error) {
	if len(text) > maxText {
		return nil, errors.New("jsondoc: document too large")
	}
	d := pool.Get().(*Doc)
	d.text = text
	if err := d.parse(); err != nil {
		d.Release()
		return nil, err
	}
	return d, nil
}

// Release returns d to the pool; d must not be used afterwards.
func (d *Doc) Release() {
	if d == nil {
		return
	}
	d.text = nil
	if cap(d.nodes) > maxPooledNodes || cap(d.members) > maxPooledNodes || cap(d.names) > 1<<16 || cap(d.buf) > 1<<16 {
		return
	}
	d.nodes, d.members, d.names, d.buf, d.stack = d.nodes[:0], d.members[:0], d.names[:0], d.buf[:0], d.stack[:0]
	pool.Put(d)
}

// Text is the document's text as given to Parse.
func (d *Doc) Text() []byte { return d.text }

// Kind is the kind of the document's top-level value.
func (d *Doc) Kind() Kind { return d.nodes[0].kind }

func syntaxError(what string, at int) error {
	return fmt.Errorf("jsondoc: %s at offset %d", what, at)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *Doc) skipSpace(i int) int {
	for i < len(d.text) && isSpace(d.text[i]) {
		i++
	}
	return i
}

// parse builds the index without recursion: d.stack holds the open
// containers' node indices.
func (d *Doc) parse() error {
	t := d.text
	d.nodes, d.stack = d.nodes[:0], d.stack[:0]
	i := d.skipSpace(0)
	for {
		// A value starts at i.
		if i >= len(t) {
			return syntaxError("unexpected end of input", i)
		}
		idx := int32(len(d.nodes))
		switch c := t[i]; {
		case c == '{' || c == '[':
			if len(d.stack) == MaxDepth {
				return syntaxError("nested too deeply", i)
			}
			k := Object
			if c == '[' {
				k = Array
			}
			d.nodes = append(d.nodes, node{kind: k, start: int32(i)})
			d.stack = append(d.stack, idx)
			i = d.skipSpace(i + 1)
			closer := byte('}')
			if k == Array {
				closer = ']'
			}
			if i < len(t) && t[i] == closer {
				d.closeContainer(i)
				i++
				break
			}
			if k == Object {
				var err error
				if i, err = d.memberName(i); err != nil {
					return err
				}
			}
			continue
		case c == '"':
			end, plain, err := scanString(t, i)
			if err != nil {
				return err
			}
			d.nodes = append(d.nodes, node{kind: String, plain: plain, start: int32(i), end: int32(end), next: idx + 1})
			i = end
		case c == '-' || ('0' <= c && c <= '9'):
			end, err := scanNumber(t, i)
			if err != nil {
				return err
			}
			d.nodes = append(d.nodes, node{kind: Number, start: int32(i), end: int32(end), next: idx + 1})
			i = end
		default:
			k, lit := Null, "null"
			switch c {
			case 't':
				k, lit = True, "true"
			case 'f':
				k, lit = False, "false"
			}
			if len(t)-i < len(lit) || string(t[i:i+len(lit)]) != lit {
				return syntaxError("invalid character", i)
			}
			d.nodes = append(d.nodes, node{kind: k, start: int32(i), end: int32(i + len(lit)), next: idx + 1})
			i += len(lit)
		}
		// After a value: close containers, or go on to the next member or
		// element.
		for {
			i = d.skipSpace(i)
			if len(d.stack) == 0 {
				if i != len(t) {
					return syntaxError("invalid character after top-level value", i)
				}
				return nil
			}
			if i >= len(t) {
				return syntaxError("unexpected end of input", i)
			}
			top := &d.nodes[d.stack[len(d.stack)-1]]
			closer := byte('}')
			if top.kind == Array {
				closer = ']'
			}
			if t[i] == closer {
				d.closeContainer(i)
				i++
				continue
			}
			if t[i] != ',' {
				return syntaxError("expected ',' or '"+string(closer)+"'", i)
			}
			i = d.skipSpace(i + 1)
			if top.kind == Object {
				var err error
				if i, err = d.memberName(i); err != nil {
					return err
				}
			}
			break
		}
	}
}

// memberName indexes the member name at i and its colon, and returns where
// the member's value starts.
func (d *Doc) memberName(i int) (int, error) {
	t := d.text
	if i >= len(t) || t[i] != '"' {
		return 0, syntaxError("expected a member name", i)
	}
	end, plain, err := scanString(t, i)
	if err != nil {
		return 0, err
	}
	idx := int32(len(d.nodes))
	d.nodes = append(d.nodes, node{kind: String, plain: plain, start: int32(i), end: int32(end), next: idx + 1})
	i = d.skipSpace(end)
	if i >= len(t) || t[i] != ':' {
		return 0, syntaxError("expected ':'", i)
	}
	return d.skipSpace(i + 1), nil
}

// closeContainer ends the innermost open container at its closing bracket,
// at offset i.
func (d *Doc) closeContainer(i int) {
	idx := d.stack[len(d.stack)-1]
	d.stack = d.stack[:len(d.stack)-1]
	n := &d.nodes[idx]
	n.end = int32(i + 1)
	n.next = int32(len(d.nodes))
}

// scanString returns the offset after the string that starts with the quote
// at t[i], and whether its content is plain. Like encoding/json it refuses
// control characters and malformed escapes, and lets any other byte through.
func scanString(t []byte, i int) (end int, plain bool, err error) {
	plain = true
	for j := i + 1; j < len(t); j++ {
		c := t[j]
		switch {
		case c == '"':
			return j + 1, plain, nil
		case c == '\\':
			plain = false
			if j+1 >= len(t) {
				return 0, false, syntaxError("unexpected end of input in string", j)
			}
			switch t[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if j+6 > len(t) {
					return 0, false, syntaxError("unexpected end of input in string", j)
				}
				for _, h := range t[j+2 : j+6] {
					if !isHex(h) {
						return 0, false, syntaxError("invalid \\u escape", j)
					}
				}
				j += 5
			default:
				return 0, false, syntaxError("invalid escape", j)
			}
		case c < 0x20:
			return 0, false, syntaxError("control character in string", j)
		case c >= 0x7f:
			plain = false
		}
	}
	return 0, false, syntaxError("unterminated string", i)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanNumber returns the offset after the number literal at t[i]
// (RFC 8259 §6: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?).
func scanNumber(t []byte, i int) (int, error) {
	start := i
	if t[i] == '-' {
		i++
	}
	switch {
	case i < len(t) && t[i] == '0':
		i++
	case i < len(t) && '1' <= t[i] && t[i] <= '9':
		for i < len(t) && isDigit(t[i]) {
			i++
		}
	default:
		return 0, syntaxError("invalid number", start)
	}
	if i < len(t) && t[i] == '.' {
		i++
		if i >= len(t) || !isDigit(t[i]) {
			return 0, syntaxError("invalid number", start)
		}
		for i < len(t) && isDigit(t[i]) {
			i++
		}
	}
	if i < len(t) && (t[i] == 'e' || t[i] == 'E') {
		i++
		if i < len(t) && (t[i] == '+' || t[i] == '-') {
			i++
		}
		if i >= len(t) || !isDigit(t[i]) {
			return 0, syntaxError("invalid number", start)
		}
		for i < len(t) && isDigit(t[i]) {
			i++
		}
	}
	return i, nil
}

// getU4 reads the four hex digits at t[i:i+4] (validated by scanString).
func getU4(t []byte) rune {
	var r rune
	for _, c := range t[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// appendDecoded appends the content of the string node n decoded as
// encoding/json decodes it: invalid UTF-8 bytes and unpaired surrogate
// escapes become U+FFFD.
func (d *Doc) appendDecoded(dst []byte, n *node) []byte {
	return appendUnquoted(dst, d.text[n.start+1:n.end-1], n.plain)
}

// DecodeString decodes the JSON string at the start of text as encoding/json
// decodes it, and returns the offset after its closing quote; ok is false
// when text does not start with a well-formed string.
func DecodeString(text []byte) (s string, end int, ok bool) {
	if len(text) == 0 || text[0] != '"' {
		return "", 0, false
	}
	end, plain, err := scanString(text, 0)
	if err != nil {
		return "", 0, false
	}
	if plain {
		return string(text[1 : end-1]), end, true
	}
	var buf [64]byte
	return string(appendUnquoted(buf[:0], text[1:end-1], false)), end, true
}

// appendUnquoted appends s, the content of a well-formed string (plain if
// it needs no decoding), decoded as encoding/json decodes it.
func appendUnquoted(dst, s []byte, plain bool) []byte {
	if plain {
		return append(dst, s...)
	}
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			switch e := s[r+1]; e {
			case 'u':
				rr := getU4(s[r+2:])
				r += 6
				if 0xD800 <= rr && rr < 0xE000 {
					if rr < 0xDC00 && r+6 <= len(s) && s[r] == '\\' && s[r+1] == 'u' {
						if lo := getU4(s[r+2:]); 0xDC00 <= lo && lo < 0xE000 {
							dst = utf8.AppendRune(dst, (rr-0xD800)<<10|(lo-0xDC00)+0x10000)
							r += 6
							continue
						}
					}
					rr = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, rr)
			default:
				dst = append(dst, unescape(e))
				r += 2
			}
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			dst = utf8.AppendRune(dst, rr)
			r += size
		}
	}
	return dst
}

// unescape is the byte a one-character escape stands for.
func unescape(e byte) byte {
	switch e {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return e // '"', '\\', '/'
}

// StringFunc appends a string of the document, decoded as encoding/json
// decodes it (s is only valid during the call), to dst; name reports a
// member name.
type StringFunc func(dst, s []byte, name bool) []byte

// NumberFunc appends a number literal of the document to dst.
type NumberFunc func(dst, literal []byte) []byte

// AppendCompact appends the document without insignificant white space,
// members in their order (duplicates kept), each string written by str and
// each number by num; literals are written as they are.
func (d *Doc) AppendCompact(dst []byte, str StringFunc, num NumberFunc) []byte {
	return d.compact(dst, 0, str, num)
}

// compact appends node i's value.
func (d *Doc) compact(dst []byte, i int32, str StringFunc, num NumberFunc) []byte {
	n := &d.nodes[i]
	switch n.kind {
	case Object, Array:
		dst = append(dst, d.text[n.start])
		object := n.kind == Object
		for k, c := 0, i+1; c < n.next; k++ {
			switch {
			case k == 0:
			case object && k%2 == 1:
				dst = append(dst, ':')
			default:
				dst = append(dst, ',')
			}
			if object && k%2 == 0 {
				d.buf = d.appendDecoded(d.buf[:0], &d.nodes[c])
				dst = str(dst, d.buf, true)
			} else {
				dst = d.compact(dst, c, str, num)
			}
			c = d.nodes[c].next
		}
		return append(dst, d.text[n.end-1])
	case String:
		d.buf = d.appendDecoded(d.buf[:0], n)
		return str(dst, d.buf, false)
	case Number:
		return num(dst, d.text[n.start:n.end])
	}
	return append(dst, d.text[n.start:n.end]...)
}
