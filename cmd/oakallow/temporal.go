package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"oakallow/worker/searchattrs"
	"oakallow/workflows"
)

// temporalSetupTimeout bounds dialing Temporal and registering the search
// attributes, at migrate and at worker start.
const temporalSetupTimeout = 2 * time.Minute

// temporalOptions are the client options every command uses: the frontend
// address and namespace, and for a server that needs them (Temporal Cloud, a
// self-hosted cluster with TLS) TLS, a client certificate or an API key.
func temporalOptions(logger *slog.Logger) (client.Options, error) {
	opts := client.Options{
		HostPort:  getenv("TEMPORAL_ADDRESS"),
		Namespace: getenv("TEMPORAL_NAMESPACE"),
		Logger:    temporalLogger(logger),
	}
	useTLS, err := strconv.ParseBool(getenv("TEMPORAL_TLS"))
	if err != nil {
		return client.Options{}, errors.New("TEMPORAL_TLS: not a boolean")
	}
	certPath, keyPath := getenv("TEMPORAL_TLS_CERT_PATH"), getenv("TEMPORAL_TLS_KEY_PATH")
	caPath, serverName := getenv("TEMPORAL_TLS_CA_PATH"), getenv("TEMPORAL_TLS_SERVER_NAME")
	apiKey := getenv("TEMPORAL_API_KEY")
	if (certPath == "") != (keyPath == "") {
		return client.Options{}, errors.New("TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH must be set together")
	}
	// A credential sent in the clear would be worth stealing: either one turns
	// TLS on, as the temporal CLI does.
	if !useTLS && apiKey == "" && certPath == "" && caPath == "" && serverName == "" {
		return opts, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if certPath != "" {
		cert, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			return client.Options{}, fmt.Errorf("TEMPORAL_TLS_CERT_PATH, TEMPORAL_TLS_KEY_PATH: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if caPath != "" {
		pem, err := os.ReadFile(caPath)
		if err != nil {
			return client.Options{}, fmt.Errorf("TEMPORAL_TLS_CA_PATH: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return client.Options{}, fmt.Errorf("TEMPORAL_TLS_CA_PATH: %s holds no PEM certificate", caPath)
		}
		tc.RootCAs = pool
	}
	opts.ConnectionOptions.TLS = tc
	if apiKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(apiKey)
	}
	return opts, nil
}

func temporalLogger(logger *slog.Logger) sdklog.Logger {
	return sdklog.NewStructuredLogger(logger.With("component", "temporal-client"))
}

// dialTemporal connects and checks the connection (the worker and migrate need
// Temporal now; serve uses a lazy client instead).
func dialTemporal(ctx context.Context, logger *slog.Logger) (client.Client, error) {
	opts, err := temporalOptions(logger)
	if err != nil {
		return nil, err
	}
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
