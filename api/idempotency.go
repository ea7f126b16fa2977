package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"oakallow/api/runtime"
	"oakallow/store"
)

// Idempotency-Key (SPEC §3: every write accepts it; a retried request returns
// the first answer). The first answer to a write — status and body, success
// or client error — is kept per (caller's key id, Idempotency-Key) together
// with a hash of the request. A retry with the same key and the same request
// gets that answer again without running the write a second time (nothing
// is billed, created or decided twice); the same key with a different
// request is refused with 422 idempotency_key_reused. Server-side failures
// (5xx, cancelled requests) are not kept: the key is released so the
// client's retry runs the write again.

// Problem codes of the Idempotency-Key protocol.
const (
	// CodeIdempotencyKeyReused: the key was used for a different request.
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	// CodeIdempotencyKeyInUse: the first request with the key is still running.
	CodeIdempotencyKeyInUse = "idempotency_key_in_use"
)

const (
	// idempotencyRetention is how long an answer is replayed; an older key
	// counts as unused.
	idempotencyRetention = 24 * time.Hour
	// idempotencyStaleAfter is when a claim whose request never finished
	// (its process died) may be taken over by a retry. Requests are bounded
	// well below it by the server's timeouts.
	idempotencyStaleAfter = 2 * time.Minute
	// idempotencyReplayedHeader marks a replayed answer.
	idempotencyReplayedHeader = "Idempotent-Replayed"
)

// IdempotencyHeader is embedded in the input of every write that honours
// the Idempotency-Key header.
type IdempotencyHeader struct {
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"255" pattern:"^[\\x21-\\x7e]+$" patternDescription:"printable ASCII without spaces" doc:"Makes the write safe to retry: a repeated request with the same key and body gets the first answer again (for 24 h) without repeating the write; reusing the key for a different request is refused (422 idempotency_key_reused)."`
}

// idempotencyAnswer is what is kept of a first answer.
type idempotencyAnswer struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

// idempotent runs fn once per (caller, Idempotency-Key) and replays its
// answer to retries. scope names the operation and its target (e.g.
// "decide-approval:apr_…") and req is the decoded request body; both go into
// the request hash. fn returns its success status and body, or an error
// (mapped with toProblem). The result is the status, the body, whether it
// was replayed, and the error to return (already a *Problem).
//
// It also refuses a request whose body holds a NUL character, which
// PostgreSQL cannot store in text or jsonb: refused here, before anything
// is billed or written, it is a 422 instead of a failed write.
func idempotent[B any](ctx context.Context, s *Server, key, scope string, req any, fn func(ctx context.Context) (int, B, error)) (int, B, bool, error) {
	var zero B
	raw, err := json.Marshal(req)
	if err != nil {
		return 0, zero, false, toProblem(ctx, s.log, fmt.Errorf("encode request: %w", err))
	}
	if jsonHasNUL(raw) {
		return 0, zero, false, toProblem(ctx, s.log, problem(http.StatusUnprocessableEntity, CodeValidationFailed,
			"text must not contain NUL characters (\\u0000)"))
	}
	if key == "" {
		status, body, err := fn(ctx)
		if err != nil {
			return 0, zero, false, toProblem(ctx, s.log, err)
		}
		return status, body, false, nil
	}
	p := mustPrincipal(ctx)
	hash := requestHash(scope, raw)
	owner := p.idempotencyOwner()
	claimed, answer, err := s.claimIdempotencyKey(ctx, owner, key, hash)
	if err != nil {
		return 0, zero, false, toProblem(ctx, s.log, err)
	}
	if !claimed {
		status, body, replayed, err := replayAnswer[B](ctx, answer)
		if err != nil {
			return 0, zero, replayed, toProblem(ctx, s.log, err)
		}
		return status, body, replayed, nil
	}

	status, body, runErr := fn(ctx)
	// The answer is stored whatever happened to the client's connection.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if runErr != nil {
		prob := toProblem(ctx, s.log, runErr)
		var pr *Problem
		if !errors.As(prob, &pr) || !keepProblem(pr.Status) {
			if err := s.deps.Store.ReleaseIdempotencyKey(bg, store.ReleaseIdempotencyKeyParams{PrincipalID: owner, Key: key}); err != nil {
				s.log.WarnContext(ctx, "release idempotency key", "request_id", requestIDFrom(ctx), "err", err)
			}
			return 0, zero, false, prob
		}
		encoded, err := json.Marshal(pr)
		if err == nil {
			err = s.storeIdempotencyAnswer(bg, owner, key, idempotencyAnswer{Status: pr.Status, Body: encoded})
		}
		if err != nil {
			s.log.WarnContext(ctx, "store idempotent answer", "request_id", requestIDFrom(ctx), "err", err)
		}
		return 0, zero, false, prob
	}
	encoded, err := json.Marshal(body)
	if err == nil {
		err = s.storeIdempotencyAnswer(bg, owner, key, idempotencyAnswer{Status: status, Body: encoded})
	}
	if err != nil {
		// The write happened; answering it matters more than keeping it for a
		// replay. A retry with this key will find the claim in progress (409)
		// until it goes stale, never run the write twice meanwhile.
		s.log.WarnContext(ctx, "store idempotent answer", "request_id", requestIDFrom(ctx), "err", err)
	}
	return status, body, false, nil
}

// keepProblem reports whether a problem answer is final for its request and
// is therefore replayed: client errors are, except those that say "try
// again" (no credit yet, timeouts, rate limits, a cancelled request).
func keepProblem(status int) bool {
	switch status {
	case http.StatusPaymentRequired, http.StatusRequestTimeout, http.StatusTooManyRequests, 499:
		return false
	}
	return status >= 400 && status < 500
}

// requestHash binds a key to one request: the operation, its target and the
// body as decoded and re-encoded (so formatting and field order do not
// matter).
func requestHash(scope string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(scope))
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// jsonHasNUL reports whether JSON text (as encoding/json writes it) has a
// string holding a NUL character, i.e. an unescaped "\u0000" escape.
func jsonHasNUL(raw []byte) bool { return runtime.JSONHasNUL(raw) }

// storable reports whether PostgreSQL can hold s as text: valid UTF-8
// without NUL. Path and query parameters are raw bytes and are checked
// with it before they reach a query.
func storable(s string) bool { return runtime.Storable(s) }

// lookupRef refuses an id no row can have because PostgreSQL could not
// even compare it, as the not-found it is.
func lookupRef(what, ref string) error {
	if !storable(ref) {
		return problem(http.StatusNotFound, CodeNotFound, "no "+what+" with that id in this org")
	}
	return nil
}

// claimIdempotencyKey claims the key for this request, or returns the answer
// stored for it. It refuses a key used for another request, and a key whose
// first request is still running.
func (s *Server) claimIdempotencyKey(ctx context.Context, principal, key, hash string) (bool, idempotencyAnswer, error) {
	st := s.deps.Store
	for range 3 {
		now := s.now()
		_, err := st.ReserveIdempotencyKey(ctx, store.ReserveIdempotencyKeyParams{
			PrincipalID: principal, Key: key, RequestHash: hash, CreatedAt: now})
		if err == nil {
			return true, idempotencyAnswer{}, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return false, idempotencyAnswer{}, fmt.Errorf("claim idempotency key: %w", err)
		}
		row, err := st.GetIdempotencyKey(ctx, store.GetIdempotencyKeyParams{PrincipalID: principal, Key: key})
		if errors.Is(err, store.ErrNotFound) {
			continue // released or expired meanwhile: claim again
		}
		if err != nil {
			return false, idempotencyAnswer{}, fmt.Errorf("read idempotency key: %w", err)
		}
		if row.CreatedAt.Before(now.Add(-idempotencyRetention)) {
			if err := st.DeleteExpiredIdempotencyKey(ctx, store.DeleteExpiredIdempotencyKeyParams{
				PrincipalID: principal, Key: key, Before: now.Add(-idempotencyRetention)}); err != nil {
				return false, idempotencyAnswer{}, fmt.Errorf("expire idempotency key: %w", err)
			}
			continue
		}
		if row.RequestHash != hash {
			return false, idempotencyAnswer{}, problem(http.StatusUnprocessableEntity, CodeIdempotencyKeyReused,
				"this Idempotency-Key was already used for a different request; use a new key for a new request")
		}
		if row.StatusCode == 0 {
			_, err := st.ReclaimIdempotencyKey(ctx, store.ReclaimIdempotencyKeyParams{PrincipalID: principal, Key: key,
				RequestHash: hash, Now: now, StaleBefore: now.Add(-idempotencyStaleAfter)})
			if err == nil {
				return true, idempotencyAnswer{}, nil
			}
			if !errors.Is(err, store.ErrNotFound) {
				return false, idempotencyAnswer{}, fmt.Errorf("reclaim idempotency key: %w", err)
			}
			return false, idempotencyAnswer{}, problem(http.StatusConflict, CodeIdempotencyKeyInUse,
				"a request with this Idempotency-Key is still being processed; retry shortly")
		}
		answer, err := s.openIdempotencyAnswer(principal, key, row.Response)
		if err != nil {
			return false, idempotencyAnswer{}, err
		}
		return false, answer, nil
	}
	return false, idempotencyAnswer{}, problem(http.StatusConflict, CodeIdempotencyKeyInUse,
		"a request with this Idempotency-Key is being processed concurrently; retry shortly")
}

// Stored answers are sealed: some are shown once and hold a secret (a
// webhook signing secret, a token).

func (s *Server) storeIdempotencyAnswer(ctx context.Context, principal, key string, a idempotencyAnswer) error {
	raw, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode answer: %w", err)
	}
	sealed, err := s.deps.SecretBox.Seal(raw, store.IdempotencyAnswerAAD(principal, key))
	if err != nil {
		return fmt.Errorf("seal answer: %w", err)
	}
	stored := append([]byte{store.IdempotencyAnswerSealed}, sealed...)
	return s.deps.Store.CompleteIdempotencyKey(ctx, store.CompleteIdempotencyKeyParams{
		PrincipalID: principal, Key: key, StatusCode: int32(a.Status), Response: stored})
}

func (s *Server) openIdempotencyAnswer(principal, key string, stored []byte) (idempotencyAnswer, error) {
	if len(stored) == 0 || stored[0] != store.IdempotencyAnswerSealed {
		return idempotencyAnswer{}, errors.New("stored idempotent answer has an unknown format")
	}
	raw, err := s.deps.SecretBox.Open(stored[1:], store.IdempotencyAnswerAAD(principal, key))
	if err != nil {
		return idempotencyAnswer{}, fmt.Errorf("open stored answer: %w", err)
	}
	var a idempotencyAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		return idempotencyAnswer{}, fmt.Errorf("decode stored answer: %w", err)
	}
	return a, nil
}

// replayAnswer turns a stored answer back into the handler's result.
func replayAnswer[B any](ctx context.Context, a idempotencyAnswer) (int, B, bool, error) {
	var zero B
	if a.Status >= 400 {
		var p Problem
		if err := json.Unmarshal(a.Body, &p); err != nil {
			return 0, zero, false, fmt.Errorf("decode stored problem: %w", err)
		}
		p.RequestID = requestIDFrom(ctx)
		p.headers = http.Header{idempotencyReplayedHeader: []string{"true"}}
		return 0, zero, true, &p
	}
	var body B
	if err := json.Unmarshal(a.Body, &body); err != nil {
		return 0, zero, false, fmt.Errorf("decode stored answer: %w", err)
	}
	return a.Status, body, true, nil
}

// replayedHeader is the value of the Idempotent-Replayed output header.
func replayedHeader(replayed bool) string {
	if replayed {
		return "true"
	}
	return ""
}
