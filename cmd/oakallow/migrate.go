package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"oakallow/store"
)

// runMigrate applies (up) or reports (status) the database schema. `up` also
// registers oakallow's search attributes on the Temporal namespace, so that a
// fresh install is complete once migrate has run; the worker does the same at
// start.
func runMigrate(ctx context.Context, action string, out io.Writer) error {
	url, err := required("DATABASE_URL")
	if err != nil {
		return err
	}
	var st store.MigrationStatus
	if action == "up" {
		// The key is needed only to seal what an older version stored in
		// clear; the migration says so when it is missing.
		var opts []store.MigrateOption
		if getenv("OAKALLOW_SECRET_KEY") != "" {
			box, err := loadSecretBox()
			if err != nil {
				return err
			}
			opts = append(opts, store.SealWith(box))
		}
		st, err = store.Migrate(ctx, url, opts...)
	} else {
		st, err = store.Status(ctx, url)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "schema version %d of %d", st.Current, st.Latest)
	if st.Pending() {
		fmt.Fprintf(out, " (%d pending: run `oakallow migrate up`)", st.Latest-st.Current)
	}
	fmt.Fprintln(out)
	if action != "up" {
		return nil
	}
	logger, err := mustLogger()
	if err != nil {
		return err
	}
	tc, err := dialTemporal(ctx, logger)
	if err != nil {
		return err
	}
	defer tc.Close()
	added, err := ensureSearchAttributes(ctx, tc, logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "temporal namespace %s: search attributes ready", getenv("TEMPORAL_NAMESPACE"))
	if len(added) > 0 {
		fmt.Fprintf(out, " (added %s)", strings.Join(added, ", "))
	}
	fmt.Fprintln(out)
	return nil
}
