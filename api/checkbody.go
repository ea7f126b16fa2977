package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/activities/jsondoc"
)

// The check's body is read once. huma validates a body by decoding it into
// a map[string]any, validating that against the schema and then decoding it
// again into the struct — about twenty allocations of a check's budget. The
// check operation skips that (SkipValidateBody) and checkRequest's
// UnmarshalJSON reads the body directly when it is what the schema accepts
// as it is: an object of the documented members, spelled exactly, each once,
// of the right types and lengths. Any other body — a member huma would
// match case-insensitively, a repeated member, a wrong type, a length out of
// bounds, an unknown member — is left to Resolve, which validates it with
// huma's own validator and decodes it with encoding/json, as huma did, so
// every refusal keeps its status, message, location and value. A test
// compares the two paths' answers on fuzzed bodies.

// checkRead says how UnmarshalJSON took a check's body.
type checkRead uint8

const (
	// checkUnread: UnmarshalJSON was not called, so the body was not JSON
	// of a known content type (huma has described the error).
	checkUnread checkRead = iota
	// checkDirect: read directly; the schema accepts it.
	checkDirect
	// checkGeneric: kept for Resolve to validate and decode.
	checkGeneric
)

// readsCheckBody is op with huma's body validation left to checkRequest,
// which validates with api's schema registry what it does not read
// directly.
func readsCheckBody(api huma.API, op huma.Operation) huma.Operation {
	op.SkipValidateBody = true
	if op.Metadata == nil {
		op.Metadata = map[string]any{}
	}
	op.Metadata[metaBodySchemas] = api.OpenAPI().Components.Schemas
	return op
}

// metaBodySchemas is the operation metadata key under which registerCheck
// keeps the schema registry Resolve validates generic bodies against.
const metaBodySchemas = "bodySchemas"

// plainCheckRequest decodes as encoding/json decodes a struct (no
// UnmarshalJSON): members matched case-insensitively, the last one winning.
type plainCheckRequest checkRequest

// UnmarshalJSON reads the body directly when it can, and otherwise keeps
// it for Resolve. It never fails: errors are Resolve's to report.
func (r *checkRequest) UnmarshalJSON(b []byte) error {
	*r = checkRequest{}
	if r.readDirect(b) {
		r.read = checkDirect
		return nil
	}
	*r = checkRequest{read: checkGeneric, body: bytes.Clone(b)}
	return nil
}

// The members of a check body, in the order of checkRequest's fields.
const (
	memberTool = iota
	memberTenant
	memberResource
	memberMethod
	memberParameters
	memberReason
	memberContext
	memberReferenceID
)

// checkMembers are the members' names and, for strings, their length
// bounds in characters (the schema's minLength and maxLength).
var checkMembers = [...]struct {
	name     string
	min, max int
}{
	memberTool: {"tool", 1, 200}, memberTenant: {"tenant", 0, 200}, memberResource: {"resource", 0, 200},
	memberMethod: {"method", 0, 200}, memberParameters: {name: "parameters"}, memberReason: {"reason", 0, 2000},
	memberContext: {name: "context"}, memberReferenceID: {"reference_id", 0, 200},
}

// readDirect fills r from b and reports whether b is a body the schema
// accepts as it is (see above); on false, r is partly filled.
func (r *checkRequest) readDirect(b []byte) bool {
	i := skipJSONSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipJSONSpace(b, i+1)
	var seen [len(checkMembers)]bool
	for i < len(b) && b[i] == '"' {
		end := bytes.IndexByte(b[i+1:], '"')
		if end < 0 {
			return false
		}
		name := b[i+1 : i+1+end]
		m := -1
		for k := range checkMembers {
			if string(name) == checkMembers[k].name {
				m = k
			}
		}
		if m < 0 || seen[m] {
			return false
		}
		seen[m] = true
		i = skipJSONSpace(b, i+end+2)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipJSONSpace(b, i+1)
		var ok bool
		if i, ok = r.readMember(b, i, m); !ok {
			return false
		}
		i = skipJSONSpace(b, i)
		if i >= len(b) || b[i] != ',' {
			break
		}
		i = skipJSONSpace(b, i+1)
		if i >= len(b) || b[i] != '"' {
			return false
		}
	}
	if i >= len(b) || b[i] != '}' || skipJSONSpace(b, i+1) != len(b) {
		return false
	}
	return seen[memberTool]
}

// readMember reads member m's value at b[i:] into r and returns the offset
// after it, or false when the schema would not accept it as it is.
func (r *checkRequest) readMember(b []byte, i, m int) (int, bool) {
	isNull := len(b)-i >= 4 && string(b[i:i+4]) == "null"
	if m == memberParameters || m == memberContext {
		var o jsonObject
		switch {
		case isNull:
			return i + 4, true
		case i < len(b) && b[i] == '{':
			end, ok := objectEnd(b, i)
			if !ok {
				return 0, false
			}
			o = jsonObject(bytes.Clone(b[i:end]))
			if m == memberParameters {
				r.Parameters = o
			} else {
				r.Context = o
			}
			return end, true
		}
		return 0, false
	}
	if isNull {
		return i + 4, m != memberTool // an optional string may be null
	}
	s, end, ok := jsondoc.DecodeString(b[i:])
	if !ok {
		return 0, false
	}
	if n := utf8.RuneCountInString(s); n < checkMembers[m].min || n > checkMembers[m].max {
		return 0, false
	}
	switch m {
	case memberTool:
		r.Tool = s
	case memberTenant:
		r.Tenant = s
	case memberResource:
		r.Resource = s
	case memberMethod:
		r.Method = s
	case memberReason:
		r.Reason = s
	default:
		r.ReferenceID = s
	}
	return i + end, true
}

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// objectEnd returns the offset after the object that opens at b[i]
// (well-formed: encoding/json checked the whole body before UnmarshalJSON),
// or false when it holds a number beyond the double range, which huma's
// decoding into map[string]any refused (400).
func objectEnd(b []byte, i int) (int, bool) {
	depth := 0
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1, true
			}
		case c == '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case c == '-' || ('0' <= c && c <= '9'):
			end := i + 1
			for end < len(b) && strings.IndexByte("0123456789.eE+-", b[end]) >= 0 {
				end++
			}
			if !doubleRange(b[i:end]) {
				return 0, false
			}
			i = end - 1
		}
	}
	return 0, false
}

// doubleRange reports whether a number literal converts to a float64, as
// encoding/json converts it into an any.
func doubleRange(lit []byte) bool {
	if len(lit) <= 15 && !bytes.ContainsAny(lit, "eE") {
		return true // at most 15 digits, no exponent
	}
	_, err := strconv.ParseFloat(string(lit), 64)
	return err == nil
}

// Resolve validates and decodes a body UnmarshalJSON did not read
// directly, as huma would have without SkipValidateBody.
func (r *checkRequest) Resolve(ctx huma.Context, _ *huma.PathBuffer) []error {
	switch r.read {
	case checkDirect:
		return nil
	case checkUnread:
		// huma has recorded why the body could not be decoded; it used to
		// answer 400 for JSON that does not parse and 415 for a content type
		// it has no format for, and answers 422 for both without body
		// validation. bodyStatus restores the status.
		if knownContentType(ctx.Header("Content-Type")) {
			return []error{bodyStatus(http.StatusBadRequest)}
		}
		return []error{bodyStatus(http.StatusUnsupportedMediaType)}
	}
	op := ctx.Operation()
	registry, _ := op.Metadata[metaBodySchemas].(huma.Registry)
	if registry == nil {
		// Unreachable: readsCheckBody sets it.
		return []error{&huma.ErrorDetail{Location: "body", Message: "the body could not be validated"}}
	}
	var parsed any
	if err := json.Unmarshal(r.body, &parsed); err != nil {
		// JSON that does not fit an any, e.g. a number beyond the double range.
		return []error{&huma.ErrorDetail{Location: "body", Message: err.Error(), Value: string(r.body)},
			bodyStatus(http.StatusBadRequest)}
	}
	pb := huma.NewPathBuffer([]byte{}, 0)
	pb.Push("body")
	res := &huma.ValidateResult{}
	huma.Validate(registry, op.RequestBody.Content["application/json"].Schema, pb, huma.ModeWriteToServer, parsed, res)
	if len(res.Errors) > 0 {
		return res.Errors
	}
	body := r.body
	if err := json.Unmarshal(body, (*plainCheckRequest)(r)); err != nil {
		return []error{&huma.ErrorDetail{Location: "body", Message: err.Error(), Value: string(body)}}
	}
	return nil
}

// knownContentType reports whether huma's JSON format decodes a body of
// this Content-Type (huma's own choice: the part after a "+" and before
// a ";", JSON when empty or absent).
func knownContentType(ct string) bool {
	start := strings.IndexByte(ct, '+') + 1
	end := strings.IndexByte(ct, ';')
	if end == -1 {
		end = len(ct)
	}
	if end < start {
		return false
	}
	switch ct[start:end] {
	case "", "application/json", "json":
		return true
	}
	return false
}

// bodyStatus sets the status of huma's answer to a body it could not
// decode; it adds no detail of its own (see huma.NewErrorWithContext in
// errors.go).
type bodyStatus int

func (s bodyStatus) Error() string  { return http.StatusText(int(s)) }
func (s bodyStatus) GetStatus() int { return int(s) }
