package store_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/dev/devtest"
	"oakallow/store"
)

// TestRecorderStoresEntriesExactly: a group commit writes its columns as
// PostgreSQL array literals (a commit of one entry, as plain text values), so every text that array syntax gives a meaning
// to — quotes, backslashes, braces, commas, white space, the word NULL, the
// empty string — and JSON full of escapes must arrive as it was sent, and
// times to the microsecond, whatever their zone.
func TestRecorderStoresEntriesExactly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := devtest.Store(t)
	seedTeam(t, s, time.Now())
	grant(t, s, "grant_paid", "purchased", 100*5000, nil, time.Now())
	rec, err := store.NewRecorder(s, store.RecorderConfig{})
	require.NoError(t, err)
	defer rec.Stop()

	zone := time.FixedZone("UTC+05:30", 5*3600+1800)
	texts := []string{"", "NULL", "null", `a "quoted" word`, `back\slash`, `\"`, `{braces}`, "a,b", " lead", "trail ",
		"tab\tand\nnewline", "ünïcödé 名前 🙂", `'single'`, "\\", `"`}
	entries := make([]store.Entry, len(texts))
	for i, text := range texts {
		entries[i] = store.Entry{Billable: i%2 == 0, Event: store.AuditRecord{
			ID: store.NewID("chk"), OrgID: "org_1", TeamID: "team_1",
			OccurredAt: time.Date(2026, 12, 5, 13, 45, 6, 123456789+i, zone), ActorKind: "api_key", ActorID: text,
			Kind: "permission.check", Subject: text, Outcome: text, Tool: text, Tenant: text,
			Details: []byte(`{"text":` + jsonString(t, text) + `,"n":12345678901234567891,"nested":{"a":[1,"\\",{"b":"\""}]}}`),
		}}
	}
	entries = append(entries, store.Entry{Event: store.AuditRecord{ID: store.NewID("chk"), OrgID: "org_1", TeamID: "team_1",
		OccurredAt: time.Now(), ActorKind: "system", ActorID: "x", Kind: "permission.check"}}) // no details: {}

	// Concurrently, so that most share a commit (RecordAuditBatch's array
	// literals); then each again, with new ids, alone (RecordAuditOne's
	// scalars).
	var wg sync.WaitGroup
	for _, e := range entries {
		wg.Go(func() { require.NoError(t, rec.Record(ctx, e)) })
	}
	wg.Wait()
	for _, e := range slices.Clone(entries) {
		e.Event.ID = store.NewID("chk")
		require.NoError(t, rec.Record(ctx, e))
		entries = append(entries, e)
	}

	for _, e := range entries {
		var got store.AuditRecord
		var billable bool
		var details string
		require.NoError(t, s.Pool.QueryRow(ctx, `SELECT org_id, team_id, occurred_at, actor_kind, actor_id, kind, subject, outcome,
  tool, tenant, billable, details::text FROM audit_events WHERE id = $1`, e.Event.ID).Scan(&got.OrgID, &got.TeamID,
			&got.OccurredAt, &got.ActorKind, &got.ActorID, &got.Kind, &got.Subject, &got.Outcome, &got.Tool, &got.Tenant,
			&billable, &details))
		want := e.Event
		require.True(t, want.OccurredAt.Truncate(time.Microsecond).Equal(got.OccurredAt), "%s: occurred_at %s, want %s", want.ID, got.OccurredAt, want.OccurredAt)
		require.Equal(t, []string{want.OrgID, want.TeamID, want.ActorKind, want.ActorID, want.Kind, want.Subject, want.Outcome, want.Tool, want.Tenant},
			[]string{got.OrgID, got.TeamID, got.ActorKind, got.ActorID, got.Kind, got.Subject, got.Outcome, got.Tool, got.Tenant})
		require.Equal(t, e.Billable, billable)
		if len(want.Details) == 0 {
			want.Details = []byte(`{}`)
		}
		require.JSONEq(t, string(want.Details), details)
		if e.Event.Details != nil {
			require.Contains(t, details, "12345678901234567891", "numbers keep their exact value")
		}
	}
}

func jsonString(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	require.NoError(t, err)
	return string(b)
}
