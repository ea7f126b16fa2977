package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	enumspb "go.temporal.io/api/enums/v1"

	"oakallow/dev/approvalcheck"
	"oakallow/dev/devstack"
	"oakallow/worker"
)

// raceResult is what the race phase saw: how its approvals ended, and every answer that
// broke the rule "exactly one decide wins, every other gets a 409".
type raceResult struct {
	approved, denied int
	problems         []string
}

// racePhase creates n approvals and sends each `racers` decides at once, alternating
// approve and deny, without Idempotency-Key. Exactly one must be answered 200 with its
// own decision; every other must be a 409; none may be a 5xx. Whether PostgreSQL and
// the workflows agree is checked afterwards with the other approvals (crossCheck).
func racePhase(api *apiClient, creds devstack.Credentials, n, racers int) raceResult {
	fmt.Printf("\nrace phase: %d approvals, %d concurrent mixed decides each …\n", n, racers)
	var r raceResult
	for i := range n {
		ref, err := api.create(creds.StandardKey, 1_000_000+i)
		if err != nil {
			r.problems = append(r.problems, fmt.Sprintf("race: create: %v", err))
			continue
		}
		var wins, conflicts atomic.Int64
		var mu sync.Mutex
		var winner string
		var wg sync.WaitGroup
		for j := range racers {
			decision := "approve"
			if j%2 == 1 {
				decision = "deny"
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := api.decideAs(creds.ManagementKey, ref, decision)
				var se *statusError
				switch {
				case err == nil:
					wins.Add(1)
					mu.Lock()
					winner = decision
					mu.Unlock()
					want := map[string]string{"approve": "approved", "deny": "denied"}[decision]
					if got.Status != want || (got.Token != "") != (want == "approved") {
						mu.Lock()
						r.problems = append(r.problems, fmt.Sprintf("race %s: the winning %s was answered %s (token: %t)", ref, decision, got.Status, got.Token != ""))
						mu.Unlock()
					}
				case errors.As(err, &se) && se.status == http.StatusConflict:
					conflicts.Add(1)
				default:
					mu.Lock()
					r.problems = append(r.problems, fmt.Sprintf("race %s: %v", ref, err))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 || conflicts.Load() != int64(racers-1) {
			r.problems = append(r.problems, fmt.Sprintf("race %s: %d decides won and %d got 409, want 1 and %d", ref, wins.Load(), conflicts.Load(), racers-1))
		}
		switch winner {
		case "approve":
			r.approved++
		case "deny":
			r.denied++
		}
	}
	fmt.Printf("  %d approved, %d denied, %d problems\n", r.approved, r.denied, len(r.problems))
	return r
}

// crossCheck compares every approval of the org in PostgreSQL with its workflow's history
// and result (approvalcheck), 8 at a time, and returns the problems of those that
// disagree. An approval still pending whose workflow runs (a decide that timed out under
// overload) is counted, not compared: approvalcheck would wait for its workflow, which
// stays open until the approval's deadline. One whose workflow never started is reported
// by approvalcheck at once.
func crossCheck(ctx context.Context, stack *devstack.Stack, orgID string) []string {
	type approval struct {
		ref     string
		pending bool
	}
	rows, _ := stack.Store().Pool.Query(ctx, `SELECT reference, status = 'pending' FROM approvals WHERE org_id = $1`, orgID)
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (approval, error) {
		var a approval
		err := r.Scan(&a.ref, &a.pending)
		return a, err
	})
	if err != nil {
		return []string{fmt.Sprintf("cross-check: list approvals: %v", err)}
	}
	fmt.Printf("\ncross-checking %d approvals: PostgreSQL against workflow history and result …\n", len(all))
	var (
		mu                           sync.Mutex
		problems                     []string
		broken, unstarted, open, got int
		events                       = map[enumspb.EventType]int{}
		next                         atomic.Int64
		wg                           sync.WaitGroup
	)
	tc := stack.Temporal()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(all) {
					return
				}
				a := all[i]
				if a.pending {
					desc, err := tc.DescribeWorkflowExecution(ctx, a.ref, "")
					if err == nil && desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
						mu.Lock()
						open++
						mu.Unlock()
						continue
					}
				}
				rep, err := approvalcheck.Check(ctx, stack.Store().Pool, tc, a.ref)
				mu.Lock()
				got++
				for typ, n := range rep.Events {
					events[typ] += n
				}
				switch {
				case err != nil:
					problems = append(problems, fmt.Sprintf("cross-check %s: %v", a.ref, err))
				case rep.Unstarted:
					unstarted++
					if unstarted <= 5 {
						problems = append(problems, rep.Err().Error())
					}
				case len(rep.Problems) > 0:
					broken++
					if broken <= 5 {
						problems = append(problems, rep.Err().Error())
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	mark := func(n int) string {
		if n > 0 {
			return "MISMATCH"
		}
		return "ok"
	}
	if broken > 0 {
		problems = append(problems, fmt.Sprintf("%d approvals break the approval invariant", broken))
	}
	if unstarted > 0 {
		problems = append(problems, fmt.Sprintf("%d approvals were stored but their workflow never started (the worker starts them once they are %s old)",
			unstarted, worker.StartRecoveryAfter))
	}
	fmt.Printf("  %-60s %7d  %s\n", "approvals where PostgreSQL and history disagree", broken, mark(broken))
	fmt.Printf("  %-60s %7d  %s\n", "approvals stored whose workflow never started", unstarted, mark(unstarted))
	fmt.Printf("  %-60s %7d  (info)\n", "approvals still pending, workflow open: not compared", open)
	printEvents(events, got)
	return problems
}

// printEvents prints the history events of the run's approvals by type, in
// total and per approval: what the approvals cost Temporal, and any failed
// or timed-out workflow task (work done twice).
func printEvents(events map[enumspb.EventType]int, approvals int) {
	if approvals == 0 {
		return
	}
	total := 0
	for _, n := range events {
		total += n
	}
	fmt.Printf("\nhistory events of the %d approvals: %d, %.1f per approval\n", approvals, total, float64(total)/float64(approvals))
	types := slices.Collect(maps.Keys(events))
	slices.SortFunc(types, func(a, b enumspb.EventType) int { return events[b] - events[a] })
	for _, typ := range types {
		fmt.Printf("  %-52s %8d  %6.2f\n", strings.TrimPrefix(typ.String(), "EVENT_TYPE_"), events[typ], float64(events[typ])/float64(approvals))
	}
}
