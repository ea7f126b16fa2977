package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures the connection pool.
type Config struct {
	// URL is a PostgreSQL connection URL (DATABASE_URL). Required.
	URL string
	// MaxConns bounds the pool. Default 20.
	MaxConns int32
	// ConnectTimeout bounds each new connection. Default 5 s.
	ConnectTimeout time.Duration
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	if c.URL == "" {
		return errors.New("store: database URL is required")
	}
	if c.MaxConns == 0 {
		c.MaxConns = 20
	}
	if c.MaxConns < 2 {
		return errors.New("store: MaxConns must be at least 2")
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	return nil
}

// Store holds the pool and the generated queries bound to it.
type Store struct {
	Pool *pgxpool.Pool
	*Queries
}

// Open connects to PostgreSQL and checks the connection.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// The parse error can echo the URL, password included: don't wrap it.
		return nil, errors.New("store: DATABASE_URL is not a valid PostgreSQL URL")
	}
	pc.MaxConns = cfg.MaxConns
	pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("store: open pool: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: ping: %w", err)
	}
	return &Store{Pool: pool, Queries: New(DB(pool))}, nil
}

// Close closes the pool.
func (s *Store) Close() { s.Pool.Close() }

// Ready reports whether the database takes new work now (readiness). It opens a
// new connection rather than borrowing one from the pool: pooled connections
// outlive a server that refuses new ones (a postmaster shutting down, a database
// closed to connections, max_connections reached), and the pool needs new ones
// soon. On it a read-write transaction takes a transaction id and commits, which
// only a primary that can write its WAL does: a standby (after a failover that
// kept the old DNS name) fails here. ctx bounds the whole check.
func (s *Store) Ready(ctx context.Context) (err error) {
	conn, err := pgx.ConnectConfig(ctx, s.Pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("store: connect: %w", err)
	}
	defer func() {
		// Close sends Terminate; bound it even when ctx has run out.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadWrite})
	if err != nil {
		return fmt.Errorf("store: begin read-write: %w", err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		_ = tx.Rollback(ctx)
		return fmt.Errorf("store: take a transaction id: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// InTx runs fn in a transaction with queries bound to it; it commits when fn
// returns nil and rolls back otherwise.
func (s *Store) InTx(ctx context.Context, fn func(tx pgx.Tx, q *Queries) error) error {
	return s.inTx(ctx, pgx.TxOptions{}, fn)
}

// InSnapshot runs fn in a read-only REPEATABLE READ transaction, so all its
// queries see the same committed state.
func (s *Store) InSnapshot(ctx context.Context, fn func(q *Queries) error) error {
	return s.inTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(_ pgx.Tx, q *Queries) error { return fn(q) })
}

func (s *Store) inTx(ctx context.Context, opts pgx.TxOptions, fn func(tx pgx.Tx, q *Queries) error) error {
	tx, err := s.Pool.BeginTx(ctx, opts)
	if err != nil {
		return translateErr(fmt.Errorf("begin: %w", err))
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := fn(tx, New(DB(tx))); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return translateErr(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// Sentinel errors callers test with errors.Is.
var (
	// ErrNotFound: the row does not exist (or is not visible to the caller's org).
	ErrNotFound = errors.New("not found")
	// ErrConflict: a unique constraint would be violated.
	ErrConflict = errors.New("conflict")
	// ErrReferenced: a foreign key is missing or still referenced.
	ErrReferenced = errors.New("referenced")
	// ErrInvalid: a check constraint rejected the value.
	ErrInvalid = errors.New("invalid value")
	// ErrUnavailable: PostgreSQL could not be reached, or it dropped the connection or is
	// shutting down; the statement may not have run, and a retry later can succeed.
	ErrUnavailable = errors.New("database unavailable")
)

// DBError carries the sentinel plus the constraint that fired, for messages.
type DBError struct {
	Kind       error
	Constraint string
	cause      error
}

func (e *DBError) Error() string {
	if e.Constraint != "" {
		return fmt.Sprintf("%s (%s)", e.Kind, e.Constraint)
	}
	return e.Kind.Error()
}

// Is reports whether target is the sentinel kind.
func (e *DBError) Is(target error) bool { return target == e.Kind }

// Unwrap exposes the driver error for logging.
func (e *DBError) Unwrap() error { return e.cause }

// translateErr is the one place database errors become store errors.
func translateErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return &DBError{Kind: ErrNotFound, cause: err}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // the caller's own deadline or cancellation, not the database's state
	}
	if unreachable(err) {
		return &DBError{Kind: ErrUnavailable, cause: err}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505", "23P01": // unique_violation, exclusion_violation
			return &DBError{Kind: ErrConflict, Constraint: pgErr.ConstraintName, cause: err}
		case "23503": // foreign_key_violation
			return &DBError{Kind: ErrReferenced, Constraint: pgErr.ConstraintName, cause: err}
		case "23514", "23502", "22001": // check_violation, not_null_violation, string_data_right_truncation
			return &DBError{Kind: ErrInvalid, Constraint: pgErr.ConstraintName, cause: err}
		case "22021", "22P05": // character_not_in_repertoire (NUL in text), untranslatable_character (\u0000 in jsonb)
			return &DBError{Kind: ErrInvalid, cause: err}
		}
	}
	return err
}

// unreachable reports whether err means the database could not be reached or went away —
// a failed dial, a connection reset or closed mid-statement (or closed by the driver after
// such a failure), a server refusing connections or shutting down — rather than refusing
// the statement itself.
func unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03", "53300": // admin/crash shutdown, cannot connect now, too many connections
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08") // connection exception class
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Executor is what the generated queries run on: a pool, a connection or a
// transaction.
type Executor interface {
	Exec(context.Context, string, ...interface{}) (pgconn.CommandTag, error)
	Query(context.Context, string, ...interface{}) (pgx.Rows, error)
	QueryRow(context.Context, string, ...interface{}) pgx.Row
}

// DB wraps an executor so that every error it returns is translated.
func DB(ex Executor) DBTX { return translatingDB{ex} }

type translatingDB struct{ ex Executor }

func (d translatingDB) Exec(ctx context.Context, sql string, args ...interface{}) (pgconn.CommandTag, error) {
	tag, err := d.ex.Exec(ctx, sql, args...)
	return tag, translateErr(err)
}

func (d translatingDB) Query(ctx context.Context, sql string, args ...interface{}) (pgx.Rows, error) {
	rows, err := d.ex.Query(ctx, sql, args...)
	if err != nil {
		return nil, translateErr(err)
	}
	return translatingRows{rows}, nil
}

func (d translatingDB) QueryRow(ctx context.Context, sql string, args ...interface{}) pgx.Row {
	return translatingRow{d.ex.QueryRow(ctx, sql, args...)}
}

type translatingRow struct{ row pgx.Row }

func (r translatingRow) Scan(dest ...any) error { return translateErr(r.row.Scan(dest...)) }

type translatingRows struct{ pgx.Rows }

func (r translatingRows) Err() error { return translateErr(r.Rows.Err()) }
