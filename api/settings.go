package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/activities/notify"
	"oakallow/store"
)

// OrgSettings are the organization's settings. The webhook secret is shown
// only once: in the answer that first sets a webhook URL (when the org had
// no secret yet); after that it is rotated through its own operation.
type OrgSettings struct {
	ID                       string    `json:"id" doc:"Org id (org_…)."`
	Name                     string    `json:"name" doc:"Org name, unique in the team."`
	ApprovalTimeoutSeconds   int32     `json:"approval_timeout_seconds" minimum:"60" maximum:"604800" doc:"How long an approval request waits for a decision (per level), in seconds."`
	WebhookURL               string    `json:"webhook_url" doc:"Where approval events are POSTed; empty: no webhook."`
	WebhookIncludeParameters bool      `json:"webhook_include_parameters" doc:"Include (scrubbed) tool parameters in webhook payloads."`
	ScrubParameters          bool      `json:"scrub_parameters" doc:"Scrub PII from stored parameters."`
	ManagementKeysMayDecide  bool      `json:"management_keys_may_decide" doc:"Management keys may approve or deny requests (off by default)."`
	AutodiscoveryHourlyCap   int32     `json:"autodiscovery_hourly_cap" doc:"At most this many tools are auto-registered over MCP per hour."`
	AutodiscoveryTotalCap    int32     `json:"autodiscovery_total_cap" doc:"At most this many auto-registered draft tools in total."`
	UpdatedAt                time.Time `json:"updated_at" doc:"When the settings last changed."`
	WebhookSecret            string    `json:"webhook_secret,omitempty" doc:"The webhook signing secret (whsec_…), generated when a webhook URL is first set and shown only in that answer: store it to verify X-Oakallow-Signature. Rotate with POST /v1/webhook/rotate-secret."`
}

func settingsView(o store.Org) OrgSettings {
	return OrgSettings{
		ID: o.ID, Name: o.Name, ApprovalTimeoutSeconds: o.ApprovalTimeoutSeconds, WebhookURL: o.WebhookUrl,
		WebhookIncludeParameters: o.WebhookIncludeParameters, ScrubParameters: o.ScrubParameters,
		ManagementKeysMayDecide: o.ManagementKeysMayDecide, AutodiscoveryHourlyCap: o.AutodiscoveryHourlyCap,
		AutodiscoveryTotalCap: o.AutodiscoveryTotalCap, UpdatedAt: o.UpdatedAt,
	}
}

type settingsOutput struct {
	Body OrgSettings
}

type settingsUpdateRequest struct {
	_                        struct{} `additionalProperties:"false"`
	Name                     *string  `json:"name,omitempty" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters" doc:"Org name, unique in the team."`
	ApprovalTimeoutSeconds   *int64   `json:"approval_timeout_seconds,omitempty" minimum:"1" maximum:"9007199254740991" doc:"Approval timeout in seconds; clamped to 60…604800 (presets: 300, 900, 3600, 14400, 86400, 259200, 604800). The answer shows the stored value."`
	WebhookURL               *string  `json:"webhook_url,omitempty" maxLength:"2048" doc:"https URL (http only for localhost/127.0.0.1/[::1]); empty string removes the webhook."`
	WebhookIncludeParameters *bool    `json:"webhook_include_parameters,omitempty" doc:"Include (scrubbed) tool parameters in webhook payloads."`
	ScrubParameters          *bool    `json:"scrub_parameters,omitempty" doc:"Scrub PII from stored parameters."`
	ManagementKeysMayDecide  *bool    `json:"management_keys_may_decide,omitempty" doc:"Let management keys approve or deny requests."`
	AutodiscoveryHourlyCap   *int32   `json:"autodiscovery_hourly_cap,omitempty" minimum:"0" maximum:"1000000" doc:"Auto-registrations allowed per hour; 0 turns auto-discovery off."`
	AutodiscoveryTotalCap    *int32   `json:"autodiscovery_total_cap,omitempty" minimum:"0" maximum:"1000000" doc:"Auto-registered drafts allowed in total."`
}

type settingsUpdateInput struct {
	IdempotencyHeader
	Body settingsUpdateRequest
}

func registerSettings(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-settings", Method: http.MethodGet, Path: "/v1/settings",
		Summary: "Get org settings", Description: "The settings of the key's org.",
		Tags: []string{tagSettings}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, _ *struct{}) (*settingsOutput, error) {
		p := mustPrincipal(ctx)
		o, err := s.deps.Store.GetOrg(ctx, p.OrgID)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &settingsOutput{Body: settingsView(o)}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "update-settings", Method: http.MethodPatch, Path: "/v1/settings",
		Summary: "Update org settings",
		Description: "Changes the settings present in the body. The approval timeout is clamped to 60 s … 7 d, not refused; " +
			"the answer reports the stored value.",
		Tags: []string{tagSettings}, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *settingsUpdateInput) (*writeOutput[OrgSettings], error) {
		return manageWrite(ctx, s, in.IdempotencyKey, "update-settings", in.Body, http.StatusOK,
			func(ctx context.Context, p Principal) (OrgSettings, error) { return s.updateSettings(ctx, p, &in.Body) })
	})
}

func (s *Server) updateSettings(ctx context.Context, p Principal, b *settingsUpdateRequest) (OrgSettings, error) {
	if b.WebhookURL != nil {
		if err := s.checkWebhookURL(*b.WebhookURL); err != nil {
			return OrgSettings{}, fieldProblem("body.webhook_url", err.Error(), nil)
		}
	}
	now := s.now()
	var out OrgSettings
	err := s.inTx(ctx, func(q *store.Queries) error {
		o, err := q.LockOrgSettings(ctx, p.OrgID)
		if err != nil {
			return err
		}
		next := store.UpdateOrgSettingsParams{
			ID: o.ID, Name: o.Name, ApprovalTimeoutSeconds: o.ApprovalTimeoutSeconds, WebhookUrl: o.WebhookUrl,
			WebhookIncludeParameters: o.WebhookIncludeParameters, ScrubParameters: o.ScrubParameters,
			ManagementKeysMayDecide: o.ManagementKeysMayDecide, AutodiscoveryHourlyCap: o.AutodiscoveryHourlyCap,
			AutodiscoveryTotalCap: o.AutodiscoveryTotalCap, UpdatedAt: now,
		}
		setString(&next.Name, b.Name)
		if b.ApprovalTimeoutSeconds != nil {
			next.ApprovalTimeoutSeconds = clampTimeout(*b.ApprovalTimeoutSeconds)
		}
		setString(&next.WebhookUrl, b.WebhookURL)
		setBool(&next.WebhookIncludeParameters, b.WebhookIncludeParameters)
		setBool(&next.ScrubParameters, b.ScrubParameters)
		setBool(&next.ManagementKeysMayDecide, b.ManagementKeysMayDecide)
		if b.AutodiscoveryHourlyCap != nil {
			next.AutodiscoveryHourlyCap = *b.AutodiscoveryHourlyCap
		}
		if b.AutodiscoveryTotalCap != nil {
			next.AutodiscoveryTotalCap = *b.AutodiscoveryTotalCap
		}

		changed := fieldChanges{}
		changed.note("name", o.Name, next.Name)
		changed.note("approval_timeout_seconds", o.ApprovalTimeoutSeconds, next.ApprovalTimeoutSeconds)
		// A webhook URL may carry a token in its query; record where it
		// points, not the whole URL.
		changed.note("webhook_url", redactURL(o.WebhookUrl), redactURL(next.WebhookUrl))
		if _, ok := changed["webhook_url"]; !ok {
			changed.noteOpaque("webhook_url", o.WebhookUrl != next.WebhookUrl)
		}
		changed.note("webhook_include_parameters", o.WebhookIncludeParameters, next.WebhookIncludeParameters)
		changed.note("scrub_parameters", o.ScrubParameters, next.ScrubParameters)
		changed.note("management_keys_may_decide", o.ManagementKeysMayDecide, next.ManagementKeysMayDecide)
		changed.note("autodiscovery_hourly_cap", o.AutodiscoveryHourlyCap, next.AutodiscoveryHourlyCap)
		changed.note("autodiscovery_total_cap", o.AutodiscoveryTotalCap, next.AutodiscoveryTotalCap)
		if len(changed) == 0 {
			out = settingsView(o)
			return nil
		}
		hadSecret := len(o.WebhookSecretSealed) > 0
		if o, err = q.UpdateOrgSettings(ctx, next); err != nil {
			return conflictIf(err, "another org of the team is named %q", next.Name)
		}
		var secret string
		if next.WebhookUrl != "" && !hadSecret {
			// Deliveries need a signing secret; without one every delivery
			// would fail. Generate it with the first URL and show it once.
			if secret, err = notify.NewWebhookSecret(); err != nil {
				return err
			}
			sealedSecret, err := s.sealOrgWebhookSecret(o.ID, secret)
			if err != nil {
				return err
			}
			if o, err = q.RotateOrgWebhookSecret(ctx, store.RotateOrgWebhookSecretParams{ID: o.ID, WebhookSecretSealed: sealedSecret, WebhookSecretRotatedAt: &now}); err != nil {
				return fmt.Errorf("generate webhook secret: %w", err)
			}
			changed.noteOpaque("webhook_secret", true)
		}
		out = settingsView(o)
		out.WebhookSecret = secret
		return s.recordChange(ctx, q, p, now, change{kind: kindSettingsUpdated, subject: o.ID,
			details: map[string]any{"changed": changed}})
	})
	return out, err
}

// checkWebhookURL accepts "" (no webhook), an https URL to a host that is
// not plainly internal, or — when the server allows private destinations —
// also an http URL to the local machine (development). Credentials in the
// URL are refused: they would be stored and shown in clear.
func (s *Server) checkWebhookURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" {
		return errors.New("webhook_url must be an absolute https URL")
	}
	if u.User != nil {
		return errors.New("webhook_url must not contain credentials; authenticate with the webhook signature")
	}
	if u.Hostname() == "" {
		return errors.New("webhook_url must name a host")
	}
	if u.Fragment != "" {
		return errors.New("webhook_url must not have a fragment")
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if err := s.checkPlainHTTP(u); err != nil {
			return fmt.Errorf("webhook_url %w", err)
		}
	default:
		return errors.New("webhook_url must use https")
	}
	// The delivery client's own policy, so a stored URL is one it will send to.
	if err := notify.ValidateURL(raw, true); err != nil {
		return fmt.Errorf("webhook_url: %w", err)
	}
	if !s.cfg.AllowPrivateWebhooks {
		if err := notify.CheckDestination(raw); err != nil {
			return fmt.Errorf("webhook_url: %w", err)
		}
	}
	return nil
}

// checkPlainHTTP allows an http URL only to the local machine, and only
// when the server allows private destinations (development and tests).
func (s *Server) checkPlainHTTP(u *url.URL) error {
	if !s.cfg.AllowPrivateWebhooks {
		return errors.New("must use https")
	}
	switch strings.ToLower(u.Hostname()) {
	case "localhost", "127.0.0.1", "::1":
		return nil
	}
	return errors.New("must use https (http is allowed only for localhost, 127.0.0.1 and [::1])")
}

// redactURL keeps scheme, host and path of a URL, dropping a query that may
// carry a token.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return ""
	}
	if u.RawQuery != "" {
		u.RawQuery = "redacted"
	}
	u.User = nil
	return u.String()
}
