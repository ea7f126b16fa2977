package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/api"
	"oakallow/api/billing"
	"oakallow/dev/devtest"
	"oakallow/store"
)

// `oakallow credits grant` adds prepaid credit that never expires, audited
// in every org of the team, and with an idempotency key adds it only once.
func TestCreditsGrant(t *testing.T) {
	url := devtest.Database(t)
	t.Setenv("DATABASE_URL", url)
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: url})
	require.NoError(t, err)
	defer st.Close()
	boot, err := api.Bootstrap(ctx, st, api.BootstrapInput{TeamName: "t", OwnerEmail: "o@example.com", OwnerName: "o", OrgName: "org"}, time.Now())
	require.NoError(t, err)

	grant := func(args ...string) (billing.Grant, error) {
		var out strings.Builder
		err := run(ctx, append([]string{"credits", "grant"}, args...), &out)
		var g billing.Grant
		if err == nil {
			require.NoError(t, json.Unmarshal([]byte(out.String()), &g), out.String())
		}
		return g, err
	}
	g, err := grant("-org", boot.OrgID, "-usd", "25.50", "-note", "pilot customer", "-by", "ops@example.com", "-idempotency-key", "inv-1")
	require.NoError(t, err)
	require.True(t, g.Added)
	require.Equal(t, boot.TeamID, g.TeamID)
	require.Equal(t, int64(25_500_000), g.Micros)
	again, err := grant("-team", boot.TeamID, "-usd", "25.50", "-note", "pilot customer", "-by", "ops@example.com", "-idempotency-key", "inv-1")
	require.NoError(t, err)
	require.False(t, again.Added, "the same key adds nothing")

	bal, err := st.GetTeamBalance(ctx, boot.TeamID)
	require.NoError(t, err)
	require.Equal(t, int64(25_500_000), bal.PurchasedMicros, "prepaid credit goes where purchases go: it never expires")
	var actor, details string
	require.NoError(t, st.Pool.QueryRow(ctx, "SELECT actor_id, details::text FROM audit_events WHERE kind = $1 AND org_id = $2",
		billing.KindCreditGranted, boot.OrgID).Scan(&actor, &details))
	require.Equal(t, "ops@example.com", actor)
	require.Contains(t, details, "pilot customer")

	for _, args := range [][]string{
		{"-org", boot.OrgID, "-usd", "10"},                                     // no note
		{"-usd", "10", "-note", "x"},                                           // no team
		{"-org", boot.OrgID, "-team", boot.TeamID, "-usd", "10", "-note", "x"}, // both
		{"-org", boot.OrgID, "-usd", "-5", "-note", "x"},
		{"-org", boot.OrgID, "-usd", "0.0000001", "-note", "x"},
		{"-org", boot.OrgID, "-usd", "1e9", "-note", "x"},
	} {
		_, err := grant(args...)
		var ue usageError
		require.ErrorAs(t, err, &ue, "%v", args)
	}
	_, err = grant("-org", "org_missing", "-usd", "1", "-note", "x")
	require.ErrorContains(t, err, "no team")
}
