package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/activities/pii"
	"oakallow/activities/sealed"
	"oakallow/activities/tokens"
	"oakallow/api"
	"oakallow/dev/devenv"
	"oakallow/store"
	"oakallow/worker"
	"oakallow/workflows"
)

// options are the dev command's flags.
type options struct {
	Fresh        bool
	Port         int
	Dir          string
	TemporalPort int
	UIPort       int
	DatabaseURL  string // from DATABASE_URL; "" starts a cluster under Dir/pg
	PostgresBin  string // from OAKALLOW_PG_BIN; "" searches PATH and the usual places
}

// Credentials is written to Dir/credentials.json on first run and reused
// afterwards; the README's quickstart reads it.
type Credentials struct {
	APIURL            string `json:"api_url"`
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

// devEnv is a running dev environment.
type devEnv struct {
	log      *slog.Logger
	pg       *devenv.Postgres
	temporal *devenv.Temporal
	tc       client.Client
	st       *store.Store
	api      *api.Server
	worker   *worker.Worker
	creds    Credentials
	seeded   bool
	started  time.Time
}

func startEnv(ctx context.Context, o options, logger *slog.Logger) (_ *devEnv, err error) {
	e := &devEnv{log: logger, started: time.Now()}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()
	if o.Fresh {
		if err := os.RemoveAll(o.Dir); err != nil {
			return nil, fmt.Errorf("wipe %s: %w", o.Dir, err)
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	var st state
	readJSON(filepath.Join(dir, "state.json"), &st)

	// PostgreSQL.
	dbURL := o.DatabaseURL
	if dbURL == "" {
		port := st.PostgresPort
		if port == 0 || !portFree(port) {
			if port, err = devenv.FreePort(); err != nil {
				return nil, err
			}
		}
		e.pg, err = devenv.StartPostgres(ctx, devenv.PostgresConfig{Dir: filepath.Join(dir, "pg"), Port: port, BinDir: o.PostgresBin, Logger: logger})
		if err != nil {
			return nil, err
		}
		st.PostgresPort = port
		if err := writeJSON(filepath.Join(dir, "state.json"), st, 0o644); err != nil {
			return nil, err
		}
		if err := devenv.EnsureDatabase(ctx, e.pg.URL("postgres"), "oakallow"); err != nil {
			return nil, err
		}
		dbURL = e.pg.URL("oakallow")
	}
	if _, err := store.Migrate(ctx, dbURL); err != nil {
		return nil, err
	}
	if e.st, err = store.Open(ctx, store.Config{URL: dbURL}); err != nil {
		return nil, err
	}

	// Temporal, persisted in SQLite under dir/temporal.
	tport, uport := o.TemporalPort, o.UIPort
	if !portFree(tport) {
		tport = 0
	}
	if !portFree(uport) {
		uport = 0
	}
	e.temporal, err = devenv.StartTemporal(ctx, devenv.TemporalConfig{
		Dir: filepath.Join(dir, "temporal"), FrontendPort: tport, UIPort: uport,
		SearchAttributes: workflows.SearchAttributeTypes(), Logger: logger.With("component", "temporal"),
	})
	if err != nil {
		return nil, err
	}
	e.tc, err = client.Dial(client.Options{HostPort: e.temporal.Address(), Namespace: e.temporal.Namespace(),
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		return nil, fmt.Errorf("temporal client: %w", err)
	}

	keyring, err := loadOrCreateSigningKeys(filepath.Join(dir, "signing-keys"))
	if err != nil {
		return nil, err
	}
	box, err := loadOrCreateSecretBox(filepath.Join(dir, "secret-key"))
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
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port))
	acts, err := activities.New(activities.Deps{Store: e.st, Keyring: keyring, Temporal: e.tc, Notifier: notifier,
		HTTPClient: hc, SecretBox: box, PublicURL: "http://" + addr, Logger: logger.With("component", "activities")})
	if err != nil {
		return nil, err
	}
	if e.worker, err = worker.New(e.tc, acts, logger.With("component", "worker")); err != nil {
		return nil, err
	}
	if err := e.worker.Start(); err != nil {
		return nil, err
	}

	// The API.
	e.api, err = api.NewServer(api.Config{Addr: addr, PublicURL: "http://" + addr}, api.Deps{
		Store: e.st, Logger: logger.With("component", "api"),
		Keyring: keyring, Temporal: e.tc, Activities: acts, SecretBox: box,
		TemporalReady: func(ctx context.Context) error {
			_, err := e.tc.CheckHealth(ctx, &client.CheckHealthRequest{})
			return err
		},
	})
	if err != nil {
		return nil, err
	}

	// Seed on first run; reuse the credentials afterwards.
	credPath := filepath.Join(dir, "credentials.json")
	if readJSON(credPath, &e.creds) != nil || e.creds.StandardKey == "" {
		res, err := api.Bootstrap(ctx, e.st, api.BootstrapInput{
			TeamName: "Dev team", OwnerEmail: "owner@example.com", OwnerName: "Dev Owner", OrgName: "dev-org",
		}, time.Now())
		if err != nil {
			return nil, err
		}
		e.seeded = true
		e.creds = Credentials{OrgID: res.OrgID, ManagementKey: res.ManagementKey, StandardKey: res.StandardKey}
	}
	e.creds.APIURL = "http://" + addr
	e.creds.TemporalAddress = e.temporal.Address()
	e.creds.TemporalNamespace = e.temporal.Namespace()
	e.creds.TemporalUIURL = e.temporal.UIURL()
	e.creds.DatabaseURL = dbURL
	if err := writeJSON(credPath, e.creds, 0o600); err != nil {
		return nil, err
	}
	if err := e.api.Start(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// PrintSummary tells the developer where everything is. Raw keys are
// printed only on the run that created them.
func (e *devEnv) PrintSummary(w io.Writer) {
	fmt.Fprintf(w, "\noakallow dev environment ready in %s\n\n", time.Since(e.started).Round(10*time.Millisecond))
	fmt.Fprintf(w, "  API            %s   (docs: %s/docs)\n", e.creds.APIURL, e.creds.APIURL)
	fmt.Fprintf(w, "  Temporal       %s   namespace %s\n", e.creds.TemporalAddress, e.creds.TemporalNamespace)
	fmt.Fprintf(w, "  Temporal UI    %s\n", e.creds.TemporalUIURL)
	fmt.Fprintf(w, "  PostgreSQL     %s\n", e.creds.DatabaseURL)
	fmt.Fprintf(w, "  Org            %s\n", e.creds.OrgID)
	if e.seeded {
		fmt.Fprintf(w, "\n  Management key %s\n  Standard key   %s\n  (shown once; also saved in the credentials file)\n", e.creds.ManagementKey, e.creds.StandardKey)
	}
	fmt.Fprintf(w, "\n  Credentials    .oakallow/dev/credentials.json\n\nPress Ctrl-C to stop.\n")
}

// Stop shuts everything down in reverse order.
func (e *devEnv) Stop() {
	if e.api != nil {
		e.api.Stop()
	}
	if e.worker != nil {
		e.worker.Stop()
	}
	if e.tc != nil {
		e.tc.Close()
	}
	if e.temporal != nil {
		if err := e.temporal.Stop(); err != nil {
			e.log.Warn("temporal stop", "err", err)
		}
	}
	if e.st != nil {
		e.st.Close()
	}
	if e.pg != nil {
		e.pg.Stop()
	}
}

// loadOrCreateSigningKeys keeps the dev signing key in a 0600 file.
func loadOrCreateSigningKeys(path string) (*tokens.Keyring, error) {
	if b, err := os.ReadFile(path); err == nil {
		return tokens.ParseKeyring(string(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, err := tokens.GenerateKey("dev1")
	if err != nil {
		return nil, err
	}
	spec := tokens.FormatKeyring(k)
	if err := os.WriteFile(path, []byte(spec), 0o600); err != nil {
		return nil, err
	}
	return tokens.ParseKeyring(spec)
}

// loadOrCreateSecretBox keeps the dev secrets key in a 0600 file.
func loadOrCreateSecretBox(path string) (*sealed.Box, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		spec, err := sealed.NewKey()
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(spec), 0o600); err != nil {
			return nil, err
		}
		b = []byte(spec)
	} else if err != nil {
		return nil, err
	}
	key, err := sealed.ParseKey(string(b))
	if err != nil {
		return nil, err
	}
	return sealed.NewBox(key)
}

func portFree(port int) bool {
	if port <= 0 {
		return false
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeJSON(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
