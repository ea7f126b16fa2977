package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/activities"
	"oakallow/store"
)

// Webhook deliveries: every org-webhook POST and channel notification the
// delivery workflows made, with each attempt, and a redeliver action.

const kindWebhookRedelivered = "webhook.redelivered"

// WebhookDelivery is one event delivered (or being delivered) to the org
// webhook or a notification channel.
type WebhookDelivery struct {
	ID          string          `json:"id" doc:"Delivery id; sent as X-Oakallow-Delivery."`
	EventID     string          `json:"event_id" doc:"The event's id (the body's id field)."`
	EventType   string          `json:"event_type" doc:"approval.created, approval.escalated, approval.decided, approval.expired, tool.auto_created or credits.low."`
	TargetKind  string          `json:"target_kind" enum:"org_webhook,channel" doc:"The org webhook, or a notification channel."`
	ChannelID   string          `json:"channel_id,omitempty" doc:"The channel, for channel deliveries (absent when the channel was deleted)."`
	URL         string          `json:"url,omitempty" doc:"The URL posted to, for org-webhook deliveries. Channel URLs are credentials and never shown."`
	Status      string          `json:"status" enum:"pending,delivered,failed" doc:"pending while attempts continue (up to 24 h), then delivered or failed."`
	Attempts    int             `json:"attempts" doc:"Attempts made so far."`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	DeliveredAt *time.Time      `json:"delivered_at,omitempty"`
	Payload     json.RawMessage `json:"payload,omitempty" doc:"The body that is sent (single delivery only)."`
	History     []Attempt       `json:"attempt_history,omitempty" doc:"Every attempt, oldest first (single delivery only)."`
}

// Attempt is one try of a delivery.
type Attempt struct {
	At         time.Time  `json:"at"`
	StatusCode int        `json:"status_code" doc:"The receiver's HTTP status; 0 when none was received."`
	LatencyMS  int        `json:"latency_ms"`
	Error      string     `json:"error,omitempty" doc:"Why the attempt failed; empty on success."`
	FinishedAt *time.Time `json:"finished_at,omitempty" doc:"When the attempt's outcome was recorded. Absent while the attempt runs, and for good when the process sending it stopped first: the receiver may then have got it (and gets it again from the retry, with the same X-Oakallow-Delivery)."`
}

func deliveryView(d store.WebhookDelivery) WebhookDelivery {
	v := WebhookDelivery{ID: d.ID, EventID: d.EventID, EventType: d.EventType, TargetKind: d.TargetKind,
		Status: d.Status, Attempts: int(d.Attempts), CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, DeliveredAt: d.DeliveredAt}
	if d.ChannelID != nil {
		v.ChannelID = *d.ChannelID
	}
	if d.TargetKind == activities.TargetOrgWebhook {
		v.URL = d.Url
	}
	return v
}

type listDeliveriesInput struct {
	Status string `query:"status" enum:"pending,delivered,failed" doc:"Only deliveries with this status."`
	Cursor string `query:"cursor" maxLength:"300" doc:"next_cursor of the previous page."`
	Limit  int    `query:"limit" minimum:"1" maximum:"200" default:"50" doc:"Page size."`
}

type listDeliveriesOutput struct {
	Body struct {
		Items      []WebhookDelivery `json:"items" doc:"Deliveries, newest first."`
		NextCursor string            `json:"next_cursor,omitempty" doc:"Pass as cursor for the next (older) page; absent on the last page."`
	}
}

type deliveryRefInput struct {
	ID string `path:"id" maxLength:"200" doc:"Delivery id."`
}

type deliveryOutput struct {
	Body WebhookDelivery
}

type redeliverInput struct {
	IdempotencyHeader
	ID string `path:"id" maxLength:"200" doc:"Delivery id."`
}

type redeliverOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
	Body     WebhookDelivery
}

func registerDeliveries(api huma.API, s *Server) {
	huma.Register(api, withAccess(huma.Operation{
		OperationID: "list-webhook-deliveries", Method: http.MethodGet, Path: "/v1/webhook-deliveries",
		Summary: "List webhook deliveries", Description: "Org-webhook and channel deliveries, newest first, cursor-paginated.",
		Tags: []string{tagWebhooks}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *listDeliveriesInput) (*listDeliveriesOutput, error) {
		out, err := s.listDeliveries(ctx, mustPrincipal(ctx).OrgID, in)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return out, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "get-webhook-delivery", Method: http.MethodGet, Path: "/v1/webhook-deliveries/{id}",
		Summary: "Get a webhook delivery", Description: "One delivery with its payload and every attempt (time, status code, latency, error).",
		Tags: []string{tagWebhooks}, Errors: manageReadErrors,
	}, accessManageRead), func(ctx context.Context, in *deliveryRefInput) (*deliveryOutput, error) {
		d, err := s.loadDelivery(ctx, mustPrincipal(ctx).OrgID, in.ID)
		if err != nil {
			return nil, toProblem(ctx, s.log, err)
		}
		return &deliveryOutput{Body: d}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "redeliver-webhook", Method: http.MethodPost, Path: "/v1/webhook-deliveries/{id}/redeliver",
		Summary: "Redeliver a webhook",
		Description: "Sends a delivered or failed delivery again, with a fresh retry schedule and a new signature. " +
			"A delivery still being attempted is refused with 409.",
		Tags: []string{tagWebhooks}, DefaultStatus: http.StatusAccepted,
		Errors: append(manageWriteErrors, http.StatusServiceUnavailable),
	}, accessManageWrite), func(ctx context.Context, in *redeliverInput) (*redeliverOutput, error) {
		status, body, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "redeliver-webhook:"+in.ID, struct{}{},
			func(ctx context.Context) (int, WebhookDelivery, error) {
				res, err := s.redeliver(ctx, mustPrincipal(ctx), in.ID)
				return http.StatusAccepted, res, err
			})
		if err != nil {
			return nil, err
		}
		return &redeliverOutput{Status: status, Replayed: replayedHeader(replayed), Body: body}, nil
	})
}

func (s *Server) listDeliveries(ctx context.Context, orgID string, in *listDeliveriesInput) (*listDeliveriesOutput, error) {
	params := store.ListWebhookDeliveriesPageParams{OrgID: orgID, Status: in.Status, RowLimit: int32(in.Limit) + 1}
	if in.Cursor != "" {
		at, id, err := decodeTimeCursor(in.Cursor, "delivery")
		if err != nil {
			return nil, err
		}
		params.BeforeCreated, params.BeforeID = &at, id
	}
	rows, err := s.deps.Store.ListWebhookDeliveriesPage(ctx, params)
	if err != nil {
		return nil, err
	}
	out := &listDeliveriesOutput{}
	n := min(len(rows), in.Limit)
	out.Body.Items = make([]WebhookDelivery, 0, n)
	for _, r := range rows[:n] {
		out.Body.Items = append(out.Body.Items, deliveryView(r))
	}
	if len(rows) > in.Limit {
		last := rows[n-1]
		out.Body.NextCursor = encodeTimeCursor("delivery", last.CreatedAt, last.ID)
	}
	return out, nil
}

func (s *Server) loadDelivery(ctx context.Context, orgID, id string) (WebhookDelivery, error) {
	if err := lookupRef("webhook delivery", id); err != nil {
		return WebhookDelivery{}, err
	}
	d, err := s.deps.Store.GetWebhookDeliveryOfOrg(ctx, store.GetWebhookDeliveryOfOrgParams{OrgID: orgID, ID: id})
	if err != nil {
		return WebhookDelivery{}, notFoundIf(err, "webhook delivery", id)
	}
	attempts, err := s.deps.Store.ListAttemptsOfDelivery(ctx, d.ID)
	if err != nil {
		return WebhookDelivery{}, fmt.Errorf("load attempts: %w", err)
	}
	v := deliveryView(d)
	v.Payload = d.Payload
	v.History = make([]Attempt, 0, len(attempts))
	for _, a := range attempts {
		v.History = append(v.History, Attempt{At: a.AttemptedAt, StatusCode: int(a.StatusCode), LatencyMS: int(a.LatencyMs),
			Error: a.Error, FinishedAt: a.FinishedAt})
	}
	return v, nil
}

func (s *Server) redeliver(ctx context.Context, p Principal, id string) (WebhookDelivery, error) {
	if s.deps.Activities == nil {
		return WebhookDelivery{}, problem(http.StatusServiceUnavailable, CodeUnavailable, "redelivery is not available: this server has no delivery backend")
	}
	if err := lookupRef("webhook delivery", id); err != nil {
		return WebhookDelivery{}, err
	}
	d, err := s.deps.Store.GetWebhookDeliveryOfOrg(ctx, store.GetWebhookDeliveryOfOrgParams{OrgID: p.OrgID, ID: id})
	if err != nil {
		return WebhookDelivery{}, notFoundIf(err, "webhook delivery", id)
	}
	switch err := s.deps.Activities.Redeliver(ctx, p.OrgID, d.ID); {
	case errors.Is(err, activities.ErrDeliveryNotFound):
		return WebhookDelivery{}, notFound("webhook delivery", id)
	case errors.Is(err, activities.ErrDeliveryInProgress):
		return WebhookDelivery{}, problem(http.StatusConflict, CodeConflict,
			"the delivery is still being attempted; redeliver it once it is delivered or failed")
	case err != nil:
		s.log.ErrorContext(ctx, "redeliver", "request_id", requestIDFrom(ctx), "delivery_id", d.ID, "err", err)
		return WebhookDelivery{}, problem(http.StatusServiceUnavailable, CodeUnavailable, "the redelivery could not be started; retry later")
	}
	now := s.now()
	err = s.inTx(ctx, func(q *store.Queries) error {
		return s.recordChange(ctx, q, p, now, change{kind: kindWebhookRedelivered, subject: d.ID,
			details: map[string]any{"event_id": d.EventID, "event_type": d.EventType, "target_kind": d.TargetKind}})
	})
	if err != nil {
		return WebhookDelivery{}, err
	}
	return s.loadDelivery(ctx, p.OrgID, d.ID)
}
