package devenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres is returned when no PostgreSQL server binaries can be found.
// Its text names the package to install; `go run ./dev` prints it and exits 2.
var ErrNoPostgres = errors.New("PostgreSQL server binaries (initdb, postgres) not found in PATH, " +
	"/usr/lib/postgresql/*/bin or /usr/local/bin.\n" +
	"  Debian/Ubuntu: sudo apt-get install -y postgresql\n" +
	"  macOS:         brew install postgresql@16\n" +
	"or set DATABASE_URL to use an existing server")

// PostgresConfig configures StartPostgres.
type PostgresConfig struct {
	// Dir holds the cluster's data directory. It is created with initdb on
	// first use and reused afterwards. Required.
	Dir string
	// Port to listen on, on 127.0.0.1 only. 0 picks a free port.
	Port int
	// BinDir holds initdb and postgres. "" searches with FindPostgresBin.
	BinDir string
	// Fast turns off fsync and full-page writes: for throwaway test clusters
	// only, never for data that must survive a machine crash. Commits stay
	// synchronous (written to the kernel before they are acknowledged, if
	// not synced), so a server process that dies — and is restarted by
	// supervise — loses nothing that was committed.
	Fast bool
	// Logger receives lifecycle messages. nil discards them.
	Logger *slog.Logger
}

// Postgres is a running PostgreSQL server owned by this process. It is
// supervised: when the server exits without Stop (killed, crashed, shut down
// from outside) it is started again on the same port and data directory, after
// a pause that doubles with each restart in a row, and each restart is logged.
// Clients see a short outage, as with any database restart, instead of one that
// lasts until a person restarts `go run ./dev`.
type Postgres struct {
	port    int
	dir     string
	bin     string
	args    []string
	cred    *syscall.Credential
	logPath string
	logger  *slog.Logger

	mu       sync.Mutex
	cmd      *exec.Cmd     // the current server process
	exited   chan struct{} // closed when cmd has exited
	stopping bool          // Stop was called: no more restarts

	stop     chan struct{} // closed by Stop
	restarts atomic.Int64
}

// Restart pauses: the first restart waits restartBackoffMin, each further one
// in a row twice as long, up to restartBackoffMax. A server that stayed up for
// restartStableAfter starts the count again.
const (
	restartBackoffMin  = 100 * time.Millisecond
	restartBackoffMax  = 10 * time.Second
	restartStableAfter = 30 * time.Second
)

// FindPostgresBin returns a directory holding the PostgreSQL server binaries,
// preferring PATH, then the newest /usr/lib/postgresql/N/bin, then
// /usr/local/bin and Homebrew locations.
func FindPostgresBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if hasServer(dir) {
			return dir, nil
		}
	}
	var candidates []string
	versioned, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(versioned, func(i, j int) bool { return pgMajor(versioned[i]) > pgMajor(versioned[j]) })
	candidates = append(candidates, versioned...)
	candidates = append(candidates, "/usr/local/bin", "/opt/homebrew/bin", "/usr/local/pgsql/bin")
	brew, _ := filepath.Glob("/opt/homebrew/opt/postgresql@*/bin")
	candidates = append(candidates, brew...)
	for _, dir := range candidates {
		if hasServer(dir) {
			return dir, nil
		}
	}
	return "", ErrNoPostgres
}

func hasServer(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// StartPostgres initialises the cluster in cfg.Dir when needed, starts the
// server on loopback and returns once it accepts connections. When running
// as root the server runs as the "postgres" user, since initdb refuses root.
func StartPostgres(ctx context.Context, cfg PostgresConfig) (*Postgres, error) {
	if cfg.Dir == "" {
		return nil, errors.New("start postgres: Dir is required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bin := cfg.BinDir
	if bin != "" && !hasServer(bin) {
		return nil, ErrNoPostgres
	}
	if bin == "" {
		var err error
		if bin, err = FindPostgresBin(); err != nil {
			return nil, err
		}
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	if err := prepareDataDir(dir, cred); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		start := time.Now()
		out, err := runAs(ctx, cred, filepath.Join(bin, "initdb"),
			"-D", dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
		if err != nil {
			return nil, fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(string(out)))
		}
		logger.Info("postgres cluster created", "dir", dir, "took", time.Since(start).Round(time.Millisecond))
	}

	port := cfg.Port
	if port == 0 {
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	args := []string{"-D", dir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "max_connections=300",
		"-c", "shared_buffers=128MB",
	}
	if cfg.Fast {
		// Not synchronous_commit=off: a commit would then wait in shared
		// memory for the WAL writer, and a killed server would come back
		// without the last ones (the dev stack's freshly seeded keys, whose
		// holders would then count as failed authentications). With fsync
		// off a synchronous commit costs one write(2), no sync.
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off")
	}
	p := &Postgres{port: port, dir: dir, bin: bin, args: args, cred: cred, logPath: filepath.Join(dir, "server.log"),
		logger: logger, stop: make(chan struct{})}
	p.mu.Lock()
	exited, err := p.startProcessLocked()
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	if err := p.waitReady(ctx, exited, 30*time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("start postgres (log: %s): %w", p.logPath, err)
	}
	go p.supervise()
	logger.Info("postgres started", "port", port, "dir", dir)
	return p, nil
}

// startProcessLocked starts a server process and returns a channel closed when it
// exits. p.mu is held, so that Stop cannot miss the process.
func (p *Postgres) startProcessLocked() (<-chan struct{}, error) {
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	if p.cred != nil {
		_ = os.Chown(logFile.Name(), int(p.cred.Uid), int(p.cred.Gid))
	}
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), p.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr(p.cred)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	return exited, nil
}

// supervise restarts the server whenever it exits before Stop.
func (p *Postgres) supervise() {
	backoff := restartBackoffMin
	started := time.Now()
	for {
		p.mu.Lock()
		cmd, exited := p.cmd, p.exited
		p.mu.Unlock()
		select {
		case <-p.stop:
			return
		case <-exited:
		}
		if time.Since(started) >= restartStableAfter {
			backoff = restartBackoffMin
		}
		p.logger.Warn("postgres exited; restarting it", "port", p.port, "exit", cmd.ProcessState.String(),
			"restart_in", backoff, "log", p.logPath)
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, restartBackoffMax)
			// A server killed hard leaves backends behind for a moment, and the
			// new one refuses to start while they hold its shared memory: it exits
			// at once and the next round waits longer.
			p.mu.Lock()
			if p.stopping {
				p.mu.Unlock()
				return
			}
			_, err := p.startProcessLocked()
			p.mu.Unlock()
			if err != nil {
				p.logger.Error("postgres restart failed", "port", p.port, "err", err, "retry_in", backoff)
				continue
			}
			break
		}
		started = time.Now()
		n := p.restarts.Add(1)
		p.logger.Warn("postgres restarted", "port", p.port, "pid", p.PID(), "restarts", n)
	}
}

// PID is the process id of the current server (it changes when the server is restarted).
func (p *Postgres) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Restarts counts the restarts after unexpected exits so far.
func (p *Postgres) Restarts() int64 { return p.restarts.Load() }

func (p *Postgres) waitReady(ctx context.Context, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, p.URL("postgres"))
		cancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-exited:
			return errors.New("postgres exited during start-up")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after %s: %w", limit, err)
		}
	}
}

// Port is the TCP port the server listens on (127.0.0.1).
func (p *Postgres) Port() int { return p.port }

// URL returns a connection URL for database db as the postgres superuser.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

// Stop ends supervision, asks the server for a fast shutdown and waits up to
// 10 s, then kills it. Calling it again does nothing.
func (p *Postgres) Stop() {
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return
	}
	p.stopping = true
	close(p.stop)
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	p.logger.Info("postgres stopped", "port", p.port)
}

// EnsureDatabase creates database name on the server at adminURL when missing.
func EnsureDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("ensure database: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("ensure database: %w", err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("ensure database %s: %w", name, err)
	}
	return nil
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serverCredential returns the postgres user's credential when running as
// root (initdb and postgres refuse to run as root), else nil.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a \"postgres\" system user to own the dev cluster "+
			"(the postgresql package creates it): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// prepareDataDir creates dir with mode 0700 owned by the server's user, and
// makes sure that user can traverse to it.
func prepareDataDir(dir string, cred *syscall.Credential) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("postgres data dir: %w", err)
	}
	if cred == nil {
		return nil
	}
	if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("postgres data dir: %w", err)
	}
	// Every parent must be searchable by the postgres user.
	for p := filepath.Dir(dir); p != "/" && p != "."; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("postgres data dir: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, st.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("postgres data dir: make %s searchable: %w", p, err)
			}
		}
	}
	return nil
}

func runAs(ctx context.Context, cred *syscall.Credential, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = sysProcAttr(cred)
	cmd.Dir = "/"
	return cmd.CombinedOutput()
}
