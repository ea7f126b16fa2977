package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"oakallow/store"
)

// walStats is pg_stat_wal's count and time of WAL writes and flushes
// (times need track_wal_io_timing, which the run turns on for its
// database).
type walStats struct {
	writes, syncs           int64
	writeMillis, syncMillis float64
}

func readWALStats(st *store.Store) (walStats, error) {
	var w walStats
	err := st.Pool.QueryRow(context.Background(),
		"SELECT wal_write, wal_sync, wal_write_time, wal_sync_time FROM pg_stat_wal").Scan(&w.writes, &w.syncs, &w.writeMillis, &w.syncMillis)
	if err != nil {
		return walStats{}, fmt.Errorf("read pg_stat_wal: %w", err)
	}
	return w, nil
}

func (w walStats) since(before walStats) walStats {
	return walStats{writes: w.writes - before.writes, syncs: w.syncs - before.syncs,
		writeMillis: w.writeMillis - before.writeMillis, syncMillis: w.syncMillis - before.syncMillis}
}

// commitFlush is the latency of committing a one-row insert with
// synchronous_commit on and off: the difference is the WAL flush as a
// commit pays for it (write, fdatasync, the backend's wait), measured by
// PostgreSQL's own client protocol in the same run.
type commitFlush struct {
	n       int
	on, off time.Duration // p50s
}

// measureCommitFlush commits n one-row inserts each way, alternating, on
// one connection, into a throwaway table of the run's database.
func measureCommitFlush(ctx context.Context, st *store.Store, n int) (commitFlush, error) {
	conn, err := st.Pool.Acquire(ctx)
	if err != nil {
		return commitFlush{}, err
	}
	defer conn.Release()
	pc := conn.Conn().PgConn()
	if _, err := pc.Exec(ctx, "CREATE TABLE loadpeers_flush_probe (n int)").ReadAll(); err != nil {
		return commitFlush{}, fmt.Errorf("flush probe: %w", err)
	}
	defer func() { _, _ = pc.Exec(context.WithoutCancel(ctx), "DROP TABLE loadpeers_flush_probe").ReadAll() }()
	const tx = "BEGIN; SET LOCAL synchronous_commit = %s; INSERT INTO loadpeers_flush_probe VALUES (1); COMMIT"
	onSQL, offSQL := fmt.Sprintf(tx, "on"), fmt.Sprintf(tx, "off")
	on, off := make([]time.Duration, 0, n), make([]time.Duration, 0, n)
	for range n {
		for _, q := range []string{onSQL, offSQL} {
			t0 := time.Now()
			if _, err := pc.Exec(ctx, q).ReadAll(); err != nil {
				return commitFlush{}, fmt.Errorf("flush probe: %w", err)
			}
			if q == onSQL {
				on = append(on, time.Since(t0))
			} else {
				off = append(off, time.Since(t0))
			}
		}
	}
	slices.Sort(on)
	slices.Sort(off)
	return commitFlush{n: n, on: on[n/2].Round(time.Microsecond), off: off[n/2].Round(time.Microsecond)}, nil
}

// printSplit prints what one check's latency at concurrency 1 is made of,
// from the phase's own timings.
func printSplit(p phase, flush commitFlush) {
	sp := p.split
	if sp.Server.N == 0 || sp.Record.N == 0 {
		fmt.Println("  split: the server reported no timings")
		return
	}
	row := func(label string, p50, mean time.Duration) {
		fmt.Printf("    %-86s %7s %7s\n", label, fmt.Sprintf("%d", p50.Microseconds()), fmt.Sprintf("%d", mean.Microseconds()))
	}
	fmt.Printf("  one check's latency at c=1, split (µs; the same phase; a difference of p50s is not a p50):\n")
	fmt.Printf("    %-86s %7s %7s\n", "", "p50", "mean")
	row("at the load generator: request sent → answer read", p.P50, p.Mean)
	row("· in the server process: request's bytes read → response written", sp.Server.P50, sp.Server.Mean)
	row("  · in Recorder.Record: the audit commit and charge (round trip, statement, flush)", sp.Record.P50, sp.Record.Mean)
	row("  · the rest of the server (HTTP, auth, decide, hash, scrub, receipt, JSON)", sp.Server.P50-sp.Record.P50, sp.Server.Mean-sp.Record.Mean)
	row("· outside it: load generator, loopback HTTP both ways, the server's wake-up", p.P50-sp.Server.P50, p.Mean-sp.Server.Mean)
	if p.wal.syncs > 0 {
		fmt.Printf("  PostgreSQL's WAL I/O in the phase (pg_stat_wal): %.2f flushes per check, fdatasync mean %.0f µs, write mean %.0f µs\n",
			float64(p.wal.syncs)/float64(p.OK), p.wal.syncMillis*1000/float64(p.wal.syncs), p.wal.writeMillis*1000/float64(max(p.wal.writes, 1)))
	}
	fmt.Printf("  a one-row insert's commit, %d each way: synchronous_commit on p50 %d µs, off %d µs → the flush as a commit pays it ≈ %d µs\n",
		flush.n, flush.on.Microseconds(), flush.off.Microseconds(), (flush.on - flush.off).Microseconds())
}
