package store_test

import (
	"context"
	"fmt"
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
	_, err := s.CreateCreditGrant(ctx, store.CreateCreditGrantParams{ID: "g", TeamID: "team_1", Kind: "purchased",
		AmountMicros: 1 << 50, Source: "g", CreatedAt: now})
	require(err)
	rec, err := store.NewRecorder(s, store.RecorderConfig{})
	require(err)
	defer rec.Stop()
	b.ReportAllocs()
	for b.Loop() {
		require(rec.Record(ctx, checkEntry(store.NewID("chk"), true)))
	}
}

// BenchmarkRecordBatch measures one group commit of n billable entries
// (fsync off: the statement's own cost).
func BenchmarkRecordBatch(b *testing.B) {
	for _, n := range []int{1, 16, 64} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			s := devtest.Store(b)
			now := time.Now()
			if err := s.CreateTeam(ctx, store.CreateTeamParams{ID: "team_1", Name: "t", CreatedAt: now}); err != nil {
				b.Fatal(err)
			}
			if err := s.CreateOrg(ctx, store.CreateOrgParams{ID: "org_1", TeamID: "team_1", Name: "o", CreatedAt: now}); err != nil {
				b.Fatal(err)
			}
			if _, err := s.CreateCreditGrant(ctx, store.CreateCreditGrantParams{ID: "g", TeamID: "team_1", Kind: "purchased",
				AmountMicros: 1 << 50, Source: "g", CreatedAt: now}); err != nil {
				b.Fatal(err)
			}
			details := []byte(`{"level":3,"level_name":"org_tool_method","scope":"org","rule_id":"rule_abcdefghijklmnopqrst","method":"send","reason":"load test","parameters_hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","parameters":{"n":17}}`)
			for b.Loop() {
				p := store.RecordAuditBatchParams{Cost: 5000, Now: now, Enforce: true}
				for range n {
					p.Ids = append(p.Ids, store.NewID("chk"))
					p.OrgIds = append(p.OrgIds, "org_1")
					p.TeamIds = append(p.TeamIds, "team_1")
					p.OccurredAt = append(p.OccurredAt, now)
					p.ActorKinds = append(p.ActorKinds, "api_key")
					p.ActorIds = append(p.ActorIds, "key_1")
					p.Kinds = append(p.Kinds, "permission.check")
					p.Subjects = append(p.Subjects, "send_email")
					p.Outcomes = append(p.Outcomes, "allowed")
					p.Tools = append(p.Tools, "send_email")
					p.Tenants = append(p.Tenants, "tenant_001")
					p.Billable = append(p.Billable, true)
					p.Details = append(p.Details, details)
				}
				if _, err := s.RecordAuditBatch(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/entry")
		})
	}
}

// BenchmarkRecordParallel is many concurrent callers of one team (the
// concurrency-16 case), for comparing commit-loop counts.
func BenchmarkRecordParallel(b *testing.B) {
	for _, committers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("committers=%d", committers), func(b *testing.B) {
			ctx := context.Background()
			s := devtest.Store(b)
			now := time.Now()
			if err := s.CreateTeam(ctx, store.CreateTeamParams{ID: "team_1", Name: "t", CreatedAt: now}); err != nil {
				b.Fatal(err)
			}
			if err := s.CreateOrg(ctx, store.CreateOrgParams{ID: "org_1", TeamID: "team_1", Name: "o", CreatedAt: now}); err != nil {
				b.Fatal(err)
			}
			if _, err := s.CreateCreditGrant(ctx, store.CreateCreditGrantParams{ID: "g", TeamID: "team_1", Kind: "purchased",
				AmountMicros: 1 << 50, Source: "g", CreatedAt: now}); err != nil {
				b.Fatal(err)
			}
			rec, err := store.NewRecorder(s, store.RecorderConfig{Committers: committers})
			if err != nil {
				b.Fatal(err)
			}
			defer rec.Stop()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := rec.Record(ctx, checkEntry(store.NewID("chk"), true)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
