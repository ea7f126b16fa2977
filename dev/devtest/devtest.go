// Package devtest is the test harness every oakallow test builds on: a real
// PostgreSQL database per test, cloned from a migrated template database,
// and a real in-process Temporal server per test process. Both listen on
// loopback only.
//
// PostgreSQL comes from TEST_DATABASE_URL when it is set (a superuser URL;
// databases are created and dropped on that server), else from a throwaway
// cluster that this process starts with the same logic as `go run ./dev`.
// Test packages call Main from TestMain so the cluster is stopped and removed
// when the tests end.
package devtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"oakallow/dev/devenv"
	"oakallow/store"
)

var (
	pgOnce   sync.Once
	pgAdmin  string // admin URL (database "postgres")
	pgTmpl   string // template database name
	pgErr    error
	pgServer *devenv.Postgres
	pgDir    string
)

// Main runs the tests and then stops what the harness started, after the
// package's own cleanups (things kept for the whole test binary).
func Main(m *testing.M, cleanups ...func()) {
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	stopTemporal()
	stopStripeMock()
	if pgServer != nil {
		pgServer.Stop()
		_ = os.RemoveAll(pgDir)
	}
	os.Exit(code)
}

func setupPostgres() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		pgAdmin = u
	} else {
		base := filepath.Join(os.TempDir(), "oakallow-test")
		if err := os.MkdirAll(base, 0o755); err != nil {
			pgErr = err
			return
		}
		_ = os.Chmod(base, 0o755)
		pgDir, pgErr = os.MkdirTemp(base, "pg-")
		if pgErr != nil {
			return
		}
		_ = os.Chmod(pgDir, 0o755)
		pgServer, pgErr = devenv.StartPostgres(ctx, devenv.PostgresConfig{Dir: filepath.Join(pgDir, "data"), Fast: true})
		if pgErr != nil {
			return
		}
		pgAdmin = pgServer.URL("postgres")
	}
	pgTmpl = "oakallow_tmpl_" + store.SchemaFingerprint()
	pgErr = ensureTemplate(ctx)
}

// ensureTemplate creates the migrated template database once per server,
// under an advisory lock so concurrent test processes do not race.
func ensureTemplate(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, pgAdmin)
	if err != nil {
		return fmt.Errorf("connect test postgres: %w", err)
	}
	defer conn.Close(context.Background())
	h := fnv.New64a()
	h.Write([]byte(pgTmpl))
	lock := int64(h.Sum64() >> 1)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lock); err != nil {
		return err
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", lock) //nolint:errcheck
	var ready bool
	err = conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)", pgTmpl).Scan(&ready)
	if err != nil || ready {
		return err
	}
	ident := pgx.Identifier{pgTmpl}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return err
	}
	if _, err := store.Migrate(ctx, withDatabase(pgAdmin, pgTmpl)); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "ALTER DATABASE "+ident+" WITH IS_TEMPLATE true")
	return err
}

func withDatabase(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic("devtest: bad postgres URL")
	}
	u.Path = "/" + db
	return u.String()
}

// AdminURL returns the URL of the test server's "postgres" database, for
// tests that create databases of their own (e.g. migration tests).
func AdminURL(t testing.TB) string {
	t.Helper()
	pgOnce.Do(setupPostgres)
	if pgErr != nil {
		t.Fatalf("devtest: postgres: %v", pgErr)
	}
	return pgAdmin
}

// EmptyDatabase creates a database without any schema and returns its URL;
// it is dropped when the test ends.
func EmptyDatabase(t testing.TB) string {
	return createDatabase(t, "")
}

// Database creates a fresh, migrated database for this test (a clone of the
// template) and returns its URL; it is dropped when the test ends.
func Database(t testing.TB) string {
	AdminURL(t)
	return createDatabase(t, pgTmpl)
}

func createDatabase(t testing.TB, template string) string {
	t.Helper()
	admin := AdminURL(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "test_" + hex.EncodeToString(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("devtest: %v", err)
	}
	defer conn.Close(ctx)
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		sql += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("devtest: create database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	return withDatabase(admin, name)
}

// Store opens a pool on a fresh migrated database; it is closed when the
// test ends.
func Store(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{URL: Database(t)})
	if err != nil {
		t.Fatalf("devtest: open store: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}
