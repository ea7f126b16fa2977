package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	"golang.org/x/sync/singleflight"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/activities/sealed"
	"oakallow/activities/tokens"
	"oakallow/api/billing"
	"oakallow/api/mail"
	"oakallow/api/oauth"
	"oakallow/api/passkeys"
	"oakallow/api/ratelimit"
	"oakallow/api/runtime"
	"oakallow/api/web"
	"oakallow/store"
)

// maxBodyBytes is the default request body limit of every operation.
const maxBodyBytes = 64 << 10

// Version is the API version reported in the OpenAPI document.
const Version = "0.1.0"

// Config configures the HTTP server.
type Config struct {
	// Addr is the listen address. Default ":8080".
	Addr string
	// PublicURL is the externally visible base URL, used in links
	// (dashboard, webhooks). Default "http://localhost:8080".
	PublicURL string
	// ShutdownTimeout bounds graceful shutdown. Default 10 s.
	ShutdownTimeout time.Duration
	// Listener, when set, is served instead of listening on Addr (an inherited
	// socket, tests); Stop closes it.
	Listener net.Listener
	// AllowPrivateWebhooks accepts webhook and channel URLs whose host is
	// loopback, private or link-local, or localhost, and plain http to the
	// local machine (OAKALLOW_WEBHOOKS_ALLOW_PRIVATE, for receivers on the
	// same machine or network; the worker's client must allow them too).
	// Off by default: such URLs are refused with 422 when they are set.
	AllowPrivateWebhooks bool
	// Limits are the rate limits on failed authentication and on token
	// verification, and the trusted proxies that may name the client's
	// address (zero value: defaults).
	Limits LimitsConfig
	// Accounts configures sign-up, e-mail codes and invitations (zero
	// value: defaults, open sign-up off).
	Accounts AccountsConfig
	// Sessions are the lifetimes of people's sessions (zero value: defaults).
	Sessions SessionsConfig
	// Passkeys configures the WebAuthn relying party. An empty RPID means the
	// host of PublicURL, and no Origins the origin of PublicURL.
	Passkeys passkeys.Config
	// OAuthRegistrationsPerIP bounds dynamic client registrations at the
	// MCP connector's authorization server per client address, counted in
	// PostgreSQL across replicas (zero value: 20 per hour).
	OAuthRegistrationsPerIP ratelimit.Limit
	// DiscoveryCaps are the auto-discovery caps every org created through
	// the API starts with (nil: DefaultDiscoveryCaps).
	DiscoveryCaps *DiscoveryCaps
}

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://localhost:8080"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.ShutdownTimeout < 0 {
		return errors.New("api: ShutdownTimeout must be positive")
	}
	if err := c.Sessions.Validate(); err != nil {
		return err
	}
	if c.DiscoveryCaps != nil {
		if err := c.DiscoveryCaps.Validate(); err != nil {
			return fmt.Errorf("api: DiscoveryCaps: %w", err)
		}
	}
	if l := c.OAuthRegistrationsPerIP; l != (ratelimit.Limit{}) {
		if err := l.Validate(); err != nil {
			return fmt.Errorf("api: OAuthRegistrationsPerIP: %w", err)
		}
	}
	if err := c.Accounts.Validate(); err != nil {
		return err
	}
	if c.Passkeys.RPID != "" {
		// Set explicitly: a mistake must stop the server, not turn passkeys off.
		if len(c.Passkeys.Origins) == 0 {
			c.Passkeys.Origins = []string{publicOrigin(c.PublicURL)}
		}
		if err := c.Passkeys.Validate(); err != nil {
			return err
		}
	}
	return c.Limits.Validate()
}

// Deps are the server's collaborators.
type Deps struct {
	Store  *store.Store
	Logger *slog.Logger
	// TemporalReady reports whether Temporal is reachable (for /readyz).
	TemporalReady func(context.Context) error
	// Temporal starts, updates and queries approval workflows. Required for
	// the approval endpoints; nil only in tests that do not touch them.
	Temporal client.Client
	// Keyring signs receipts and execution tokens. Required.
	Keyring *tokens.Keyring
	// Activities redelivers webhooks and tests notification channels; nil disables both (503).
	Activities *activities.Activities
	// SecretBox seals and opens the secrets the server stores (channel credentials, org
	// webhook secrets, execution tokens, idempotent answers): OAKALLOW_SECRET_KEY. Required.
	SecretBox *sealed.Box
	// Slack is the server's Slack app for the "Add to Slack" install
	// (SLACK_CLIENT_ID, SLACK_CLIENT_SECRET); nil turns the install off
	// (503 slack_not_configured). An empty RedirectURL means
	// Config.PublicURL + SlackCallbackPath. NewServer refuses an unusable app.
	Slack *notify.SlackApp
	// SlackHTTPClient makes the install's code exchange with Slack; default
	// notify.NewHTTPClient with the production policy (public https only).
	SlackHTTPClient *http.Client
	// Mailer delivers sign-in codes and invitations (SMTP, or the dev
	// mailbox); nil answers 503 mail_not_configured to e-mail sign-in.
	Mailer mail.Sender
	// DevMailbox, when set, is served at GET /dev/mailbox (go run ./dev
	// only: it shows every code to whoever can reach the server).
	DevMailbox *mail.Mailbox
	// Recorder tunes the audit group committer (zero value: defaults). Its
	// MeterOnly and LowBalanceMicros come from Billing.
	Recorder store.RecorderConfig
	// Billing is the billing mode, credit packs and Stripe account (zero
	// value: mode prepaid, no purchases). NewServer validates it.
	Billing billing.Config
	// Registry is where the API's Prometheus series go and what /metrics
	// serves; nil creates a private one. `go run ./dev` shares it with the
	// in-process worker's series.
	Registry *prometheus.Registry
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Server is oakallow's API process: the HTTP server plus the in-memory
// caches it serves from and the listener that keeps them current.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	api      huma.API
	mux      *http.ServeMux
	keys     *KeyCache
	sessions *SessionCache // recently authenticated sessions (sessioncache.go)
	policies *PolicyCache
	keyring  *tokens.Keyring
	recorder *store.Recorder
	// rt is the runtime core every surface calls (built by Start, with the recorder).
	rt      *runtime.Service
	billing *billing.Service
	// alerts sends credits.low alerts (webhooks, channels, owners' e-mail).
	alerts *billing.Alerts
	// alertsDone is closed when the alert sender has returned (after Stop's cancel).
	alertsDone chan struct{}
	// mcp is the MCP connector at /mcp (built by Start, over rt).
	mcp     http.Handler
	metrics *metrics
	limits  *limits
	// readiness coalesces concurrent /readyz checks.
	readiness singleflight.Group
	http      *http.Server
	ln        net.Listener
	cancel    context.CancelFunc
	done      chan struct{}
	failed    chan error // receives Serve's error when it stops without Stop
	// secureCookies: the session cookie is Secure (all but http://localhost).
	secureCookies bool
	// csrf refuses cross-origin unsafe requests from browsers.
	csrf *http.CrossOriginProtection
	// web is the dashboard, a client of this API (api/web).
	web *web.Dashboard
	// decides serialises this replica's decide Updates per approval (see sendDecision).
	decides decideTurns
	// rp is the WebAuthn relying party (passkeys).
	rp *passkeys.Service
	// oauth is the MCP connector's authorization server (api/oauth).
	oauth *oauth.Server
}

// NewServer builds the server and registers every operation.
func NewServer(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, errors.New("api: Store is required")
	}
	if deps.Keyring == nil {
		return nil, errors.New("api: Keyring is required")
	}
	if deps.SecretBox == nil {
		return nil, errors.New("api: SecretBox is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Billing.Mode == billing.ModeStripe {
		if deps.Billing.SuccessURL == "" {
			deps.Billing.SuccessURL = cfg.PublicURL + "/billing?checkout=success"
		}
		if deps.Billing.CancelURL == "" {
			deps.Billing.CancelURL = cfg.PublicURL + "/billing?checkout=cancelled"
		}
	}
	if err := deps.Billing.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger, mux: http.NewServeMux(), keys: NewKeyCache(deps.Store),
		sessions: newSessionCache(cfg.Sessions.CacheEntries, cfg.Sessions.CacheTTL)}
	s.billing = billing.New(deps.Billing, deps.Store, deps.Logger, deps.Now)
	alerts := billing.AlertsConfig{Store: deps.Store, Mode: deps.Billing.Mode, Mailer: deps.Mailer,
		BillingURL: strings.TrimSuffix(cfg.PublicURL, "/") + "/billing", Logger: deps.Logger, Now: deps.Now}
	if deps.Activities != nil {
		alerts.HandOff = deps.Activities.HandOff
	}
	var err error
	if s.alerts, err = billing.NewAlerts(alerts); err != nil {
		return nil, err
	}
	s.decides.init()
	s.secureCookies = cookieSecure(cfg.PublicURL)
	s.csrf = http.NewCrossOriginProtection()
	s.csrf.SetDenyHandler(http.HandlerFunc(csrfDenied))
	if err := s.csrf.AddTrustedOrigin(publicOrigin(cfg.PublicURL)); err != nil {
		return nil, fmt.Errorf("api: PublicURL: %w", err)
	}
	if rp, err := passkeys.New(passkeyConfig(cfg), deps.Store, deps.Now); err == nil {
		s.rp = rp
	} else if cfg.Passkeys.RPID != "" {
		return nil, fmt.Errorf("api: %w", err)
	} else {
		// Derived from a PublicURL that cannot host passkeys (plain http
		// elsewhere than on this machine): nobody can sign in with one, so
		// no session ever becomes full — fail closed, and say why.
		s.log.Warn("passkeys are off: OAKALLOW_PUBLIC_URL cannot host them; set an https URL or OAKALLOW_WEBAUTHN_RP_ID and OAKALLOW_WEBAUTHN_ORIGINS", "err", err)
	}
	s.metrics = newMetrics(deps.Registry)
	lim, err := newLimits(cfg.Limits, s.metrics.reg)
	if err != nil {
		return nil, err
	}
	s.limits = lim
	s.policies = NewPolicyCache(deps.Store, deps.Logger, s.metrics.observePolicyLoad)
	s.keyring = deps.Keyring

	hc := huma.DefaultConfig("oakallow API", Version)
	hc.Info.Description = "Permission checks, approvals and execution tokens for AI-agent tool calls. " +
		"MCP clients connect at /mcp with an API key or an OAuth 2.1 access token: see [/docs/oauth](/docs/oauth)."
	hc.OpenAPIPath = "/openapi"
	hc.DocsPath = "" // served from embedded assets by registerDocs, not from a CDN
	hc.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		securityScheme: {Type: "apiKey", In: "header", Name: "X-API-Key",
			Description: "An oakallow API key (oak_live_…); also accepted as `Authorization: Bearer`. Scopes name the key tiers an operation accepts (management, standard)."},
		securitySessionCookie: {Type: "apiKey", In: "cookie", Name: sessionCookieSecure,
			Description: "A signed-in person's browser session (the cookie is named oakallow_session on http://localhost). Scopes name the roles an operation accepts (owner, admin, reviewer; enrollment: an enrollment-only session may call it). Select the org with the X-Oakallow-Org header (or the team with X-Oakallow-Team) when you belong to several."},
		securityAgent: {Type: "http", Scheme: "bearer", BearerFormat: "oak_agent_…",
			Description: "An agent identity (Authorization: Bearer oak_agent_…), created by an owner or admin for one org: runtime calls (billed like a standard key) and the MCP connector; never setup or decisions."},
		securitySessionToken: {Type: "http", Scheme: "bearer", BearerFormat: "oak_ses_…",
			Description: "A signed-in person's session token for apps (Authorization: Bearer oak_ses_…). Scopes as for the session cookie."},
	}
	hc.CreateHooks = nil // no $schema links injected into bodies
	s.api = humago.New(s.mux, hc)
	s.api.UseMiddleware(s.countRequests, preventCaching, s.authenticate)
	s.mux.Handle("GET /metrics", s.metrics.handler())
	s.mux.HandleFunc(mcpPath, withMCPCORS(s.serveMCP))
	// /mcp reads no cookie (sessions are not among its credentials), so a
	// cross-origin call cannot ride on a person's session: browser-based MCP
	// clients call it from their own origin with a Bearer token or key.
	s.csrf.AddInsecureBypassPattern(mcpPath)
	registerDocs(s.mux)
	if deps.DevMailbox != nil {
		s.mux.Handle("GET "+devMailboxPath(deps.DevMailbox), deps.DevMailbox.Handler())
	}

	registerHealth(s.api, s)
	registerManagement(s.api, s)
	registerCheck(s.api, s)
	registerReceipts(s.api, s)
	registerCredits(s.api, s)
	registerBilling(s.api, s)
	registerActivity(s.api, s)
	registerApprovals(s.api, s)
	registerTokens(s.api, s)
	registerExecutions(s.api, s)
	registerWebhooks(s.api, s)
	registerDeliveries(s.api, s)
	registerChannels(s.api, s)
	registerApprovers(s.api, s)
	registerSessions(s.api, s)
	registerDeletion(s.api, s)
	registerEmailCodes(s.api, s)
	registerTeam(s.api, s)
	registerPasskeys(s.api, s)
	registerReview(s.api, s)
	if err := registerSlackInstall(s.api, s); err != nil {
		return nil, err
	}
	if err := s.newOAuth(); err != nil {
		return nil, err
	}
	if s.web, err = web.New(web.Config{API: s.mux, Logger: deps.Logger, Now: deps.Now, PublicURL: cfg.PublicURL, SecureCookies: s.secureCookies,
		SlackInstall: deps.Slack != nil, OpenSignUp: cfg.Accounts.OpenSignUp, DevMailbox: devMailboxPath(deps.DevMailbox)}); err != nil {
		return nil, err
	}
	s.web.Register(s.mux)
	return s, nil
}

// Handler is the full HTTP handler with request ids, access log, panic
// recovery and the headers every answer carries.
func (s *Server) Handler() http.Handler {
	return withNoSniff(withObservability(s.log, s.withCSRF(withBodyLimit(maxBodyBytes,
		map[string]int64{StripeWebhookPath: s.billing.Config().WebhookMaxBytes}, s.mux))))
}

// API exposes the huma API (OpenAPI document, tests).
func (s *Server) API() huma.API { return s.api }

// Keys exposes the key cache.
func (s *Server) Keys() *KeyCache { return s.keys }

// Start loads the caches, starts the change listener and begins serving.
// It returns once the listener socket is bound.
func (s *Server) Start(ctx context.Context) error {
	if err := s.keys.Reload(ctx); err != nil {
		return err
	}
	rc := s.deps.Recorder
	if rc.Logger == nil {
		rc.Logger = s.log
	}
	if rc.Now == nil {
		rc.Now = s.deps.Now
	}
	rc.MeterOnly = !s.billing.Config().Mode.Charges()
	rc.LowBalanceMicros = s.billing.Config().LowBalanceMicros
	rec, err := store.NewRecorder(s.deps.Store, rc)
	if err != nil {
		return err
	}
	s.recorder = rec
	if s.rt, err = s.newRuntime(); err == nil {
		s.mcp, err = s.newConnector()
	}
	if err != nil {
		s.recorder.Stop()
		return err
	}
	ln := s.cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			s.recorder.Stop()
			return fmt.Errorf("api: listen %s: %w", s.cfg.Addr, err)
		}
	}
	s.ln = ln
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.done = make(chan struct{})
	s.failed = make(chan error, 1)
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return bg },
	}
	s.http.RegisterOnShutdown(s.web.Stop) // live dashboard streams end, not hold shutdown up
	go s.keys.ReloadLoop(bg, s.log)
	go s.keys.TrackUse(bg, s.deps.Now, s.log)
	go s.limits.sweepLoop(bg, s.deps.Now)
	go s.sweepSignInLoop(bg)
	if s.oauth != nil {
		go s.oauth.SweepLoop(bg)
	}
	go s.listenForChanges(bg)
	s.alertsDone = make(chan struct{})
	go func() {
		defer close(s.alertsDone)
		s.alerts.Run(bg)
	}()
	go s.sessions.trackSessionUse(bg, s.deps.Store, s.log, s.deps.Now)
	go func() {
		defer close(s.done)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.failed <- fmt.Errorf("api: serve %s: %w", ln.Addr(), err)
		}
	}()
	s.log.Info("api listening", "addr", ln.Addr().String())
	return nil
}

// Failed delivers the error that ended serving while the server was meant to run
// (its listener failed: accept errors other than temporary ones); the process
// should then stop and exit non-zero, since it no longer answers. Nothing is
// delivered after Stop. Valid after Start.
func (s *Server) Failed() <-chan error { return s.failed }

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Stop drains in-flight requests (up to ShutdownTimeout) and stops the
// background work.
func (s *Server) Stop() {
	if s.http == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		s.log.Warn("http shutdown", "err", err)
	}
	s.cancel()
	s.policies.Stop()
	<-s.done
	<-s.alertsDone // its transaction rolled back or committed; the next start resumes
	// In-flight requests have finished; commit whatever they queued.
	s.recorder.Stop()
}

// passkeyConfig is the relying party's configuration: as set, or derived
// from PublicURL. A loopback address becomes "localhost": WebAuthn allows
// no IP address as relying-party id, and browsers treat http://localhost
// as a secure context, so the dev environment works there.
func passkeyConfig(cfg Config) passkeys.Config {
	pc := cfg.Passkeys
	if pc.RPID != "" {
		return pc
	}
	u, err := url.Parse(cfg.PublicURL)
	if err != nil {
		return pc
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
		host = "localhost"
	}
	pc.RPID = host
	if len(pc.Origins) == 0 {
		origin := u.Scheme + "://" + host
		if p := u.Port(); p != "" {
			origin += ":" + p
		}
		pc.Origins = []string{origin}
	}
	return pc
}

// devMailboxPath is where the dev mailbox is served, "" without one.
func devMailboxPath(m *mail.Mailbox) string {
	if m == nil {
		return ""
	}
	return "/dev/mailbox"
}
