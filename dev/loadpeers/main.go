// Command loadpeers measures oakallow's permission check side by side with
// Open Policy Agent deciding the same chain over the same org, in one run on
// one machine, with one load generator.
//
// It builds the OPA release pinned in dev/opa/go.mod (once; cached in the
// user cache directory), starts a PostgreSQL cluster (fsync on) and
// oakallow's API server in a process of its own, loads the generated org
// (dev/loadgen: 1,000 tools, 10,000 rules, 100 tenants) into oakallow's
// catalog and, as a data document beside the Rego form of the chain
// (dev/loadgen/policy.rego), into an OPA server with decision logging on.
// Then it drives POST /v1/permissions/check and OPA's POST
// /v1/data/oakallow/decision with the same in-process generator at each
// concurrency and prints, per engine: throughput, p50/p99, errors, heap
// allocations per request (the server's own, from its /metrics) and CPU per
// request (the server process, and for oakallow also PostgreSQL's), the
// throughput ratio, and the fsync latency of the disk the database writes
// to, measured in the same run. Finally it sends a sample of checks to both
// and requires identical decisions, and checks that the successful checks
// equal the audit rows and the credit billed.
//
//	go run ./dev/loadpeers [-duration 10s] [-warmup 3s] [-concurrency 1,16]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"oakallow/api"
	"oakallow/dev/devenv"
	"oakallow/dev/loadgen"
	"oakallow/store"
)

// serveEnv makes the program the oakallow server of a run: the parent
// starts itself again with it set, so the server's CPU and allocations are
// its own, as OPA's are.
const serveEnv = "OAKALLOW_LOADPEERS_SERVE"

func main() {
	if os.Getenv(serveEnv) != "" {
		if err := serve(); err != nil {
			fmt.Fprintln(os.Stderr, "loadpeers server:", err)
			os.Exit(1)
		}
		return
	}
	duration := flag.Duration("duration", 10*time.Second, "how long each engine is driven at each concurrency")
	warmup := flag.Duration("warmup", 3*time.Second, "warm-up of each engine before measuring")
	concList := flag.String("concurrency", "1,16", "comma-separated concurrency levels")
	opaBin := flag.String("opa", "", "use this opa binary instead of building the version pinned in dev/opa")
	agree := flag.Int("agree", 2000, "checks sent to both engines at the end whose decisions must be identical")
	flag.Parse()
	if err := run(*duration, *warmup, *concList, *opaBin, *agree); err != nil {
		fmt.Fprintln(os.Stderr, "loadpeers:", err)
		os.Exit(1)
	}
}

// loadCredit is the team's total credit during a run (free + purchased).
const loadCredit = 1_000_000_000_000

func run(duration, warmup time.Duration, concList, opaBin string, agreeN int) error {
	ctx := context.Background()
	var levels []int
	for _, s := range strings.Split(concList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 256 {
			return fmt.Errorf("bad concurrency %q", s)
		}
		levels = append(levels, n)
	}
	if opaBin == "" {
		var err error
		if opaBin, err = buildOPA(ctx); err != nil {
			return err
		}
	}
	out, err := exec.CommandContext(ctx, opaBin, "version").Output()
	if err != nil {
		return fmt.Errorf("opa version: %w", err)
	}
	opaVersion := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "Version:"))

	dir, err := os.MkdirTemp("", "oakallow-loadpeers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// PostgreSQL lives under the temporary directory too, so the fsync
	// measured there is the WAL's disk.
	dbURL, stopDB, err := devenv.LoadDatabase(ctx, "", "loadpeers")
	if err != nil {
		return err
	}
	defer stopDB()
	st, err := store.Open(ctx, store.Config{URL: dbURL, MaxConns: 4})
	if err != nil {
		return err
	}
	defer st.Close()
	boot, err := api.Bootstrap(ctx, st, api.BootstrapInput{TeamName: "load", OwnerEmail: fmt.Sprintf("load-%d@example.com", time.Now().UnixNano()), OrgName: "load"}, time.Now())
	if err != nil {
		return err
	}
	org := loadgen.Generate(1)
	fmt.Printf("seeding %d tools, %d rules, %d tenants into oakallow and OPA …\n", len(org.Policy.Tools), len(org.Policy.Rules), len(org.Tenants))
	if err := org.Seed(ctx, st, boot.OrgID); err != nil {
		return err
	}
	if _, err := st.CreateCreditGrant(ctx, store.CreateCreditGrantParams{ID: store.NewID("grant"), TeamID: boot.TeamID,
		Kind: "purchased", AmountMicros: loadCredit - api.FreeCreditMicros, Source: "loadpeers:" + boot.TeamID, CreatedAt: time.Now()}); err != nil {
		return err
	}

	// PostgreSQL times its own WAL writes and flushes for the split
	// (pg_stat_wal; two clock readings per write and per flush).
	if _, err := st.Pool.Exec(ctx, "ALTER DATABASE loadpeers SET track_wal_io_timing = on"); err != nil {
		return err
	}
	oak, err := startOakallow(dbURL, boot.StandardKey)
	if err != nil {
		return err
	}
	defer oak.stop()
	oak.db = st
	opa, err := startOPA(ctx, opaBin, dir, org)
	if err != nil {
		return err
	}
	defer opa.stop()

	fsync, err := measureFsync(dir, 500)
	if err != nil {
		return err
	}
	flush, err := measureCommitFlush(ctx, st, 400)
	if err != nil {
		return err
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}}
	var okChecks atomic.Int64
	oakCall := func(r *rand.Rand) bool {
		c := loadgen.LoadCheck(r)
		body := fmt.Sprintf(`{"tool":%q,"tenant":%q,"resource":%q,"method":%q,"reason":"load test","parameters":{"n":%d}}`,
			c.Tool, c.Tenant, c.Resource, c.Method, c.N)
		ok := post(client, oak.base+"/v1/permissions/check", oak.key, body, nil)
		if ok {
			okChecks.Add(1)
		}
		return ok
	}
	opaCall := func(r *rand.Rand) bool {
		c := loadgen.LoadCheck(r)
		body := fmt.Sprintf(`{"input":{"tool":%q,"tenant":%q,"resource":%q,"method":%q,"reason":"load test","parameters":{"n":%d}}}`,
			c.Tool, c.Tenant, c.Resource, c.Method, c.N)
		return post(client, opa.base+"/v1/data/oakallow/decision", "", body, nil)
	}

	fmt.Printf("oakallow (this tree) vs OPA %s · load average %s · warm-up %s each …\n", opaVersion, devenv.LoadAverage(), warmup)
	loadgen.Drive(oakCall, 16, warmup)
	loadgen.Drive(opaCall, 16, warmup)

	fmt.Printf("\n%-14s %5s %9s %9s %9s %7s %11s %12s %12s\n", "engine", "conc", "req/s", "p50", "p99", "errors", "allocs/req", "CPU µs/req", "+PG µs/req")
	type pair struct{ oak, opa phase }
	var results []pair
	for _, c := range levels {
		var p pair
		if p.oak, err = measure(oak, oakCall, c, duration); err != nil {
			return err
		}
		if p.opa, err = measure(opa, opaCall, c, duration); err != nil {
			return err
		}
		p.oak.print("oakallow", c)
		p.opa.print("OPA "+opaVersion, c)
		results = append(results, p)
	}

	mismatches, err := compareDecisions(client, oak, opa, agreeN, &okChecks)
	if err != nil {
		return err
	}

	oak.stop() // drain: every answered check's audit row has committed
	opa.stop()
	logged, err := decisionsLogged(opa.logFile)
	if err != nil {
		return err
	}
	line, meterErr := loadgen.CheckMetering(ctx, st, boot.TeamID, okChecks.Load(), loadCredit, 5000)

	fmt.Printf("\nfsync of the database's disk, %d times each, alternating:\n", fsync.wal.n)
	fmt.Printf("  as a WAL flush (8 KiB overwrite in a preallocated 16 MiB file + fdatasync): p50 %s, p99 %s  ← the target's basis\n", fsync.wal.p50, fsync.wal.p99)
	fmt.Printf("  as an append (8 KiB appended + fdatasync, also a journal commit of the size): p50 %s, p99 %s\n", fsync.appended.p50, fsync.appended.p99)
	for i, p := range results {
		c := levels[i]
		fmt.Printf("concurrency %2d: oakallow/OPA throughput %.2f× · p50 %s vs %s · p99 %s vs %s\n",
			c, p.oak.RPS/p.opa.RPS, p.oak.P50, p.opa.P50, p.oak.P99, p.opa.P99)
		if c == 1 {
			floor := fsync.wal.p50 + 250*time.Microsecond
			fmt.Printf("  c=1 target p50 ≤ WAL-flush fsync p50 + 0.25 ms = %s: %s\n", floor, verdict(p.oak.P50 <= floor))
			printSplit(p.oak, flush)
		}
		if c == 16 {
			fmt.Printf("  c=16 target ≥ 1.2× OPA's decisions/s: %s\n", verdict(p.oak.RPS >= 1.2*p.opa.RPS))
		}
	}
	fmt.Printf("decisions compared on %d varied checks: %d differ · OPA decision log entries written: %d\n", agreeN, mismatches, logged)
	fmt.Println(line)
	fmt.Printf("load average at the end %s\n", devenv.LoadAverage())
	if meterErr != nil {
		return meterErr
	}
	if mismatches > 0 {
		return fmt.Errorf("%d of %d decisions differ between oakallow and OPA", mismatches, agreeN)
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// post sends one JSON request and reports whether it was answered 200; the
// answer is decoded into into when it is not nil.
func post(c *http.Client, url, key, body string, into any) bool {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if into != nil && resp.StatusCode == http.StatusOK {
		return json.NewDecoder(resp.Body).Decode(into) == nil
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// compareDecisions sends the same varied checks (every level and gate) to
// both engines and counts the decisions that differ.
func compareDecisions(client *http.Client, oak, opa *server, n int, okChecks *atomic.Int64) (int, error) {
	r := rand.New(rand.NewPCG(3, 5))
	differ := 0
	for range n {
		c := loadgen.VariedCheck(r)
		in := c.OPAInput()
		body, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		var fromOak loadgen.Decision
		if !post(client, oak.base+"/v1/permissions/check", oak.key, string(body), &fromOak) {
			return 0, fmt.Errorf("oakallow did not answer check %+v", c)
		}
		okChecks.Add(1)
		var fromOPA struct {
			Result loadgen.Decision `json:"result"`
		}
		if !post(client, opa.base+"/v1/data/oakallow/decision", "", `{"input":`+string(body)+`}`, &fromOPA) {
			return 0, fmt.Errorf("OPA did not answer check %+v", c)
		}
		if fromOak != fromOPA.Result {
			if differ < 5 {
				fmt.Printf("  differ on %+v: oakallow %+v, OPA %+v\n", c, fromOak, fromOPA.Result)
			}
			differ++
		}
	}
	return differ, nil
}

// phase is one engine's measurement at one concurrency.
type phase struct {
	loadgen.Result
	allocs     float64 // heap allocations per successful request, server process
	cpu, pgCPU float64 // CPU µs per successful request: server process; PostgreSQL
	noAllocs   bool    // the server's /metrics did not say
	// split is the server process's timings of the phase (oakallow).
	split split
	// wal is PostgreSQL's own count and timing of its WAL writes and
	// flushes during the phase (oakallow).
	wal walStats
}

func (p phase) print(engine string, conc int) {
	allocs, pg := fmt.Sprintf("%.0f", p.allocs), "-"
	if p.noAllocs {
		allocs = "n/a"
	}
	if p.pgCPU > 0 {
		pg = fmt.Sprintf("%.0f", p.pgCPU)
	}
	fmt.Printf("%-14s %5d %9.0f %9s %9s %7d %11s %12.0f %12s\n", engine, conc, p.RPS, p.P50, p.P99, p.Errors, allocs, p.cpu, pg)
}

// measure drives s with fn and reads the server's allocations and CPU (and
// PostgreSQL's, for oakallow) before and after.
func measure(s *server, fn func(*rand.Rand) bool, conc int, d time.Duration) (phase, error) {
	var wal0 walStats
	if s.timings != "" {
		if err := resetSplit(http.DefaultClient, s.timings); err != nil {
			return phase{}, err
		}
		var err error
		if wal0, err = readWALStats(s.db); err != nil {
			return phase{}, err
		}
	}
	m0, okM0 := s.mallocs()
	c0, pg0 := cpuTicks(s.cmd.Process.Pid), 0.0
	if s.withPG {
		pg0 = postgresTicks()
	}
	res := loadgen.Drive(fn, conc, d)
	m1, okM1 := s.mallocs()
	c1 := cpuTicks(s.cmd.Process.Pid)
	p := phase{Result: res, noAllocs: !okM0 || !okM1}
	if res.OK == 0 {
		return p, fmt.Errorf("%s answered no request at concurrency %d", s.name, conc)
	}
	if s.timings != "" {
		var err error
		if p.split, err = fetchSplit(http.DefaultClient, s.timings); err != nil {
			return p, err
		}
		wal1, err := readWALStats(s.db)
		if err != nil {
			return p, err
		}
		p.wal = wal1.since(wal0)
	}
	n := float64(res.OK)
	p.allocs = (m1 - m0) / n
	p.cpu = (c1 - c0) * ticksToMicros / n
	if s.withPG {
		p.pgCPU = (postgresTicks() - pg0) * ticksToMicros / n
	}
	return p, nil
}

// server is one engine's server process.
type server struct {
	name string
	cmd  *exec.Cmd
	base string
	key  string // API key, oakallow only
	// timings is the base URL of the server process's timings (split.go),
	// oakallow only.
	timings string
	// db is the run's database, to read pg_stat_wal around a phase
	// (oakallow only).
	db     *store.Store
	withPG bool // its CPU per request includes PostgreSQL's
	// logFile is where OPA writes its log, decision log included.
	logFile string
	done    chan struct{}
	stopFn  func()
}

func (s *server) stop() {
	if s.stopFn != nil {
		s.stopFn()
		s.stopFn = nil
	}
}

// mallocs reads go_memstats_mallocs_total from the server's /metrics.
func (s *server) mallocs() (float64, bool) {
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_mallocs_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// startOakallow starts this program again as oakallow's API server on the
// run's database; key is a standard key of the run's org.
func startOakallow(dbURL, key string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), serveEnv+"=1", "DATABASE_URL="+dbURL)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{name: "oakallow", cmd: cmd, withPG: true, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	s.stopFn = func() {
		_ = stdin.Close() // the server stops when its input closes
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-s.done
		}
	}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		s.stop()
		return nil, errors.New("the oakallow server did not start")
	}
	addrs, ok := strings.CutPrefix(sc.Text(), "listening on ")
	addr, timingsAddr, ok2 := strings.Cut(addrs, " timings ")
	if !ok || !ok2 {
		s.stop()
		return nil, fmt.Errorf("the oakallow server's greeting: %q", sc.Text())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	s.base, s.key, s.timings = "http://"+addr, key, "http://"+timingsAddr
	return s, nil
}

// serve is the oakallow server process: it serves the API on a loopback
// port, timing each request at its socket and each audit commit (split.go),
// prints "listening on <address> timings <address>" on standard output,
// and stops, draining its audit commits, when standard
// input closes or on SIGTERM.
func serve() error {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := store.Open(ctx, store.Config{URL: os.Getenv("DATABASE_URL"), MaxConns: 40})
	if err != nil {
		return err
	}
	defer st.Close()
	kr, box, err := devenv.LoadSecrets()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	t := &timings{}
	go t.serveTimings(tln)
	srv, err := api.NewServer(api.Config{Addr: ln.Addr().String(), Listener: timedListener{Listener: ln, t: t}},
		api.Deps{Store: st, Keyring: kr, SecretBox: box, Logger: logger, Recorder: store.RecorderConfig{ObserveRecord: t.observeRecord}})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	fmt.Println("listening on " + srv.Addr() + " timings " + tln.Addr().String())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-stop:
	case <-eof:
	}
	srv.Stop()
	return nil
}
