// Command dev runs the whole of oakallow on one machine with nothing but Go
// and the PostgreSQL server binaries: a throwaway PostgreSQL cluster (or
// DATABASE_URL), an embedded Temporal server with its Web UI, migrations,
// the worker and the API, all in this one process. On first run it seeds a
// team, an owner, an org and two API keys, prints the keys once and writes
// .oakallow/dev/credentials.json. Ctrl-C stops everything.
//
//	go run ./dev [-fresh] [-port 8080] [-dir .oakallow/dev]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"oakallow/dev/devenv"
)

// exitCode is 2 when PostgreSQL is not installed (the message names the
// package to install), 1 for any other start-up failure.
func exitCode(err error) int {
	if errors.Is(err, devenv.ErrNoPostgres) {
		return 2
	}
	return 1
}

func main() {
	var opts options
	flag.BoolVar(&opts.Fresh, "fresh", false, "wipe the dev directory (database, Temporal history, keys) first")
	flag.IntVar(&opts.Port, "port", 8080, "API port on 127.0.0.1")
	flag.StringVar(&opts.Dir, "dir", ".oakallow/dev", "where the dev environment keeps its data")
	flag.IntVar(&opts.TemporalPort, "temporal-port", 7233, "Temporal frontend port (a free one is picked if taken)")
	flag.IntVar(&opts.UIPort, "ui-port", 8233, "Temporal Web UI port (a free one is picked if taken)")
	flag.Parse()
	opts.DatabaseURL = os.Getenv("DATABASE_URL")
	opts.PostgresBin = os.Getenv("OAKALLOW_PG_BIN")

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	env, err := startEnv(ctx, opts, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "oakallow dev:", err)
		os.Exit(exitCode(err))
	}
	env.PrintSummary(os.Stdout)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "shutting down…")
	env.Stop()
}
