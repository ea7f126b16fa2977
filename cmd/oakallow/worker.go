package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/activities/pii"
	"oakallow/activities/sealed"
	"oakallow/activities/tokens"
	"oakallow/store"
	"oakallow/worker"
)

// loadSecretBox parses OAKALLOW_SECRET_KEY, which is required, and
// OAKALLOW_SECRET_KEY_PREVIOUS.
func loadSecretBox() (*sealed.Box, error) {
	spec := getenv("OAKALLOW_SECRET_KEY")
	if spec == "" {
		return nil, errors.New("OAKALLOW_SECRET_KEY is required: it encrypts the execution tokens, webhook secrets and " +
			"channel credentials oakallow stores. Generate one with `openssl rand -base64 32` and give serve, worker " +
			"and migrate the same key (see docs/CONFIGURATION.md)")
	}
	key, err := sealed.ParseKey(spec)
	if err != nil {
		return nil, fmt.Errorf("OAKALLOW_SECRET_KEY: %w", err)
	}
	previous, err := sealed.ParseKeys(getenv("OAKALLOW_SECRET_KEY_PREVIOUS"))
	if err != nil {
		return nil, fmt.Errorf("OAKALLOW_SECRET_KEY_PREVIOUS: %w", err)
	}
	box, err := sealed.NewBox(key, previous...)
	if err != nil {
		return nil, fmt.Errorf("OAKALLOW_SECRET_KEY_PREVIOUS: %w", err)
	}
	return box, nil
}

// openSealedStore loads the secret key, then opens the store: serve, worker
// and reseal need both, and a missing key is reported before any connection.
func openSealedStore(ctx context.Context) (*store.Store, *sealed.Box, error) {
	box, err := loadSecretBox()
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(ctx)
	if err != nil {
		return nil, nil, err
	}
	return st, box, nil
}

// allowPrivateWebhooks reads OAKALLOW_WEBHOOKS_ALLOW_PRIVATE.
func allowPrivateWebhooks() (bool, error) {
	allow, err := strconv.ParseBool(getenv("OAKALLOW_WEBHOOKS_ALLOW_PRIVATE"))
	if err != nil {
		return false, fmt.Errorf("OAKALLOW_WEBHOOKS_ALLOW_PRIVATE: not a boolean")
	}
	return allow, nil
}

// outboundHTTPClient is the client for webhooks and alert channels.
func outboundHTTPClient() (*http.Client, error) {
	allowPrivate, err := allowPrivateWebhooks()
	if err != nil {
		return nil, err
	}
	return notify.NewHTTPClient(notify.HTTPClientConfig{AllowInsecure: allowPrivate, AllowPrivateAddresses: allowPrivate})
}

// newActivities wires the approval activities; m may be nil (no metrics).
func newActivities(st *store.Store, tc client.Client, kr *tokens.Keyring, box *sealed.Box, m *activities.Metrics, logger *slog.Logger) (*activities.Activities, error) {
	hc, err := outboundHTTPClient()
	if err != nil {
		return nil, err
	}
	n, err := notify.New(notify.Config{HTTPClient: hc, Scrub: pii.Scrub, Logger: logger})
	if err != nil {
		return nil, err
	}
	return activities.New(activities.Deps{Store: st, Keyring: kr, Temporal: tc, Notifier: n, HTTPClient: hc,
		SecretBox: box, PublicURL: getenv("OAKALLOW_PUBLIC_URL"), Metrics: m, Logger: logger})
}

func runWorker(ctx context.Context) error {
	logger, err := mustLogger()
	if err != nil {
		return err
	}
	keyring, err := loadKeyring()
	if err != nil {
		return err
	}
	st, box, err := openSealedStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	tc, err := dialTemporal(ctx, logger)
	if err != nil {
		return err
	}
	defer tc.Close()
	// Before polling: an approval the API starts needs them, and a worker that
	// cannot have them should not look healthy.
	if _, err := ensureSearchAttributes(ctx, tc, logger); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := activities.NewMetrics(reg)
	if err != nil {
		return err
	}
	acts, err := newActivities(st, tc, keyring, box, metrics, logger)
	if err != nil {
		return err
	}
	var failures []<-chan error
	if addr := getenv("OAKALLOW_WORKER_METRICS_ADDR"); addr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("OAKALLOW_WORKER_METRICS_ADDR: %w", err)
		}
		failed, closeMetrics := serveHTTP(ln, mux)
		defer closeMetrics()
		failures = append(failures, failed)
	}
	w, err := worker.New(tc, acts, logger)
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	logger.Info("worker started", "task_queue", "oakallow-approvals")
	err = runUntilStopped(ctx, failures...)
	logger.Info("shutting down")
	w.Stop()
	if err != nil {
		return fmt.Errorf("worker metrics: %w", err)
	}
	return nil
}
