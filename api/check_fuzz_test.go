package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzCheckRequest throws arbitrary bodies at the check endpoint of a real
// server on a real database: nothing a client sends may produce a 5xx or a
// panic. Run with `go test -run '^$' -fuzz FuzzCheckRequest ./api/`.
func FuzzCheckRequest(f *testing.F) {
	seeds := []string{
		`{"tool":"send_email"}`,
		`{"tool":"create_invoice","parameters":{"amount":5}}`,
		`{"tool":"create_invoice","parameters":{"amount":"x"}}`,
		`{"tool":"send_email","tenant":"acme","resource":"db","method":"DELETE","reason":"mail bob@example.com","context":{"a":[1,2,{"b":null}]},"reference_id":"r1"}`,
		`{"tool":""}`, `{}`, `[]`, `null`, `"x"`, `{"tool":1}`, `{"tool":"a","parameters":[]}`,
		`{"tool":"a","parameters":{"n":1e400}}`, `{"tool":"a\u0000b"}`, "{\"tool\":\"\xff\xfe\"}",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	e := newTestEnv(f)
	e.seedTool("send_email", "", ptr("allowed"))
	e.seedTool("create_invoice", `{"type":"object","properties":{"amount":{"type":"integer","minimum":1}},"required":["amount"]}`, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/permissions/check", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", e.boot.StandardKey)
		rec := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body.String())
		}
	})
}
