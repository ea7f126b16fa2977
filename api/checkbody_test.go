package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/humatest"
	"github.com/stretchr/testify/require"
)

// oracleCheckInput is the check's input as huma read it before checkbody.go:
// the same members and tags, no UnmarshalJSON or Resolve, and huma's body
// validation on.
type oracleCheckInput struct {
	IdempotencyHeader
	Body plainCheckRequest `additionalProperties:"false"`
}

// echoedCheck is what the test operations answer: the body as decoded.
type echoedCheck struct {
	Body struct {
		Tool, Tenant, Resource, Method, Reason, ReferenceID string
		Parameters, Context                                 []byte
	}
}

func echo(r *checkRequest) *echoedCheck {
	out := &echoedCheck{}
	b := &out.Body
	b.Tool, b.Tenant, b.Resource, b.Method, b.Reason, b.ReferenceID = r.Tool, r.Tenant, r.Resource, r.Method, r.Reason, r.ReferenceID
	b.Parameters, b.Context = r.Parameters, r.Context
	return out
}

// checkBodyAPIs are two APIs with the check's body handling: as it is
// (readsCheckBody) and the oracle (huma's validation and decoding).
func checkBodyAPIs(t testing.TB) (current, oracle http.Handler) {
	op := huma.Operation{OperationID: "check", Method: http.MethodPost, Path: "/check"}
	_, cur := humatest.New(t)
	huma.Register(cur, readsCheckBody(cur, op), func(_ context.Context, in *checkInput) (*echoedCheck, error) {
		return echo(&in.Body), nil
	})
	_, old := humatest.New(t)
	huma.Register(old, op, func(_ context.Context, in *oracleCheckInput) (*echoedCheck, error) {
		return echo((*checkRequest)(&in.Body)), nil
	})
	return cur.Adapter(), old.Adapter()
}

type answer struct {
	status int
	body   string
}

func post(h http.Handler, contentType string, body []byte) answer {
	req := httptest.NewRequest(http.MethodPost, "/check", bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return answer{rec.Code, normalizedProblem(rec.Body.Bytes())}
}

// normalizedProblem sorts a problem's errors: huma reports unexpected
// members in map order.
func normalizedProblem(b []byte) string {
	var p map[string]any
	if json.Unmarshal(b, &p) != nil {
		return string(b)
	}
	if errs, ok := p["errors"].([]any); ok {
		slices.SortFunc(errs, func(a, b any) int {
			x, _ := json.Marshal(a)
			y, _ := json.Marshal(b)
			return strings.Compare(string(x), string(y))
		})
	}
	out, _ := json.Marshal(p)
	return string(out)
}

// mapOrderDependent reports whether huma's answer to a body depends on map
// order, in either path: two member names equal but for case (huma picks
// one), or a member name with a '.' or '[' (after reporting it, huma's path
// buffer pops only the part after that character, so the next location it
// reports depends on which member came first).
func mapOrderDependent(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	depth, expectName := 0, false
	var names []string
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				depth++
			} else {
				depth--
			}
			expectName = depth == 1 && v == '{'
			continue
		case string:
			if depth == 1 && expectName {
				if strings.ContainsAny(v, ".[") {
					return true
				}
				for _, n := range names {
					if n != v && strings.EqualFold(n, v) {
						return true
					}
				}
				names = append(names, v)
				expectName = false
				continue
			}
		}
		if depth == 1 {
			expectName = true
		}
	}
	return false
}

var checkBodySeeds = []string{
	`{"tool":"send_email"}`,
	`{"tool":"send_email","tenant":"acme","resource":"db","method":"DELETE","reason":"mail bob@example.com","context":{"a":[1,2,{"b":null}]},"reference_id":"r1","parameters":{"n":42}}`,
	` { "tool" : "a" , "parameters" : { "x" : "}" , "y" : [ "\"{" ] } } `,
	`{"tool":""}`, `{}`, `[]`, `null`, `"x"`, `1`, `{"tool":1}`, `{"tool":null}`, `{"tool":"a","tenant":null,"parameters":null}`,
	`{"tool":"a","parameters":[]}`, `{"tool":"a","parameters":"x"}`, `{"tool":"a","context":5}`, `{"tool":"a","extra":1}`,
	`{"tool":"a","extra":1,"more":2}`, `{"TOOL":"a"}`, `{"Tool":"a","tool":"b"}`, `{"tool":"a","tool":"b"}`, `{"tool":"a","tool":""}`,
	`{"tool":"\u0061","re\u0061son":"x"}`, `{"tool":"` + strings.Repeat("é", 200) + `"}`, `{"tool":"` + strings.Repeat("é", 201) + `"}`,
	`{"tool":"a","reason":"` + strings.Repeat("x", 2001) + `"}`, `{"tool":"a\u0000b"}`, "{\"tool\":\"\xff\xfe\"}",
	`{"tool":"a","reference_id":"` + strings.Repeat("r", 201) + `"}`, `{"tool":"a"} `, `{"tool":"a",}`, `{"tool"}`, `{`, ``, `   `,
	`{"tool":"a","parameters":{"n":1e400}}`, `{"tool":["a"]}`, `{"tool":{"a":1}}`, `{"tool":true}`, `{"tenant":"x"}`,
}

// FuzzCheckBodyMatchesHumaValidation: for any body, the check's body
// handling answers what huma's validation and decoding answered — status,
// problem (code, message, every error's location, message and value) or
// the decoded request.
func FuzzCheckBodyMatchesHumaValidation(f *testing.F) {
	for _, s := range checkBodySeeds {
		f.Add([]byte(s))
	}
	cur, old := checkBodyAPIs(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		if mapOrderDependent(body) {
			t.Skip("huma answers in map order")
		}
		want, got := post(old, "application/json", body), post(cur, "application/json", body)
		require.Equal(t, want, got, "body %q", body)
	})
}

func TestCheckBodyMatchesHumaValidation(t *testing.T) {
	t.Parallel()
	cur, old := checkBodyAPIs(t)
	for _, s := range checkBodySeeds {
		for _, ct := range []string{"application/json", "", "application/json; charset=utf-8", "application/problem+json", "text/plain", "application/json+x;y"} {
			if mapOrderDependent([]byte(s)) {
				continue
			}
			want, got := post(old, ct, []byte(s)), post(cur, ct, []byte(s))
			require.Equal(t, want, got, "body %q, content type %q", s, ct)
		}
	}
}

// TestCheckBodyReadsDirectly: a body as clients send it is read without
// huma's validation pass.
func TestCheckBodyReadsDirectly(t *testing.T) {
	t.Parallel()
	var r checkRequest
	require.NoError(t, json.Unmarshal([]byte(checkBodySeeds[1]), &r))
	require.Equal(t, checkDirect, r.read)
	require.Nil(t, r.body)
	require.Equal(t, "send_email", r.Tool)
	require.JSONEq(t, `{"n":42}`, string(r.Parameters))
	require.NoError(t, json.Unmarshal([]byte(`{"tool":"a","Tenant":"x"}`), &r))
	require.Equal(t, checkGeneric, r.read)
}
