package jsondoc

import "encoding/json"

// Value is the document as encoding/json decodes it into an any with
// UseNumber (as github.com/santhosh-tekuri/jsonschema/v6's UnmarshalJSON
// does): map[string]any, where a repeated member name keeps its last value,
// []any, string, json.Number, bool and nil.
func (d *Doc) Value() any { return d.value(0) }

func (d *Doc) value(i int32) any {
	n := &d.nodes[i]
	switch n.kind {
	case Object:
		m := make(map[string]any)
		for c := i + 1; c < n.next; c = d.nodes[c+1].next {
			name := d.decodedString(c)
			m[name] = d.value(c + 1)
		}
		return m
	case Array:
		a := make([]any, 0)
		for c := i + 1; c < n.next; c = d.nodes[c].next {
			a = append(a, d.value(c))
		}
		return a
	case String:
		return d.decodedString(i)
	case Number:
		return json.Number(d.text[n.start:n.end])
	case True:
		return true
	case False:
		return false
	}
	return nil
}

// decodedString is string node i decoded as encoding/json decodes it.
func (d *Doc) decodedString(i int32) string {
	d.buf = d.appendDecoded(d.buf[:0], &d.nodes[i])
	return string(d.buf)
}
