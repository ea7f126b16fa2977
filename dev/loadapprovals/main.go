// Command loadapprovals measures the approval targets of docs/PERFORMANCE.md
// on the dev environment: it starts the same stack as `go run ./dev`
// (package devstack, PostgreSQL with fsync on, embedded Temporal, worker,
// API) in a throwaway directory, starts a local webhook receiver that checks
// every signature, configures the org through the REST API (webhook URL and
// secret, management_keys_may_decide, a tool that requires approval), and
// then runs three phases:
//
//   - latency: approvals one after another; for each, create answer →
//     approval.created at the receiver, and decide answer → first GET
//     /v1/approvals/{ref} that shows the token (polled every 5 ms);
//   - throughput: approvals created open-loop at -rate per second for
//     -duration, each decided (approve) by a pool of deciders and its token
//     fetched; a missing webhook or token after 10 s, or any non-2xx answer,
//     is an error;
//   - race: -race-n approvals, each sent 20 decides at once (alternating
//     approve and deny, no Idempotency-Key); exactly one must win with its own
//     decision and every other must get a 409.
//
// Afterwards it checks PostgreSQL: every approval of the first phases
// approved, exactly one execution token per approved approval and none for a
// denied one, one approval.created and approval.decided audit event each,
// every webhook delivery delivered; and it cross-checks every approval's
// PostgreSQL state against its workflow's history and result
// (dev/approvalcheck), so each run proves the approval invariant for what it
// did. It exits non-zero on any error or mismatch.
//
//	go run ./dev/loadapprovals [-rate 50] [-duration 60s] [-latency-n 100] [-race-n 50] [-cpuprofile cpu.out]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"oakallow/dev/devenv"
	"oakallow/dev/devstack"
	"oakallow/store"
)

const (
	toolName = "wire_money"

	eventCreated = "approval.created"
	eventDecided = "approval.decided"

	// pollEvery is how often a token is polled for.
	pollEvery = 5 * time.Millisecond
)

// config is the command line.
type config struct {
	rate       int
	duration   time.Duration
	latencyN   int
	raceN      int
	warmupN    int
	deciders   int
	wait       time.Duration
	cpuProfile string
	keepLogs   bool
	timeline   bool
}

func main() {
	var c config
	flag.IntVar(&c.rate, "rate", 50, "approvals created per second in the throughput phase (open loop)")
	flag.DurationVar(&c.duration, "duration", 60*time.Second, "length of the throughput phase")
	flag.IntVar(&c.latencyN, "latency-n", 100, "sequential approvals measured in the latency phase")
	flag.IntVar(&c.raceN, "race-n", 50, "approvals each sent 20 concurrent mixed decides in the race phase (0: none)")
	flag.IntVar(&c.warmupN, "warmup-n", 10, "sequential approvals before the latency phase, not measured")
	flag.IntVar(&c.deciders, "deciders", 64, "concurrent deciders in the throughput phase")
	flag.DurationVar(&c.wait, "wait", 10*time.Second, "how long a webhook or a token may take before it counts as missing")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured phases (server and load generator) to this file")
	flag.BoolVar(&c.timeline, "timeline", false, "print the Temporal event timeline of the last latency-phase approval and its deliveries")
	flag.BoolVar(&c.keepLogs, "v", false, "log the stack's warnings and errors")
	flag.Parse()
	if err := c.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "loadapprovals:", err)
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "loadapprovals:", err)
		os.Exit(1)
	}
}

func (c config) validate() error {
	switch {
	case c.rate < 1 || c.rate > 1000:
		return fmt.Errorf("-rate %d outside 1…1000", c.rate)
	case c.duration < time.Second:
		return fmt.Errorf("-duration %s is shorter than a second", c.duration)
	case c.latencyN < 1:
		return fmt.Errorf("-latency-n %d: need at least one", c.latencyN)
	case c.raceN < 0:
		return fmt.Errorf("-race-n %d is negative", c.raceN)
	case c.warmupN < 0:
		return fmt.Errorf("-warmup-n %d is negative", c.warmupN)
	case c.deciders < 1:
		return fmt.Errorf("-deciders %d: need at least one", c.deciders)
	case c.wait < time.Second:
		return fmt.Errorf("-wait %s is shorter than a second", c.wait)
	}
	return nil
}

func run(c config) error {
	ctx := context.Background()
	level := slog.LevelError + 1
	if c.keepLogs {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	fmt.Printf("load average at start: %s\n", devenv.LoadAverage())

	// The dev stack, as `go run ./dev` runs it, in a directory of its own.
	stack, err := devstack.Start(ctx, devstack.Options{Throwaway: true, UIPort: -1}, logger)
	if err != nil {
		return err
	}
	defer stack.Stop()
	creds := stack.Credentials()
	fmt.Printf("dev stack ready in %s (PostgreSQL fsync on, Temporal on SQLite)\n", stack.ReadyIn().Round(time.Millisecond))

	rec, err := startReceiver()
	if err != nil {
		return err
	}
	defer rec.Close()
	api := &apiClient{base: creds.APIURL, hc: &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute},
	}}
	if err := configureOrg(ctx, api, stack, rec, c); err != nil {
		return err
	}

	for i := range c.warmupN {
		if _, err := measureOne(api, rec, creds, i, c.wait); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}

	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	lat, err := latencyPhase(api, rec, creds, c)
	if err != nil {
		return err
	}
	lat.print(c.latencyN)
	if c.timeline {
		if err := printTimeline(ctx, stack.Temporal(), stack.Store(), lat.last.ref, lat.last.start, lat.last.marks); err != nil {
			return err
		}
	}
	fmt.Printf("load average after the latency phase: %s\n", devenv.LoadAverage())

	idle := measureIdleCPU(idleSample)
	cpu0 := readCPU()
	tp := throughputPhase(api, rec, creds, c)
	cpu1 := readCPU()
	tp.print(c)
	printCPUPerApproval(cpu0, cpu1, idle, tp.decided.Load(), tp.elapsedAll)
	fmt.Printf("load average after the throughput phase: %s\n", devenv.LoadAverage())
	pprof.StopCPUProfile()

	race := racePhase(api, creds, c.raceN, 20)

	approved := c.warmupN + c.latencyN + int(tp.created.Load())
	problems := verify(ctx, stack.Store(), rec, creds.OrgID, approved, race)
	problems = append(problems, race.problems...)
	problems = append(problems, crossCheck(ctx, stack, creds.OrgID)...)
	if tp.errors() > 0 {
		problems = append(problems, fmt.Sprintf("%d errors in the throughput phase", tp.errors()))
	}
	if len(problems) > 0 {
		return fmt.Errorf("FAILED:\n  %s", strings.Join(problems, "\n  "))
	}
	fmt.Println("\nall checks passed")
	return nil
}

// configureOrg does what the README's "Approvals, end to end" does, through
// the REST API: a tool that requires approval, management keys may decide,
// the webhook URL and a fresh signing secret. Credit for the run is granted
// in the store: buying credit is not an API operation.
func configureOrg(ctx context.Context, api *apiClient, stack *devstack.Stack, rec *receiver, c config) error {
	creds := stack.Credentials()
	var secret struct {
		Secret string `json:"secret"`
	}
	if err := api.do(http.MethodPost, "/v1/webhook/rotate-secret", creds.ManagementKey, nil, &secret); err != nil {
		return err
	}
	rec.SetSecret(secret.Secret)
	if err := api.do(http.MethodPatch, "/v1/settings", creds.ManagementKey, map[string]any{
		"management_keys_may_decide": true, "webhook_url": rec.URL(),
	}, nil); err != nil {
		return err
	}
	if err := api.do(http.MethodPost, "/v1/tools", creds.ManagementKey, map[string]any{
		"name": toolName, "risk_level": "critical", "read_only": false, "destructive": true,
		"idempotent": false, "open_world": true, "annotations_acknowledged": true,
		"default_permission": "requires_approval",
	}, nil); err != nil {
		return err
	}
	st := stack.Store()
	var teamID string
	if err := st.Pool.QueryRow(ctx, "SELECT team_id FROM orgs WHERE id = $1", creds.OrgID).Scan(&teamID); err != nil {
		return fmt.Errorf("find team: %w", err)
	}
	n := c.warmupN + c.latencyN + 2*c.rate*int(c.duration/time.Second+1)
	_, err := st.CreateCreditGrant(ctx, store.CreateCreditGrantParams{ID: store.NewID("grant"), TeamID: teamID,
		Kind: "purchased", AmountMicros: int64(n) * 5000, Source: "loadapprovals:" + teamID, CreatedAt: time.Now()})
	return err
}

// one is the timing of one sequential approval.
type one struct {
	createCall   time.Duration // create request → answer
	answerToHook time.Duration // create answer → approval.created at the receiver
	requestHook  time.Duration // create request → approval.created
	decideCall   time.Duration // decide request → answer
	answerToTok  time.Duration // decide answer → first GET showing the token
	requestTok   time.Duration // decide request → first GET showing the token

	ref   string
	start time.Time            // create request sent
	marks map[string]time.Time // what the load tool saw, for -timeline
}

// measureOne runs one approval start to end, alone.
func measureOne(api *apiClient, rec *receiver, creds devstack.Credentials, n int, wait time.Duration) (one, error) {
	var o one
	t0 := time.Now()
	ref, err := api.create(creds.StandardKey, n)
	if err != nil {
		return o, err
	}
	t1 := time.Now()
	hook, ok := rec.Wait(ref, eventCreated, t1.Add(wait))
	if !ok {
		return o, fmt.Errorf("%s: no %s within %s", ref, eventCreated, wait)
	}
	t2 := time.Now()
	if _, err := api.decide(creds.ManagementKey, ref); err != nil {
		return o, err
	}
	t3 := time.Now()
	tok, ok, err := api.tokenOf(creds.StandardKey, ref, pollEvery, t3.Add(wait))
	if err != nil {
		return o, err
	}
	if !ok {
		return o, fmt.Errorf("%s: no token within %s of the decision", ref, wait)
	}
	o = one{
		createCall: t1.Sub(t0), answerToHook: max(hook.Sub(t1), 0), requestHook: hook.Sub(t0),
		decideCall: t3.Sub(t2), answerToTok: tok.Sub(t3), requestTok: tok.Sub(t2),
		ref: ref, start: t0, marks: map[string]time.Time{
			"create request": t0, "create answer": t1, "approval.created received": hook,
			"decide request": t2, "decide answer": t3, "GET shows the token": tok,
		},
	}
	return o, nil
}

type latencyResult struct {
	createCall, answerToHook, requestHook, decideCall, answerToTok, requestTok []time.Duration
	last                                                                       one
}

func latencyPhase(api *apiClient, rec *receiver, creds devstack.Credentials, c config) (latencyResult, error) {
	fmt.Printf("\nlatency phase: %d approvals, one at a time …\n", c.latencyN)
	var r latencyResult
	for i := range c.latencyN {
		o, err := measureOne(api, rec, creds, c.warmupN+i, c.wait)
		if err != nil {
			return r, fmt.Errorf("latency phase: %w", err)
		}
		r.createCall = append(r.createCall, o.createCall)
		r.answerToHook = append(r.answerToHook, o.answerToHook)
		r.requestHook = append(r.requestHook, o.requestHook)
		r.decideCall = append(r.decideCall, o.decideCall)
		r.answerToTok = append(r.answerToTok, o.answerToTok)
		r.requestTok = append(r.requestTok, o.requestTok)
		r.last = o
	}
	return r, nil
}

func (r latencyResult) print(n int) {
	fmt.Printf("\n%-52s %10s %10s %10s\n", fmt.Sprintf("latency, %d sequential approvals", n), "p50", "p90", "p99")
	for _, row := range []struct {
		name string
		d    []time.Duration
	}{
		{"create answer → approval.created received", r.answerToHook},
		{"  (create request → approval.created received)", r.requestHook},
		{"  (POST /v1/approvals call)", r.createCall},
		{"decide answer → GET shows the token", r.answerToTok},
		{"  (decide request → GET shows the token)", r.requestTok},
		{"  (POST /v1/approvals/{id}/decide call)", r.decideCall},
	} {
		p := percentiles(row.d, 50, 90, 99)
		fmt.Printf("%-52s %10s %10s %10s\n", row.name, p[0], p[1], p[2])
	}
}

// throughputResult counts and times the open-loop phase.
type throughputResult struct {
	started                                     time.Time
	offered                                     int
	created, decided, tokens, webhooks          atomic.Int64
	createErrs, decideErrs, tokenErrs, hookErrs atomic.Int64
	mu                                          sync.Mutex
	createLat, decideLat, hookLat               []time.Duration
	lastDecided                                 time.Time
	firstErrs                                   []string
	elapsedCreate, elapsedDecide, elapsedAll    time.Duration
}

func (t *throughputResult) errors() int64 {
	return t.createErrs.Load() + t.decideErrs.Load() + t.tokenErrs.Load() + t.hookErrs.Load()
}

// fail counts an error and keeps the first three of each kind for the report.
func (t *throughputResult) fail(counter *atomic.Int64, err error) {
	if n := counter.Add(1); n > 3 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.firstErrs = append(t.firstErrs, err.Error())
}

func (t *throughputResult) add(lat *[]time.Duration, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	*lat = append(*lat, d)
}

// created is an approval waiting for its decision.
type created struct {
	ref      string
	answered time.Time
}

// throughputPhase creates approvals open loop (on a fixed schedule, however
// slow the answers) while a pool of deciders approves them and fetches
// their tokens; a checker waits for each approval.created webhook.
func throughputPhase(api *apiClient, rec *receiver, creds devstack.Credentials, c config) *throughputResult {
	r := &throughputResult{offered: int(int64(c.rate) * int64(c.duration) / int64(time.Second))}
	fmt.Printf("\nthroughput phase: %d approvals/s for %s (open loop, %d deciders) …\n", c.rate, c.duration, c.deciders)
	queue := make(chan created, r.offered)
	var creators, deciders, hooks sync.WaitGroup

	for range c.deciders {
		deciders.Go(func() {
			for a := range queue {
				t0 := time.Now()
				if _, err := api.decide(creds.ManagementKey, a.ref); err != nil {
					r.fail(&r.decideErrs, err)
					continue
				}
				t1 := time.Now()
				r.add(&r.decideLat, t1.Sub(t0))
				r.decided.Add(1)
				_, ok, err := api.tokenOf(creds.StandardKey, a.ref, pollEvery, t1.Add(c.wait))
				switch {
				case err != nil:
					r.fail(&r.tokenErrs, err)
				case !ok:
					r.fail(&r.tokenErrs, fmt.Errorf("%s: no token within %s of the decision", a.ref, c.wait))
				default:
					r.tokens.Add(1)
				}
				r.mu.Lock()
				r.lastDecided = time.Now()
				r.mu.Unlock()
			}
		})
	}

	interval := time.Second / time.Duration(c.rate)
	r.started = time.Now()
	for i := range r.offered {
		if d := time.Until(r.started.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		creators.Go(func() {
			t0 := time.Now()
			ref, err := api.create(creds.StandardKey, c.warmupN+c.latencyN+i)
			if err != nil {
				r.fail(&r.createErrs, err)
				return
			}
			t1 := time.Now()
			r.add(&r.createLat, t1.Sub(t0))
			r.created.Add(1)
			queue <- created{ref: ref, answered: t1}
			hooks.Go(func() {
				at, ok := rec.Wait(ref, eventCreated, t1.Add(c.wait))
				if !ok {
					r.fail(&r.hookErrs, fmt.Errorf("%s: no %s within %s of the create answer", ref, eventCreated, c.wait))
					return
				}
				r.webhooks.Add(1)
				r.add(&r.hookLat, max(at.Sub(t1), 0))
			})
		})
	}
	creators.Wait()
	r.elapsedCreate = time.Since(r.started)
	close(queue)
	deciders.Wait()
	r.elapsedDecide = r.lastDecided.Sub(r.started)
	hooks.Wait()
	r.elapsedAll = time.Since(r.started)
	return r
}

func (t *throughputResult) print(c config) {
	fmt.Printf("\noffered %d approvals at %d/s over %s\n", t.offered, c.rate, c.duration)
	fmt.Printf("  created   %6d  (%.1f/s over %s, until the last create answer)\n", t.created.Load(),
		float64(t.created.Load())/t.elapsedCreate.Seconds(), t.elapsedCreate.Round(time.Millisecond))
	fmt.Printf("  decided   %6d  (%.1f/s over %s, until the last decision and token)\n", t.decided.Load(),
		float64(t.decided.Load())/t.elapsedDecide.Seconds(), t.elapsedDecide.Round(time.Millisecond))
	fmt.Printf("  tokens    %6d   webhooks approval.created %d\n", t.tokens.Load(), t.webhooks.Load())
	fmt.Printf("\n%-44s %10s %10s %10s\n", "", "p50", "p90", "p99")
	for _, row := range []struct {
		name string
		d    []time.Duration
	}{
		{"POST /v1/approvals", t.createLat},
		{"POST /v1/approvals/{id}/decide", t.decideLat},
		{"create answer → approval.created received", t.hookLat},
	} {
		p := percentiles(row.d, 50, 90, 99)
		fmt.Printf("%-44s %10s %10s %10s\n", row.name, p[0], p[1], p[2])
	}
	fmt.Printf("\nerrors: create %d, decide %d, token %d, webhook %d\n",
		t.createErrs.Load(), t.decideErrs.Load(), t.tokenErrs.Load(), t.hookErrs.Load())
	for _, e := range t.firstErrs {
		fmt.Println("  ", e)
	}
}

// verify checks what PostgreSQL holds for the org after the run: want
// approvals, all approved, exactly one execution token each, one
// approval.created, approval.decided and token.minted audit event each, and
// every webhook delivery (created and decided for each) delivered and
// received exactly as recorded. Deliveries of the last decisions may still
// be in flight, so it waits up to a minute for none to be pending.
func verify(ctx context.Context, st *store.Store, rec *receiver, orgID string, approved int, race raceResult) []string {
	want := approved + race.approved + race.denied
	fmt.Printf("\nverifying PostgreSQL against %d approvals (%d approved, %d denied) …\n", want, approved+race.approved, race.denied)
	var problems []string
	check := func(what string, got, wantN int64) {
		mark := "ok"
		if got != wantN {
			mark = "MISMATCH"
			problems = append(problems, fmt.Sprintf("%s: %d, want %d", what, got, wantN))
		}
		fmt.Printf("  %-60s %7d  %s\n", what, got, mark)
	}
	info := func(what string, got int64) {
		fmt.Printf("  %-60s %7d  (info)\n", what, got)
	}
	count := func(q string, args ...any) int64 {
		var n int64
		if err := st.Pool.QueryRow(ctx, q, args...).Scan(&n); err != nil {
			problems = append(problems, fmt.Sprintf("query %q: %v", q, err))
			return -1
		}
		return n
	}

	// A decision that timed out for its caller still completes in its
	// workflow; give the last workflows and deliveries time to finish.
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) &&
		(count(`SELECT count(*) FROM approvals WHERE org_id = $1 AND (status = 'pending' OR status = 'approved' AND token_id IS NULL)`, orgID) > 0 ||
			count(`SELECT count(*) FROM webhook_deliveries WHERE org_id = $1 AND status = 'pending'`, orgID) > 0 ||
			int64(rec.Stats().byType[eventDecided]) < int64(want)) {
		time.Sleep(100 * time.Millisecond)
	}

	w, a := int64(want), int64(approved+race.approved)
	check("approvals", count(`SELECT count(*) FROM approvals WHERE org_id = $1`, orgID), w)
	check("approvals approved", count(`SELECT count(*) FROM approvals WHERE org_id = $1 AND status = 'approved'`, orgID), a)
	check("approvals denied", count(`SELECT count(*) FROM approvals WHERE org_id = $1 AND status = 'denied'`, orgID), int64(race.denied))
	check("execution tokens from approvals", count(`SELECT count(*) FROM execution_tokens WHERE org_id = $1 AND source_kind = 'approval'`, orgID), a)
	check("approvals with exactly one token, on the row too", count(`
SELECT count(*) FROM approvals a
WHERE a.org_id = $1 AND a.status = 'approved'
  AND (SELECT count(*) FROM execution_tokens t WHERE t.source_kind = 'approval' AND t.source_id = a.id) = 1
  AND a.token_id = (SELECT t.id FROM execution_tokens t WHERE t.source_kind = 'approval' AND t.source_id = a.id)`, orgID), a)
	check("denied approvals with a token", count(`
SELECT count(*) FROM approvals a JOIN execution_tokens t ON t.source_kind = 'approval' AND t.source_id = a.id
WHERE a.org_id = $1 AND a.status <> 'approved'`, orgID), 0)
	for _, kind := range []string{"approval.requested", "approval.created", "approval.decided"} {
		check("audit events "+kind, count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = $2`, orgID, kind), w)
	}
	check("audit events token.minted", count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'token.minted'`, orgID), a)
	check("audit: approvals with one approval.created", count(`
SELECT count(*) FROM (SELECT subject FROM audit_events WHERE org_id = $1 AND kind = 'approval.created'
GROUP BY subject HAVING count(*) = 1) s`, orgID), w)
	check("webhook deliveries", count(`SELECT count(*) FROM webhook_deliveries WHERE org_id = $1`, orgID), 2*w)
	check("webhook deliveries delivered", count(`SELECT count(*) FROM webhook_deliveries WHERE org_id = $1 AND status = 'delivered'`, orgID), 2*w)
	info("webhook deliveries delivered on the first attempt", count(`SELECT count(*) FROM webhook_deliveries WHERE org_id = $1 AND status = 'delivered' AND attempts = 1`, orgID))
	rs := rec.Stats()
	check("received approval.created (distinct deliveries)", int64(rs.byType[eventCreated]), w)
	check("received approval.decided (distinct deliveries)", int64(rs.byType[eventDecided]), w)
	info("received again (same X-Oakallow-Delivery; allowed, receivers dedupe)", int64(rs.duplicates))
	check("receiver rejections (bad signature or body)", int64(len(rs.rejections)), 0)
	for i, r := range rs.rejections {
		if i == 5 {
			break
		}
		fmt.Println("    rejected:", r)
	}
	return problems
}

// percentiles returns the ps-th percentiles of d (nearest rank), rounded.
func percentiles(d []time.Duration, ps ...int) []time.Duration {
	out := make([]time.Duration, len(ps))
	if len(d) == 0 {
		return out
	}
	s := slices.Clone(d)
	slices.Sort(s)
	for i, p := range ps {
		idx := min(len(s)*p/100, len(s)-1)
		out[i] = s[idx].Round(100 * time.Microsecond)
	}
	return out
}
