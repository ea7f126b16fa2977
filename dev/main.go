// Command dev runs the whole of oakallow on one machine with nothing but Go
// and the PostgreSQL server binaries: a throwaway PostgreSQL cluster (or
// DATABASE_URL), an embedded Temporal server with its Web UI, migrations,
// the worker and the API, all in this one process. On first run it seeds a
// team, an owner, an org and two API keys, prints the keys once and writes
// .oakallow/dev/credentials.json. Ctrl-C stops everything. It exits 2 when
// PostgreSQL is not installed, 1 on any other start-up failure.
//
//	go run ./dev [-fresh] [-port 8080] [-dir .oakallow/dev]
//
// The environment itself lives in package oakallow/dev/devstack.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"oakallow/api/billing"
	"oakallow/dev/devstack"
)

// parseFlags turns the command line and the environment into the stack's
// options.
func parseFlags(args []string, getenv func(string) string, errOut io.Writer) (devstack.Options, error) {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(errOut)
	var o devstack.Options
	fs.BoolVar(&o.Fresh, "fresh", false, "wipe the dev directory (database, Temporal history, keys) first")
	fs.IntVar(&o.Port, "port", devstack.DefaultPort, "API port on 127.0.0.1")
	fs.StringVar(&o.Dir, "dir", devstack.DefaultDir, "where the dev environment keeps its data")
	fs.IntVar(&o.TemporalPort, "temporal-port", devstack.DefaultTemporalPort, "Temporal frontend port (a free one is picked if taken)")
	fs.IntVar(&o.UIPort, "ui-port", devstack.DefaultUIPort, "Temporal Web UI port (a free one is picked if taken)")
	if err := fs.Parse(args); err != nil {
		return devstack.Options{}, err
	}
	if fs.NArg() > 0 {
		return devstack.Options{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	o.DatabaseURL = getenv("DATABASE_URL")
	o.PostgresBin = getenv("OAKALLOW_PG_BIN")
	mode, err := billing.ParseMode(getenv("OAKALLOW_BILLING_MODE"))
	if err != nil {
		return devstack.Options{}, fmt.Errorf("OAKALLOW_BILLING_MODE: %w", err)
	}
	o.Billing = billing.Config{Mode: mode, StripeSecretKey: getenv("STRIPE_SECRET_KEY"),
		StripeWebhookSecret: getenv("STRIPE_WEBHOOK_SECRET"), StripeAPIURL: getenv("STRIPE_API_URL"),
		LowBalanceMicros: billing.DefaultLowBalanceMicros}
	if packs := getenv("OAKALLOW_CREDIT_PACKS"); packs != "" {
		if o.Billing.Packs, err = billing.ParsePacks(packs); err != nil {
			return devstack.Options{}, fmt.Errorf("OAKALLOW_CREDIT_PACKS: %w", err)
		}
	}
	return o, o.Validate()
}

func main() {
	opts, err := parseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "oakallow dev:", err)
		os.Exit(2) // a usage error, like the flag package's own
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	stack, err := devstack.Start(ctx, opts, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "oakallow dev:", err)
		os.Exit(devstack.ExitCode(err))
	}
	stack.PrintSummary(os.Stdout)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "shutting down…")
	stack.Stop()
}
