package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"oakallow/store"
)

// Result is what one phase of load achieved.
type Result struct {
	// OK and Errors count successful and failed calls.
	OK, Errors int
	// Elapsed is the phase's wall time.
	Elapsed time.Duration
	// RPS is successful calls per second.
	RPS float64
	// P50 and P99 are latency percentiles of the successful calls, Mean
	// their average.
	P50, P99, Mean time.Duration
}

// Drive calls fn from conc goroutines, each as soon as its previous call
// returned (closed loop), for d, and reports throughput and the latency of
// the successful calls. fn reports whether its call succeeded.
func Drive(fn func(*rand.Rand) bool, conc int, d time.Duration) Result {
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range conc {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			local := make([]time.Duration, 0, 4096)
			e := 0
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if fn(r) {
					local = append(local, time.Since(t0))
				} else {
					e++
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += e
			mu.Unlock()
		})
	}
	wg.Wait()
	res := Result{OK: len(lat), Errors: errs, Elapsed: time.Since(start)}
	res.RPS = float64(len(lat)) / res.Elapsed.Seconds()
	if len(lat) > 0 {
		slices.Sort(lat)
		var sum time.Duration
		for _, l := range lat {
			sum += l
		}
		res.Mean = (sum / time.Duration(len(lat))).Round(time.Microsecond)
		res.P50 = lat[len(lat)/2].Round(time.Microsecond)
		res.P99 = lat[len(lat)*99/100].Round(time.Microsecond)
	}
	return res
}

// CheckMetering compares, for team, the successful checks a run counted
// with the audit rows, the billable rows, the credit billed and the drop in
// balance from credit (SPEC §9: all equal). The servers must have stopped,
// so every answered check's audit row has committed. It returns the line to
// print, and an error on any mismatch.
func CheckMetering(ctx context.Context, st *store.Store, teamID string, okChecks, credit, costMicros int64) (string, error) {
	totals, err := st.BillingTotals(ctx, teamID)
	if err != nil {
		return "", err
	}
	bal, err := st.GetTeamBalance(ctx, teamID)
	if err != nil {
		return "", err
	}
	var auditRows int64
	if err := st.Pool.QueryRow(ctx, "SELECT count(*) FROM audit_events WHERE kind = 'permission.check' AND team_id = $1", teamID).Scan(&auditRows); err != nil {
		return "", err
	}
	spent := credit - bal.FreeMicros - bal.PurchasedMicros
	line := fmt.Sprintf("successful checks %d · audit rows %d · billable rows %d · billed %d µ$ · balance drop %d µ$ · balance billed_calls %d",
		okChecks, auditRows, totals.Calls, totals.CostMicros, spent, bal.BilledCalls)
	if auditRows != okChecks || totals.Calls != okChecks || totals.CostMicros != okChecks*costMicros ||
		spent != totals.CostMicros || bal.BilledCalls != totals.Calls {
		return line, fmt.Errorf("MISMATCH between answers, audit rows and billing: %s", line)
	}
	return line, nil
}
