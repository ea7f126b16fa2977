package notify

import (
	"errors"
	"log/slog"
	"net/http"
)

// Config configures a Notifier.
type Config struct {
	// HTTPClient sends every channel request. Default: NewHTTPClient with the
	// zero HTTPClientConfig (production policy).
	HTTPClient *http.Client
	// Scrub removes PII from reasons and notes before they leave the process.
	// Required: wire the PII scrubber (SPEC §4) here.
	Scrub Scrubber
	// Logger receives outcomes the Attempt does not carry on its own
	// (deduplicated or already-resolved PagerDuty incidents). It is never
	// given URLs, keys or alert text. Default: discard.
	Logger *slog.Logger
}

// Validate reports whether the configuration is usable.
func (c Config) Validate() error {
	if c.Scrub == nil {
		return errors.New("notify: Scrub is required: channel payloads must not carry unscrubbed text")
	}
	return nil
}

// Notifier sends alerts to notification channels (Slack, PagerDuty, generic
// webhook). It is safe for concurrent use.
type Notifier struct {
	client *http.Client
	scrub  Scrubber
	logger *slog.Logger
}

// New returns a Notifier for cfg.
func New(cfg Config) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Notifier{client: cfg.HTTPClient, scrub: cfg.Scrub, logger: cfg.Logger}
	if n.client == nil {
		n.client = defaultClient()
	}
	if n.logger == nil {
		n.logger = slog.New(slog.DiscardHandler)
	}
	return n, nil
}
