package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"

	"go.temporal.io/sdk/client"

	"oakallow/activities/notify"
	"oakallow/api"
	"oakallow/api/passkeys"
	"oakallow/store"
)

// openStore opens the pool and refuses to run on an out-of-date schema.
func openStore(ctx context.Context) (*store.Store, error) {
	url, err := required("DATABASE_URL")
	if err != nil {
		return nil, err
	}
	maxConns, err := getenvInt("DATABASE_MAX_CONNS")
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, store.Config{URL: url, MaxConns: int32(maxConns)})
	if err != nil {
		return nil, err
	}
	status, err := store.Status(ctx, url)
	if err != nil {
		st.Close()
		return nil, err
	}
	if status.Pending() {
		st.Close()
		return nil, fmt.Errorf("database schema is at version %d of %d: run `oakallow migrate up` first", status.Current, status.Latest)
	}
	return st, nil
}

// openTemporal returns a lazy client: the API keeps serving checks while
// Temporal is briefly unreachable, and /readyz reports it.
func openTemporal(logger *slog.Logger) (client.Client, error) {
	opts, err := temporalOptions(logger)
	if err != nil {
		return nil, err
	}
	c, err := client.NewLazyClient(opts)
	if err != nil {
		return nil, fmt.Errorf("temporal client: %w", err)
	}
	return c, nil
}

// loadSlackApp reads the Slack app credentials for the "Add to Slack"
// install; without them the install is off (nil). Its redirect URL is
// <OAKALLOW_PUBLIC_URL>/v1/integrations/slack/callback, filled in by the API
// server.
func loadSlackApp() (*notify.SlackApp, error) {
	id, secret := getenv("SLACK_CLIENT_ID"), getenv("SLACK_CLIENT_SECRET")
	switch {
	case id == "" && secret == "":
		return nil, nil
	case id == "" || secret == "":
		return nil, errors.New("SLACK_CLIENT_ID and SLACK_CLIENT_SECRET must be set together (or neither, to turn \"Add to Slack\" off)")
	}
	allowPrivate, err := allowPrivateWebhooks()
	if err != nil {
		return nil, err
	}
	public, err := url.Parse(getenv("OAKALLOW_PUBLIC_URL"))
	if err != nil || public.Host == "" {
		return nil, errors.New("OAKALLOW_PUBLIC_URL: not an absolute URL")
	}
	if public.Scheme != "https" && !allowPrivate {
		return nil, fmt.Errorf("SLACK_CLIENT_ID is set but OAKALLOW_PUBLIC_URL is not https: Slack sends installers back to "+
			"%s, which must be an https URL (see docs/CONFIGURATION.md)", strings.TrimRight(public.String(), "/")+api.SlackCallbackPath)
	}
	// AllowInsecure follows the outbound policy: a local setup that lets
	// webhooks use http may run the install over http too.
	return &notify.SlackApp{ClientID: id, ClientSecret: secret, AllowInsecure: allowPrivate}, nil
}

func runServe(ctx context.Context) error { return serve(ctx, nil) }

// serve runs the API server on ln, or on a new listener on OAKALLOW_ADDR when
// ln is nil, until ctx ends or the server fails.
func serve(ctx context.Context, ln net.Listener) error {
	logger, err := mustLogger()
	if err != nil {
		return err
	}
	shutdown, err := getenvDuration("SHUTDOWN_TIMEOUT")
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
	tc, err := openTemporal(logger)
	if err != nil {
		return err
	}
	defer tc.Close()
	// The API redelivers webhooks and tests channels with the same
	// production clients the worker uses.
	acts, err := newActivities(st, tc, keyring, box, nil, logger)
	if err != nil {
		return err
	}
	slackApp, err := loadSlackApp()
	if err != nil {
		return err
	}
	// The install's code exchange goes out under the same policy as
	// webhooks and alerts.
	slackClient, err := outboundHTTPClient()
	if err != nil {
		return err
	}
	allowPrivate, err := allowPrivateWebhooks()
	if err != nil {
		return err
	}
	limits, err := loadLimits()
	if err != nil {
		return err
	}
	accounts, sessions, mailer, err := loadAccounts()
	if err != nil {
		return err
	}
	if mailer == nil {
		logger.Warn("no SMTP server configured (OAKALLOW_SMTP_HOST): nobody can sign in by e-mail code")
	}
	bill, err := loadBilling()
	if err != nil {
		return err
	}
	pk, err := passkeyConfig()
	if err != nil {
		return err
	}
	registrations, err := loadOAuthRegistrationLimit()
	if err != nil {
		return err
	}
	caps, err := loadDiscoveryCaps()
	if err != nil {
		return err
	}
	logger.Info("billing", "mode", bill.Mode)
	srv, err := api.NewServer(api.Config{
		Addr:                    getenv("OAKALLOW_ADDR"),
		Listener:                ln,
		PublicURL:               getenv("OAKALLOW_PUBLIC_URL"),
		ShutdownTimeout:         shutdown,
		AllowPrivateWebhooks:    allowPrivate,
		Limits:                  limits,
		Accounts:                accounts,
		Sessions:                sessions,
		Passkeys:                pk,
		OAuthRegistrationsPerIP: registrations,
		DiscoveryCaps:           &caps,
	}, api.Deps{
		Mailer:          mailer,
		Store:           st,
		Logger:          logger,
		Keyring:         keyring,
		Temporal:        tc,
		Activities:      acts,
		SecretBox:       box,
		Slack:           slackApp,
		SlackHTTPClient: slackClient,
		Billing:         bill,
		TemporalReady: func(ctx context.Context) error {
			_, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{})
			return err
		},
	})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	err = runUntilStopped(ctx, srv.Failed())
	logger.Info("shutting down")
	srv.Stop()
	return err
}

// passkeyConfig reads the WebAuthn relying party's settings; api fills what
// is empty from OAKALLOW_PUBLIC_URL.
func passkeyConfig() (passkeys.Config, error) {
	var origins []string
	for _, o := range strings.Split(getenv("OAKALLOW_WEBAUTHN_ORIGINS"), ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	ttl, err := getenvDuration("OAKALLOW_WEBAUTHN_CEREMONY_TTL")
	if err != nil {
		return passkeys.Config{}, err
	}
	return passkeys.Config{RPID: getenv("OAKALLOW_WEBAUTHN_RP_ID"), Origins: origins, CeremonyTTL: ttl}, nil
}
