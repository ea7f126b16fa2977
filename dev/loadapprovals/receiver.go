package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// signatureTolerance is SPEC §4's receiver rule: refuse timestamps more than
// 5 minutes from the receiver's clock.
const signatureTolerance = 5 * time.Minute

// receiver is the customer's webhook endpoint: plain HTTP on 127.0.0.1. It
// checks every request's X-Oakallow-Signature with its own implementation of
// SPEC §4 (not package notify's, so a signing bug cannot hide behind the same
// verifying bug), and records when each event of each REF first arrived.
type receiver struct {
	srv *http.Server
	ln  net.Listener

	mu         sync.Mutex
	secret     []byte
	arrivals   map[arrivalKey]time.Time // first accepted arrival
	deliveries map[string]int           // X-Oakallow-Delivery → accepted requests
	byType     map[string]int           // event type → distinct deliveries
	waiters    map[arrivalKey]chan struct{}
	rejections []string
}

// arrivalKey is one event of one approval.
type arrivalKey struct {
	ref, event string
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	r := &receiver{
		ln:         ln,
		arrivals:   map[arrivalKey]time.Time{},
		deliveries: map[string]int{},
		byType:     map[string]int{},
		waiters:    map[arrivalKey]chan struct{}{},
	}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// URL is the webhook URL to configure.
func (r *receiver) URL() string { return "http://" + r.ln.Addr().String() + "/hooks/oakallow" }

// SetSecret sets the signing secret requests must carry a signature of.
func (r *receiver) SetSecret(secret string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secret = []byte(secret)
}

func (r *receiver) Close() { _ = r.srv.Close() }

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		r.reject(w, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	if req.Method != http.MethodPost {
		r.reject(w, http.StatusMethodNotAllowed, "method "+req.Method)
		return
	}
	r.mu.Lock()
	secret := r.secret
	r.mu.Unlock()
	if err := checkSignature(req.Header.Get("X-Oakallow-Signature"), body, secret, at); err != nil {
		r.reject(w, http.StatusUnauthorized, "signature: "+err.Error())
		return
	}
	id, event := req.Header.Get("X-Oakallow-Delivery"), req.Header.Get("X-Oakallow-Event")
	var ev struct {
		Type string `json:"type"`
		Data struct {
			Reference string `json:"reference"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		r.reject(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	if id == "" || event == "" || ev.Type != event || ev.Data.Reference == "" {
		r.reject(w, http.StatusBadRequest, fmt.Sprintf("delivery %q, event header %q, body type %q, reference %q", id, event, ev.Type, ev.Data.Reference))
		return
	}
	key := arrivalKey{ref: ev.Data.Reference, event: event}
	r.mu.Lock()
	r.deliveries[id]++
	if r.deliveries[id] == 1 {
		r.byType[event]++
	}
	if _, seen := r.arrivals[key]; !seen {
		r.arrivals[key] = at
		if ch, ok := r.waiters[key]; ok {
			close(ch)
			delete(r.waiters, key)
		}
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) reject(w http.ResponseWriter, status int, reason string) {
	r.mu.Lock()
	r.rejections = append(r.rejections, reason)
	r.mu.Unlock()
	http.Error(w, reason, status)
}

// Wait returns when event of ref first arrived, waiting until deadline.
func (r *receiver) Wait(ref, event string, deadline time.Time) (time.Time, bool) {
	key := arrivalKey{ref: ref, event: event}
	r.mu.Lock()
	if at, ok := r.arrivals[key]; ok {
		r.mu.Unlock()
		return at, true
	}
	ch, ok := r.waiters[key]
	if !ok {
		ch = make(chan struct{})
		r.waiters[key] = ch
	}
	r.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.arrivals[key], true
	case <-t.C:
		return time.Time{}, false
	}
}

// receiverStats is what the receiver saw.
type receiverStats struct {
	byType     map[string]int // distinct deliveries per event type
	duplicates int            // requests repeating an accepted delivery id
	rejections []string
}

func (r *receiver) Stats() receiverStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := receiverStats{byType: map[string]int{}, rejections: append([]string(nil), r.rejections...)}
	for k, v := range r.byType {
		s.byType[k] = v
	}
	for _, n := range r.deliveries {
		s.duplicates += n - 1
	}
	return s
}

// checkSignature verifies "t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
// "<t>.<raw body>")>[,v1=…]" (SPEC §4): any v1 may match, and the timestamp
// must be within signatureTolerance of now.
func checkSignature(header string, body, secret []byte, now time.Time) error {
	if len(secret) == 0 {
		return errors.New("receiver has no secret yet")
	}
	if header == "" {
		return errors.New("missing")
	}
	var ts string
	var sigs []string
	for item := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			return fmt.Errorf("malformed item %q", item)
		}
		switch k {
		case "t":
			if ts != "" {
				return errors.New("two timestamps")
			}
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	if ts == "" || len(sigs) == 0 {
		return errors.New("timestamp or v1 missing")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q: %w", ts, err)
	}
	if age := now.Sub(time.Unix(sec, 0)); age > signatureTolerance || age < -signatureTolerance {
		return fmt.Errorf("timestamp %s is %s from now", ts, age)
	}
	mac := hmac.New(sha256.New, secret)
	_, _ = io.WriteString(mac, ts+".")
	_, _ = mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range sigs {
		if got, err := hex.DecodeString(s); err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no v1 matches")
}
