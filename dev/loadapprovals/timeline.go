package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"oakallow/store"
)

// timelineEvent is one history event of one workflow.
type timelineEvent struct {
	at       time.Time
	workflow string
	what     string
}

// printTimeline prints, in time order, the history events of approval ref's
// workflow, its deliveries' attempts and the history of any delivery workflow
// (a delivery that needed a retry), relative to from (when the create
// request was sent) — where the time between "create" and "webhook received"
// or between "decide" and "token" goes.
func printTimeline(ctx context.Context, tc client.Client, st *store.Store, ref string, from time.Time, marks map[string]time.Time) error {
	var events []timelineEvent
	add := func(label, workflowID string) error {
		it := tc.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				return fmt.Errorf("history of %s: %w", workflowID, err)
			}
			what := strings.TrimPrefix(ev.GetEventType().String(), "EVENT_TYPE_")
			if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
				what += " " + a.GetActivityType().GetName()
			}
			events = append(events, timelineEvent{at: ev.GetEventTime().AsTime(), workflow: label, what: what})
		}
		return nil
	}
	if err := add("approval", ref); err != nil {
		return err
	}
	// A delivery's first attempt is made by the worker directly; only one that
	// needed a retry has a DeliveryWorkflow (handed_off_at set).
	rows, err := st.Pool.Query(ctx, `
		SELECT d.id, d.event_type, d.handed_off_at IS NOT NULL, a.attempted_at, a.status_code
		FROM webhook_deliveries d LEFT JOIN webhook_attempts a ON a.delivery_id = d.id
		WHERE d.payload->'data'->>'reference' = $1 ORDER BY d.created_at, a.seq`, ref)
	if err != nil {
		return fmt.Errorf("deliveries of %s: %w", ref, err)
	}
	handedOff := map[string]string{} // delivery id → event
	for rows.Next() {
		var (
			id, event string
			handed    bool
			at        *time.Time
			code      *int32
		)
		if err := rows.Scan(&id, &event, &handed, &at, &code); err != nil {
			rows.Close()
			return err
		}
		if handed {
			handedOff[id] = event
		}
		if at != nil && code != nil {
			events = append(events, timelineEvent{at: *at, workflow: "delivery " + event, what: fmt.Sprintf("attempt (HTTP %d)", *code)})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("deliveries of %s: %w", ref, err)
	}
	for id, event := range handedOff {
		if err := add("delivery workflow "+event, id); err != nil {
			return err
		}
	}
	for what, at := range marks {
		events = append(events, timelineEvent{at: at, workflow: "load tool", what: what})
	}
	slices.SortStableFunc(events, func(a, b timelineEvent) int { return a.at.Compare(b.at) })
	fmt.Printf("\ntimeline of %s (ms after the create request; Temporal event times)\n", ref)
	var prev time.Time
	for _, e := range events {
		gap := ""
		if !prev.IsZero() {
			gap = fmt.Sprintf("+%.1f", float64(e.at.Sub(prev).Microseconds())/1000)
		}
		prev = e.at
		fmt.Printf("  %8.1f %8s  %-26s %s\n", float64(e.at.Sub(from).Microseconds())/1000, gap, e.workflow, e.what)
	}
	return nil
}
