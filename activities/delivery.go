package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"oakallow/activities/notify"
	"oakallow/store"
	"oakallow/workflows"
)

// Delivery statuses (webhook_deliveries.status).
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// SecretRotationOverlap is how long after a rotation org webhooks are signed with the
// previous secret as well, so receivers can switch secrets without losing deliveries.
const SecretRotationOverlap = 24 * time.Hour

// Errors of Redeliver and TestChannel.
var (
	// ErrDeliveryNotFound: no delivery with that id in the org.
	ErrDeliveryNotFound = errors.New("webhook delivery not found")
	// ErrDeliveryInProgress: the delivery is still pending: being attempted, or waiting
	// for its workflow's next retry.
	ErrDeliveryInProgress = errors.New("webhook delivery is still in progress")
	// ErrChannelNotFound: no notification channel with that id in the org.
	ErrChannelNotFound = errors.New("notification channel not found")
	// ErrChannelUnusable: the channel's config or secret cannot be used (details in the
	// wrapped message; never the secret itself).
	ErrChannelUnusable = errors.New("notification channel is not usable")
)

// DeliverNotification implements workflows.ActivityDeliverNotification: one attempt of
// the delivery, recorded in webhook_attempts (time, status code, latency, error). The
// attempt is recorded before it is sent and its outcome after, so one whose process dies
// mid-send still shows, without an outcome (the receiver may have got it, and gets it
// again from the retry). A delivery that is already delivered is not sent again.
func (a *Activities) DeliverNotification(ctx context.Context, in workflows.DeliverNotificationInput) error {
	if in.DeliveryID == "" {
		return nonRetryable(workflows.ErrorTypeValidation, "deliver: delivery id is required")
	}
	row, err := a.st.GetWebhookDeliveryByID(ctx, in.DeliveryID)
	if err != nil {
		return lookupErr(err, "delivery "+in.DeliveryID)
	}
	switch row.Status {
	case DeliveryDelivered:
		return nil
	case DeliveryFailed:
		return nonRetryable(workflows.ErrorTypeDeliveryRejected, "delivery %s was already marked failed", row.ID)
	}
	started := a.now()
	send, url, err := a.target(ctx, row, started)
	var unusable *unusableTarget
	switch {
	case errors.As(err, &unusable):
		// Nothing can be sent: the target cannot be used. Recorded as an attempt so the
		// reason shows in the delivery's history.
		att := notify.Attempt{Error: unusable.Error()}
		a.metrics.observeAttempt(row.TargetKind, att)
		if rerr := a.recordUnsentAttempt(ctx, row, url, started, att); rerr != nil {
			a.logger.WarnContext(ctx, "Delivery attempt not recorded", "delivery_id", row.ID, "error", rerr)
		}
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("deliver %s: %s", row.ID, att.Error),
			workflows.ErrorTypeDeliveryRejected, nil)
	case err != nil:
		return fmt.Errorf("deliver %s: %w", row.ID, err) // PostgreSQL: retried
	}
	seq, err := a.beginAttempt(ctx, row, url, started)
	if err != nil {
		return fmt.Errorf("deliver %s: %w", row.ID, err) // nothing was sent: retried
	}
	att := send(ctx)
	a.metrics.observeAttempt(row.TargetKind, att)
	if rerr := a.finishAttempt(ctx, row.ID, seq, att); rerr != nil {
		if att.OK() {
			// Delivered but not recorded: retrying re-sends (receivers dedupe on
			// X-Oakallow-Delivery), which beats a delivery shown as never made.
			return fmt.Errorf("deliver %s: record successful attempt: %w", row.ID, rerr)
		}
		a.logger.WarnContext(ctx, "Delivery attempt outcome not recorded", "delivery_id", row.ID, "error", rerr)
	}
	if att.OK() {
		return nil
	}
	msg := fmt.Sprintf("deliver %s: %s", row.ID, att.Error)
	if att.Retryable {
		return retryableError(ctx, msg, att.RetryAfter)
	}
	return temporal.NewNonRetryableApplicationError(msg, workflows.ErrorTypeDeliveryRejected, nil)
}

// retryableError is the error of an attempt a later one can fix. When the receiver asked
// (Retry-After) for a longer wait than the retry policy's next interval, the error
// carries that wait as the next retry delay; a Retry-After never shortens the schedule.
// Outside an activity (the direct first attempt) the wait is carried as asked, for the
// caller that schedules the retry.
func retryableError(ctx context.Context, msg string, retryAfter time.Duration) error {
	var opts temporal.ApplicationErrorOptions
	if retryAfter > nextPolicyInterval(ctx) {
		opts.NextRetryDelay = retryAfter
	}
	return temporal.NewApplicationErrorWithOptions(msg, workflows.ErrorTypeDeliveryRetryable, opts)
}

// nextPolicyInterval is the wait the running activity's retry policy puts before its next
// attempt, or 0 outside an activity or without a policy.
func nextPolicyInterval(ctx context.Context) time.Duration {
	if !activity.IsActivity(ctx) {
		return 0
	}
	info := activity.GetInfo(ctx)
	p := info.RetryPolicy
	if p == nil || p.InitialInterval <= 0 {
		return 0
	}
	coefficient := max(p.BackoffCoefficient, 1)
	limit := p.MaximumInterval
	if limit <= 0 {
		limit = 100 * p.InitialInterval // Temporal's default maximum interval
	}
	d := float64(p.InitialInterval) * math.Pow(coefficient, float64(max(info.Attempt-1, 0)))
	return time.Duration(min(d, float64(limit)))
}

// unusableTarget is why a delivery's target cannot be sent to at all (no URL, deleted
// or disabled channel, undecodable payload, secret that does not open). Retrying cannot
// fix it.
type unusableTarget struct{ msg string }

func (e *unusableTarget) Error() string { return e.msg }

func unusable(format string, args ...any) error {
	return &unusableTarget{msg: fmt.Sprintf(format, args...)}
}

// sender makes one attempt of a delivery.
type sender func(context.Context) notify.Attempt

// target resolves what row is sent to, at now: the sender that makes the attempt, and the
// URL recorded for it (row.Url for channels, whose URLs may be credentials and are never
// stored). It sends nothing. It returns an *unusableTarget error when the target cannot be
// used, and another error when PostgreSQL failed.
func (a *Activities) target(ctx context.Context, row store.WebhookDelivery, now time.Time) (sender, string, error) {
	switch row.TargetKind {
	case TargetOrgWebhook:
		org, err := a.st.GetOrg(ctx, row.OrgID)
		if err != nil {
			return nil, row.Url, fmt.Errorf("load org: %w", err)
		}
		if org.WebhookUrl == "" {
			return nil, row.Url, unusable("the org no longer has a webhook URL")
		}
		if len(org.WebhookSecretSealed) == 0 {
			return nil, org.WebhookUrl, unusable("the org webhook has no signing secret")
		}
		secrets, err := a.webhookSecrets(org, now)
		if err != nil {
			return nil, org.WebhookUrl, unusable("%v", err)
		}
		var ev notify.Event
		if err := json.Unmarshal(row.Payload, &ev); err != nil {
			return nil, org.WebhookUrl, unusable("stored event does not decode: %v", err)
		}
		return func(ctx context.Context) notify.Attempt {
			return notify.Deliver(ctx, a.http, org.WebhookUrl, secrets, ev, row.ID, now)
		}, org.WebhookUrl, nil
	case TargetChannel:
		if row.ChannelID == nil {
			return nil, row.Url, unusable("the channel was deleted")
		}
		ch, err := a.st.GetChannelForDelivery(ctx, store.GetChannelForDeliveryParams{OrgID: row.OrgID, ID: *row.ChannelID})
		if errors.Is(err, store.ErrNotFound) {
			return nil, row.Url, unusable("the channel was deleted")
		}
		if err != nil {
			return nil, row.Url, fmt.Errorf("load channel: %w", err)
		}
		if !ch.Enabled {
			return nil, row.Url, unusable("the channel is disabled")
		}
		var al storedAlert
		if err := json.Unmarshal(row.Payload, &al); err != nil {
			return nil, row.Url, unusable("stored alert does not decode: %v", err)
		}
		send, err := a.channelSender(ch, al.alert(), row.ID, now)
		return send, row.Url, err
	}
	return nil, row.Url, unusable("unknown target kind %q", row.TargetKind)
}

// channelSender opens ch and returns the sender of al to it; a channel that cannot be
// opened is an *unusableTarget error.
func (a *Activities) channelSender(ch store.NotificationChannel, al notify.Alert, deliveryID string, now time.Time) (sender, error) {
	t, err := a.openChannel(ch)
	if err != nil {
		return nil, unusable("%v", err)
	}
	switch t.kind {
	case ChannelSlack:
		return func(ctx context.Context) notify.Attempt { return a.notifier.SendSlack(ctx, t.slack, al) }, nil
	case ChannelPagerDuty:
		return func(ctx context.Context) notify.Attempt { return a.notifier.SendPagerDuty(ctx, t.pagerDuty, al) }, nil
	default:
		return func(ctx context.Context) notify.Attempt {
			return a.notifier.SendWebhook(ctx, t.webhook, al, deliveryID, now)
		}, nil
	}
}

// webhookSecrets opens the secrets an org webhook is signed with at now: the current one
// and, for SecretRotationOverlap after a rotation, the previous one too (SPEC §4).
func (a *Activities) webhookSecrets(org store.Org, now time.Time) ([][]byte, error) {
	current, err := a.box.Open(org.WebhookSecretSealed, store.OrgWebhookSecretAAD(org.ID))
	if err != nil {
		return nil, errors.New("the org webhook's signing secret does not open with the server's secret key")
	}
	secrets := [][]byte{current}
	if len(org.WebhookSecretPreviousSealed) > 0 && org.WebhookSecretRotatedAt != nil &&
		now.Sub(*org.WebhookSecretRotatedAt) < SecretRotationOverlap {
		// A previous secret that no longer opens only loses the overlap.
		if previous, err := a.box.Open(org.WebhookSecretPreviousSealed, store.OrgWebhookSecretAAD(org.ID)); err == nil {
			secrets = append(secrets, previous)
		}
	}
	return secrets, nil
}

// attemptRecordTimeout bounds recording an attempt's outcome, which goes ahead when the
// attempt's own context has ended (a timeout, a shutdown): its outcome is known then.
const attemptRecordTimeout = 5 * time.Second

// beginAttempt records an attempt of row at url before it is sent (no outcome yet) and
// counts it on the delivery; it returns the attempt's seq for finishAttempt.
func (a *Activities) beginAttempt(ctx context.Context, row store.WebhookDelivery, url string, at time.Time) (int64, error) {
	seq, err := a.st.BeginWebhookAttempt(ctx, store.BeginWebhookAttemptParams{
		DeliveryID: row.ID, AttemptedAt: at, Url: url, UpdatedAt: a.now(),
	})
	if err != nil {
		return 0, fmt.Errorf("record attempt: %w", err)
	}
	return seq, nil
}

// finishAttempt records the outcome of attempt seq of delivery id, marking the delivery
// delivered when the attempt succeeded.
func (a *Activities) finishAttempt(ctx context.Context, id string, seq int64, att notify.Attempt) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), attemptRecordTimeout)
	defer cancel()
	now := a.now()
	if err := a.st.FinishWebhookAttempt(ctx, store.FinishWebhookAttemptParams{
		Seq: seq, StatusCode: int32(att.StatusCode), LatencyMs: latencyMs(att), Error: att.Error, FinishedAt: &now,
		DeliveryID: id, Delivered: att.OK(),
	}); err != nil {
		return fmt.Errorf("record attempt outcome: %w", err)
	}
	return nil
}

// recordUnsentAttempt records, whole, an attempt that sent nothing, and counts it.
func (a *Activities) recordUnsentAttempt(ctx context.Context, row store.WebhookDelivery, url string, at time.Time, att notify.Attempt) error {
	if _, err := a.st.BeginWebhookAttempt(ctx, store.BeginWebhookAttemptParams{
		DeliveryID: row.ID, AttemptedAt: at, StatusCode: int32(att.StatusCode), LatencyMs: latencyMs(att),
		Error: att.Error, FinishedAt: &at, Url: url, UpdatedAt: a.now(),
	}); err != nil {
		return fmt.Errorf("insert attempt: %w", err)
	}
	return nil
}

func latencyMs(att notify.Attempt) int32 {
	return int32(min(att.Latency.Milliseconds(), math.MaxInt32))
}

// MarkDeliveryFailed implements workflows.ActivityMarkDeliveryFailed: a pending delivery
// becomes failed; any other is left alone.
func (a *Activities) MarkDeliveryFailed(ctx context.Context, in workflows.MarkDeliveryFailedInput) error {
	if in.DeliveryID == "" {
		return nonRetryable(workflows.ErrorTypeValidation, "mark delivery failed: delivery id is required")
	}
	n, err := a.st.MarkWebhookDeliveryFailed(ctx, store.MarkWebhookDeliveryFailedParams{ID: in.DeliveryID, UpdatedAt: a.now()})
	if err != nil {
		return fmt.Errorf("mark delivery %s failed: %w", in.DeliveryID, err)
	}
	if n > 0 {
		a.logger.InfoContext(ctx, "Delivery marked failed", "delivery_id", in.DeliveryID)
	}
	return nil
}

// Redeliver sends a finished (delivered or failed) delivery of org orgID again, for
// POST /v1/webhook-deliveries/{id}/redeliver: the delivery goes back to pending and a
// fresh DeliveryWorkflow ("<delivery id>:<redelivery id>") runs the usual retry schedule,
// recording its attempts on the same delivery. The payload and X-Oakallow-Delivery stay
// those of the original delivery; the signature is made at send time. It returns
// ErrDeliveryNotFound, or ErrDeliveryInProgress while the delivery is still pending.
// A redelivery that dies between reopening the row and starting its workflow leaves
// the row pending without a workflow, and the sweep starts one.
func (a *Activities) Redeliver(ctx context.Context, orgID, deliveryID string) error {
	row, err := a.st.GetWebhookDeliveryByID(ctx, deliveryID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && row.OrgID != orgID) {
		return ErrDeliveryNotFound
	}
	if err != nil {
		return fmt.Errorf("redeliver: %w", err)
	}
	if row.Status == DeliveryPending {
		return ErrDeliveryInProgress
	}
	now := a.now()
	if _, err := a.st.ReopenWebhookDelivery(ctx, store.ReopenWebhookDeliveryParams{OrgID: orgID, ID: deliveryID, UpdatedAt: now}); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrDeliveryInProgress // another redelivery reopened it first
		}
		return fmt.Errorf("redeliver: %w", err)
	}
	workflowID := row.ID + ":" + store.NewID("rdl")
	if err := a.startDelivery(ctx, workflowID, a.deliveryInput(row.ID, row.OrgID), 0); err != nil {
		if rerr := a.st.RestoreWebhookDelivery(context.WithoutCancel(ctx), store.RestoreWebhookDeliveryParams{
			Status: row.Status, DeliveredAt: row.DeliveredAt, HandedOffAt: row.HandedOffAt, UpdatedAt: a.now(), OrgID: orgID, ID: row.ID,
		}); rerr != nil {
			a.logger.ErrorContext(ctx, "Redelivery not started and delivery left pending", "delivery_id", row.ID, "error", rerr)
		}
		return fmt.Errorf("redeliver: %w", err)
	}
	if err := a.markHandedOff(context.WithoutCancel(ctx), []string{row.ID}); err != nil {
		// The redelivery runs; the sweep may attach a second workflow later, which at
		// worst sends once more under the same X-Oakallow-Delivery.
		a.logger.WarnContext(ctx, "Redelivery started but not marked handed off", "delivery_id", row.ID, "error", err)
	}
	a.logger.InfoContext(ctx, "Redelivery started", "delivery_id", row.ID, "workflow_id", workflowID)
	return nil
}

// TestChannel sends notify.SampleAlert to channel channelID of org orgID (the channel
// "test" action) and returns the attempt. It returns ErrChannelNotFound, or an error
// wrapping ErrChannelUnusable when the channel's config or secret cannot be used.
// Disabled channels are tested too: testing one before enabling it is the point.
func (a *Activities) TestChannel(ctx context.Context, orgID, channelID string) (notify.Attempt, error) {
	ch, err := a.st.GetChannelForDelivery(ctx, store.GetChannelForDeliveryParams{OrgID: orgID, ID: channelID})
	if errors.Is(err, store.ErrNotFound) {
		return notify.Attempt{}, ErrChannelNotFound
	}
	if err != nil {
		return notify.Attempt{}, fmt.Errorf("test channel: %w", err)
	}
	send, err := a.channelSender(ch, notify.SampleAlert(a.publicURL), store.NewID("test"), a.now())
	if err != nil {
		return notify.Attempt{}, fmt.Errorf("%w: %v", ErrChannelUnusable, err)
	}
	return send(ctx), nil
}
