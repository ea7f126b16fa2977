package store_test

import (
	"context"
	"testing"
	"time"

	"oakallow/dev/devtest"
	"oakallow/store"
)

// BenchmarkRecordSerial is one billable audit entry per commit (the
// concurrency-1 case of the check path). The test cluster runs with fsync
// off, so this measures the commit's CPU and round trip, not the WAL flush.
func BenchmarkRecordSerial(b *testing.B) {
	ctx := context.Background()
	s := devtest.Store(b)
	now := time.Now()
	require := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	require(s.CreateTeam(ctx, store.CreateTeamParams{ID: "team_1", Name: "t", CreatedAt: now}))
	require(s.CreateOrg(ctx, store.CreateOrgParams{ID: "org_1", TeamID: "team_1", Name: "o", CreatedAt: now}))
	require(s.CreateCreditGrant(ctx, store.CreateCreditGrantParams{ID: "g", TeamID: "team_1", Kind: "purchased",
		AmountMicros: 1 << 50, Source: "g", CreatedAt: now}))
	rec, err := store.NewRecorder(s, store.RecorderConfig{})
	require(err)
	defer rec.Stop()
	b.ReportAllocs()
	for b.Loop() {
		require(rec.Record(ctx, checkEntry(store.NewID("chk"), true)))
	}
}
