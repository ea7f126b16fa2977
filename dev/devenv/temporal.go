package devenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	tlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	"go.temporal.io/server/common/membership/static"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/persistence/sql"
	"go.temporal.io/server/common/persistence/sql/sqlplugin"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/common/resolver"
	"go.temporal.io/server/common/searchattribute/sadefs"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"

	"oakallow/worker/searchattrs"
)

const (
	temporalDefaultNamespace = "default"
	temporalDefaultHost      = "127.0.0.1"
	// temporalDBFile and temporalLockFile live in TemporalConfig.Dir.
	temporalDBFile   = "temporal.db"
	temporalLockFile = "temporal.lock"
	// temporalClusterName names the single local cluster, as the Temporal CLI dev server does.
	temporalClusterName = "active"
	// temporalStartTimeout bounds StartTemporal when the caller's context has no earlier deadline.
	temporalStartTimeout = time.Minute
	// temporalNamespaceRefresh is how often each service reloads namespaces (and so the aliases
	// of custom search attributes) from the database. StartTemporal waits for one such reload
	// after adding search attributes to an existing namespace.
	temporalNamespaceRefresh = time.Second
	// temporalLogLevel is the least severe Temporal server log passed on to TemporalConfig.Logger.
	temporalLogLevel = slog.LevelWarn
	// temporalSilentLevel is above every level the server logs at: used once Stop has begun.
	temporalSilentLevel = slog.LevelError + 100
)

var (
	// temporalNamespaceRE is stricter than Temporal's own rule; it is enough for our namespaces
	// and keeps the name safe to print and to put in a visibility query.
	temporalNamespaceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)
	// temporalSearchAttributeRE keeps custom search attribute names plain identifiers, so they can
	// appear unquoted in visibility queries.
	temporalSearchAttributeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,254}$`)
)

// TemporalConfig configures StartTemporal. The zero value is valid: an in-memory server for the
// "default" namespace on 127.0.0.1, with free ports and the Web UI on.
type TemporalConfig struct {
	// Dir is the directory holding the SQLite database (temporal.db, WAL journal mode) and its
	// lock file (temporal.lock). It is created with mode 0700 when missing. The first start sets
	// up the schema and the namespace; later starts reuse them and their data. Only one server
	// may use a Dir at a time. Default "": the database lives in memory and is lost on Stop,
	// which is what tests want. The path must not contain '?', '#' or '%' (SQLite URI syntax).
	Dir string
	// Namespace is created at start (if it does not exist yet) and reported by Namespace.
	// Letters, digits, '.', '_' and '-', starting with a letter or digit. Default "default".
	Namespace string
	// Host is the IP address every listener binds to: the frontend and internal gRPC services
	// and the Web UI. It must be a loopback address, because the server has neither
	// authentication nor TLS. Default "127.0.0.1".
	Host string
	// FrontendPort is the port of the frontend gRPC service, which clients and workers dial.
	// Default 0: a free port is picked.
	FrontendPort int
	// UIPort is the port of the Temporal Web UI. Default 0: a free port is picked; -1 runs no UI.
	UIPort int
	// SearchAttributes are custom search attributes registered on Namespace at every start.
	// Attributes already registered with the same type are kept; one registered with another
	// type is an error. Names are identifiers (letter first, then letters, digits, '_') and must
	// not be Temporal's own. SQLite visibility has a fixed number of slots per type: 10 Keyword,
	// 3 each of Text, Int, Double, Bool, Datetime and KeywordList. Default: none.
	SearchAttributes map[string]enums.IndexedValueType
	// Logger receives the Temporal server's logs, tagged component=temporal, and
	// StartTemporal's own messages. Only the server's warnings and errors are passed on (it is
	// chatty at info), and none once Stop has begun (shutdown noise). Default slog.Default().
	Logger *slog.Logger
}

// Validate reports every problem with the configuration. Zero values stand for their defaults.
func (c TemporalConfig) Validate() error {
	var errs []error
	if c.Host != "" {
		if ip := net.ParseIP(c.Host); ip == nil || !ip.IsLoopback() {
			errs = append(errs, fmt.Errorf("host %q is not a loopback IP address", c.Host))
		}
	}
	if c.FrontendPort < 0 || c.FrontendPort > 65535 {
		errs = append(errs, fmt.Errorf("frontend port %d is out of range 0-65535", c.FrontendPort))
	}
	if c.UIPort < -1 || c.UIPort > 65535 {
		errs = append(errs, fmt.Errorf("UI port %d is out of range -1-65535", c.UIPort))
	}
	if c.FrontendPort > 0 && c.FrontendPort == c.UIPort {
		errs = append(errs, fmt.Errorf("frontend and UI share port %d", c.FrontendPort))
	}
	if c.Namespace != "" {
		if !temporalNamespaceRE.MatchString(c.Namespace) {
			errs = append(errs, fmt.Errorf("namespace %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", c.Namespace))
		} else if c.Namespace == primitives.SystemLocalNamespace {
			errs = append(errs, fmt.Errorf("namespace %q is reserved by Temporal", c.Namespace))
		}
	}
	if strings.ContainsAny(c.Dir, "?#%") {
		errs = append(errs, fmt.Errorf("dir %q contains '?', '#' or '%%', which SQLite would read as URI syntax", c.Dir))
	}
	for _, name := range slices.Sorted(maps.Keys(c.SearchAttributes)) {
		typ := c.SearchAttributes[name]
		switch {
		case !temporalSearchAttributeRE.MatchString(name):
			errs = append(errs, fmt.Errorf("search attribute %q: use a letter, then letters, digits and '_'", name))
		case sadefs.IsReserved(name):
			errs = append(errs, fmt.Errorf("search attribute %q is reserved by Temporal", name))
		}
		if _, known := enums.IndexedValueType_name[int32(typ)]; !known || typ == enums.INDEXED_VALUE_TYPE_UNSPECIFIED {
			errs = append(errs, fmt.Errorf("search attribute %q has no valid type (%d)", name, typ))
		}
	}
	return errors.Join(errs...)
}

func (c TemporalConfig) withDefaults() TemporalConfig {
	if c.Namespace == "" {
		c.Namespace = temporalDefaultNamespace
	}
	if c.Host == "" {
		c.Host = temporalDefaultHost
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Temporal is a running in-process Temporal server, started by StartTemporal.
type Temporal struct {
	address   string
	namespace string
	uiURL     string

	logger   *slog.Logger   // StartTemporal's own messages
	logLevel *slog.LevelVar // threshold for the server's logs; silences them once Stop begins

	lock   *os.File        // flock on Dir/temporal.lock; nil in memory
	server temporal.Server // nil until it has started
	ui     *uiserver.Server
	uiDone chan struct{} // closed when the UI server's Start returns

	stopOnce sync.Once
	stopErr  error
}

// StartTemporal starts a Temporal server in this process and returns once its frontend answers
// for the configured namespace and the configured search attributes can be used. ctx bounds the
// start only (at most a minute); the server runs until Stop. On error StartTemporal stops
// whatever it had started.
func StartTemporal(ctx context.Context, cfg TemporalConfig) (*Temporal, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("temporal config: %w", err)
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, temporalStartTimeout)
	defer cancel()

	began := time.Now()
	t := &Temporal{
		namespace: cfg.Namespace,
		logger:    cfg.Logger,
		logLevel:  new(slog.LevelVar),
	}
	t.logLevel.Set(temporalLogLevel)
	if err := t.start(ctx, cfg); err != nil {
		return nil, errors.Join(err, t.Stop())
	}
	t.logger.Info("temporal server started",
		slog.String("address", t.address),
		slog.String("namespace", t.namespace),
		slog.String("ui", t.uiURL),
		slog.String("dir", cfg.Dir),
		slog.Duration("took", time.Since(began)))
	return t, nil
}

// Address returns the host:port of the frontend gRPC service, for client.Options.HostPort.
func (t *Temporal) Address() string { return t.address }

// Namespace returns the namespace created at start.
func (t *Temporal) Namespace() string { return t.namespace }

// UIURL returns the base URL of the Web UI, or "" when the UI is disabled.
func (t *Temporal) UIURL() string { return t.uiURL }

// Stop shuts down the UI and the server and releases the database directory. It is safe to call
// more than once; later calls return the first call's result.
func (t *Temporal) Stop() error {
	t.stopOnce.Do(func() {
		// From here on the services log errors and warnings about cancelled polls and
		// transactions, some even after Stop has returned (goroutines winding down). They are
		// expected and would only bury real problems, which Stop returns instead.
		t.logLevel.Set(temporalSilentLevel)
		var errs []error
		if t.ui != nil {
			t.ui.Stop()
			<-t.uiDone
		}
		if t.server != nil {
			if err := t.server.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("stop temporal server: %w", err))
			}
		}
		if t.lock != nil {
			// Closing the descriptor releases the flock.
			if err := t.lock.Close(); err != nil {
				errs = append(errs, fmt.Errorf("release %s: %w", t.lock.Name(), err))
			}
		}
		t.stopErr = errors.Join(errs...)
	})
	return t.stopErr
}

// start brings the pieces up in order, recording each in t so that Stop can undo a partial start.
func (t *Temporal) start(ctx context.Context, cfg TemporalConfig) error {
	dbPath := ""
	if cfg.Dir != "" {
		dir, err := filepath.Abs(cfg.Dir)
		if err != nil {
			return fmt.Errorf("temporal dir: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create temporal dir: %w", err)
		}
		if t.lock, err = lockTemporalDir(dir); err != nil {
			return err
		}
		dbPath = filepath.Join(dir, temporalDBFile)
	}

	ports, err := pickTemporalPorts(cfg)
	if err != nil {
		return err
	}
	t.address = net.JoinHostPort(cfg.Host, strconv.Itoa(ports.frontend))

	sqlCfg := temporalSQLConfig(dbPath)
	if dbPath != "" {
		if err := setUpTemporalSchema(sqlCfg); err != nil {
			return fmt.Errorf("temporal schema in %s: %w", dbPath, err)
		}
		if err := slimVisibilityIndexes(ctx, dbPath); err != nil {
			return fmt.Errorf("temporal visibility indexes in %s: %w", dbPath, err)
		}
	}
	// Creating the namespace before the server starts, with its search attributes, means every
	// service loads it at start-up: nothing to wait for. On a restart this is a no-op and
	// ensureSearchAttributes adds whatever is new.
	nsCfg, err := sqliteschema.NewNamespaceConfig(temporalClusterName, cfg.Namespace, false, cfg.SearchAttributes)
	if err != nil {
		return fmt.Errorf("namespace %q: %w", cfg.Namespace, err)
	}
	if err := sqliteschema.CreateNamespaces(sqlCfg, nsCfg); err != nil {
		return fmt.Errorf("create namespace %q: %w", cfg.Namespace, err)
	}

	server, err := temporal.NewServer(temporalServerOptions(cfg, ports, sqlCfg, t.logLevel)...)
	if err != nil {
		return fmt.Errorf("build temporal server: %w", err)
	}
	// After a failed Start there is nothing Stop could do: the server's stop hook only runs
	// for a start that succeeded. Services that had started before the failing one are left
	// behind until the process exits; the server offers no way to stop them.
	if err := server.Start(); err != nil {
		return fmt.Errorf("start temporal server: %w", err)
	}
	t.server = server

	c, err := dialTemporal(ctx, t.address, t.namespace, newTemporalLogger(t.logger, t.logLevel).SLog())
	if err != nil {
		return err
	}
	defer c.Close()
	if err := t.ensureSearchAttributes(ctx, c, cfg.SearchAttributes); err != nil {
		return err
	}

	if ports.ui > 0 {
		if err := t.startUI(ctx, cfg, ports.ui); err != nil {
			return err
		}
	}
	return nil
}

// lockTemporalDir takes an exclusive flock on dir/temporal.lock, so a second server (in this
// process or another) cannot open the same database and fight over its history shard. The
// kernel drops the lock when the holder exits, so a crash leaves nothing stale behind.
func lockTemporalDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, temporalLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another Temporal server is using %s", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// temporalPorts are the ports of one server. Only the frontend gRPC port and the UI are for
// callers; the services talk to each other on history, matching and worker. The frontend HTTP
// API is on because without it the server warns at every start that Nexus is unavailable.
type temporalPorts struct {
	frontend, frontendHTTP, history, matching, worker, ui int
}

func pickTemporalPorts(cfg TemporalConfig) (temporalPorts, error) {
	var p temporalPorts
	var err error
	pick := func(want int, what string) int {
		if err != nil {
			return 0
		}
		if want > 0 {
			// Checked now so that a taken port is a clear error rather than a failure deep in
			// the server (or, for the UI, a log.Fatal inside ui-server).
			if e := checkLoopbackPortFree(cfg.Host, want); e != nil {
				err = fmt.Errorf("%s port %d is not free: %w", what, want, e)
			}
			return want
		}
		port, e := reserveLoopbackPort(cfg.Host)
		if e != nil {
			err = fmt.Errorf("pick %s port: %w", what, e)
		}
		return port
	}
	p.frontend = pick(cfg.FrontendPort, "frontend")
	p.frontendHTTP = pick(0, "frontend HTTP")
	p.history = pick(0, "history")
	p.matching = pick(0, "matching")
	p.worker = pick(0, "worker")
	if cfg.UIPort >= 0 {
		p.ui = pick(cfg.UIPort, "UI")
	}
	return p, err
}

// reserveLoopbackPort returns a port that is free now and that the kernel will not hand to
// anyone else asking for a free port for a while, although the server may still bind it
// explicitly. It connects to its own listener and closes the accepted side first: that side's
// port then sits in TIME_WAIT, which bind(port 0) avoids but SO_REUSEADDR (which Go sets on
// listeners) permits. Without this, parallel tests picking ports at the same time collide.
func reserveLoopbackPort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, fmt.Errorf("listener address %v is not TCP", l.Addr())
	}
	dialed, err := net.Dial("tcp", addr.String())
	if err != nil {
		return 0, err
	}
	defer func() { _ = dialed.Close() }()
	accepted, err := l.Accept()
	if err != nil {
		return 0, err
	}
	if err := accepted.Close(); err != nil {
		return 0, err
	}
	return addr.Port, nil
}

func checkLoopbackPortFree(host string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return l.Close()
}

// temporalSQLConfig describes the SQLite database: the file at dbPath, or a private in-memory
// database when dbPath is empty.
//
// The sqlite plugin keeps one connection per distinct DSN for the life of the process (it never
// closes them), shared by every server and helper using that DSN. So an in-memory database needs
// a name of its own, and a restart on the same file reuses the open connection. MaxConns stays 0,
// which the plugin turns into a single connection: SQLite allows one writer, and
// setUpTemporalSchema relies on every statement using that one connection.
func temporalSQLConfig(dbPath string) *config.SQL {
	cfg := &config.SQL{PluginName: sqliteplugin.PluginName}
	if dbPath == "" {
		cfg.DatabaseName = "oakallow-temporal-" + primitives.NewUUID().String()
		// The plugin creates the schema itself when it opens an in-memory database.
		cfg.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		return cfg
	}
	cfg.DatabaseName = dbPath
	// Attributes the plugin does not know as URI parameters become "PRAGMA key=value" on every
	// new connection. In WAL mode a commit appends to the log instead of rewriting pages, and
	// another process (a sqlite3 shell poking at the data) can read while the server writes.
	// With synchronous=NORMAL a commit costs no fsync: a crash of the process loses nothing, a
	// power cut may lose the last commits but never corrupts the file; fine for development.
	// busy_timeout makes the server wait for such an outside reader's lock instead of failing.
	cfg.ConnectAttributes = map[string]string{
		"mode":         "rwc",
		"journal_mode": "wal",
		"synchronous":  "normal",
		"busy_timeout": "5000",
	}
	return cfg
}

// setUpTemporalSchema creates Temporal's tables in the SQLite file unless they are already there.
// The statements run in one transaction, so a crash part-way leaves an empty database that the
// next start sets up again, never a half-made schema that fails later in obscure ways.
func setUpTemporalSchema(cfg *config.SQL) (err error) {
	db, err := sql.NewSQLAdminDB(sqlplugin.DbKindUnknown, cfg, resolver.NewNoopResolver(), tlog.NewNoopLogger(), metrics.NoopMetricsHandler)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer func() { err = errors.Join(err, db.Close()) }()

	tables, err := db.ListTables(cfg.DatabaseName)
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	if slices.Contains(tables, "namespaces") {
		return nil
	}
	if len(tables) > 0 {
		return fmt.Errorf("database has tables %v but not Temporal's; refusing to touch it", tables)
	}
	// The plugin gives this database a single connection (MaxConns 0), so BEGIN, the schema
	// statements and COMMIT all run on it. Were that ever not so, COMMIT would fail loudly.
	if err := db.Exec("BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := sqliteschema.SetupSchemaOnDB(db); err != nil {
		return errors.Join(fmt.Errorf("create tables: %w", err), db.Exec("ROLLBACK"))
	}
	if err := db.Exec("COMMIT"); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// temporalServerOptions assembles the server the way the Temporal CLI dev server does: all four
// services in this process, static membership, SQLite for persistence and visibility, no
// archival, no metrics, no pprof, and no authorizer (hence loopback only).
func temporalServerOptions(cfg TemporalConfig, ports temporalPorts, sqlCfg *config.SQL, level *slog.LevelVar) []temporal.ServerOption {
	hostPort := func(port int) string { return net.JoinHostPort(cfg.Host, strconv.Itoa(port)) }
	service := func(port int) config.Service {
		return config.Service{RPC: config.RPC{GRPCPort: port, BindOnIP: cfg.Host}}
	}
	frontend := service(ports.frontend)
	frontend.RPC.HTTPPort = ports.frontendHTTP
	const store = "sqlite-default"

	conf := &config.Config{}
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = cfg.Host
	// Global.Metrics stays nil: the server then uses a no-op metrics handler, so servers in one
	// process share no registry and open no port.
	conf.Persistence = config.Persistence{
		DefaultStore:     store,
		VisibilityStore:  store,
		NumHistoryShards: 1,
		DataStores:       map[string]config.DataStore{store: {SQL: sqlCfg}},
	}
	conf.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        temporalClusterName,
		CurrentClusterName:       temporalClusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			temporalClusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             hostPort(ports.frontend),
				HTTPAddress:            hostPort(ports.frontendHTTP),
				// A fresh id each start is fine: once the database holds cluster metadata, the
				// stored id wins.
				ClusterID: primitives.NewUUID().String(),
			},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	conf.Services = map[string]config.Service{
		string(primitives.FrontendService): frontend,
		string(primitives.HistoryService):  service(ports.history),
		string(primitives.MatchingService): service(ports.matching),
		string(primitives.WorkerService):   service(ports.worker),
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	// The worker service (schedules, batch operations) is itself a client of the frontend.
	conf.PublicClient.HostPort = hostPort(ports.frontend)

	dyn := dynamicconfig.StaticClient{
		dynamicconfig.NamespaceCacheRefreshInterval.Key(): temporalNamespaceRefresh,
		// The default visibility limit (10 RPS) is tight for the Web UI plus tests polling.
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		// The default cache of 128k workflow states is sized for production hosts.
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key(): 8192,
		// The queue processors poll at most 20 times a second by default, so
		// every workflow task after an activity waited 30–40 ms on one host
		// with one shard: approval created → webhook was 147 ms p50, decide →
		// token 199 ms (loadapprovals). Polling as fast as there is work cuts
		// both to ≈ 25 / 46 ms.
		dynamicconfig.TransferProcessorMaxPollRPS.Key():   1000,
		dynamicconfig.TimerProcessorMaxPollRPS.Key():      1000,
		dynamicconfig.VisibilityProcessorMaxPollRPS.Key(): 1000,
		// External payloads (the SDK's external storage) are not used here. With the
		// feature on, history walks every payload of every event batch it persists to
		// total their external sizes, a statistic nothing reads: 1–2 % of the process's
		// CPU under dev/loadapprovals (docs/PERFORMANCE.md).
		dynamicconfig.ExternalPayloadsEnabled.Key(): false,
	}

	hosts := map[primitives.ServiceName]static.Hosts{
		primitives.FrontendService: static.SingleLocalHost(hostPort(ports.frontend)),
		primitives.HistoryService:  static.SingleLocalHost(hostPort(ports.history)),
		primitives.MatchingService: static.SingleLocalHost(hostPort(ports.matching)),
		primitives.WorkerService:   static.SingleLocalHost(hostPort(ports.worker)),
	}
	return []temporal.ServerOption{
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(newTemporalLogger(cfg.Logger, level)),
		temporal.WithDynamicConfigClient(dyn),
	}
}

// dialTemporal connects an SDK client and waits until the frontend describes the namespace,
// which needs the frontend, the namespace cache and the database all working.
func dialTemporal(ctx context.Context, address, namespace string, logger *slog.Logger) (client.Client, error) {
	var lastErr error
	for {
		c, err := client.DialContext(ctx, client.Options{
			HostPort:  address,
			Namespace: namespace,
			Logger:    sdklog.NewStructuredLogger(logger),
		})
		if err == nil {
			_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
			if err == nil {
				return c, nil
			}
			c.Close()
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("temporal frontend %s not ready: %w", address, errors.Join(ctx.Err(), lastErr))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ensureSearchAttributes registers the wanted custom search attributes that the namespace lacks,
// the way the production worker does. A fresh namespace already has them all (they were written
// with it); this matters on a restart after attributes were added to the configuration.
func (t *Temporal) ensureSearchAttributes(ctx context.Context, c client.Client, want map[string]enums.IndexedValueType) error {
	added, err := searchattrs.Ensure(ctx, c, t.namespace, want)
	if err != nil || len(added) == 0 {
		return err
	}
	// The frontend accepts the new attributes now; one more namespace reload period lets
	// history (which resolves the attributes workflows upsert) catch up too, so that
	// StartTemporal's promise holds without a failed workflow task.
	select {
	case <-ctx.Done():
		return fmt.Errorf("wait for search attributes: %w", ctx.Err())
	case <-time.After(temporalNamespaceRefresh + 250*time.Millisecond):
	}
	t.logger.Info("temporal search attributes added",
		slog.String("namespace", t.namespace),
		slog.Any("names", added))
	return nil
}

// startUI serves the Temporal Web UI from the assets embedded in the ui-server module (no
// network needed) and waits until it answers.
func (t *Temporal) startUI(ctx context.Context, cfg TemporalConfig, port int) error {
	ui := uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
		Host:                uiHost(cfg.Host),
		Port:                port,
		TemporalGRPCAddress: t.address,
		EnableUI:            true,
		DefaultNamespace:    t.namespace,
		// Plain HTTP on loopback: the CSRF cookie must not be marked Secure or the browser
		// drops it.
		CORS: uiconfig.CORS{CookieInsecure: true},
		// The news feed is fetched from temporal.io; the dev environment stays offline.
		DisableNewsFetch: true,
		HideLogs:         true,
	}))
	done := make(chan struct{})
	t.ui, t.uiDone = ui, done
	go func() {
		defer close(done)
		// Start blocks until Stop. It returns nil after Stop; a failure to listen is fatal
		// inside ui-server (log.Fatal), which is why the port was checked or reserved first.
		if err := ui.Start(); err != nil {
			t.logger.Error("temporal web ui stopped", slog.Any("error", err))
		}
	}()
	t.uiURL = "http://" + net.JoinHostPort(cfg.Host, strconv.Itoa(port))

	health := t.uiURL + "/healthz"
	hc := &http.Client{Timeout: time.Second}
	for {
		err := getOK(ctx, hc, health)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("temporal web ui %s not ready: %w", t.uiURL, errors.Join(ctx.Err(), err))
		case <-done:
			return fmt.Errorf("temporal web ui on port %d stopped during start", port)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// uiHost is the host as ui-server wants it: it joins host and port with a plain "%s:%d".
func uiHost(host string) string {
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return "[" + host + "]"
	}
	return host
}

func getOK(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// levelFilterHandler passes on records at or above min, which can change while running.
type levelFilterHandler struct {
	min  slog.Leveler
	next slog.Handler
}

func (h *levelFilterHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= h.min.Level() && h.next.Enabled(ctx, level)
}

func (h *levelFilterHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.next.Handle(ctx, r)
}

func (h *levelFilterHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &levelFilterHandler{min: h.min, next: h.next.WithAttrs(attrs)}
}

func (h *levelFilterHandler) WithGroup(name string) slog.Handler {
	return &levelFilterHandler{min: h.min, next: h.next.WithGroup(name)}
}

// temporalLogger adapts Temporal's logger interface to slog. Each tag becomes an attribute;
// tag values are only computed for records that pass the level filter. With only
// remembers its tags: the server derives a logger for every queue task it runs
// (tasks.InitializeLogger) and almost none of them logs past the filter, so turning the
// tags into attributes up front (slog.Logger.With) cost 1–2 % of the dev stack's CPU
// under dev/loadapprovals.
type temporalLogger struct {
	sl *slog.Logger
	// tags are the tags of With calls, oldest first, not yet applied to sl. The slice is
	// never appended to in place: With copies it.
	tags []tag.Tag
}

var (
	_ tlog.Logger      = temporalLogger{}
	_ tlog.WithLogger  = temporalLogger{}
	_ tlog.SLogWrapper = temporalLogger{}
)

func newTemporalLogger(base *slog.Logger, level *slog.LevelVar) temporalLogger {
	return temporalLogger{sl: slog.New(&levelFilterHandler{min: level, next: base.Handler()}).With(slog.String("component", "temporal"))}
}

func (l temporalLogger) Debug(msg string, tags ...tag.Tag) { l.log(slog.LevelDebug, msg, tags) }
func (l temporalLogger) Info(msg string, tags ...tag.Tag)  { l.log(slog.LevelInfo, msg, tags) }
func (l temporalLogger) Warn(msg string, tags ...tag.Tag)  { l.log(slog.LevelWarn, msg, tags) }
func (l temporalLogger) Error(msg string, tags ...tag.Tag) { l.log(slog.LevelError, msg, tags) }

// DPanic panics only in zap's development mode; here it is an error.
func (l temporalLogger) DPanic(msg string, tags ...tag.Tag) { l.log(slog.LevelError, msg, tags) }

// Panic and Fatal log and then panic: the calling code does not expect them to return, and a
// panic (unlike zap's os.Exit for Fatal) shows where and can be recovered by a test.
func (l temporalLogger) Panic(msg string, tags ...tag.Tag) {
	l.log(slog.LevelError, msg, tags)
	panic("temporal: " + msg)
}

// Fatal: see Panic.
func (l temporalLogger) Fatal(msg string, tags ...tag.Tag) {
	l.log(slog.LevelError, msg, tags)
	panic("temporal: " + msg)
}

// With returns a logger that adds tags to every record, after those of earlier With calls.
func (l temporalLogger) With(tags ...tag.Tag) tlog.Logger {
	if len(tags) == 0 {
		return l
	}
	return temporalLogger{sl: l.sl, tags: append(l.tags[:len(l.tags):len(l.tags)], tags...)}
}

// SLog lets server components that log through slog use the same filtered logger.
func (l temporalLogger) SLog() *slog.Logger {
	if len(l.tags) == 0 {
		return l.sl
	}
	return l.sl.With(attrsFromTags(l.tags)...)
}

func (l temporalLogger) log(level slog.Level, msg string, tags []tag.Tag) {
	ctx := context.Background()
	if !l.sl.Enabled(ctx, level) {
		return
	}
	attrs := attrsFromTags(l.tags)
	l.sl.Log(ctx, level, msg, append(attrs, attrsFromTags(tags)...)...)
}

func attrsFromTags(tags []tag.Tag) []any {
	attrs := make([]any, len(tags))
	for i, t := range tags {
		attrs[i] = slog.Any(t.Key(), t.Value())
	}
	return attrs
}
