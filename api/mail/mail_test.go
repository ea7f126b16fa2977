package mail_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/api/mail"
	"oakallow/api/mail/mailtest"
)

func TestSMTPDeliversToTheSink(t *testing.T) {
	t.Parallel()
	sink := mailtest.Start(t)
	s, err := mail.NewSMTP(mail.SMTPConfig{Host: sink.Host, Port: sink.Port, From: "oakallow <no-reply@example.com>", TLS: mail.TLSNone})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, s.Send(ctx, mail.Message{To: "ada@example.com", Subject: "Your code", Text: "Code: 123456 — ünïcode"}))
	m, err := sink.WaitFor(ctx, "ada@example.com", 1)
	require.NoError(t, err)
	require.Equal(t, "Your code", m.Subject)
	require.Contains(t, m.Body, "Code: 123456 — ünïcode")
	require.Equal(t, "no-reply@example.com", m.From)
}

func TestSMTPConfigIsChecked(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]mail.SMTPConfig{
		"no host":       {From: "a@example.com"},
		"no from":       {Host: "smtp.example.com"},
		"bad tls":       {Host: "smtp.example.com", From: "a@example.com", TLS: "maybe"},
		"bad port":      {Host: "smtp.example.com", From: "a@example.com", Port: 70000},
		"half auth":     {Host: "smtp.example.com", From: "a@example.com", Username: "u"},
		"bad from addr": {Host: "smtp.example.com", From: "not an address"},
	} {
		_, err := mail.NewSMTP(cfg)
		require.Error(t, err, name)
	}
	c := mail.SMTPConfig{Host: "smtp.example.com", From: "a@example.com", TLS: mail.TLSImplicit}
	require.NoError(t, c.Validate())
	require.Equal(t, 465, c.Port)
}

func TestMailboxKeepsAndServesMessages(t *testing.T) {
	t.Parallel()
	b := mail.NewMailbox(nil)
	for i := range 105 {
		require.NoError(t, b.Send(context.Background(), mail.Message{To: "x@example.com", Subject: "s", Text: strings.Repeat("t", i)}))
	}
	require.Len(t, b.Messages(), 100)
	rec := httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "To: x@example.com")
}
