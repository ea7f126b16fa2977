// Command loadpolicy measures how fast a policy change reaches another API
// replica. It starts a PostgreSQL cluster (fsync on, as in production) and
// two API servers on one database, seeds a measured org (500 tools, 100 of
// them with parameter schemas, 5,000 rules) and a busy org, and then runs
// two phases of -rounds changes each:
//
//   - quiet: a rule of the measured org is flipped between allowed and
//     disabled through server A; the time from sending the write until
//     server B answers a check with the new verdict is recorded. Pollers
//     send checks to B continuously, so the figure includes one check's
//     round trip (its audit commit) — an upper bound.
//   - busy: the same while -writers goroutines make the busy org write as
//     fast as they can through both servers: each write changes a tool's
//     parameter schema (about 400 objects, new text every time, so every
//     replica compiles it) or adds or deletes a rule, and each is followed
//     by one of the busy org's checks on the other server, so both replicas
//     hold (and reload) the busy org's policy.
//
// Each round also checks read-your-writes: the first check sent to A after
// A answered the write must show the new verdict. Any violation, or a
// change B does not serve within 5 s, fails the run (exit status 1).
//
//	go run ./dev/loadpolicy [-rounds 200] [-writers 8] [-pollers 4]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"oakallow/api"
	"oakallow/dev/devenv"
	"oakallow/store"
)

// visibleWithin is how long B may take to serve a change before the run
// fails.
const visibleWithin = 5 * time.Second

type config struct {
	rounds  int
	writers int
	pollers int
	dbURL   string
	verbose bool
}

func main() {
	var c config
	flag.IntVar(&c.rounds, "rounds", 200, "changes measured in each phase")
	flag.IntVar(&c.writers, "writers", 8, "concurrent writers of the busy org in the busy phase")
	flag.IntVar(&c.pollers, "pollers", 4, "concurrent checks polling replica B for each change")
	flag.StringVar(&c.dbURL, "database-url", os.Getenv("DATABASE_URL"), "use this PostgreSQL instead of a throwaway cluster")
	flag.BoolVar(&c.verbose, "v", false, "log the servers' warnings and errors")
	flag.Parse()
	if c.rounds < 1 || c.writers < 1 || c.writers > 64 || c.pollers < 1 || c.pollers > 64 {
		fmt.Fprintln(os.Stderr, "loadpolicy: -rounds must be ≥ 1, -writers and -pollers 1…64")
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "loadpolicy:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	ctx := context.Background()
	level := slog.LevelError + 1
	if c.verbose {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	fmt.Printf("load average at start: %s\n", devenv.LoadAverage())

	st, stop, err := devenv.LoadStore(ctx, c.dbURL, "loadpolicy", 40)
	if err != nil {
		return err
	}
	defer stop()

	stamp := time.Now().UnixNano()
	measured, err := api.Bootstrap(ctx, st, api.BootstrapInput{TeamName: "measured", OwnerEmail: fmt.Sprintf("measured-%d@example.com", stamp), OrgName: "measured"}, time.Now())
	if err != nil {
		return err
	}
	busy, err := api.Bootstrap(ctx, st, api.BootstrapInput{TeamName: "busy", OwnerEmail: fmt.Sprintf("busy-%d@example.com", stamp), OrgName: "busy"}, time.Now())
	if err != nil {
		return err
	}
	fmt.Println("seeding the measured org (500 tools, 100 with schemas, 5,000 rules) and the busy org (50 tools with schemas) …")
	if err := seed(ctx, st, measured, busy); err != nil {
		return err
	}

	kr, box, err := devenv.LoadSecrets()
	if err != nil {
		return err
	}
	var servers [2]*api.Server
	var regs [2]*prometheus.Registry
	for i := range servers {
		regs[i] = prometheus.NewRegistry()
		srv, err := api.NewServer(api.Config{Addr: "127.0.0.1:0"}, api.Deps{Store: st, Keyring: kr, SecretBox: box, Logger: logger, Registry: regs[i]})
		if err != nil {
			return err
		}
		if err := srv.Start(ctx); err != nil {
			return err
		}
		defer srv.Stop()
		servers[i] = srv
	}
	cl := &client{hc: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}}}
	a, b := "http://"+servers[0].Addr(), "http://"+servers[1].Addr()

	probe, err := newProbe(cl, a, b, measured)
	if err != nil {
		return err
	}
	var problems []string

	fmt.Printf("\nquiet phase: %d changes\n", c.rounds)
	l0 := policyLoads(regs[1])
	quiet, errs := probe.measure(c.rounds, c.pollers)
	problems = append(problems, errs...)
	l1 := policyLoads(regs[1])

	fmt.Printf("busy phase: %d changes while %d writers change the busy org\n", c.rounds, c.writers)
	bw := startBusyWriters(cl, []string{a, b}, busy, c.writers)
	loaded, errs := probe.measure(c.rounds, c.pollers)
	problems = append(problems, errs...)
	writes, writeErrs, elapsed := bw.stop()
	l2 := policyLoads(regs[1])

	fmt.Printf("\n%-44s %6s %9s %9s %9s %9s\n", "change on A → served by B", "n", "p50", "p90", "p99", "max")
	quiet.print("quiet")
	loaded.print(fmt.Sprintf("busy org writing (%.0f writes/s)", float64(writes)/elapsed.Seconds()))
	fmt.Printf("\npolicy loads on B, quiet phase: %s\n", l1.since(l0))
	fmt.Printf("policy loads on B, busy phase:  %s\n", l2.since(l1))
	fmt.Printf("busy org: %d writes in %s, %d failed\n", writes, elapsed.Round(time.Millisecond), writeErrs)
	fmt.Printf("read-your-writes on A: %d of %d changes served by the first check after the answer\n",
		quiet.ryw+loaded.ryw, quiet.n()+loaded.n())
	fmt.Printf("load average at end: %s\n", devenv.LoadAverage())
	for _, d := range []struct {
		name string
		s    samples
	}{{"quiet", quiet}, {"busy", loaded}} {
		if p := d.s.pct(99); p > 100*time.Millisecond {
			fmt.Printf("target p99 ≤ 100 ms NOT met in the %s phase (%s)\n", d.name, p)
		}
	}
	if writeErrs > 0 {
		problems = append(problems, fmt.Sprintf("%d busy-org writes failed", writeErrs))
	}
	if len(problems) > 0 {
		return fmt.Errorf("FAILED:\n  %s", strings.Join(problems, "\n  "))
	}
	fmt.Println("\nall checks passed")
	return nil
}

// seed creates the two orgs' catalogs with set-based SQL and gives both
// teams enough credit for any run.
func seed(ctx context.Context, st *store.Store, measured, busy api.BootstrapResult) error {
	schema := `{"type":"object","properties":{"to":{"type":"string","format":"email"},"subject":{"type":"string","maxLength":200},` +
		`"amount":{"type":"number","minimum":0},"tags":{"type":"array","items":{"type":"string"}}},"required":["to"]}`
	_, err := st.Pool.Exec(ctx, `
INSERT INTO tenants (id, org_id, name, created_at, updated_at)
SELECT 'ten_m' || g, $1, 'tenant_' || g, now(), now() FROM generate_series(0, 99) g;
INSERT INTO tools (id, org_id, name, risk_level, parameter_schema, annotations_acknowledged, default_permission, approved, enabled, status, created_at, updated_at)
SELECT 'tool_m' || g, $1, 'tool_' || g, 'medium', CASE WHEN g % 5 = 0 THEN jsonb_set($3::jsonb, '{description}', to_jsonb('tool ' || g)) END,
       true, CASE WHEN g % 7 = 0 THEN 'requires_approval' END, g % 5 = 0, true, 'active', now(), now()
FROM generate_series(0, 499) g;
INSERT INTO rules (id, org_id, tenant_id, tool_id, method, permission, created_at, updated_at)
SELECT 'rule_m' || g, $1, 'ten_m' || (g % 100), 'tool_m' || (g % 500), 'm' || (g / 500),
       (ARRAY['allowed','requires_approval','disabled'])[1 + g % 3], now(), now()
FROM generate_series(0, 4999) g;
INSERT INTO tools (id, org_id, name, risk_level, parameter_schema, annotations_acknowledged, enabled, status, created_at, updated_at)
SELECT 'tool_b' || g, $2, 'busy_' || g, 'medium', $3::jsonb, true, true, 'active', now(), now()
FROM generate_series(0, 49) g;
`, pgx.QueryExecModeSimpleProtocol, measured.OrgID, busy.OrgID, schema)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	for _, boot := range []api.BootstrapResult{measured, busy} {
		if _, err := st.CreateCreditGrant(ctx, store.CreateCreditGrantParams{ID: store.NewID("grant"), TeamID: boot.TeamID,
			Kind: "purchased", AmountMicros: 1_000_000_000_000, Source: "loadpolicy:" + boot.TeamID, CreatedAt: time.Now()}); err != nil {
			return err
		}
		if err := st.NotifyChange(ctx, "policy:"+boot.OrgID); err != nil {
			return err
		}
	}
	return nil
}

// client sends JSON requests with an API key.
type client struct{ hc *http.Client }

func (c *client) do(method, url, key string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-API-Key", key)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, raw)
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(raw, out)
	}
	return resp.StatusCode, nil
}

// probe flips one rule of the measured org and watches the verdict.
type probe struct {
	cl     *client
	a, b   string
	boot   api.BootstrapResult
	ruleID string
	perm   string // the rule's current permission
}

var probeCheck = map[string]any{"tool": "probe", "method": "flip"}

func newProbe(cl *client, a, b string, boot api.BootstrapResult) (*probe, error) {
	if _, err := cl.do(http.MethodPost, a+"/v1/tools", boot.ManagementKey,
		map[string]any{"name": "probe", "annotations_acknowledged": true}, nil); err != nil {
		return nil, err
	}
	var rule struct {
		ID string `json:"id"`
	}
	if _, err := cl.do(http.MethodPost, a+"/v1/rules", boot.ManagementKey,
		map[string]any{"tool": "probe", "method": "flip", "permission": "allowed"}, &rule); err != nil {
		return nil, err
	}
	p := &probe{cl: cl, a: a, b: b, boot: boot, ruleID: rule.ID, perm: "allowed"}
	// Both replicas hold the org before measuring, so B must learn each
	// change by notification.
	deadline := time.Now().Add(visibleWithin)
	for _, srv := range []string{a, b} {
		for {
			v, err := p.verdict(srv)
			if err != nil {
				return nil, err
			}
			if v == "allowed" {
				break
			}
			if time.Now().After(deadline) {
				return nil, errors.New("the probe rule never reached both replicas")
			}
		}
	}
	return p, nil
}

func (p *probe) verdict(base string) (string, error) {
	var res struct {
		Permission string `json:"permission"`
	}
	_, err := p.cl.do(http.MethodPost, base+"/v1/permissions/check", p.boot.StandardKey, probeCheck, &res)
	return res.Permission, err
}

// measure makes n changes one after another and returns the time each
// took to be served by B; problems lists every correctness failure.
func (p *probe) measure(n, pollers int) (samples, []string) {
	var s samples
	var problems []string
	for i := range n {
		next := "disabled"
		if p.perm == "disabled" {
			next = "allowed"
		}
		start := time.Now()
		if _, err := p.cl.do(http.MethodPatch, p.a+"/v1/rules/"+p.ruleID, p.boot.ManagementKey,
			map[string]any{"permission": next}, nil); err != nil {
			problems = append(problems, fmt.Sprintf("round %d: write: %v", i, err))
			return s, problems
		}
		p.perm = next
		if v, err := p.verdict(p.a); err != nil || v != next {
			problems = append(problems, fmt.Sprintf("round %d: replica A answered %q (%v) right after taking the write of %q", i, v, err, next))
		} else {
			s.ryw++
		}
		took, err := p.awaitOnB(next, start, pollers, &s.checks)
		if err != nil {
			problems = append(problems, fmt.Sprintf("round %d: %v", i, err))
			continue
		}
		s.d = append(s.d, took)
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond) // changes do not arrive in lockstep
	}
	return s, problems
}

// awaitOnB polls B from several goroutines until an answer shows want, and
// returns the time from start until the earliest-sent check that showed it
// was sent. That check was decided after B swapped its policy, within one
// polling interval of it; its answer comes only after its audit commit,
// which is not part of the propagation. checks gets every poll's round trip.
func (p *probe) awaitOnB(want string, start time.Time, pollers int, checks *[]time.Duration) (time.Duration, error) {
	var mu sync.Mutex
	var first time.Time // send time of the earliest check that showed want
	var failed error
	var wg sync.WaitGroup
	deadline := start.Add(visibleWithin)
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !first.IsZero() || failed != nil || time.Now().After(deadline)
	}
	for range pollers {
		wg.Go(func() {
			for !done() {
				sent := time.Now()
				v, err := p.verdict(p.b)
				mu.Lock()
				*checks = append(*checks, time.Since(sent))
				switch {
				case err != nil:
					failed = err
				case v == want && (first.IsZero() || sent.Before(first)):
					first = sent
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failed != nil {
		return 0, fmt.Errorf("check on B: %w", failed)
	}
	if first.IsZero() {
		return 0, fmt.Errorf("replica B did not serve %q within %s", want, visibleWithin)
	}
	return first.Sub(start), nil
}

// samples are one phase's propagation times.
type samples struct {
	d      []time.Duration
	checks []time.Duration // round trips of the checks that polled B
	ryw    int             // changes A served on the first check after answering the write
}

func (s samples) n() int { return len(s.d) }

func (s samples) pct(p int) time.Duration { return percentile(s.d, p) }

// percentile is the p-th percentile of d (p = 100: the maximum).
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Sorted(slices.Values(d))
	return d[min(len(d)-1, len(d)*p/100)]
}

func (s samples) print(name string) {
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	fmt.Printf("%-44s %6d %9s %9s %9s %9s   (checks polling B: p50 %s, %d polls)\n", name, s.n(), r(s.pct(50)),
		r(s.pct(90)), r(s.pct(99)), r(s.pct(100)), r(percentile(s.checks, 50)), len(s.checks))
}

// busyWriters change the busy org as fast as they can.
type busyWriters struct {
	stopped        atomic.Bool
	wg             sync.WaitGroup
	writes, failed atomic.Int64
	start          time.Time
}

func startBusyWriters(cl *client, servers []string, boot api.BootstrapResult, n int) *busyWriters {
	bw := &busyWriters{start: time.Now()}
	for w := range n {
		bw.wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := 0; !bw.stopped.Load(); i++ {
				base := servers[(w+i)%len(servers)]
				// The busy org also checks, on both replicas, so both hold its
				// policy and reload it on each of its changes.
				check := map[string]any{"tool": fmt.Sprintf("busy_%d", r.IntN(50)), "parameters": map[string]any{"to": "ops@example.com"}}
				if _, err := cl.do(http.MethodPost, servers[(w+i+1)%len(servers)]+"/v1/permissions/check", boot.StandardKey, check, nil); err != nil {
					bw.failed.Add(1)
				}
				var err error
				switch i % 3 {
				case 0, 1: // a new schema for one of the org's tools
					tool := fmt.Sprintf("busy_%d", r.IntN(50))
					_, err = cl.do(http.MethodPatch, base+"/v1/tools/"+tool, boot.ManagementKey,
						map[string]any{"parameter_schema": heavySchema(w, i)}, nil)
				case 2: // a rule added and removed
					var rule struct {
						ID string `json:"id"`
					}
					tool := fmt.Sprintf("busy_%d", r.IntN(50))
					_, err = cl.do(http.MethodPost, base+"/v1/rules", boot.ManagementKey,
						map[string]any{"tool": tool, "method": fmt.Sprintf("w%d_%d", w, i), "permission": "allowed"}, &rule)
					if err == nil {
						bw.writes.Add(1)
						_, err = cl.do(http.MethodDelete, base+"/v1/rules/"+rule.ID, boot.ManagementKey, nil, nil)
					}
				}
				if err != nil {
					bw.failed.Add(1)
					continue
				}
				bw.writes.Add(1)
			}
		})
	}
	return bw
}

func (bw *busyWriters) stop() (writes, failed int64, elapsed time.Duration) {
	bw.stopped.Store(true)
	bw.wg.Wait()
	return bw.writes.Load(), bw.failed.Load(), time.Since(bw.start)
}

// heavySchema is a parameter schema of about 400 objects whose text is new
// for every (w, i), so every replica has to compile it.
func heavySchema(w, i int) map[string]any {
	props := make(map[string]any, 130)
	for p := range 130 {
		props[fmt.Sprintf("field_%d", p)] = map[string]any{
			"type": "object", "description": fmt.Sprintf("writer %d write %d", w, i),
			"properties": map[string]any{"value": map[string]any{"type": "string", "maxLength": 100 + p}},
		}
	}
	return map[string]any{"type": "object", "properties": props}
}

// loadCount is the oakallow_policy_load_duration_seconds histogram of a
// server: how many loads, how long in all.
type loadCount struct {
	n   uint64
	sum float64
}

func policyLoads(reg *prometheus.Registry) loadCount {
	var lc loadCount
	mfs, err := reg.Gather()
	if err != nil {
		return lc
	}
	for _, mf := range mfs {
		if mf.GetName() != "oakallow_policy_load_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			lc.n += m.GetHistogram().GetSampleCount()
			lc.sum += m.GetHistogram().GetSampleSum()
		}
	}
	return lc
}

func (lc loadCount) since(before loadCount) string {
	n := lc.n - before.n
	if n == 0 {
		return "none"
	}
	mean := time.Duration((lc.sum - before.sum) / float64(n) * float64(time.Second))
	return fmt.Sprintf("%d, mean %s", n, mean.Round(10*time.Microsecond))
}
