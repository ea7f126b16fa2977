package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/store"
)

// BenchmarkCheck measures the server's side of POST /v1/permissions/check —
// authentication, decoding, schema validation, decision, parameter hash, PII
// scrubbing, the group-committed audit row and charge, the receipt, the
// answer — through the server's handler, in process: from one caller, so
// each commit carries one entry (concurrency 1 of dev/loadpeers), and from
// 16, so commits are shared as under load. allocs/op is the figure the
// check's allocation budget is stated in (docs/PERFORMANCE.md); it includes
// about ten allocations of httptest's request and recorder, which a real
// connection's server does not make.
func BenchmarkCheck(b *testing.B) {
	e := newBenchCheckEnv(b)
	body := []byte(benchCheckArgs)
	h := e.srv.Handler()
	check := func(b *testing.B) bool {
		req := httptest.NewRequest(http.MethodPost, "/v1/permissions/check", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", e.boot.StandardKey)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Errorf("status %d: %s", w.Code, w.Body)
			return false
		}
		return true
	}
	benchCallers(b, check)
}

// BenchmarkMCPCheck is BenchmarkCheck for the same check as a tools/call of
// check_permission on /mcp (Streamable HTTP, stateless, JSON answer), as an
// MCP client sends it: one JSON-RPC POST per call. The difference between the
// two allocs/op is what the MCP surface costs per check.
func BenchmarkMCPCheck(b *testing.B) {
	e := newBenchCheckEnv(b)
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"check_permission","arguments":` +
		benchCheckArgs + `}}`)
	h := e.srv.Handler()
	check := func(b *testing.B) bool {
		req := httptest.NewRequest(http.MethodPost, mcpPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
		req.Header.Set("Authorization", "Bearer "+e.boot.StandardKey)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte(`"check_id"`)) ||
			bytes.Contains(w.Body.Bytes(), []byte(`"isError":true`)) {
			b.Errorf("status %d: %s", w.Code, w.Body)
			return false
		}
		return true
	}
	benchCallers(b, check)
}

// benchCheckArgs is the benchmarks' check: a registered tool with a
// parameter schema, and a parameter to scrub.
const benchCheckArgs = `{"tool":"send_email","tenant":"acme","resource":"mailbox","method":"send","reason":"load test",` +
	`"parameters":{"to":"someone","n":42,"note":"call me at +1 415 555 0100"}}`

// newBenchCheckEnv is a test environment whose team has credit for any
// benchmark and whose org has the benchmarks' tool.
func newBenchCheckEnv(b *testing.B) *testEnv {
	e := newTestEnv(b)
	_, err := e.st.CreateCreditGrant(b.Context(), store.CreateCreditGrantParams{ID: store.NewID("grant"), TeamID: e.boot.TeamID,
		Kind: "purchased", AmountMicros: 1 << 50, Source: "bench:" + e.boot.TeamID, CreatedAt: time.Now()})
	require.NoError(b, err)
	e.want(http.StatusCreated, http.MethodPost, "/v1/tools", e.boot.ManagementKey, `{"name":"send_email","annotations_acknowledged":true,`+
		`"parameter_schema":{"type":"object","properties":{"to":{"type":"string"},"n":{"type":"integer"}},"required":["to"]}}`)
	return e
}

// benchCallers runs check from one caller, so each audit commit carries one
// entry, and from 16, so commits are shared as under load.
func benchCallers(b *testing.B, check func(*testing.B) bool) {
	b.Run("callers=1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !check(b) {
				return
			}
		}
	})
	b.Run("callers=16", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8) // × GOMAXPROCS 2 = 16 callers
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !check(b) {
					return
				}
			}
		})
	})
}
