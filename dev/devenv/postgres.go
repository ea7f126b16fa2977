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
	// only, never for data that must survive a machine crash.
	Fast bool
	// Logger receives lifecycle messages. nil discards them.
	Logger *slog.Logger
}

// Postgres is a running PostgreSQL server owned by this process.
type Postgres struct {
	port   int
	dir    string
	cmd    *exec.Cmd
	done   chan struct{}
	logger *slog.Logger
}

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
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off")
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	if cred != nil {
		_ = os.Chown(logFile.Name(), int(cred.Uid), int(cred.Gid))
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr(cred)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	p := &Postgres{port: port, dir: dir, cmd: cmd, done: make(chan struct{}), logger: logger}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	if err := p.waitReady(ctx, 30*time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("start postgres (log: %s): %w", logFile.Name(), err)
	}
	logger.Info("postgres started", "port", port, "dir", dir)
	return p, nil
}

func (p *Postgres) waitReady(ctx context.Context, limit time.Duration) error {
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
		case <-p.done:
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

// Stop asks the server for a fast shutdown and waits up to 10 s, then kills it.
func (p *Postgres) Stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
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
