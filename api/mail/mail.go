// Package mail sends oakallow's e-mail (sign-in codes, invitations) through
// any SMTP server, with github.com/wneessen/go-mail: maintained, RFC 5321
// compliant, with STARTTLS and implicit TLS, SMTP AUTH and context-bound
// sends, and no dependencies beyond the standard library's extended
// packages. The dev environment delivers to an in-process Mailbox instead.
package mail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Message is one plain-text e-mail.
type Message struct {
	To      string
	Subject string
	Text    string
}

// Sender delivers messages.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// TLS modes of an SMTP connection.
const (
	TLSStartTLS = "starttls" // plain connection upgraded with STARTTLS, which is required
	TLSImplicit = "tls"      // TLS from the first byte (port 465)
	TLSNone     = "none"     // no TLS: only for a relay on the same host or network
)

// SMTPConfig configures delivery through an SMTP server.
type SMTPConfig struct {
	// Host and Port of the server. Port defaults to 587 (465 with TLSImplicit).
	Host string
	Port int
	// Username and Password for SMTP AUTH (PLAIN, or the best the server
	// offers); empty: no authentication.
	Username string
	Password string
	// From is the sender address, e.g. "oakallow <no-reply@example.com>".
	From string
	// TLS is TLSStartTLS (default), TLSImplicit or TLSNone.
	TLS string
	// Timeout bounds one delivery. Default 10 s.
	Timeout time.Duration
}

// Validate fills defaults and checks values.
func (c *SMTPConfig) Validate() error {
	if c.Host == "" || c.From == "" {
		return errors.New("mail: SMTP host and from address are required")
	}
	switch c.TLS {
	case "":
		c.TLS = TLSStartTLS
	case TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return fmt.Errorf("mail: TLS mode %q is not starttls, tls or none", c.TLS)
	}
	if c.Port == 0 {
		c.Port = 587
		if c.TLS == TLSImplicit {
			c.Port = 465
		}
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("mail: port %d is out of range", c.Port)
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if (c.Username == "") != (c.Password == "") {
		return errors.New("mail: give both SMTP username and password, or neither")
	}
	return nil
}

// SMTP delivers through an SMTP server, one connection per message (sign-in
// mail is rare; a pooled connection would only go stale).
type SMTP struct {
	cfg SMTPConfig
}

// NewSMTP checks cfg and returns the sender.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := gomail.NewMsg()
	if err := m.From(cfg.From); err != nil {
		return nil, fmt.Errorf("mail: from address: %w", err)
	}
	return &SMTP{cfg: cfg}, nil
}

// Send delivers m.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	msg := gomail.NewMsg()
	if err := msg.From(s.cfg.From); err != nil {
		return fmt.Errorf("mail: from: %w", err)
	}
	if err := msg.To(m.To); err != nil {
		return fmt.Errorf("mail: to: %w", err)
	}
	msg.Subject(m.Subject)
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	opts := []gomail.Option{gomail.WithPort(s.cfg.Port), gomail.WithTimeout(s.cfg.Timeout)}
	switch s.cfg.TLS {
	case TLSImplicit:
		opts = append(opts, gomail.WithSSL())
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if s.cfg.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(s.cfg.Username), gomail.WithPassword(s.cfg.Password))
	}
	c, err := gomail.NewClient(s.cfg.Host, opts...)
	if err != nil {
		return fmt.Errorf("mail: client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("mail: send to %s:%d: %w", s.cfg.Host, s.cfg.Port, err)
	}
	return nil
}

// Mailbox is the dev environment's in-process mail: messages are kept in
// memory (the last 100), announced on the log and served by Handler, so a
// local install signs in without any mail server. Never for production: it
// shows every code to whoever can reach the handler.
type Mailbox struct {
	log  *slog.Logger
	mu   sync.Mutex
	msgs []Received
}

// Received is a delivered message.
type Received struct {
	Message
	At time.Time `json:"at"`
}

const mailboxKeep = 100

// NewMailbox returns an empty mailbox that announces deliveries on log.
func NewMailbox(log *slog.Logger) *Mailbox {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Mailbox{log: log}
}

// Send keeps m.
func (b *Mailbox) Send(_ context.Context, m Message) error {
	b.mu.Lock()
	b.msgs = append(b.msgs, Received{Message: m, At: time.Now().UTC()})
	if len(b.msgs) > mailboxKeep {
		b.msgs = b.msgs[len(b.msgs)-mailboxKeep:]
	}
	b.mu.Unlock()
	// The dev environment shows its mail on the log (SPEC §8): this is how a
	// local sign-in gets its code.
	b.log.Info("mail delivered to the dev mailbox", "to", m.To, "subject", m.Subject, "text", m.Text)
	return nil
}

// Messages returns the kept messages, oldest first.
func (b *Mailbox) Messages() []Received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Received(nil), b.msgs...)
}

// Handler serves the mailbox as plain text, newest first.
func (b *Mailbox) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		msgs := b.Messages()
		if len(msgs) == 0 {
			_, _ = fmt.Fprintln(w, "The dev mailbox is empty.")
			return
		}
		for i := len(msgs) - 1; i >= 0; i-- {
			m := msgs[i]
			_, _ = fmt.Fprintf(w, "To: %s\nDate: %s\nSubject: %s\n\n%s\n\n----\n\n", m.To, m.At.Format(time.RFC1123Z), m.Subject, m.Text)
		}
	})
}
