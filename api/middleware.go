package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/danielgtaylor/huma/v2"
)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	principalKey
)

// requestIDFrom returns the request id stored by withRequestID.
func requestIDFrom(ctx context.Context) string {
	if ctx == nil {
		return ""
	}
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// validRequestID accepts a caller's X-Request-Id only when it is short and
// plain, so it cannot inject into logs.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
	// body wraps the request body; it lives here so that the check path
	// pays no allocation of its own for it.
	body requestBody
}

// requestBody marks the errors of reading a request body as
// *bodyReadError, so that they are answered as the client's (400) instead of
// as a server failure.
type requestBody struct{ io.ReadCloser }

func (b *requestBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = &bodyReadError{err: err}
	}
	return n, err
}

// bodyReadError is a request body that could not be read: broken chunked
// framing (RFC 9112 §7.1), a body shorter than its Content-Length
// (RFC 9112 §6.3), a connection the client ended mid-body. Each is the
// client's doing: nothing on the server can make a body unreadable.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "read request body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += n
	return n, err
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// withObservability assigns a request id, recovers panics as a 500 problem,
// marks request body read failures as the client's (requestBody), and
// writes one access-log line per request. It logs method, path, status,
// size and duration — never headers (keys) or bodies (parameters).
func withObservability(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		rec := &statusRecorder{ResponseWriter: w}
		r = r.WithContext(ctx)
		if r.Body != nil && r.Body != http.NoBody {
			rec.body.ReadCloser = r.Body
			r.Body = &rec.body
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				logger.ErrorContext(ctx, "panic", "request_id", id, "panic", p, "stack", string(debug.Stack()))
				if rec.status == 0 {
					w.Header().Set("Content-Type", "application/problem+json")
					w.WriteHeader(http.StatusInternalServerError)
					_, _ = w.Write([]byte(`{"title":"Internal Server Error","status":500,"code":"internal_error","detail":"internal error","request_id":"` + id + `"}`))
				}
				rec.status = http.StatusInternalServerError
			}
			logger.LogAttrs(ctx, slog.LevelInfo, "http",
				slog.String("request_id", id),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", rec.status),
				slog.Int("bytes", rec.bytes),
				slog.Duration("duration", time.Since(start)),
			)
		}()
		next.ServeHTTP(rec, r)
	})
}

// nosniffValue is the X-Content-Type-Options value of every answer. The slice
// is shared and only ever assigned (never appended to), so setting it costs
// the check path no allocation.
var nosniffValue = []string{"nosniff"}

// withNoSniff marks every answer X-Content-Type-Options: nosniff, so that no
// browser renders a JSON or problem body — which may echo caller input — as
// HTML or script, whatever its Content-Type.
func withNoSniff(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["X-Content-Type-Options"] = nosniffValue
		next.ServeHTTP(w, r)
	})
}

// noStoreOperations are the operations whose answers may carry a token or a
// secret: an execution token (minted, or returned with an approved approval
// and with the decision that approved it), a signing secret shown once (org
// webhook set or rotated, webhook channel created or its secret regenerated),
// or a credential shown once (an API key, an agent identity's secret,
// recovery codes, an invitation link, a session token for an app, an OAuth
// consent's CSRF token or the redirect carrying its authorization code).
// They are sent with Cache-Control: no-store (RFC 9111 §5.2.2.5), so neither
// a shared cache nor the client's own keeps a copy; so are their problems and
// their idempotent replays. TestNoStoreOperationsExist keeps the ids honest.
var noStoreOperations = map[string]bool{
	"mint-token":                true,
	"get-approval":              true,
	"decide-approval":           true,
	"rotate-webhook-secret":     true,
	"update-settings":           true,
	"create-channel":            true,
	"update-channel":            true,
	"create-api-key":            true,
	"create-agent-identity":     true,
	"regenerate-recovery-codes": true,
	"enroll-passkey":            true,
	"create-invitation":         true,
	"email-sign-in-verify":      true,
	"passkey-sign-in":           true,
	"recovery-sign-in":          true,
	"get-oauth-consent":         true,
	"decide-oauth-consent":      true,
}

// preventCaching applies noStoreOperations.
func preventCaching(ctx huma.Context, next func(huma.Context)) {
	if noStoreOperations[ctx.Operation().OperationID] {
		ctx.SetHeader("Cache-Control", "no-store")
	}
	next(ctx)
}

// withBodyLimit caps request bodies for routes huma does not own (huma
// enforces each operation's MaxBodyBytes itself and answers 413); larger
// names paths whose operation allows more (the Stripe webhook).
func withBodyLimit(limit int64, larger map[string]int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lim := limit
		if l, ok := larger[r.URL.Path]; ok {
			lim = l
		}
		if r.ContentLength > lim {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			_, _ = w.Write([]byte(`{"title":"Request Entity Too Large","status":413,"code":"body_too_large","detail":"request body is too large"}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}
