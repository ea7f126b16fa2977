package main

import (
	"context"
	"fmt"
	"io"

	"oakallow/store"
)

func runMigrate(ctx context.Context, action string, out io.Writer) error {
	url, err := required("DATABASE_URL")
	if err != nil {
		return err
	}
	var st store.MigrationStatus
	if action == "up" {
		st, err = store.Migrate(ctx, url)
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
	return nil
}
