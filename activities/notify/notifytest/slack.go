package notifytest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Slack is a fake of the two Slack surfaces oakallow uses: incoming
// webhooks (POST /services/…) and the OAuth v2 code exchange
// (POST /api/oauth.v2.access).
type Slack struct {
	// ClientID and ClientSecret are the credentials oauth.v2.access accepts.
	ClientID     string
	ClientSecret string
	// Channel and ChannelID are what an install reports.
	Channel   string
	ChannelID string

	server   *httptest.Server
	hookPath string

	mu         sync.Mutex
	messages   [][]byte
	rejections []string
	failures   []failure
	codes      map[string]string // code → redirect_uri it was issued for
	exchanges  int
}

// failure is a canned answer for the next request(s).
type failure struct {
	status int
	body   string
}

// NewSlack starts a fake Slack, closed when the test ends.
func NewSlack(t testing.TB) *Slack {
	t.Helper()
	s := &Slack{
		ClientID:     "1111111111." + randomHex(6),
		ClientSecret: randomHex(16),
		Channel:      "#approvals",
		ChannelID:    "C0" + strings.ToUpper(randomHex(4)),
		hookPath:     "/services/T0FAKE/B0FAKE/" + randomHex(12),
		codes:        map[string]string{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/services/", s.handleWebhook)
	mux.HandleFunc("/api/oauth.v2.access", s.handleOAuthAccess)
	s.server = httptest.NewServer(mux)
	t.Cleanup(s.server.Close)
	return s
}

// WebhookURL is the incoming-webhook URL to configure as a channel. Its
// last path segment is random, like the secret part of a real one.
func (s *Slack) WebhookURL() string { return s.server.URL + s.hookPath }

// APIURL is the Web API base (ends in "/") for notify.SlackApp.APIURL.
func (s *Slack) APIURL() string { return s.server.URL + "/api/" }

// Messages returns the raw bodies of the webhook posts that were accepted,
// in arrival order.
func (s *Slack) Messages() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]byte, len(s.messages))
	copy(out, s.messages)
	return out
}

// Rejections returns why refused requests were refused, in arrival order.
func (s *Slack) Rejections() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.rejections...)
}

// Exchanges returns how many oauth.v2.access calls succeeded.
func (s *Slack) Exchanges() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exchanges
}

// FailNext makes the next webhook post get status with body instead of
// being processed (e.g. 500, 429, or 404 "no_service").
func (s *Slack) FailNext(status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, failure{status: status, body: body})
}

// IssueCode returns a single-use OAuth code, as Slack's authorize page
// would after the user approved the install, bound to redirectURI.
func (s *Slack) IssueCode(redirectURI string) string {
	code := "1111." + randomHex(12)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = redirectURI
	return code
}

func (s *Slack) reject(w http.ResponseWriter, status int, reason, body string) {
	s.mu.Lock()
	s.rejections = append(s.rejections, reason)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if status == http.StatusTooManyRequests {
		// Slack answers a rate-limited webhook post with the seconds to wait.
		w.Header().Set("Retry-After", strconv.Itoa(SlackRetryAfterSeconds))
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// SlackRetryAfterSeconds is the Retry-After the fake sends with a 429.
const SlackRetryAfterSeconds = 30

func (s *Slack) handleWebhook(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != s.hookPath {
		s.reject(w, http.StatusNotFound, "unknown webhook path", "no_service")
		return
	}
	if r.Method != http.MethodPost {
		s.reject(w, http.StatusMethodNotAllowed, "method "+r.Method, "invalid_method")
		return
	}
	s.mu.Lock()
	if len(s.failures) > 0 {
		f := s.failures[0]
		s.failures = s.failures[1:]
		s.mu.Unlock()
		s.reject(w, f.status, "canned failure", f.body)
		return
	}
	s.mu.Unlock()
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.reject(w, http.StatusBadRequest, "content type "+r.Header.Get("Content-Type"), "invalid_payload")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		s.reject(w, http.StatusBadRequest, "read body: "+err.Error(), "invalid_payload")
		return
	}
	if err := ValidateWebhookMessage(body); err != nil {
		code, _, _ := strings.Cut(err.Error(), ":")
		s.reject(w, http.StatusBadRequest, err.Error(), code)
		return
	}
	s.mu.Lock()
	s.messages = append(s.messages, body)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html")
	_, _ = io.WriteString(w, "ok")
}

// handleOAuthAccess implements oauth.v2.access: client authentication by
// form fields or HTTP Basic, a single-use code, and the redirect_uri the
// code was issued for. Errors are HTTP 200 with {"ok":false,"error":…},
// as Slack answers them.
func (s *Slack) handleOAuthAccess(w http.ResponseWriter, r *http.Request) {
	answer := func(v any) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(v)
	}
	fail := func(code string) {
		s.mu.Lock()
		s.rejections = append(s.rejections, "oauth.v2.access: "+code)
		s.mu.Unlock()
		answer(map[string]any{"ok": false, "error": code})
	}
	if r.Method != http.MethodPost {
		fail("invalid_request")
		return
	}
	if err := r.ParseForm(); err != nil {
		fail("invalid_form_data")
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != s.ClientID {
		fail("invalid_client_id")
		return
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(s.ClientSecret)) != 1 {
		fail("bad_client_secret")
		return
	}
	code := r.PostForm.Get("code")
	s.mu.Lock()
	redirect, ok := s.codes[code]
	delete(s.codes, code)
	s.mu.Unlock()
	if !ok {
		fail("invalid_code")
		return
	}
	if r.PostForm.Get("redirect_uri") != redirect {
		fail("bad_redirect_uri")
		return
	}
	s.mu.Lock()
	s.exchanges++
	s.mu.Unlock()
	answer(map[string]any{
		"ok":           true,
		"app_id":       "A0FAKE",
		"access_token": "xoxb-fake-" + randomHex(8),
		"token_type":   "bot",
		"scope":        "incoming-webhook",
		"bot_user_id":  "U0FAKE",
		"team":         map[string]string{"id": "T0FAKE", "name": "Fake Team"},
		"enterprise":   nil,
		"authed_user":  map[string]string{"id": "U0INSTALLER"},
		"incoming_webhook": map[string]string{
			"channel":           s.Channel,
			"channel_id":        s.ChannelID,
			"configuration_url": s.server.URL + "/services/B0FAKE",
			"url":               s.WebhookURL(),
		},
	})
}

// randomHex returns n random bytes, hex encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
