// Command loadpages measures how fast every dashboard page renders for a
// large org (issue 10's target: p95 ≤ 50 ms per page): the dev stack's org
// gets loadgen's catalog (1,000 tools, 100 tenants, 50 resources, 10,000
// rules), 10,000 approvals (200 pending, the rest decided or expired) and
// 10,000 audit entries; then each page is requested n times, one at a time,
// by a signed-in owner, and the latency of the whole HTTP answer is
// reported per page.
//
//	go run ./dev/loadpages -n 200
//	go run ./dev/loadpages -n 200 -pages /approvals,/builder -cpuprofile pages.pprof
//
// The approvals and audit entries are written to PostgreSQL directly (the
// pages read them from there; starting 10,000 workflows would measure
// Temporal, not the pages). The owner's full session is written to the
// store, as a passkey sign-in would start it.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"oakallow/dev/devenv"
	"oakallow/dev/devstack"
	"oakallow/dev/loadgen"
	"oakallow/store"
)

// Sizes of what is seeded besides loadgen's catalog.
const (
	approvals = 10000
	pending   = 200
	audits    = 10000
)

func main() {
	n := flag.Int("n", 200, "measured requests per page, one at a time")
	warmup := flag.Int("warmup", 20, "requests per page before the measured ones")
	verbose := flag.Bool("v", false, "log the stack's warnings and errors")
	only := flag.String("pages", "", "comma-separated pages to measure (path without query, e.g. /approvals,/builder); default all")
	hold := flag.Bool("hold", false, "after measuring, keep the seeded stack running (its database URL is printed) until interrupted, e.g. to EXPLAIN a page's queries")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the measured requests (server and client share this process) to this file")
	flag.Parse()
	if *n < 1 || *warmup < 0 {
		fmt.Fprintln(os.Stderr, "loadpages: -n must be positive and -warmup not negative")
		os.Exit(2)
	}
	if err := run(*n, *warmup, *verbose, *only, *cpuProfile, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "loadpages:", err)
		os.Exit(1)
	}
}

func run(n, warmup int, verbose bool, only, cpuProfile string, hold bool) error {
	ctx := context.Background()
	level := slog.LevelError + 1
	if verbose {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	fmt.Printf("load average at start: %s\n", devenv.LoadAverage())
	stack, err := devstack.Start(ctx, devstack.Options{Throwaway: true, UIPort: -1}, logger)
	if err != nil {
		return err
	}
	defer stack.Stop()
	creds := stack.Credentials()
	st := stack.Store()
	var teamID string
	if err := st.Pool.QueryRow(ctx, "SELECT team_id FROM orgs WHERE id = $1", creds.OrgID).Scan(&teamID); err != nil {
		return err
	}
	t0 := time.Now()
	if err := loadgen.Generate(1).Seed(ctx, st, creds.OrgID); err != nil {
		return err
	}
	firstRef, err := seedApprovals(ctx, st, creds.OrgID)
	if err != nil {
		return err
	}
	if err := seedAudit(ctx, st, creds.OrgID, teamID); err != nil {
		return err
	}
	token, err := ownerSession(ctx, st, teamID)
	if err != nil {
		return err
	}
	fmt.Printf("seeded %d tools, %d rules, %d approvals (%d pending), %d audit entries in %v\n",
		loadgen.Tools, loadgen.Rules, approvals, pending, audits, time.Since(t0).Round(time.Millisecond))

	hc := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) (time.Duration, error) {
		req, err := http.NewRequest(http.MethodGet, creds.APIURL+path, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Cookie", "oakallow_session="+token)
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
		}
		return d, nil
	}
	pages := []string{"/approvals", "/approvals/" + firstRef, "/rules", "/rules/explain?tool=tool_0001&tenant=tenant_001&resource=res_01&method=read",
		"/tools", "/tenants", "/resources", "/keys", "/activity", "/quickstart", "/builder", "/settings", "/team", "/billing"}
	if only != "" {
		want := strings.Split(only, ",")
		pages = slices.DeleteFunc(pages, func(p string) bool {
			path, _, _ := strings.Cut(p, "?")
			return !slices.Contains(want, path) && !(strings.HasPrefix(path, "/approvals/") && slices.Contains(want, "/approvals/REF"))
		})
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("\n%d requests per page, one at a time (after %d unmeasured), whole answer over loopback:\n", n, warmup)
	fmt.Printf("  %-24s %8s %8s %8s %8s\n", "page", "p50", "p95", "p99", "max")
	var worst time.Duration
	for _, p := range pages {
		var ds []time.Duration
		for i := range warmup + n {
			d, err := get(p)
			if err != nil {
				return err
			}
			if i >= warmup {
				ds = append(ds, d)
			}
		}
		slices.Sort(ds)
		q := func(pct int) time.Duration { return ds[min(len(ds)-1, len(ds)*pct/100)] }
		worst = max(worst, q(95))
		name := p
		if len(name) > 24 {
			name = name[:23] + "…"
		}
		fmt.Printf("  %-24s %8s %8s %8s %8s\n", name, ms(q(50)), ms(q(95)), ms(q(99)), ms(ds[len(ds)-1]))
	}
	verdict := "met"
	if worst > 50*time.Millisecond {
		verdict = "missed"
	}
	fmt.Printf("slowest page p95: %s — target p95 ≤ 50 ms %s\n", ms(worst), verdict)
	fmt.Printf("load average at the end: %s\n", devenv.LoadAverage())
	if hold {
		fmt.Printf("holding the stack until interrupted; database: %s\n", creds.DatabaseURL)
		sig, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		<-sig.Done()
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// seedApprovals writes the approvals, spread over the last 30 days and the
// org's tools, and returns the reference of a pending one.
func seedApprovals(ctx context.Context, st *store.Store, orgID string) (string, error) {
	now := time.Now().UTC()
	rows := make([][]any, 0, approvals)
	for i := range approvals {
		tool := loadgen.ToolName(i % loadgen.Tools)
		created := now.Add(-time.Duration(approvals-i) * 4 * time.Minute)
		status, expires := "expired", created.Add(time.Hour)
		var decided *time.Time
		switch {
		case i >= approvals-pending:
			status, expires = "pending", now.Add(time.Hour)
		case i%3 == 0:
			status, decided = "approved", &expires
		case i%3 == 1:
			status, decided = "denied", &expires
		default:
			decided = &expires
		}
		ref := fmt.Sprintf("REF-LOAD%04d-%04d", i/10000, i%10000)
		rows = append(rows, []any{fmt.Sprintf("apr_load_%05d", i), orgID, ref, "tool_" + orgID + "_" + tool, tool,
			[]byte(`{"invoice":` + fmt.Sprint(i) + `,"amount":12.5}`), "Pay invoice " + fmt.Sprint(i) + " as the customer asked",
			status, 1, false, 3600, expires, created, created, decided, ref, "api_key", "key_load"})
	}
	cols := []string{"id", "org_id", "reference", "tool_id", "tool_name", "parameters", "reasoning", "status", "level", "two_levels",
		"level_timeout_seconds", "expires_at", "created_at", "updated_at", "decided_at", "workflow_id", "created_by_kind", "created_by_id"}
	if _, err := st.Pool.CopyFrom(ctx, pgx.Identifier{"approvals"}, cols, pgx.CopyFromRows(rows)); err != nil {
		return "", fmt.Errorf("seed approvals: %w", err)
	}
	return rows[len(rows)-1][2].(string), nil
}

// seedAudit writes permission-check entries, as checks leave them.
func seedAudit(ctx context.Context, st *store.Store, orgID, teamID string) error {
	now := time.Now().UTC()
	rows := make([][]any, 0, audits)
	for i := range audits {
		tool := loadgen.ToolName(i % loadgen.Tools)
		rows = append(rows, []any{fmt.Sprintf("chk_load_%05d", i), orgID, teamID, now.Add(-time.Duration(audits-i) * time.Minute),
			"api_key", "key_load", "permission.check", tool, "requires_approval", tool,
			[]byte(`{"level":12,"level_name":"fail_safe","reason":"Pay invoice ` + fmt.Sprint(i) + `"}`)})
	}
	cols := []string{"id", "org_id", "team_id", "occurred_at", "actor_kind", "actor_id", "kind", "subject", "outcome", "tool", "details"}
	if _, err := st.Pool.CopyFrom(ctx, pgx.Identifier{"audit_events"}, cols, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("seed audit: %w", err)
	}
	return nil
}

// ownerSession adds an owner to the team and starts their full session.
func ownerSession(ctx context.Context, st *store.Store, teamID string) (string, error) {
	now := time.Now()
	user := store.NewID("usr")
	if err := st.CreateUser(ctx, store.CreateUserParams{ID: user, Email: user + "@example.com", Name: "Load Owner", CreatedAt: now}); err != nil {
		return "", err
	}
	if err := st.CreateMembership(ctx, store.CreateMembershipParams{TeamID: teamID, UserID: user, Role: "owner", CreatedAt: now}); err != nil {
		return "", err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := "oak_ses_" + base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(tok))
	if err := st.CreateSession(ctx, store.CreateSessionParams{ID: store.NewID("ses"), UserID: user, TokenHash: h[:],
		State: "full", Method: "passkey", Client: "browser", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		return "", errors.Join(errors.New("owner session"), err)
	}
	return tok, nil
}
