package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// NormalizeStoredNames exposes migration 009's body to the external tests.
var NormalizeStoredNames = normalizeStoredNames

// SealSecretsMigration names the migration that seals stored secrets.
const SealSecretsMigration = sealSecretsMigration

// MigrateBefore applies the migrations that come before the one named name (a file
// in migrations/), for tests of a migration that changes existing rows.
func MigrateBefore(ctx context.Context, databaseURL, name string) error {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	m, err := newMigrator(ctx, conn, nil)
	if err != nil {
		return err
	}
	for i, mig := range m.Migrations {
		if mig.Name == name {
			return m.MigrateTo(ctx, int32(i))
		}
	}
	return fmt.Errorf("no migration named %s", name)
}

// ListAuditEventsSQL is ListAuditEvents' statement, for tests that EXPLAIN it.
const ListAuditEventsSQL = listAuditEvents
