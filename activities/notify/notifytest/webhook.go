package notifytest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mode is how a WebhookReceiver answers.
type Mode int

// Receiver modes.
const (
	// Up verifies and accepts deliveries.
	Up Mode = iota
	// Down503 answers every request with 503 Service Unavailable.
	Down503
	// DownClosed closes the connection without answering.
	DownClosed
	// Reject400 answers every request with 400 Bad Request, a failure the sender must
	// not retry.
	Reject400
	// Held keeps every request waiting, unanswered, until the mode changes (the request
	// then gets the new mode's answer) or the sender gives up.
	Held
)

// receiverTolerance is the SPEC §4 receiver rule: timestamps more than
// 5 minutes old are rejected.
const receiverTolerance = 5 * time.Minute

// WebhookReceiver is a fake customer endpoint for oakallow webhooks. It
// verifies the X-Oakallow-Signature header with its own implementation of
// the scheme (so a bug in the sender's signing cannot be masked by the same
// bug in a shared verifier), rejects stale timestamps, and records what it
// accepted.
type WebhookReceiver struct {
	server *httptest.Server
	secret []byte

	mu         sync.Mutex
	mode       Mode
	now        func() time.Time
	attempts   int
	attemptIDs []string
	failNext   int
	retryAfter string        // Retry-After header of 503 answers; "" for none
	held       chan struct{} // closed when the mode leaves Held
	deliveries []Delivery
	rejections []string
	changed    chan struct{} // closed and replaced on every accepted delivery
}

// Delivery is one accepted request.
type Delivery struct {
	// ID is the X-Oakallow-Delivery header.
	ID string
	// Event is the X-Oakallow-Event header.
	Event string
	// Signature is the X-Oakallow-Signature header.
	Signature string
	// Header is the full request header.
	Header http.Header
	// Body is the raw body, exactly as received.
	Body []byte
	// ReceivedAt is when the receiver accepted it.
	ReceivedAt time.Time
}

// NewWebhookReceiver starts a receiver that accepts requests signed with
// secret (the "whsec_…" string as shown to the user), closed when the test
// ends.
func NewWebhookReceiver(t testing.TB, secret string) *WebhookReceiver {
	t.Helper()
	if secret == "" {
		t.Fatal("notifytest: webhook receiver needs a secret")
	}
	r := &WebhookReceiver{secret: []byte(secret), now: time.Now, changed: make(chan struct{})}
	r.server = httptest.NewServer(http.HandlerFunc(r.handle))
	t.Cleanup(r.server.Close)
	t.Cleanup(func() { r.SetMode(Up) }) // first: Close waits for held requests
	return r
}

// URL is the endpoint to deliver to.
func (r *WebhookReceiver) URL() string { return r.server.URL + "/hooks/oakallow" }

// SetMode takes the receiver down (Down503, DownClosed), makes it refuse (Reject400) or
// hold (Held) requests, or brings it Up. Leaving Held releases the held requests.
func (r *WebhookReceiver) SetMode(m Mode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case m == Held && r.held == nil:
		r.held = make(chan struct{})
	case m != Held && r.held != nil:
		close(r.held)
		r.held = nil
	}
	r.mode = m
}

// FailNext answers the next n requests with 503 Service Unavailable, whatever the mode.
func (r *WebhookReceiver) FailNext(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failNext = n
}

// SetRetryAfter makes 503 answers carry "Retry-After: v" ("" for none).
func (r *WebhookReceiver) SetRetryAfter(v string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retryAfter = v
}

// SetClock replaces the receiver's clock, for tests that pin time.
func (r *WebhookReceiver) SetClock(now func() time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.now = now
}

// Attempts returns how many requests arrived, accepted or not.
func (r *WebhookReceiver) Attempts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts
}

// AttemptIDs returns the X-Oakallow-Delivery header of every request, accepted or not,
// in arrival order.
func (r *WebhookReceiver) AttemptIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.attemptIDs...)
}

// Deliveries returns the accepted deliveries in arrival order.
func (r *WebhookReceiver) Deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.deliveries...)
}

// Rejections returns why refused requests were refused.
func (r *WebhookReceiver) Rejections() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.rejections...)
}

// WaitForDeliveries waits until at least n deliveries were accepted and
// returns them; it fails the test after timeout.
func (r *WebhookReceiver) WaitForDeliveries(t testing.TB, n int, timeout time.Duration) []Delivery {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		if len(r.deliveries) >= n {
			out := append([]Delivery(nil), r.deliveries...)
			r.mu.Unlock()
			return out
		}
		changed := r.changed
		got := len(r.deliveries)
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("notifytest: %d of %d webhook deliveries after %s; rejections: %v", got, n, timeout, r.Rejections())
			return nil
		}
	}
}

func (r *WebhookReceiver) handle(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.attempts++
	r.attemptIDs = append(r.attemptIDs, req.Header.Get("X-Oakallow-Delivery"))
	fail := r.failNext > 0
	if fail {
		r.failNext--
	}
	mode, held, retryAfter := r.mode, r.held, r.retryAfter
	r.mu.Unlock()
	// Read before holding: the server notices a sender that hangs up (and cancels
	// req.Context) only once the body has been read.
	body, readErr := io.ReadAll(io.LimitReader(req.Body, 2<<20))
	if !fail && mode == Held {
		select {
		case <-held:
		case <-req.Context().Done():
			return
		}
	}
	r.mu.Lock()
	if !fail {
		mode = r.mode // a held request gets the answer of the mode that released it
	}
	now := r.now()
	r.mu.Unlock()

	switch {
	case fail || mode == Down503:
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	case mode == Reject400:
		http.Error(w, "this endpoint does not accept oakallow events", http.StatusBadRequest)
		return
	case mode == DownClosed:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}

	if readErr != nil {
		r.reject(w, http.StatusBadRequest, "read body: "+readErr.Error())
		return
	}

	if req.Method != http.MethodPost {
		r.reject(w, http.StatusMethodNotAllowed, "method "+req.Method)
		return
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		r.reject(w, http.StatusUnsupportedMediaType, "content type "+req.Header.Get("Content-Type"))
		return
	}
	if !strings.HasPrefix(req.Header.Get("User-Agent"), "oakallow-webhooks/") {
		r.reject(w, http.StatusBadRequest, "user agent "+req.Header.Get("User-Agent"))
		return
	}
	sig := req.Header.Get("X-Oakallow-Signature")
	if err := checkSignature(sig, body, r.secret, now); err != nil {
		r.reject(w, http.StatusUnauthorized, "signature: "+err.Error())
		return
	}
	id, event := req.Header.Get("X-Oakallow-Delivery"), req.Header.Get("X-Oakallow-Event")
	if id == "" || event == "" {
		r.reject(w, http.StatusBadRequest, "missing X-Oakallow-Delivery or X-Oakallow-Event")
		return
	}
	var envelope struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &envelope); err != nil {
		r.reject(w, http.StatusBadRequest, "body is not JSON: "+err.Error())
		return
	}
	if envelope.Type != event {
		r.reject(w, http.StatusBadRequest, fmt.Sprintf("X-Oakallow-Event %q differs from body type %q", event, envelope.Type))
		return
	}

	r.mu.Lock()
	r.deliveries = append(r.deliveries, Delivery{
		ID: id, Event: event, Signature: sig, Header: req.Header.Clone(), Body: body, ReceivedAt: now,
	})
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *WebhookReceiver) reject(w http.ResponseWriter, status int, reason string) {
	r.mu.Lock()
	r.rejections = append(r.rejections, reason)
	r.mu.Unlock()
	http.Error(w, reason, status)
}

// checkSignature is the receiver-side check, written from SPEC §4 without
// using package notify: "t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
// "<t>.<raw body>")>", any v1 may match, timestamps more than 5 minutes
// from now are refused.
func checkSignature(header string, body, secret []byte, now time.Time) error {
	if header == "" {
		return errors.New("missing")
	}
	var t string
	var sigs []string
	for _, item := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			return fmt.Errorf("malformed item %q", item)
		}
		switch k {
		case "t":
			if t != "" {
				return errors.New("two timestamps")
			}
			t = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	if t == "" || len(sigs) == 0 {
		return errors.New("timestamp or v1 missing")
	}
	sec, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q: %v", t, err)
	}
	age := now.Sub(time.Unix(sec, 0))
	if age > receiverTolerance || age < -receiverTolerance {
		return fmt.Errorf("timestamp %s is %s away from now", t, age)
	}
	mac := hmac.New(sha256.New, secret)
	_, _ = io.WriteString(mac, t+".")
	_, _ = mac.Write(body)
	want := mac.Sum(nil)
	ok := false
	for _, s := range sigs {
		got, err := hex.DecodeString(s)
		if err == nil && hmac.Equal(got, want) {
			ok = true
		}
	}
	if !ok {
		return errors.New("no v1 matches")
	}
	return nil
}
