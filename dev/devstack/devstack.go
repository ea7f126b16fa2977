package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/activities/pii"
	"oakallow/api"
	"oakallow/api/billing"
	"oakallow/api/mail"
	"oakallow/dev/devenv"
	"oakallow/store"
	"oakallow/worker"
	"oakallow/workflows"
)

// Default ports of `go run ./dev`. A taken Temporal or UI port is replaced by
// a free one; the API port is not, so the README's URLs keep working or the
// start fails loudly.
const (
	DefaultPort         = 8080
	DefaultTemporalPort = 7233
	DefaultUIPort       = 8233
	// DefaultDir is where `go run ./dev` keeps its data, relative to the
	// working directory.
	DefaultDir = ".oakallow/dev"
)

// Options configure Start. The zero value is not usable: set Dir, or
// Throwaway.
type Options struct {
	// Dir keeps the environment's data (see the package documentation). With
	// Throwaway it is the parent of the temporary directory ("" means the
	// system's temporary directory).
	Dir string
	// Throwaway runs on a fresh temporary directory that Stop removes:
	// nothing is reused from an earlier run and nothing is left behind.
	Throwaway bool
	// Fresh wipes Dir (database, Temporal history, keys, credentials) first.
	Fresh bool
	// Port is the API port on 127.0.0.1. 0 picks a free one.
	Port int
	// TemporalPort is the Temporal frontend port on 127.0.0.1. 0, or a port
	// that is taken, picks a free one.
	TemporalPort int
	// UIPort is the Temporal Web UI port on 127.0.0.1. 0, or a port that is
	// taken, picks a free one; a negative value serves no UI.
	UIPort int
	// DatabaseURL uses an existing PostgreSQL database instead of a cluster
	// under Dir/pg (`go run ./dev` reads it from DATABASE_URL).
	DatabaseURL string
	// PostgresBin is the directory holding initdb and postgres; "" searches
	// PATH and the usual places (`go run ./dev` reads OAKALLOW_PG_BIN).
	PostgresBin string
	// FastPostgres turns off fsync and full-page writes in the cluster Start
	// runs (commits stay synchronous, so a killed server loses none). For tests only; never for measurements, whose
	// figures must be those of a durable database.
	FastPostgres bool
	// MaxDBConns bounds the store's connection pool. 0 is the store's
	// default.
	MaxDBConns int32
	// Billing is the API's billing mode and Stripe account (`go run ./dev`
	// reads OAKALLOW_BILLING_MODE and the STRIPE_* variables; default
	// prepaid). The summary prints the mode.
	Billing billing.Config
}

// Validate reports every problem with the options.
func (o Options) Validate() error {
	var errs []error
	if o.Dir == "" && !o.Throwaway {
		errs = append(errs, errors.New("devstack: Dir is required unless Throwaway is set"))
	}
	if o.Throwaway && o.Fresh {
		errs = append(errs, errors.New("devstack: Fresh and Throwaway exclude each other (a throwaway directory is always fresh)"))
	}
	if o.Port < 0 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("devstack: API port %d is out of range 0-65535", o.Port))
	}
	if o.TemporalPort < 0 || o.TemporalPort > 65535 {
		errs = append(errs, fmt.Errorf("devstack: Temporal port %d is out of range 0-65535", o.TemporalPort))
	}
	if o.UIPort > 65535 {
		errs = append(errs, fmt.Errorf("devstack: UI port %d is out of range", o.UIPort))
	}
	if o.MaxDBConns < 0 {
		errs = append(errs, fmt.Errorf("devstack: MaxDBConns %d is negative", o.MaxDBConns))
	}
	return errors.Join(errs...)
}

// ExitCode is the exit status of `go run ./dev` for a start-up error: 2 when
// PostgreSQL is not installed (the message names the package to install), 1
// for anything else.
func ExitCode(err error) int {
	if errors.Is(err, devenv.ErrNoPostgres) {
		return 2
	}
	return 1
}

// Credentials is written to Dir/credentials.json on first run and reused
// afterwards; the README's quickstart reads it.
type Credentials struct {
	APIURL string `json:"api_url"`
	// MCPURL is the MCP connector's URL for clients: at localhost, as the
	// OAuth resource and issuer are (a client that connects to 127.0.0.1
	// finds the protected-resource metadata naming another resource and
	// refuses to sign in, RFC 9728 §3.3).
	MCPURL            string `json:"mcp_url"`
	OrgID             string `json:"org_id"`
	ManagementKey     string `json:"management_key"`
	StandardKey       string `json:"standard_key"`
	TemporalAddress   string `json:"temporal_address"`
	TemporalNamespace string `json:"temporal_namespace"`
	TemporalUIURL     string `json:"temporal_ui_url"`
	DatabaseURL       string `json:"database_url"`
}

// state remembers ports between runs so URLs stay stable.
type state struct {
	PostgresPort int `json:"postgres_port"`
}

// Stack is a running dev environment. Stop it with Stop.
type Stack struct {
	log       *slog.Logger
	dir       string // absolute data directory
	shownDir  string // Dir as the caller gave it, for messages
	throwaway bool
	pg        *devenv.Postgres
	temporal  *devenv.Temporal
	tc        client.Client
	st        *store.Store
	api       *api.Server
	worker    *worker.Worker
	creds     Credentials
	publicURL string // links, OAuth issuer, passkeys: localhost (DashboardURL)
	seeded    bool
	billing   billing.Config
	started   time.Time
	ready     time.Duration
	stopOnce  sync.Once
}

// Start brings the environment up: PostgreSQL, migrations, Temporal, the
// worker, the API, and on first run the seed. It returns once the API
// listens. On error it stops whatever it had started. ctx bounds the start;
// the API's background work is detached from it.
func Start(ctx context.Context, o Options, logger *slog.Logger) (_ *Stack, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tuneGC(os.Getenv)
	s := &Stack{log: logger, started: time.Now(), shownDir: o.Dir, throwaway: o.Throwaway, billing: o.Billing}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if err := s.prepareDir(o); err != nil {
		return nil, err
	}
	var st state
	_ = readJSON(filepath.Join(s.dir, "state.json"), &st) // absent on first run

	// PostgreSQL.
	dbURL := o.DatabaseURL
	if dbURL == "" {
		port := st.PostgresPort
		if port == 0 || !portFree(port) {
			if port, err = devenv.FreePort(); err != nil {
				return nil, err
			}
		}
		s.pg, err = devenv.StartPostgres(ctx, devenv.PostgresConfig{Dir: filepath.Join(s.dir, "pg"), Port: port,
			BinDir: o.PostgresBin, Fast: o.FastPostgres, Logger: logger})
		if err != nil {
			return nil, err
		}
		st.PostgresPort = port
		if err := writeJSON(filepath.Join(s.dir, "state.json"), st, 0o644); err != nil {
			return nil, err
		}
		if err := devenv.EnsureDatabase(ctx, s.pg.URL("postgres"), "oakallow"); err != nil {
			return nil, err
		}
		dbURL = s.pg.URL("oakallow")
	}
	// The secret key seals stored secrets; migration 013 needs it to seal
	// those a dev database from before it kept in clear.
	box, err := loadOrCreateSecretBox(filepath.Join(s.dir, "secret-key"))
	if err != nil {
		return nil, err
	}
	if _, err := store.Migrate(ctx, dbURL, store.SealWith(box)); err != nil {
		return nil, err
	}
	if s.st, err = store.Open(ctx, store.Config{URL: dbURL, MaxConns: o.MaxDBConns}); err != nil {
		return nil, err
	}

	// Temporal, persisted in SQLite under dir/temporal.
	tport, uport := o.TemporalPort, o.UIPort
	if !portFree(tport) {
		tport = 0
	}
	if uport >= 0 && !portFree(uport) {
		uport = 0
	}
	s.temporal, err = devenv.StartTemporal(ctx, devenv.TemporalConfig{
		Dir: filepath.Join(s.dir, "temporal"), FrontendPort: tport, UIPort: max(uport, -1),
		SearchAttributes: workflows.SearchAttributeTypes(), Logger: logger.With("component", "temporal"),
	})
	if err != nil {
		return nil, err
	}
	// The server is in this process and reached over loopback, so the SDK's default gzip
	// of every request (and of the server's answers) is CPU spent for nothing: 3 % of the
	// process's CPU in an approvals load run (docs/PERFORMANCE.md).
	s.tc, err = client.Dial(client.Options{HostPort: s.temporal.Address(), Namespace: s.temporal.Namespace(),
		Logger:            sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
		ConnectionOptions: client.ConnectionOptions{GrpcCompression: &client.GrpcCompressionNone{}}})
	if err != nil {
		return nil, fmt.Errorf("temporal client: %w", err)
	}

	keyring, err := loadOrCreateSigningKeys(filepath.Join(s.dir, "signing-keys"))
	if err != nil {
		return nil, err
	}
	// The worker, in this process. Dev receivers live on this machine, so
	// webhooks may reach loopback and plain http here (never in production
	// unless OAKALLOW_WEBHOOKS_ALLOW_PRIVATE is set).
	hc, err := notify.NewHTTPClient(notify.HTTPClientConfig{AllowInsecure: true, AllowPrivateAddresses: true})
	if err != nil {
		return nil, err
	}
	notifier, err := notify.New(notify.Config{HTTPClient: hc, Scrub: pii.Scrub, Logger: logger.With("component", "notify")})
	if err != nil {
		return nil, err
	}
	port := o.Port
	if port == 0 {
		// The public URL goes into the activities before the API listens,
		// so the port is chosen now.
		if port, err = devenv.FreePort(); err != nil {
			return nil, err
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// Links, the OAuth issuer and passkeys name localhost, not the address
	// the API listens on: WebAuthn takes no IP address as relying party, so
	// a browser sent to http://127.0.0.1 (the dashboard, Checkout's return,
	// the MCP connector's sign-in) could enroll and use no passkey there.
	publicURL := DashboardURL(port)
	s.publicURL = publicURL
	// One registry for the API's and the worker's series, served at /metrics.
	reg := prometheus.NewRegistry()
	metrics, err := activities.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	acts, err := activities.New(activities.Deps{Store: s.st, Keyring: keyring, Temporal: s.tc, Notifier: notifier,
		HTTPClient: hc, SecretBox: box, PublicURL: publicURL, Metrics: metrics, Logger: logger.With("component", "activities")})
	if err != nil {
		return nil, err
	}
	if s.worker, err = worker.New(s.tc, acts, logger.With("component", "worker")); err != nil {
		return nil, err
	}
	if err := s.worker.Start(); err != nil {
		return nil, err
	}

	// The API. Mail goes to an in-process mailbox, shown on the log and at
	// /dev/mailbox; anyone may sign up, as on the hosted product.
	mailbox := mail.NewMailbox(logger.With("component", "mailbox"))
	s.api, err = api.NewServer(api.Config{Addr: addr, PublicURL: publicURL, AllowPrivateWebhooks: true,
		Accounts: api.AccountsConfig{OpenSignUp: true}}, api.Deps{
		Mailer: mailbox, DevMailbox: mailbox,
		Store: s.st, Logger: logger.With("component", "api"),
		Keyring: keyring, Temporal: s.tc, Activities: acts, SecretBox: box, Registry: reg, Billing: o.Billing,
		TemporalReady: func(ctx context.Context) error {
			_, err := s.tc.CheckHealth(ctx, &client.CheckHealthRequest{})
			return err
		},
	})
	if err != nil {
		return nil, err
	}

	// Seed on first run; reuse the credentials afterwards.
	credPath := filepath.Join(s.dir, "credentials.json")
	if readJSON(credPath, &s.creds) != nil || s.creds.StandardKey == "" {
		res, err := api.Bootstrap(ctx, s.st, api.BootstrapInput{
			TeamName: "Dev team", OwnerEmail: "owner@example.com", OwnerName: "Dev Owner", OrgName: "dev-org",
		}, time.Now())
		if err != nil {
			return nil, err
		}
		s.seeded = true
		s.creds = Credentials{OrgID: res.OrgID, ManagementKey: res.ManagementKey, StandardKey: res.StandardKey}
	}
	s.creds.APIURL = "http://" + addr
	s.creds.MCPURL = publicURL + "/mcp"
	s.creds.TemporalAddress = s.temporal.Address()
	s.creds.TemporalNamespace = s.temporal.Namespace()
	s.creds.TemporalUIURL = s.temporal.UIURL()
	s.creds.DatabaseURL = dbURL
	if err := writeJSON(credPath, s.creds, 0o600); err != nil {
		return nil, err
	}
	if err := s.api.Start(ctx); err != nil {
		return nil, err
	}
	s.ready = time.Since(s.started)
	return s, nil
}

// prepareDir creates (or wipes, or makes up) the data directory.
func (s *Stack) prepareDir(o Options) error {
	if o.Throwaway {
		if o.Dir != "" {
			if err := os.MkdirAll(o.Dir, 0o755); err != nil {
				return err
			}
		}
		dir, err := os.MkdirTemp(o.Dir, "oakallow-dev-")
		if err != nil {
			return fmt.Errorf("throwaway dir: %w", err)
		}
		// When running as root PostgreSQL runs as "postgres" and must be
		// able to reach its data directory inside.
		if err := os.Chmod(dir, 0o755); err != nil {
			_ = os.RemoveAll(dir)
			return fmt.Errorf("throwaway dir: %w", err)
		}
		s.dir, s.shownDir = dir, dir
		return nil
	}
	if o.Fresh {
		if err := os.RemoveAll(o.Dir); err != nil {
			return fmt.Errorf("wipe %s: %w", o.Dir, err)
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	s.dir = dir
	return nil
}

// Credentials are the environment's URLs and seeded keys.
func (s *Stack) Credentials() Credentials { return s.creds }

// Seeded reports whether this start created the team, org and keys (the
// first run on a directory).
func (s *Stack) Seeded() bool { return s.seeded }

// Dir is the absolute data directory.
func (s *Stack) Dir() string { return s.dir }

// Store is the environment's store, for tools that check what the API wrote.
func (s *Stack) Store() *store.Store { return s.st }

// Temporal is the environment's Temporal client.
func (s *Stack) Temporal() client.Client { return s.tc }

// ReadyIn is how long Start took.
func (s *Stack) ReadyIn() time.Duration { return s.ready }

// DashboardURL is the dev environment's public URL for an API on port:
// localhost, where browsers allow passkeys over plain http.
func DashboardURL(port int) string { return "http://localhost:" + strconv.Itoa(port) }

// PrintSummary tells the developer where everything is. Raw keys are
// printed only on the run that created them.
func (s *Stack) PrintSummary(w io.Writer) {
	c := s.creds
	fmt.Fprintf(w, "\noakallow dev environment ready in %s\n\n", s.ready.Round(10*time.Millisecond))
	fmt.Fprintf(w, "  Dashboard      %s   (start here: sign up with any e-mail address; open it at localhost, passkeys refuse an IP address)\n", s.publicURL)
	fmt.Fprintf(w, "  Mailbox        %s/dev/mailbox   (the e-mailed sign-in codes: no mail leaves the dev stack)\n", s.publicURL)
	fmt.Fprintf(w, "  API            %s   (docs: %s/docs)\n", c.APIURL, c.APIURL)
	fmt.Fprintf(w, "  MCP            %s   (connect MCP clients here, at localhost: the OAuth issuer and resource name it)\n", c.MCPURL)
	fmt.Fprintf(w, "  Temporal       %s   namespace %s\n", c.TemporalAddress, c.TemporalNamespace)
	if c.TemporalUIURL != "" {
		fmt.Fprintf(w, "  Temporal UI    %s\n", c.TemporalUIURL)
	}
	fmt.Fprintf(w, "  PostgreSQL     %s\n", c.DatabaseURL)
	fmt.Fprintf(w, "  Org            %s\n", c.OrgID)
	fmt.Fprintf(w, "  Billing        %s\n", billingSummary(s.billing, c.OrgID))
	if s.seeded {
		fmt.Fprintf(w, "\n  Management key %s\n  Standard key   %s\n  (shown once; also saved in the credentials file)\n", c.ManagementKey, c.StandardKey)
	}
	fmt.Fprintf(w, "\n  Credentials    %s\n\nPress Ctrl-C to stop.\n", filepath.Join(s.shownDir, "credentials.json"))
}

// billingSummary says which billing mode the API runs in and what it means.
func billingSummary(cfg billing.Config, orgID string) string {
	switch cfg.Mode {
	case billing.ModeStripe:
		where := "Stripe"
		if cfg.StripeAPIURL != "" {
			where = cfg.StripeAPIURL
		}
		return fmt.Sprintf("mode stripe: credit is bought with POST /v1/billing/checkout (%s)", where)
	case billing.ModeOff:
		return "mode off: calls are metered, never refused with 402"
	default:
		return "mode prepaid: add credit with `go run ./cmd/oakallow credits grant -org " + orgID + " -usd 10 -note why` (DATABASE_URL set)"
	}
}

// Stop shuts everything down in reverse order and, for a throwaway
// environment, removes its directory. Calling it again does nothing.
func (s *Stack) Stop() {
	s.stopOnce.Do(func() {
		if s.api != nil {
			s.api.Stop()
		}
		if s.worker != nil {
			s.worker.Stop()
		}
		if s.tc != nil {
			s.tc.Close()
		}
		if s.temporal != nil {
			if err := s.temporal.Stop(); err != nil {
				s.log.Warn("temporal stop", "err", err)
			}
		}
		if s.st != nil {
			s.st.Close()
		}
		if s.pg != nil {
			s.pg.Stop()
		}
		if s.throwaway && s.dir != "" {
			if err := os.RemoveAll(s.dir); err != nil {
				s.log.Warn("remove throwaway dir", "dir", s.dir, "err", err)
			}
		}
	})
}

// The garbage collector's settings for a process that runs the stack, unless the environment
// sets GOGC or GOMEMLIMIT. Everything runs in this one process — the embedded Temporal server
// with gRPC between its services and SQLite in Go, the worker, the API — and it allocates
// heavily: at Go's default GOGC=100 the collector took 9-10 % of the process's CPU with
// approvals at 25/s (docs/PERFORMANCE.md). A heap goal four times the live heap instead of
// twice collects a third as often, for a few hundred MB more; the soft limit keeps a large
// live heap from growing the process without bound (the collector works harder near it).
const (
	gcPercent   = 400
	gcSoftLimit = 2 << 30 // bytes
)

// tuneGC applies gcPercent and gcSoftLimit where getenv does not set them.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(gcSoftLimit)
	}
}
