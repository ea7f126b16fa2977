package activities

import (
	"bytes"
	"encoding/json"
	"fmt"

	"oakallow/activities/notify"
	"oakallow/store"
)

// Notification channel kinds (notification_channels.kind).
const (
	ChannelSlack     = "slack"
	ChannelPagerDuty = "pagerduty"
	ChannelWebhook   = "webhook"
)

// The non-secret settings of a channel, stored as notification_channels.config. The
// channel's credential is never in config: it is sealed with sealed.Box under
// ChannelSecretAAD(id) into secret_ciphertext — the Slack incoming-webhook URL, the
// PagerDuty API key, or the generic webhook's signing secret ("whsec_…").

// SlackChannelConfig is the config of a Slack channel. Both fields are display only,
// filled from the "Add to Slack" install when there was one.
type SlackChannelConfig struct {
	// Channel is the Slack channel name the incoming webhook posts to (e.g. "#approvals").
	Channel string `json:"channel,omitempty"`
	// Team is the Slack workspace name.
	Team string `json:"team,omitempty"`
}

// PagerDutyChannelConfig is the config of a PagerDuty channel.
type PagerDutyChannelConfig struct {
	// FromEmail is the PagerDuty user incidents are created and resolved as.
	FromEmail string `json:"from_email"`
	// ServiceID is the PagerDuty service incidents are opened on.
	ServiceID string `json:"service_id"`
	// BaseURL is the REST API base; empty means https://api.pagerduty.com (set
	// https://api.eu.pagerduty.com for EU accounts).
	BaseURL string `json:"base_url,omitempty"`
}

// WebhookChannelConfig is the config of a generic HTTPS webhook channel.
type WebhookChannelConfig struct {
	// URL receives the signed POSTs.
	URL string `json:"url"`
}

// ChannelSecretAAD is the additional data a channel's secret is sealed under: it binds
// the ciphertext to the channel row, so a ciphertext copied to another row does not open.
func ChannelSecretAAD(channelID string) string { return store.ChannelSecretAAD(channelID) }

// channelTarget is a channel decoded and its secret opened, ready to send to.
type channelTarget struct {
	kind      string
	slack     notify.SlackChannel
	pagerDuty notify.PagerDutyChannel
	webhook   notify.WebhookChannel
}

// openChannel decodes ch's config and opens its secret. Every error is permanent for this
// channel row: a retry cannot make a bad config or a wrong key good.
func (a *Activities) openChannel(ch store.NotificationChannel) (channelTarget, error) {
	if len(ch.SecretCiphertext) == 0 {
		return channelTarget{}, fmt.Errorf("%s channel %s has no secret", ch.Kind, ch.ID)
	}
	secret, err := a.box.Open(ch.SecretCiphertext, ChannelSecretAAD(ch.ID))
	if err != nil {
		return channelTarget{}, fmt.Errorf("%s channel %s: secret does not open with the server's key", ch.Kind, ch.ID)
	}
	t := channelTarget{kind: ch.Kind}
	switch ch.Kind {
	case ChannelSlack:
		t.slack = notify.SlackChannel{WebhookURL: string(secret)}
	case ChannelPagerDuty:
		var cfg PagerDutyChannelConfig
		if err := decodeConfig(ch.Config, &cfg); err != nil {
			return channelTarget{}, fmt.Errorf("pagerduty channel %s: %w", ch.ID, err)
		}
		t.pagerDuty = notify.PagerDutyChannel{
			APIKey: string(secret), FromEmail: cfg.FromEmail, ServiceID: cfg.ServiceID, BaseURL: cfg.BaseURL,
		}
	case ChannelWebhook:
		var cfg WebhookChannelConfig
		if err := decodeConfig(ch.Config, &cfg); err != nil {
			return channelTarget{}, fmt.Errorf("webhook channel %s: %w", ch.ID, err)
		}
		t.webhook = notify.WebhookChannel{URL: cfg.URL, Secrets: [][]byte{secret}}
	default:
		return channelTarget{}, fmt.Errorf("channel %s has unknown kind %q", ch.ID, ch.Kind)
	}
	return t, nil
}

// decodeConfig decodes a channel's config strictly: an unknown field is a config written
// by a newer or broken version and is refused rather than half understood.
func decodeConfig(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		raw = json.RawMessage(`{}`)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}
