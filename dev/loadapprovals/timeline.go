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
// workflow and of its delivery workflows, relative to from (when the create
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
	rows, err := st.Pool.Query(ctx, `SELECT id, event_type FROM webhook_deliveries WHERE payload->'data'->>'reference' = $1 ORDER BY created_at`, ref)
	if err != nil {
		return fmt.Errorf("deliveries of %s: %w", ref, err)
	}
	type delivery struct{ id, event string }
	var ds []delivery
	for rows.Next() {
		var d delivery
		if err := rows.Scan(&d.id, &d.event); err != nil {
			rows.Close()
			return err
		}
		ds = append(ds, d)
	}
	rows.Close()
	for _, d := range ds {
		if err := add("delivery "+d.event, d.id); err != nil {
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
