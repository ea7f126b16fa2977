package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/store"
)

// Notification channels (SPEC §4): alert-only Slack, PagerDuty and generic
// HTTPS webhook targets. Each channel's credential — the Slack webhook URL,
// the PagerDuty API key, the webhook's signing secret — is sealed with the
// server's secrets key, bound to the channel row, and never returned: Slack
// URLs are shown masked, PagerDuty keys as "set", and a webhook channel's
// signing secret once, when it is generated. Moving a credential's
// destination needs the credential in the same request (a Slack URL is its
// own destination; a PagerDuty base_url needs api_key; a webhook url needs
// the current secret or a new one), so a management key cannot read a
// stored credential back by pointing the channel at its own server.

// Audit event kinds of the channel endpoints.
const (
	kindChannelCreated = "channel.created"
	kindChannelUpdated = "channel.updated"
	kindChannelDeleted = "channel.deleted"
	kindChannelTested  = "channel.tested"
)

// CodeChannelUnusable: the channel's stored configuration or credential
// cannot be used (e.g. the server's secrets key changed).
const CodeChannelUnusable = "channel_unusable"

const tagChannels = "Channels"

// Channel is a notification channel as the API shows it: never with its
// credential.
type Channel struct {
	ID               string    `json:"id" doc:"Channel id (chn_…)."`
	Kind             string    `json:"kind" enum:"slack,pagerduty,webhook"`
	Name             string    `json:"name"`
	Scope            string    `json:"scope" enum:"all,level_1,level_2" doc:"Which approval events it hears about: all levels, only level 1, or only level 2."`
	Enabled          bool      `json:"enabled"`
	WebhookURLMasked string    `json:"webhook_url_masked,omitempty" doc:"Slack: the incoming-webhook URL's host, e.g. hooks.slack.com/…; the URL itself is a credential and never shown."`
	SlackChannel     string    `json:"slack_channel,omitempty" doc:"Slack: the channel the webhook posts to, when known."`
	SlackTeam        string    `json:"slack_team,omitempty" doc:"Slack: the workspace, when known."`
	APIKeySet        bool      `json:"api_key_set,omitempty" doc:"PagerDuty: an API key is stored (write-only, never shown)."`
	FromEmail        string    `json:"from_email,omitempty" doc:"PagerDuty: the user incidents are created as."`
	ServiceID        string    `json:"service_id,omitempty" doc:"PagerDuty: the service incidents are opened on."`
	BaseURL          string    `json:"base_url,omitempty" doc:"PagerDuty: the REST API base, when not https://api.pagerduty.com."`
	URL              string    `json:"url,omitempty" doc:"Webhook: the URL receiving the signed POSTs."`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// ChannelWithSecret is a channel plus, for a webhook channel whose signing
// secret was just generated, that secret.
type ChannelWithSecret struct {
	Channel
	Secret string `json:"secret,omitempty" doc:"Webhook channels: the signing secret (whsec_…), present only in the answer that generated it. Verify X-Oakallow-Signature with it."`
}

type channelCreateRequest struct {
	Kind       string `json:"kind" enum:"slack,pagerduty,webhook" doc:"The channel kind."`
	Name       string `json:"name" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters" doc:"A name for the channel."`
	Scope      string `json:"scope,omitempty" enum:"all,level_1,level_2" default:"all" doc:"Which approval events it hears about."`
	Enabled    *bool  `json:"enabled,omitempty" doc:"Default true."`
	WebhookURL string `json:"webhook_url,omitempty" maxLength:"2048" writeOnly:"true" doc:"Slack (required): the incoming-webhook URL. Stored encrypted, never returned."`
	APIKey     string `json:"api_key,omitempty" maxLength:"256" writeOnly:"true" doc:"PagerDuty (required): a General Access REST API key. Stored encrypted, never returned."`
	FromEmail  string `json:"from_email,omitempty" maxLength:"254" doc:"PagerDuty (required): the requester user's e-mail, sent as the From header."`
	ServiceID  string `json:"service_id,omitempty" maxLength:"64" doc:"PagerDuty (required): the service id incidents are opened on."`
	BaseURL    string `json:"base_url,omitempty" maxLength:"2048" doc:"PagerDuty (optional): the REST API base, e.g. https://api.eu.pagerduty.com."`
	URL        string `json:"url,omitempty" maxLength:"2048" doc:"Webhook (required): the https URL receiving signed POSTs. A signing secret is generated and returned once."`
}

type channelCreateInput struct {
	IdempotencyHeader
	Body channelCreateRequest `additionalProperties:"false"`
}

type channelUpdateRequest struct {
	Name             *string `json:"name,omitempty" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters"`
	Scope            *string `json:"scope,omitempty" enum:"all,level_1,level_2"`
	Enabled          *bool   `json:"enabled,omitempty"`
	WebhookURL       *string `json:"webhook_url,omitempty" maxLength:"2048" writeOnly:"true" doc:"Slack: a new incoming-webhook URL."`
	APIKey           *string `json:"api_key,omitempty" maxLength:"256" writeOnly:"true" doc:"PagerDuty: a new API key."`
	FromEmail        *string `json:"from_email,omitempty" maxLength:"254" doc:"PagerDuty."`
	ServiceID        *string `json:"service_id,omitempty" maxLength:"64" doc:"PagerDuty."`
	BaseURL          *string `json:"base_url,omitempty" maxLength:"2048" doc:"PagerDuty; empty for the default. A new base_url needs api_key in the same request: the stored key is only ever sent where it was given for."`
	URL              *string `json:"url,omitempty" maxLength:"2048" doc:"Webhook: a new URL. Needs the current signing secret in secret, or regenerate_secret."`
	Secret           *string `json:"secret,omitempty" maxLength:"256" writeOnly:"true" doc:"Webhook: the channel's current signing secret (whsec_…), required with a new url unless regenerate_secret is true, so that a stolen management key cannot move the signed alerts elsewhere. When given it must match."`
	RegenerateSecret bool    `json:"regenerate_secret,omitempty" doc:"Webhook: generate a new signing secret, returned once in this answer. The old one stops signing at once."`
}

type channelUpdateInput struct {
	IdempotencyHeader
	ID   string               `path:"id" maxLength:"200" doc:"Channel id."`
	Body channelUpdateRequest `additionalProperties:"false"`
}

type channelRefInput struct {
	ID string `path:"id" maxLength:"200" doc:"Channel id."`
}

type channelWriteInput struct {
	IdempotencyHeader
	ID string `path:"id" maxLength:"200" doc:"Channel id."`
}

type channelOutput struct {
	Body Channel
}

type channelWriteOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
	Body     ChannelWithSecret
}

type listChannelsOutput struct {
	Body struct {
		Items      []Channel `json:"items"`
		NextCursor string    `json:"next_cursor,omitempty" doc:"Pass as cursor for the next page; absent on the last page."`
	}
}

// ChannelTestResult is the outcome of a channel's test send.
type ChannelTestResult struct {
	OK         bool   `json:"ok" doc:"Whether the channel accepted the sample alert."`
	StatusCode int    `json:"status_code" doc:"The channel's HTTP status; 0 when none was received."`
	LatencyMS  int64  `json:"latency_ms"`
	Error      string `json:"error,omitempty" doc:"Why the send failed."`
	Retryable  bool   `json:"retryable,omitempty" doc:"Whether a later attempt might succeed (a real delivery would be retried)."`
	Detail     string `json:"detail,omitempty" doc:"Extra information about a successful send."`
}

type channelTestOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
	Body     ChannelTestResult
}

func registerChannels(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "create-channel", Method: http.MethodPost, Path: "/v1/channels",
		Summary: "Create a notification channel",
		Description: "Adds a Slack, PagerDuty or generic webhook channel. Channels only alert; decisions are never made in them. " +
			"Credentials are encrypted at rest and never returned; a webhook channel's signing secret is returned once.",
		Tags: []string{tagChannels}, DefaultStatus: http.StatusCreated, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *channelCreateInput) (*channelWriteOutput, error) {
		status, body, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "create-channel", in.Body,
			func(ctx context.Context) (int, ChannelWithSecret, error) {
				res, err := s.createChannel(ctx, mustPrincipal(ctx), &in.Body)
				return http.StatusCreated, res, err
			})
		if err != nil {
			return nil, err
		}
		return &channelWriteOutput{Status: status, Replayed: replayedHeader(replayed), Body: body}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-channels", Method: http.MethodGet, Path: "/v1/channels",
		Summary: "List notification channels", Description: "The org's channels, without their credentials.",
		Tags: []string{tagChannels}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *PageParams) (*listChannelsOutput, error) {
		p := mustPrincipal(ctx)
		after, err := in.after("channel")
		if err == nil && !storable(after) {
			err = problem(http.StatusBadRequest, CodeBadRequest, "cursor is not one this list returned")
		}
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		rows, err := s.deps.Store.ListChannelsPage(ctx, store.ListChannelsPageParams{OrgID: p.OrgID, After: after, RowLimit: in.rowLimit()})
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		out := &listChannelsOutput{}
		out.Body.Items, out.Body.NextCursor = page(*in, "channel", rows,
			func(c store.NotificationChannel) string { return c.ID }, s.channelView)
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-channel", Method: http.MethodGet, Path: "/v1/channels/{id}",
		Summary: "Get a notification channel", Description: "One channel, without its credential.",
		Tags: []string{tagChannels}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *channelRefInput) (*channelOutput, error) {
		if err := lookupRef("channel", in.ID); err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		c, err := s.deps.Store.GetChannel(ctx, store.GetChannelParams{OrgID: mustPrincipal(ctx).OrgID, ID: in.ID})
		if err != nil {
			return nil, toProblem(ctx, s.log, notFoundIf(err, "channel", in.ID))
		}
		return &channelOutput{Body: s.channelView(c)}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "update-channel", Method: http.MethodPatch, Path: "/v1/channels/{id}",
		Summary: "Update a notification channel", Description: "Changes the fields present in the body. Credentials are replaced, never shown.",
		Tags: []string{tagChannels}, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *channelUpdateInput) (*channelWriteOutput, error) {
		status, body, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "update-channel:"+in.ID, in.Body,
			func(ctx context.Context) (int, ChannelWithSecret, error) {
				res, err := s.updateChannel(ctx, mustPrincipal(ctx), in.ID, &in.Body)
				return http.StatusOK, res, err
			})
		if err != nil {
			return nil, err
		}
		return &channelWriteOutput{Status: status, Replayed: replayedHeader(replayed), Body: body}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "delete-channel", Method: http.MethodDelete, Path: "/v1/channels/{id}",
		Summary: "Delete a notification channel", Description: "Deletes the channel; its past deliveries stay listed.",
		Tags: []string{tagChannels}, DefaultStatus: http.StatusNoContent, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *channelWriteInput) (*struct{}, error) {
		_, _, _, err := idempotent(ctx, s, in.IdempotencyKey, "delete-channel:"+in.ID, struct{}{},
			func(ctx context.Context) (int, struct{}, error) {
				return http.StatusNoContent, struct{}{}, s.deleteChannel(ctx, mustPrincipal(ctx), in.ID)
			})
		if err != nil {
			return nil, err
		}
		return nil, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "test-channel", Method: http.MethodPost, Path: "/v1/channels/{id}/test",
		Summary: "Send a test alert",
		Description: "Sends a sample approval.created alert (a fake tool and REF) through the channel, as a real alert " +
			"would go, and answers the attempt. Disabled channels can be tested too.",
		Tags: []string{tagChannels}, Errors: append(manageWriteErrors, http.StatusServiceUnavailable),
	}, accessManageWrite), func(ctx context.Context, in *channelWriteInput) (*channelTestOutput, error) {
		status, body, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "test-channel:"+in.ID, struct{}{},
			func(ctx context.Context) (int, ChannelTestResult, error) {
				res, err := s.testChannel(ctx, mustPrincipal(ctx), in.ID)
				return http.StatusOK, res, err
			})
		if err != nil {
			return nil, err
		}
		return &channelTestOutput{Status: status, Replayed: replayedHeader(replayed), Body: body}, nil
	})
}

// channelView shows a channel without its credential. A Slack URL is
// opened only to show its host.
func (s *Server) channelView(c store.NotificationChannel) Channel {
	v := Channel{ID: c.ID, Kind: c.Kind, Name: c.Name, Scope: c.Scope, Enabled: c.Enabled,
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
	switch c.Kind {
	case activities.ChannelSlack:
		var cfg activities.SlackChannelConfig
		_ = json.Unmarshal(c.Config, &cfg)
		v.SlackChannel, v.SlackTeam = cfg.Channel, cfg.Team
		v.WebhookURLMasked = "(sealed)"
		if raw, err := s.deps.SecretBox.Open(c.SecretCiphertext, activities.ChannelSecretAAD(c.ID)); err == nil {
			v.WebhookURLMasked = maskURL(string(raw))
		}
	case activities.ChannelPagerDuty:
		var cfg activities.PagerDutyChannelConfig
		_ = json.Unmarshal(c.Config, &cfg)
		v.FromEmail, v.ServiceID, v.BaseURL = cfg.FromEmail, cfg.ServiceID, cfg.BaseURL
		v.APIKeySet = len(c.SecretCiphertext) > 0
	case activities.ChannelWebhook:
		var cfg activities.WebhookChannelConfig
		_ = json.Unmarshal(c.Config, &cfg)
		v.URL = cfg.URL
	}
	return v
}

// maskURL keeps only the host of a credential URL: "hooks.slack.com/…".
func maskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "…"
	}
	return u.Host + "/…"
}

// channelSettings are a channel's kind-specific settings, validated.
type channelSettings struct {
	config json.RawMessage
	secret string // the credential to seal; "" keeps the stored one
}

// validateChannelURL applies the outbound URL policy to a channel URL. As
// for the org webhook URL, an obviously internal host is refused unless the
// server allows private destinations, and plain http is accepted only for
// loopback hosts (local development and tests); the delivery client enforces
// its own, stricter policy again at send time.
func (s *Server) validateChannelURL(field, raw string) error {
	if err := notify.ValidateURL(raw, true); err != nil {
		return fieldProblem("body."+field, err.Error(), nil)
	}
	if !s.cfg.AllowPrivateWebhooks {
		if err := notify.CheckDestination(raw); err != nil {
			return fieldProblem("body."+field, err.Error(), nil)
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fieldProblem("body."+field, "not a URL", nil)
	}
	if strings.EqualFold(u.Scheme, "http") {
		if err := s.checkPlainHTTP(u); err != nil {
			return fieldProblem("body."+field, field+" "+err.Error(), nil)
		}
	}
	return nil
}

// pagerDutySettings validates a PagerDuty channel's settings.
func (s *Server) pagerDutySettings(apiKey string, cfg activities.PagerDutyChannelConfig) error {
	if cfg.BaseURL != "" {
		if err := s.validateChannelURL("base_url", cfg.BaseURL); err != nil {
			return err
		}
	}
	ch := notify.PagerDutyChannel{APIKey: apiKey, FromEmail: cfg.FromEmail, ServiceID: cfg.ServiceID, BaseURL: cfg.BaseURL}
	if err := ch.Validate(); err != nil {
		return fieldProblem("body", err.Error(), nil)
	}
	return nil
}

// kindFields lists which request fields belong to which kind, to refuse
// fields of another kind instead of silently ignoring them.
func checkKindFields(kind string, sent map[string]bool) error {
	allowed := map[string][]string{
		activities.ChannelSlack:     {"webhook_url"},
		activities.ChannelPagerDuty: {"api_key", "from_email", "service_id", "base_url"},
		activities.ChannelWebhook:   {"url", "secret", "regenerate_secret"},
	}
	for field, present := range sent {
		if !present {
			continue
		}
		ok := false
		for _, f := range allowed[kind] {
			ok = ok || f == field
		}
		if !ok {
			return fieldProblem("body."+field, fmt.Sprintf("%s is not a setting of %s channels", field, kind), nil)
		}
	}
	return nil
}

func (s *Server) createChannel(ctx context.Context, p Principal, req *channelCreateRequest) (ChannelWithSecret, error) {
	if err := checkKindFields(req.Kind, map[string]bool{
		"webhook_url": req.WebhookURL != "", "api_key": req.APIKey != "", "from_email": req.FromEmail != "",
		"service_id": req.ServiceID != "", "base_url": req.BaseURL != "", "url": req.URL != "",
	}); err != nil {
		return ChannelWithSecret{}, err
	}
	var set channelSettings
	var shownSecret string
	var err error
	switch req.Kind {
	case activities.ChannelSlack:
		if req.WebhookURL == "" {
			return ChannelWithSecret{}, fieldProblem("body.webhook_url", "a Slack channel needs its incoming-webhook URL", nil)
		}
		if err := s.validateChannelURL("webhook_url", req.WebhookURL); err != nil {
			return ChannelWithSecret{}, err
		}
		set.secret = req.WebhookURL
		set.config, err = json.Marshal(activities.SlackChannelConfig{})
	case activities.ChannelPagerDuty:
		cfg := activities.PagerDutyChannelConfig{FromEmail: req.FromEmail, ServiceID: req.ServiceID, BaseURL: req.BaseURL}
		if err := s.pagerDutySettings(req.APIKey, cfg); err != nil {
			return ChannelWithSecret{}, err
		}
		set.secret = req.APIKey
		set.config, err = json.Marshal(cfg)
	case activities.ChannelWebhook:
		if err := s.validateChannelURL("url", req.URL); err != nil {
			return ChannelWithSecret{}, err
		}
		if shownSecret, err = notify.NewWebhookSecret(); err != nil {
			return ChannelWithSecret{}, err
		}
		set.secret = shownSecret
		set.config, err = json.Marshal(activities.WebhookChannelConfig{URL: req.URL})
	default:
		return ChannelWithSecret{}, fieldProblem("body.kind", "unknown channel kind", req.Kind)
	}
	if err != nil {
		return ChannelWithSecret{}, fmt.Errorf("encode channel config: %w", err)
	}
	id := store.NewID("chn")
	sealedSecret, err := s.deps.SecretBox.Seal([]byte(set.secret), activities.ChannelSecretAAD(id))
	if err != nil {
		return ChannelWithSecret{}, err
	}
	scope := req.Scope
	if scope == "" {
		scope = notify.ScopeAll
	}
	enabled := req.Enabled == nil || *req.Enabled
	now := s.now()
	var out ChannelWithSecret
	err = s.inTx(ctx, func(q *store.Queries) error {
		c, err := q.CreateChannel(ctx, store.CreateChannelParams{ID: id, OrgID: p.OrgID, Kind: req.Kind, Name: req.Name,
			Scope: scope, Config: set.config, SecretCiphertext: sealedSecret, Enabled: enabled, CreatedAt: now})
		if err != nil {
			return err
		}
		out = ChannelWithSecret{Channel: s.channelView(c), Secret: shownSecret}
		return s.recordChange(ctx, q, p, now, change{kind: kindChannelCreated, subject: id,
			details: map[string]any{"kind": c.Kind, "name": c.Name, "scope": c.Scope, "enabled": c.Enabled}})
	})
	if err != nil {
		return ChannelWithSecret{}, err
	}
	return out, nil
}

func (s *Server) updateChannel(ctx context.Context, p Principal, id string, req *channelUpdateRequest) (ChannelWithSecret, error) {
	if err := lookupRef("channel", id); err != nil {
		return ChannelWithSecret{}, err
	}
	now := s.now()
	var out ChannelWithSecret
	err := s.inTx(ctx, func(q *store.Queries) error {
		c, err := q.LockChannel(ctx, store.LockChannelParams{OrgID: p.OrgID, ID: id})
		if err != nil {
			return notFoundIf(err, "channel", id)
		}
		if err := checkKindFields(c.Kind, map[string]bool{
			"webhook_url": req.WebhookURL != nil, "api_key": req.APIKey != nil, "from_email": req.FromEmail != nil,
			"service_id": req.ServiceID != nil, "base_url": req.BaseURL != nil, "url": req.URL != nil,
			"secret": req.Secret != nil, "regenerate_secret": req.RegenerateSecret,
		}); err != nil {
			return err
		}
		changed := fieldChanges{}
		name, scope, enabled := c.Name, c.Scope, c.Enabled
		if req.Name != nil {
			name = *req.Name
		}
		if req.Scope != nil {
			scope = *req.Scope
		}
		if req.Enabled != nil {
			enabled = *req.Enabled
		}
		changed.note("name", c.Name, name)
		changed.note("scope", c.Scope, scope)
		changed.note("enabled", c.Enabled, enabled)

		config, secret := c.Config, ""
		switch c.Kind {
		case activities.ChannelSlack:
			if req.WebhookURL != nil {
				if err := s.validateChannelURL("webhook_url", *req.WebhookURL); err != nil {
					return err
				}
				secret = *req.WebhookURL
			}
		case activities.ChannelPagerDuty:
			var cfg activities.PagerDutyChannelConfig
			if err := json.Unmarshal(c.Config, &cfg); err != nil {
				return fmt.Errorf("decode channel config: %w", err)
			}
			before := cfg
			if req.FromEmail != nil {
				cfg.FromEmail = *req.FromEmail
			}
			if req.ServiceID != nil {
				cfg.ServiceID = *req.ServiceID
			}
			if req.BaseURL != nil {
				cfg.BaseURL = *req.BaseURL
			}
			changed.note("from_email", before.FromEmail, cfg.FromEmail)
			changed.note("service_id", before.ServiceID, cfg.ServiceID)
			changed.note("base_url", before.BaseURL, cfg.BaseURL)
			// The API key travels to base_url with every request: moving it
			// without the key would let whoever holds a management key read
			// the key back (point base_url at their server, press Test).
			if cfg.BaseURL != before.BaseURL && req.APIKey == nil {
				return fieldProblem("body.api_key", "a new base_url needs the API key again in the same request: "+
					"the stored key is only sent where it was given for", nil)
			}
			// The stored key was validated when it was set; a stand-in lets
			// Validate judge the other fields when the key is kept.
			key := "stored-key-unchanged"
			if req.APIKey != nil {
				key, secret = *req.APIKey, *req.APIKey
			}
			if err := s.pagerDutySettings(key, cfg); err != nil {
				return err
			}
			if config, err = json.Marshal(cfg); err != nil {
				return fmt.Errorf("encode channel config: %w", err)
			}
		case activities.ChannelWebhook:
			var cfg activities.WebhookChannelConfig
			if err := json.Unmarshal(c.Config, &cfg); err != nil {
				return fmt.Errorf("decode channel config: %w", err)
			}
			if req.Secret != nil {
				if err := s.matchChannelSecret(c, *req.Secret); err != nil {
					return err
				}
			}
			if req.URL != nil {
				if err := s.validateChannelURL("url", *req.URL); err != nil {
					return err
				}
				// Alerts signed with the secret must not be moved to another
				// receiver by someone who does not hold it: the new
				// receiver could replay them to the old one.
				if *req.URL != cfg.URL && req.Secret == nil && !req.RegenerateSecret {
					return fieldProblem("body.secret", "a new url needs the channel's current signing secret in secret, "+
						"or regenerate_secret: true", nil)
				}
				changed.note("url", cfg.URL, *req.URL)
				cfg.URL = *req.URL
			}
			if config, err = json.Marshal(cfg); err != nil {
				return fmt.Errorf("encode channel config: %w", err)
			}
			if req.RegenerateSecret {
				if secret, err = notify.NewWebhookSecret(); err != nil {
					return err
				}
				out.Secret = secret
			}
		}
		sealedSecret := c.SecretCiphertext
		if secret != "" {
			if sealedSecret, err = s.deps.SecretBox.Seal([]byte(secret), activities.ChannelSecretAAD(c.ID)); err != nil {
				return err
			}
			changed.noteOpaque("credential", true)
		}
		if len(changed) == 0 {
			out.Channel = s.channelView(c)
			return nil
		}
		c, err = q.UpdateChannel(ctx, store.UpdateChannelParams{OrgID: p.OrgID, ID: c.ID, Name: name, Scope: scope,
			Config: config, SecretCiphertext: sealedSecret, Enabled: enabled, UpdatedAt: now})
		if err != nil {
			return err
		}
		out.Channel = s.channelView(c)
		return s.recordChange(ctx, q, p, now, change{kind: kindChannelUpdated, subject: c.ID,
			details: map[string]any{"kind": c.Kind, "name": c.Name, "changed": changed}})
	})
	if err != nil {
		return ChannelWithSecret{}, err
	}
	return out, nil
}

// matchChannelSecret checks, in constant time, that presented is the
// channel's stored secret.
func (s *Server) matchChannelSecret(c store.NotificationChannel, presented string) error {
	stored, err := s.deps.SecretBox.Open(c.SecretCiphertext, activities.ChannelSecretAAD(c.ID))
	if err != nil {
		return problem(http.StatusConflict, CodeChannelUnusable, fmt.Sprintf(
			"channel %s: its stored secret does not open with the server's secrets key; set a new one with regenerate_secret", c.ID))
	}
	if subtle.ConstantTimeCompare(stored, []byte(presented)) != 1 {
		return fieldProblem("body.secret", "does not match the channel's signing secret", nil)
	}
	return nil
}

func (s *Server) deleteChannel(ctx context.Context, p Principal, id string) error {
	if err := lookupRef("channel", id); err != nil {
		return err
	}
	now := s.now()
	return s.inTx(ctx, func(q *store.Queries) error {
		c, err := q.LockChannel(ctx, store.LockChannelParams{OrgID: p.OrgID, ID: id})
		if err != nil {
			return notFoundIf(err, "channel", id)
		}
		if _, err := q.DeleteChannel(ctx, store.DeleteChannelParams{OrgID: p.OrgID, ID: c.ID}); err != nil {
			return err
		}
		return s.recordChange(ctx, q, p, now, change{kind: kindChannelDeleted, subject: c.ID,
			details: map[string]any{"kind": c.Kind, "name": c.Name}})
	})
}

func (s *Server) testChannel(ctx context.Context, p Principal, id string) (ChannelTestResult, error) {
	if s.deps.Activities == nil {
		return ChannelTestResult{}, problem(http.StatusServiceUnavailable, CodeUnavailable, "channel tests are not available: this server has no delivery backend")
	}
	if err := lookupRef("channel", id); err != nil {
		return ChannelTestResult{}, err
	}
	att, err := s.deps.Activities.TestChannel(ctx, p.OrgID, id)
	switch {
	case errors.Is(err, activities.ErrChannelNotFound):
		return ChannelTestResult{}, notFound("channel", id)
	case errors.Is(err, activities.ErrChannelUnusable):
		// The message names the channel and the cause, never the credential.
		return ChannelTestResult{}, problem(http.StatusConflict, CodeChannelUnusable, err.Error())
	case err != nil:
		return ChannelTestResult{}, err
	}
	res := ChannelTestResult{OK: att.OK(), StatusCode: att.StatusCode, LatencyMS: att.Latency.Milliseconds(),
		Error: att.Error, Retryable: att.Retryable && !att.OK(), Detail: att.Detail}
	outcome := "ok"
	if !res.OK {
		outcome = "failed"
	}
	now := s.now()
	err = s.inTx(ctx, func(q *store.Queries) error {
		return s.recordChange(ctx, q, p, now, change{kind: kindChannelTested, subject: id,
			details: map[string]any{"outcome": outcome, "status_code": res.StatusCode, "latency_ms": res.LatencyMS}})
	})
	if err != nil {
		return ChannelTestResult{}, err
	}
	return res, nil
}
