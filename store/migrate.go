package store

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// versionTable records the applied schema version.
const versionTable = "oakallow_schema_version"

// MigrationStatus describes the database's schema version.
type MigrationStatus struct {
	Current int32 // applied version
	Latest  int32 // newest version embedded in this binary
}

// Pending reports whether migrations remain to be applied.
func (s MigrationStatus) Pending() bool { return s.Current < s.Latest }

// MigrateOption adjusts Migrate.
type MigrateOption func(*migrateOptions)

type migrateOptions struct{ sealer Sealer }

// SealWith gives Migrate the server's secret key (a non-nil sealed.Box),
// which migration 013 needs to seal the secrets older versions stored in
// clear. Without it that migration refuses when there is anything to seal.
func SealWith(s Sealer) MigrateOption {
	return func(o *migrateOptions) { o.sealer = s }
}

func newMigrator(ctx context.Context, conn *pgx.Conn, sealer Sealer) (*migrate.Migrator, error) {
	m, err := migrate.NewMigrator(ctx, conn, versionTable)
	if err != nil {
		return nil, fmt.Errorf("migrator: %w", err)
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrator: %w", err)
	}
	if err := m.LoadMigrations(sub); err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	if err := bindGoMigrations(m, sealer); err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return m, nil
}

// Migrate applies every pending migration. tern holds a PostgreSQL advisory
// lock while it migrates, so several processes starting at once serialise
// and the later ones find nothing to do.
func Migrate(ctx context.Context, databaseURL string, opts ...MigrateOption) (MigrationStatus, error) {
	var o migrateOptions
	for _, opt := range opts {
		opt(&o)
	}
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return MigrationStatus{}, fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Close(context.Background())
	m, err := newMigrator(ctx, conn, o.sealer)
	if err != nil {
		return MigrationStatus{}, err
	}
	if err := m.Migrate(ctx); err != nil {
		var pgErr migrate.MigrationPgError
		if errors.As(err, &pgErr) {
			return MigrationStatus{}, fmt.Errorf("migrate %s: %w", pgErr.MigrationName, err)
		}
		return MigrationStatus{}, fmt.Errorf("migrate: %w", err)
	}
	return migrationStatus(ctx, m)
}

// Status reports the applied and the latest schema version.
func Status(ctx context.Context, databaseURL string) (MigrationStatus, error) {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return MigrationStatus{}, fmt.Errorf("migration status: connect: %w", err)
	}
	defer conn.Close(context.Background())
	m, err := newMigrator(ctx, conn, nil)
	if err != nil {
		return MigrationStatus{}, err
	}
	return migrationStatus(ctx, m)
}

func migrationStatus(ctx context.Context, m *migrate.Migrator) (MigrationStatus, error) {
	cur, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return MigrationStatus{}, fmt.Errorf("migration status: %w", err)
	}
	return MigrationStatus{Current: cur, Latest: int32(len(m.Migrations))}, nil
}

// SchemaFingerprint is a short hash of the embedded migrations; test
// harnesses name template databases with it so a schema change never reuses
// a stale template.
func SchemaFingerprint() string {
	h := sha256.New()
	entries, _ := fs.ReadDir(migrationFiles, "migrations")
	for _, e := range entries {
		b, _ := migrationFiles.ReadFile("migrations/" + e.Name())
		h.Write([]byte(e.Name()))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}
