// Command loadcheck measures the permission-check hot path end to end: it
// starts a PostgreSQL cluster (fsync on, as in production) and a real API
// server on loopback, seeds a realistic org (1,000 tools, 10,000 rules,
// 100 tenants), warms up, then drives POST /v1/permissions/check at
// concurrency 1 and 16 for a fixed time, the same check as the MCP tool
// check_permission on /mcp, and a trivial huma endpoint of the same server
// (/healthz) for ratios. Afterwards it verifies that audit rows
// and billed credit equal the successful answers.
//
//	go run ./dev/loadcheck [-duration 10s] [-concurrency 1,16]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"oakallow/api"
	"oakallow/dev/devenv"
	"oakallow/dev/loadgen"
	"oakallow/store"
)

func main() {
	duration := flag.Duration("duration", 10*time.Second, "how long each phase drives load")
	warmup := flag.Duration("warmup", 3*time.Second, "warm-up before measuring")
	concList := flag.String("concurrency", "1,16", "comma-separated concurrency levels")
	dbURL := flag.String("database-url", os.Getenv("DATABASE_URL"), "use this PostgreSQL instead of a throwaway cluster")
	committers := flag.Int("committers", 0, "audit group-commit loops (0: the server default)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the check phase at the last concurrency (server and load generator) to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadcheck:", err)
			os.Exit(1)
		}
		defer f.Close()
		profileTo = f
	}
	recorderCommitters = *committers
	if err := run(*duration, *warmup, *concList, *dbURL); err != nil {
		fmt.Fprintln(os.Stderr, "loadcheck:", err)
		os.Exit(1)
	}
}

func run(duration, warmup time.Duration, concList, dbURL string) error {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var levels []int
	for _, s := range strings.Split(concList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 256 {
			return fmt.Errorf("bad concurrency %q", s)
		}
		levels = append(levels, n)
	}

	st, stop, err := devenv.LoadStore(ctx, dbURL, "loadcheck", 40)
	if err != nil {
		return err
	}
	defer stop()

	boot, err := api.Bootstrap(ctx, st, api.BootstrapInput{TeamName: "load", OwnerEmail: fmt.Sprintf("load-%d@example.com", time.Now().UnixNano()), OrgName: "load"}, time.Now())
	if err != nil {
		return err
	}
	fmt.Println("seeding 1,000 tools, 10,000 rules, 100 tenants …")
	if err := seed(ctx, st, boot); err != nil {
		return err
	}
	kr, box, err := devenv.LoadSecrets()
	if err != nil {
		return err
	}
	srv, err := api.NewServer(api.Config{Addr: "127.0.0.1:0"}, api.Deps{Store: st, Keyring: kr, SecretBox: box, Logger: logger,
		Recorder: store.RecorderConfig{Committers: recorderCommitters}})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Stop()
	base := "http://" + srv.Addr()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}}
	var okChecks atomic.Int64
	check := func(r *rand.Rand) bool {
		body := fmt.Sprintf(`{"tool":"tool_%04d","tenant":"tenant_%03d","resource":"res_%02d","method":"%s","reason":"load test","parameters":{"n":%d}}`,
			r.IntN(1000), r.IntN(100), r.IntN(50), methods[r.IntN(len(methods))], r.IntN(1000))
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/permissions/check", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", boot.StandardKey)
		ok := do(client, req)
		if ok {
			okChecks.Add(1)
		}
		return ok
	}
	// The same check as a tools/call of check_permission on the MCP connector
	// (Streamable HTTP, stateless, JSON answers), as an MCP client sends it.
	mcpCheck := func(r *rand.Rand) bool {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"check_permission","arguments":`+
			`{"tool":"tool_%04d","tenant":"tenant_%03d","resource":"res_%02d","method":"%s","reason":"load test","parameters":{"n":%d}}}}`,
			r.IntN(1<<30), r.IntN(1000), r.IntN(100), r.IntN(50), methods[r.IntN(len(methods))], r.IntN(1000))
		req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
		req.Header.Set("Authorization", "Bearer "+boot.StandardKey)
		ok := doMCP(client, req)
		if ok {
			okChecks.Add(1)
		}
		return ok
	}
	trivial := func(*rand.Rand) bool {
		req, _ := http.NewRequest(http.MethodGet, base+"/healthz", nil)
		return do(client, req)
	}

	fmt.Printf("warm-up %s …\n", warmup)
	drive(check, 16, warmup)
	drive(mcpCheck, 16, warmup/2)
	drive(trivial, 16, warmup/2)

	fmt.Printf("\n%-22s %5s %10s %10s %10s %8s %11s\n", "endpoint", "conc", "req/s", "p50", "p99", "errors", "allocs/req")
	for i, c := range levels {
		// The profile covers the check phase at the last concurrency only, so
		// it shows where a check's CPU goes without the trivial phase mixed in.
		profile := profileTo != nil && i == len(levels)-1
		if profile {
			if err := pprof.StartCPUProfile(profileTo); err != nil {
				return err
			}
		}
		cr := drive(check, c, duration)
		if profile {
			pprof.StopCPUProfile()
		}
		mr := drive(mcpCheck, c, duration)
		tr := drive(trivial, c, duration)
		fmt.Printf("%-22s %5d %10.0f %10s %10s %8d %11.0f\n", "POST /v1/permissions/check", c, cr.RPS, cr.P50, cr.P99, cr.Errors, cr.allocs)
		fmt.Printf("%-22s %5d %10.0f %10s %10s %8d %11.0f\n", "MCP check_permission", c, mr.RPS, mr.P50, mr.P99, mr.Errors, mr.allocs)
		fmt.Printf("%-22s %5d %10.0f %10s %10s %8d %11.0f\n", "GET /healthz (huma)", c, tr.RPS, tr.P50, tr.P99, tr.Errors, tr.allocs)
		fmt.Printf("  check/trivial throughput ratio at %d: %.0f%%\n", c, 100*cr.RPS/tr.RPS)
		fmt.Printf("  MCP/REST check throughput ratio at %d: %.0f%%\n", c, 100*mr.RPS/cr.RPS)
	}

	srv.Stop() // drain: every answered check's audit row has committed
	line, err := loadgen.CheckMetering(ctx, st, boot.TeamID, okChecks.Load(), loadCredit, 5000)
	fmt.Printf("\n%s\n", line)
	if err != nil {
		return err
	}
	fmt.Println("audit and billing match the successful answers exactly")
	return nil
}

// recorderCommitters is the -committers flag.
var recorderCommitters int

// loadCredit is the team's total credit during a run (free + purchased).
const loadCredit = 1_000_000_000_000

// profileTo receives the CPU profile when -cpuprofile is set.
var profileTo *os.File

var methods = []string{"read", "write", "delete", "send", "list"}

func do(c *http.Client, req *http.Request) bool {
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// doMCP is do for a tools/call: the call succeeded when the answer is a
// result that is not a tool error.
func doMCP(c *http.Client, req *http.Request) bool {
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return err == nil && resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"check_id"`)) &&
		!bytes.Contains(body, []byte(`"isError":true`))
}

type result struct {
	loadgen.Result
	// allocs is heap allocations per successful call, whole process (client,
	// server, audit commit loop and driver together).
	allocs float64
}

// drive runs loadgen.Drive and counts the process's allocations meanwhile.
func drive(fn func(*rand.Rand) bool, conc int, d time.Duration) result {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res := result{Result: loadgen.Drive(fn, conc, d)}
	runtime.ReadMemStats(&after)
	if res.OK > 0 {
		res.allocs = float64(after.Mallocs-before.Mallocs) / float64(res.OK)
	}
	return res
}

// seed creates the realistic org with set-based SQL and gives the team
// enough credit for any run.
func seed(ctx context.Context, st *store.Store, boot api.BootstrapResult) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, `
INSERT INTO categories (id, org_id, name, default_permission, created_at, updated_at)
SELECT 'cat_' || g, $1, 'category_' || g, (ARRAY['allowed','requires_approval',NULL])[1 + g %% 3], now(), now() FROM generate_series(0, 19) g;
INSERT INTO tenants (id, org_id, name, created_at, updated_at)
SELECT 'ten_' || g, $1, 'tenant_' || lpad(g::text, 3, '0'), now(), now() FROM generate_series(0, 99) g;
INSERT INTO resources (id, org_id, name, created_at, updated_at)
SELECT 'res_' || g, $1, 'res_' || lpad(g::text, 2, '0'), now(), now() FROM generate_series(0, 49) g;
INSERT INTO tools (id, org_id, name, category_id, risk_level, annotations_acknowledged, default_permission, approved, enabled, status, created_at, updated_at)
SELECT 'tool_' || g, $1, 'tool_' || lpad(g::text, 4, '0'), 'cat_' || (g %% 20), 'medium', true,
       CASE WHEN g %% 7 = 0 THEN 'requires_approval' END, g %% 5 = 0, true, 'active', now(), now()
FROM generate_series(0, 999) g;
`)
	if _, err := st.Pool.Exec(ctx, b.String(), pgx.QueryExecModeSimpleProtocol, boot.OrgID); err != nil {
		return fmt.Errorf("seed catalog: %w", err)
	}
	// 10,000 distinct rules over the eight key shapes at tenant and org
	// scope, drawn with a fixed seed so every run seeds the same org.
	_, err := st.Pool.Exec(ctx, `
SELECT setseed(0.42);
INSERT INTO rules (id, org_id, tenant_id, resource_id, tool_id, method, permission, created_at, updated_at)
SELECT 'rule_' || row_number() OVER (), $1, t, r, tl, m, p, now(), now() FROM (
  SELECT DISTINCT ON (t, r, tl, m) t, r, tl, m, p FROM (
    SELECT
      CASE WHEN random() < 0.6 THEN 'ten_' || floor(random() * 100)::int END AS t,
      CASE WHEN random() < 0.3 THEN 'res_' || floor(random() * 50)::int END AS r,
      CASE WHEN random() < 0.9 THEN 'tool_' || floor(random() * 1000)::int END AS tl,
      CASE WHEN random() < 0.4 THEN (ARRAY['read','write','delete','send','list'])[1 + floor(random() * 5)::int] END AS m,
      (ARRAY['allowed','requires_approval','disabled'])[1 + floor(random() * 3)::int] AS p
    FROM generate_series(1, 20000)
  ) raw
  ORDER BY t, r, tl, m
) uniq
LIMIT 10000`, pgx.QueryExecModeSimpleProtocol, boot.OrgID)
	if err != nil {
		return fmt.Errorf("seed rules: %w", err)
	}
	var n int
	if err := st.Pool.QueryRow(ctx, "SELECT count(*) FROM rules WHERE org_id = $1", boot.OrgID).Scan(&n); err != nil {
		return err
	}
	if n != 10000 {
		return fmt.Errorf("seeded %d rules, want 10000", n)
	}
	if _, err := st.CreateCreditGrant(ctx, store.CreateCreditGrantParams{ID: store.NewID("grant"), TeamID: boot.TeamID,
		Kind: "purchased", AmountMicros: loadCredit - api.FreeCreditMicros, Source: "loadcheck:" + boot.TeamID, CreatedAt: time.Now()}); err != nil {
		return err
	}
	return st.NotifyChange(ctx, "policy:"+boot.OrgID)
}
