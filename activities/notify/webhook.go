package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// maxWebhookBody bounds an org webhook body; Data with opted-in tool
// parameters is the only thing that can make it large.
const maxWebhookBody = 1 << 20

// maxDeliveryID bounds the delivery id header.
const maxDeliveryID = 255

// Deliver performs one attempt of an organization webhook delivery (SPEC
// §4): it POSTs ev as {"id","type","created_at","data"} to url, signed with
// every secret in secrets (two during a rotation overlap), with the
// X-Oakallow-Event and X-Oakallow-Delivery headers. now is the signature
// timestamp; deliveryID must be the same on every retry of this delivery.
// A nil client means a production-policy client (see NewHTTPClient).
//
// Deliver never returns an error: the outcome, including whether a retry
// can help, is in the Attempt.
func Deliver(ctx context.Context, client *http.Client, url string, secrets [][]byte, ev Event, deliveryID string, now time.Time) Attempt {
	start := time.Now()
	if err := ev.Validate(); err != nil {
		return invalidAttempt(err)
	}
	if ev.Data == nil {
		ev.Data = map[string]any{}
	}
	ev.CreatedAt = ev.CreatedAt.UTC()
	body, err := json.Marshal(ev)
	if err != nil {
		return invalidAttempt(fmt.Errorf("encode event: %w", err))
	}
	return postSigned(ctx, client, url, secrets, ev.Type, deliveryID, body, now, start)
}

// WebhookChannel is a generic HTTPS webhook notification channel.
type WebhookChannel struct {
	// URL receives the POSTs; see ValidateURL.
	URL string
	// Secrets sign each request like the org webhook; two during rotation.
	Secrets [][]byte
}

// alertPayload is the JSON body of a generic webhook channel request. It
// mirrors Alert field for field; nothing else is added.
type alertPayload struct {
	Type         string `json:"type"`
	ToolName     string `json:"tool_name"`
	Reason       string `json:"reason"`
	Reference    string `json:"reference"`
	DashboardURL string `json:"dashboard_url,omitempty"`
	Decision     string `json:"decision,omitempty"`
	Decider      string `json:"decider,omitempty"`
	Note         string `json:"note,omitempty"`
}

// SendWebhook posts the sanitized alert as JSON to a generic webhook
// channel, signed exactly like the org webhook (X-Oakallow-Signature,
// X-Oakallow-Event = the alert type, X-Oakallow-Delivery = deliveryID).
func (n *Notifier) SendWebhook(ctx context.Context, ch WebhookChannel, a Alert, deliveryID string, now time.Time) Attempt {
	start := time.Now()
	if err := a.Validate(); err != nil {
		return invalidAttempt(err)
	}
	s := a.sanitize(n.scrub)
	// A conversion, not a literal: it stops compiling if Alert and alertPayload
	// ever differ, so nothing can be added to the payload unnoticed.
	body, err := json.Marshal(alertPayload(s))
	if err != nil {
		return invalidAttempt(fmt.Errorf("encode alert: %w", err))
	}
	return postSigned(ctx, n.client, ch.URL, ch.Secrets, s.Type, deliveryID, body, now, start)
}

// postSigned sends one signed JSON POST and measures it from start.
func postSigned(ctx context.Context, client *http.Client, url string, secrets [][]byte, eventType, deliveryID string, body []byte, now, start time.Time) Attempt {
	if err := checkSecrets(secrets); err != nil {
		return invalidAttempt(err)
	}
	if err := checkDeliveryID(deliveryID); err != nil {
		return invalidAttempt(err)
	}
	if len(body) > maxWebhookBody {
		return invalidAttempt(fmt.Errorf("body is %d bytes, more than %d", len(body), maxWebhookBody))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return invalidAttempt(fmt.Errorf("%w: %v", ErrURLPolicy, stripURLError(err)))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(HeaderEvent, eventType)
	req.Header.Set(HeaderDelivery, deliveryID)
	req.Header.Set(HeaderSignature, Sign(secrets, now, body))
	r, err := do(clientOrDefault(client), req, false)
	return attemptFor(r, err, time.Since(start))
}

// checkSecrets refuses to send unsigned or weakly signed requests.
func checkSecrets(secrets [][]byte) error {
	if len(secrets) == 0 {
		return errors.New("no signing secret")
	}
	if len(secrets) > 2 {
		return errors.New("more than two signing secrets")
	}
	for _, s := range secrets {
		if len(s) < 16 {
			return errors.New("signing secret shorter than 16 bytes")
		}
	}
	return nil
}

// checkDeliveryID keeps the delivery id a short printable ASCII token so it
// is safe as a header value.
func checkDeliveryID(id string) error {
	if id == "" || len(id) > maxDeliveryID {
		return fmt.Errorf("delivery id must be 1-%d bytes", maxDeliveryID)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] >= 0x7f {
			return errors.New("delivery id must be printable ASCII without spaces")
		}
	}
	return nil
}
