package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"oakallow/worker/searchattrs"
	"oakallow/workflows"
)

// temporalSetupTimeout bounds dialing Temporal and registering the search
// attributes, at migrate and at worker start.
const temporalSetupTimeout = 2 * time.Minute

// temporalOptions are the client options every command uses.
func temporalOptions(logger *slog.Logger) client.Options {
	return client.Options{
		HostPort:  getenv("TEMPORAL_ADDRESS"),
		Namespace: getenv("TEMPORAL_NAMESPACE"),
		Logger:    temporalLogger(logger),
	}
}

func temporalLogger(logger *slog.Logger) sdklog.Logger {
	return sdklog.NewStructuredLogger(logger.With("component", "temporal-client"))
}

// dialTemporal connects and checks the connection (the worker and migrate need
// Temporal now; serve uses a lazy client instead).
func dialTemporal(ctx context.Context, logger *slog.Logger) (client.Client, error) {
	opts := temporalOptions(logger)
	ctx, cancel := context.WithTimeout(ctx, temporalSetupTimeout)
	defer cancel()
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("temporal %s: %w", opts.HostPort, err)
	}
	return c, nil
}

// ensureSearchAttributes registers oakallow's search attributes on the
// namespace (idempotent): an approval cannot start without them.
func ensureSearchAttributes(ctx context.Context, c client.Client, logger *slog.Logger) ([]string, error) {
	ns := getenv("TEMPORAL_NAMESPACE")
	ctx, cancel := context.WithTimeout(ctx, temporalSetupTimeout)
	defer cancel()
	added, err := searchattrs.Ensure(ctx, c, ns, workflows.SearchAttributeTypes())
	if err != nil {
		return nil, fmt.Errorf("temporal search attributes: %w", err)
	}
	if len(added) > 0 {
		logger.Info("temporal search attributes added", "namespace", ns, "names", added)
	}
	return added, nil
}
