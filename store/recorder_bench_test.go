package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"oakallow/dev/devtest"
	"oakallow/store"
)

// BenchmarkRecordSerial is one billable audit entry per commit (the
// concurrency-1 case of the check path). The test cluster runs with fsync
// off, so this measures the commit's CPU and round trip, not the WAL flush.
func BenchmarkRecordSerial(b *testing.B) {
	ctx := context.Background()
	s := benchStore(b)
	rec, err := store.NewRecorder(s, store.RecorderConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer rec.Stop()
	b.ReportAllocs()
	for b.Loop() {
		if err := rec.Record(ctx, checkEntry(store.NewID("chk"), true)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecordBatch measures one group commit of n billable entries
// (fsync off: the statement's own cost), on one connection, with what each
// costs PostgreSQL (see meterBackend).
//
//	go test -p 1 ./store -run '^$' -bench 'BenchmarkOneEntryCommit|BenchmarkRecordBatch' -benchtime 3000x -count 3
func BenchmarkRecordBatch(b *testing.B) {
	for _, n := range []int{1, 16, 64} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			s := benchStore(b)
			conn, err := s.Pool.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Release()
			q := store.New(store.DB(conn))
			details := []byte(`{"level":3,"level_name":"org_tool_method","scope":"org","rule_id":"rule_abcdefghijklmnopqrst","method":"send","reason":"load test","parameters_hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","parameters":{"n":17}}`)
			commit := func() {
				now := time.Now()
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
				if _, err := q.RecordAuditBatch(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
			commit() // prepares the statement
			report := meterBackend(b, conn)
			for b.Loop() {
				commit()
			}
			b.StopTimer()
			report()
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
			s := benchStore(b)
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

// benchStore is a test database with team_1 (org_1) holding credit for
// any benchmark's calls.
func benchStore(b *testing.B) *store.Store {
	b.Helper()
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
	return s
}

// BenchmarkOneEntryCommit compares the two statements a one-entry commit
// can take, on one connection, by what they cost PostgreSQL (see
// meterBackend). The test cluster runs with fsync off, so this is the
// statement without the WAL flush, which is the same for both.
//
//	go test -p 1 ./store -run '^$' -bench 'BenchmarkOneEntryCommit|BenchmarkRecordBatch' -benchtime 3000x -count 3
func BenchmarkOneEntryCommit(b *testing.B) {
	details := []byte(`{"level":3,"level_name":"org_tool_method","scope":"org","rule_id":"rule_abcdefghijklmnopqrst","method":"send","reason":"load test","parameters_hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","parameters":{"n":17}}`)
	for _, form := range []string{"RecordAuditBatch", "RecordAuditOne"} {
		b.Run(form, func(b *testing.B) {
			ctx := context.Background()
			s := benchStore(b)
			conn, err := s.Pool.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Release()
			q := store.New(store.DB(conn))
			commit := func(id string, now time.Time) error {
				if form == "RecordAuditOne" {
					_, err := q.RecordAuditOne(ctx, store.RecordAuditOneParams{ID: id, OrgID: "org_1", TeamID: "team_1",
						OccurredAt: now, ActorKind: "api_key", ActorID: "key_1", Kind: "permission.check", Subject: "send_email",
						Outcome: "allowed", Tool: "send_email", Tenant: "tenant_001", Billable: true, Details: details,
						Cost: 5000, Now: now, Enforce: true})
					return err
				}
				_, err := q.RecordAuditBatch(ctx, store.RecordAuditBatchParams{Ids: []string{id}, OrgIds: []string{"org_1"},
					TeamIds: []string{"team_1"}, OccurredAt: []time.Time{now}, ActorKinds: []string{"api_key"},
					ActorIds: []string{"key_1"}, Kinds: []string{"permission.check"}, Subjects: []string{"send_email"},
					Outcomes: []string{"allowed"}, Tools: []string{"send_email"}, Tenants: []string{"tenant_001"},
					Billable: []bool{true}, Details: []json.RawMessage{details}, Cost: 5000, Now: now, Enforce: true})
				return err
			}
			if err := commit(store.NewID("chk"), time.Now()); err != nil { // prepares the statement
				b.Fatal(err)
			}
			report := meterBackend(b, conn)
			for b.Loop() {
				if err := commit(store.NewID("chk"), time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			report()
		})
	}
}

// meterBackend starts measuring what the operations on conn cost
// PostgreSQL; the function it returns reports, per op since then, the
// server process's CPU (backend-µs/op, read from /proc, so only when the
// server runs on this machine and its /proc is readable) and the WAL
// written (wal-B/op).
func meterBackend(b *testing.B, conn *pgxpool.Conn) (report func()) {
	ctx := context.Background()
	var pid int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		b.Fatal(err)
	}
	wal := func() (lsn int64) {
		if err := conn.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn() - '0/0'`).Scan(&lsn); err != nil {
			b.Fatal(err)
		}
		return lsn
	}
	cpu0, cpuOK := processCPU(pid)
	wal0 := wal()
	return func() {
		walBytes := wal() - wal0
		if cpu1, ok := processCPU(pid); ok && cpuOK {
			b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "backend-µs/op")
		}
		b.ReportMetric(float64(walBytes)/float64(b.N), "wal-B/op")
	}
}

// processCPU is the user and system CPU process pid has used, from
// /proc/<pid>/stat (in clock ticks of 10 ms); false when unreadable.
func processCPU(pid int) (time.Duration, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	text := string(raw)
	fields := strings.Fields(text[strings.LastIndexByte(text, ')')+1:])
	if len(fields) < 13 {
		return 0, false
	}
	user, err1 := strconv.ParseInt(fields[11], 10, 64)
	system, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(user+system) * 10 * time.Millisecond, true
}
