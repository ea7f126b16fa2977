package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
)

// runUntilStopped blocks until ctx ends (SIGINT or SIGTERM: nil) or one of the
// long-lived components reports on its channel that it failed (that error).
// Either way the caller then stops what it started, and a failure makes the
// process exit non-zero: a serve whose listener died must not linger looking
// alive to its supervisor while it answers nothing.
func runUntilStopped(ctx context.Context, failures ...<-chan error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { <-gctx.Done(); return nil }) // with no components, wait for ctx
	for _, failed := range failures {
		g.Go(func() error {
			select {
			case err := <-failed:
				return err
			case <-gctx.Done():
				return nil
			}
		})
	}
	return g.Wait()
}

// serveHTTP serves h on ln in the background. The returned channel receives
// the error that ends serving other than a Close; close stops it.
func serveHTTP(ln net.Listener, h http.Handler) (failed <-chan error, close func()) {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ch := make(chan error, 1)
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			ch <- fmt.Errorf("serve %s: %w", ln.Addr(), err)
		}
	}()
	return ch, func() { _ = hs.Close() }
}
