package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"oakallow/store"
)

// maxUnopenableShown bounds the rows reseal names; the count is always given.
const maxUnopenableShown = 20

// runReseal seals every stored secret under OAKALLOW_SECRET_KEY, opening
// those sealed under a key of OAKALLOW_SECRET_KEY_PREVIOUS (the second step
// of a key rotation, docs/CONFIGURATION.md). It prints what it did per
// column and fails when some value opens with no key it was given.
func runReseal(ctx context.Context, out io.Writer) error {
	st, box, err := openSealedStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := st.Reseal(ctx, box)
	for _, c := range rep.Columns {
		fmt.Fprintf(out, "%s: %d sealed values, %d resealed under the current key\n", c.Column, c.Values, c.Resealed)
	}
	if errors.Is(err, store.ErrUnopenable) {
		for i, row := range rep.Unopenable {
			if i == maxUnopenableShown {
				fmt.Fprintf(out, "… and %d more\n", len(rep.Unopenable)-i)
				break
			}
			fmt.Fprintf(out, "does not open: %s\n", row)
		}
		return fmt.Errorf("%d stored secrets open with neither OAKALLOW_SECRET_KEY nor a key in OAKALLOW_SECRET_KEY_PREVIOUS; "+
			"add the key that sealed them to OAKALLOW_SECRET_KEY_PREVIOUS and run reseal again", len(rep.Unopenable))
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "every stored secret is sealed under OAKALLOW_SECRET_KEY: OAKALLOW_SECRET_KEY_PREVIOUS can be removed")
	return nil
}
