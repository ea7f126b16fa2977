// Command oakallow is the production binary: `serve` runs the API, `worker`
// runs the Temporal worker, `migrate` manages the schema. It only wires
// components together from environment variables (docs/CONFIGURATION.md);
// the embedded development environment is the separate `go run ./dev`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `oakallow — permission checks, approvals and execution tokens for AI agents

Usage:
  oakallow serve            run the API server
  oakallow worker           run the Temporal worker (approval workflows)
  oakallow migrate up       apply pending database migrations and register the
                            search attributes on the Temporal namespace
  oakallow migrate status   show the applied and latest schema version
  oakallow bootstrap -team NAME -owner-email EMAIL [-org NAME]
                            on a new installation: create the first team and
                            invite its owner; prints the one-time sign-up link
                            (and, with -org, that org's management and standard
                            API keys) once, as JSON
  oakallow reseal           after a secret key rotation: encrypt every stored secret
                            under OAKALLOW_SECRET_KEY (OAKALLOW_SECRET_KEY_PREVIOUS
                            holds the old keys); safe beside running servers
  oakallow credits grant (-team ID | -org ID) -usd AMOUNT -note WHY [-by NAME]
                  [-idempotency-key KEY]
                            add prepaid credit (never expires) to a team, audited;
                            with a key, running it again adds nothing
  oakallow keygen [id]      print a new OAKALLOW_SIGNING_KEYS entry
  oakallow verify-evidence -evidence FILE -public-key FILE
                            check offline that a reviewer's passkey signed a
                            decision: FILE is the JSON of GET
                            /v1/approvals/{id}/evidence (or one of its items) and
                            the credential's COSE public key (base64url)
  oakallow version          print the version

Configuration comes from environment variables; see docs/CONFIGURATION.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprint(os.Stderr, usage)
			fmt.Fprintln(os.Stderr, "\nerror:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "oakallow:", err)
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"missing command"}
	}
	switch args[0] {
	case "serve":
		return runServe(ctx)
	case "worker":
		return runWorker(ctx)
	case "migrate":
		if len(args) != 2 || (args[1] != "up" && args[1] != "status") {
			return usageError{"migrate takes up or status"}
		}
		return runMigrate(ctx, args[1], stdout)
	case "bootstrap":
		return runBootstrap(ctx, args[1:], stdout)
	case "credits":
		return runCredits(ctx, args[1:], stdout)
	case "reseal":
		if len(args) != 1 {
			return usageError{"reseal takes no arguments"}
		}
		return runReseal(ctx, stdout)
	case "keygen":
		id := "k1"
		if len(args) > 1 {
			id = args[1]
		}
		return runKeygen(id, stdout)
	case "verify-evidence":
		return runVerifyEvidence(args[1:], stdout)
	case "version":
		fmt.Fprintln(stdout, "oakallow", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func mustLogger() (*slog.Logger, error) {
	logger, err := newLogger()
	if err != nil {
		return nil, err
	}
	return logger.With("service", "oakallow", "version", version), nil
}
