// Package mailtest is an in-process SMTP server for tests: it accepts every
// message (github.com/emersion/go-smtp) and keeps it, so tests deliver
// through the real SMTP client and read what a mailbox would.
package mailtest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one received message.
type Message struct {
	From string
	To   []string
	// Subject and Body are decoded from the message (quoted-printable or
	// plain bodies, as oakallow sends them).
	Subject string
	Body    string
	Raw     string
}

// Sink is a running SMTP server.
type Sink struct {
	Host string
	Port int

	srv  *smtp.Server
	mu   sync.Mutex
	msgs []Message
	news chan struct{}
}

// Start starts a sink on a loopback port; it stops when the test ends.
func Start(t testing.TB) *Sink {
	t.Helper()
	s := &Sink{news: make(chan struct{}, 1)}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{sink: s}, nil }))
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true
	s.srv.MaxMessageBytes = 1 << 20
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mailtest: listen: %v", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	s.Host, s.Port = "127.0.0.1", addr.Port
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

// Messages returns what arrived so far.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// WaitFor returns the n-th (from 1) message to addr, waiting until ctx ends.
func (s *Sink) WaitFor(ctx context.Context, addr string, n int) (Message, error) {
	for {
		seen := 0
		for _, m := range s.Messages() {
			for _, to := range m.To {
				if strings.EqualFold(to, addr) {
					seen++
					if seen == n {
						return m, nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return Message{}, errors.New("mailtest: no message " + addr + " arrived")
		case <-s.news:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type session struct {
	sink *Sink
	from string
	to   []string
}

func (s *session) AuthMechanisms() []string { return nil }

func (s *session) Mail(from string, _ *smtp.MailOptions) error { s.from = from; return nil }

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error { s.to = append(s.to, to); return nil }

func (s *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Message{From: s.from, To: s.to, Raw: string(raw)}
	if parsed, err := mail.ReadMessage(strings.NewReader(m.Raw)); err == nil {
		m.Subject = parsed.Header.Get("Subject")
		body, _ := io.ReadAll(parsed.Body)
		m.Body = decodeBody(parsed.Header.Get("Content-Transfer-Encoding"), string(body))
	}
	s.sink.mu.Lock()
	s.sink.msgs = append(s.sink.msgs, m)
	s.sink.mu.Unlock()
	select {
	case s.sink.news <- struct{}{}:
	default:
	}
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }
