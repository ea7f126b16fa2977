package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/store"
)

// The org webhook's signing secret (SPEC §4). It is generated here, shown
// once, and rotated: after a rotation deliveries are signed with both the
// new and the previous secret for activities.SecretRotationOverlap (24 h), so receivers can
// switch without dropping a delivery.

const kindWebhookSecretRotated = "webhook.secret_rotated"

const tagWebhooks = "Webhooks"

type rotateSecretInput struct {
	IdempotencyHeader
}

// WebhookSecret answers a rotation. The secret is shown only here.
type WebhookSecret struct {
	Secret                string     `json:"secret" doc:"The new signing secret (whsec_…). Shown once: store it now. Verify X-Oakallow-Signature with it (HMAC-SHA256 over \"<t>.<raw body>\")."`
	RotatedAt             time.Time  `json:"rotated_at" doc:"When the secret was rotated."`
	PreviousValidUntil    *time.Time `json:"previous_valid_until,omitempty" doc:"Until then deliveries also carry a signature made with the previous secret; absent when there was no previous secret."`
	WebhookURLConfigured  bool       `json:"webhook_url_configured" doc:"Whether the org has a webhook URL; without one nothing is delivered."`
	SignatureHeader       string     `json:"signature_header" doc:"The header carrying the signatures."`
	SignatureToleranceSec int        `json:"signature_tolerance_seconds" doc:"Receivers should reject timestamps older than this."`
}

type rotateSecretOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
	Body     WebhookSecret
}

func registerWebhooks(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "rotate-webhook-secret", Method: http.MethodPost, Path: "/v1/webhook/rotate-secret",
		Summary: "Rotate the webhook signing secret",
		Description: "Generates a new signing secret for the org webhook and returns it once. The previous secret keeps " +
			"signing deliveries (a second v1= signature) for 24 hours, so receivers can switch without losing deliveries.",
		Tags: []string{tagWebhooks}, Errors: manageWriteErrors,
	}, accessManageWrite), func(ctx context.Context, in *rotateSecretInput) (*rotateSecretOutput, error) {
		status, body, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "rotate-webhook-secret", struct{}{},
			func(ctx context.Context) (int, WebhookSecret, error) {
				res, err := s.rotateWebhookSecret(ctx, mustPrincipal(ctx))
				return http.StatusOK, res, err
			})
		if err != nil {
			return nil, err
		}
		return &rotateSecretOutput{Status: status, Replayed: replayedHeader(replayed), Body: body}, nil
	})
}

// sealOrgWebhookSecret seals an org's webhook signing secret for its row.
func (s *Server) sealOrgWebhookSecret(orgID, secret string) ([]byte, error) {
	sealed, err := s.deps.SecretBox.Seal([]byte(secret), store.OrgWebhookSecretAAD(orgID))
	if err != nil {
		return nil, fmt.Errorf("seal webhook secret: %w", err)
	}
	return sealed, nil
}

func (s *Server) rotateWebhookSecret(ctx context.Context, p Principal) (WebhookSecret, error) {
	secret, err := notify.NewWebhookSecret()
	if err != nil {
		return WebhookSecret{}, err
	}
	now := s.now()
	out := WebhookSecret{Secret: secret, RotatedAt: now, SignatureHeader: notify.HeaderSignature,
		SignatureToleranceSec: int(notify.DefaultSignatureTolerance / time.Second)}
	err = s.inTx(ctx, func(q *store.Queries) error {
		before, err := q.LockOrgSettings(ctx, p.OrgID)
		if err != nil {
			return fmt.Errorf("lock org: %w", err)
		}
		sealedSecret, err := s.sealOrgWebhookSecret(p.OrgID, secret)
		if err != nil {
			return err
		}
		org, err := q.RotateOrgWebhookSecret(ctx, store.RotateOrgWebhookSecretParams{ID: p.OrgID, WebhookSecretSealed: sealedSecret, WebhookSecretRotatedAt: &now})
		if err != nil {
			return fmt.Errorf("rotate webhook secret: %w", err)
		}
		out.WebhookURLConfigured = org.WebhookUrl != ""
		hadPrevious := len(before.WebhookSecretSealed) > 0
		if hadPrevious {
			until := now.Add(activities.SecretRotationOverlap)
			out.PreviousValidUntil = &until
		}
		// Never the secrets themselves: only that one existed.
		return s.recordChange(ctx, q, p, now, change{kind: kindWebhookSecretRotated, subject: p.OrgID,
			details: map[string]any{"had_previous_secret": hadPrevious, "previous_valid_until": out.PreviousValidUntil}})
	})
	if err != nil {
		return WebhookSecret{}, err
	}
	return out, nil
}
