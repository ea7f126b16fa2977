package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"oakallow/api/ratelimit"
	"oakallow/store"
)

// Scopes a person may grant a client on the MCP connector.
const (
	// ScopeRead lists tools, reads approvals and the connector's resources.
	ScopeRead = "mcp:read"
	// ScopeWrite makes the billable calls: checks, approval requests, mints.
	ScopeWrite = "mcp:write"
)

// supportedScopes in the order they are shown and granted.
var supportedScopes = []string{ScopeRead, ScopeWrite}

// Paths of the server's endpoints.
const (
	MetadataPath         = "/.well-known/oauth-authorization-server"
	ResourceMetadataPath = "/.well-known/oauth-protected-resource"
	AuthorizePath        = "/oauth/authorize"
	TokenPath            = "/oauth/token"
	RegisterPath         = "/oauth/register"
	RevokePath           = "/oauth/revoke"
	// ConsentPath + a request id is the consent page (served by the dashboard).
	ConsentPath = "/oauth/consent/"
	// DocsPath is the page that states what the server supports.
	DocsPath = "/docs/oauth"
)

// Prefixes of the opaque strings the server hands out.
const (
	codePrefix    = "oak_ac_"
	accessPrefix  = "oak_at_"
	refreshPrefix = "oak_rt_"
)

// Config configures the authorization server.
type Config struct {
	// Issuer is the server's issuer identifier (RFC 8414 §2): the API's
	// public URL, https (or http on a loopback host, for development), no
	// query or fragment. Required.
	Issuer string
	// ResourcePath is the path of the protected resource every token is
	// bound to (RFC 8707). Default "/mcp".
	ResourcePath string
	// CodeTTL is how long an authorization code may be exchanged. Default
	// 60 s; at most 60 s.
	CodeTTL time.Duration
	// AccessTTL is an access token's life. Default 1 h.
	AccessTTL time.Duration
	// RefreshTTL is a refresh token's life (each rotation starts a new one).
	// Default 30 days.
	RefreshTTL time.Duration
	// RequestTTL is how long a person has to sign in and consent. Default 10 min.
	RequestTTL time.Duration
	// RegisterLimit bounds dynamic client registrations per client address,
	// counted in PostgreSQL so every replica shares it. Default 20 per hour.
	RegisterLimit ratelimit.Limit
}

// ErrIssuer: the issuer cannot host an OAuth 2.1 server (OAuth 2.1 §1.5:
// TLS everywhere but on the local machine).
var ErrIssuer = errors.New("oauth: Issuer")

// Validate fills defaults and checks values.
func (c *Config) Validate() error {
	c.Issuer = strings.TrimSuffix(c.Issuer, "/")
	u, err := url.Parse(c.Issuer)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil ||
		!(u.Scheme == "https" || u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
		return fmt.Errorf("%w: %q must be an https URL (or http on a loopback host) without query or fragment", ErrIssuer, c.Issuer)
	}
	if c.ResourcePath == "" {
		c.ResourcePath = "/mcp"
	}
	if c.CodeTTL == 0 {
		c.CodeTTL = 60 * time.Second
	}
	if c.AccessTTL == 0 {
		c.AccessTTL = time.Hour
	}
	if c.RefreshTTL == 0 {
		c.RefreshTTL = 30 * 24 * time.Hour
	}
	if c.RequestTTL == 0 {
		c.RequestTTL = 10 * time.Minute
	}
	if c.RegisterLimit == (ratelimit.Limit{}) {
		c.RegisterLimit = ratelimit.Limit{N: 20, Per: time.Hour}
	}
	switch {
	case c.CodeTTL < 0 || c.CodeTTL > 60*time.Second:
		return errors.New("oauth: CodeTTL must be between 0 and 60 s")
	case c.AccessTTL < 0 || c.AccessTTL > 24*time.Hour:
		return errors.New("oauth: AccessTTL must be between 0 and 24 h")
	case c.RefreshTTL < c.AccessTTL || c.RefreshTTL > 365*24*time.Hour:
		return errors.New("oauth: RefreshTTL must be between AccessTTL and 365 days")
	case c.RequestTTL < time.Minute || c.RequestTTL > time.Hour:
		return errors.New("oauth: RequestTTL must be between 1 min and 1 h")
	}
	if err := c.RegisterLimit.Validate(); err != nil {
		return fmt.Errorf("oauth: RegisterLimit: %w", err)
	}
	return nil
}

// Resource is the URL every token is bound to.
func (c Config) Resource() string { return c.Issuer + c.ResourcePath }

// ResourceMetadataURL is where the protected resource's metadata is (RFC 9728
// §3.1: the well-known path inserted before the resource's path).
func (c Config) ResourceMetadataURL() string { return c.Issuer + ResourceMetadataPath + c.ResourcePath }

// Deps are the server's collaborators.
type Deps struct {
	// Store is the database. Required.
	Store *store.Store
	// Logger gets the causes of internal errors; default discard.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// ClientIP is the request's client address (behind trusted proxies:
	// the forwarded one). Default: the peer address.
	ClientIP func(*http.Request) netip.Addr
	// RequestID names the request in log lines and audit details. Optional.
	RequestID func(context.Context) string
	// AdmitAuthorization spends one authorization request of the client's
	// budget before anything else is done with it: each valid request
	// stores a row until it is answered or expires. It returns 0 to go on,
	// or the seconds after which a retry may succeed and why it may not
	// now. Default: no limit.
	AdmitAuthorization func(*http.Request) (retryAfter int, why string)
}

// Server is the authorization server.
type Server struct {
	cfg Config
	d   Deps
	log *slog.Logger
}

// New builds the server.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, errors.New("oauth: Store is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.ClientIP == nil {
		deps.ClientIP = peerAddr
	}
	if deps.RequestID == nil {
		deps.RequestID = func(context.Context) string { return "" }
	}
	if deps.AdmitAuthorization == nil {
		deps.AdmitAuthorization = func(*http.Request) (int, string) { return 0, "" }
	}
	return &Server{cfg: cfg, d: deps, log: deps.Logger}, nil
}

// Config is the server's configuration, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Register mounts the server's endpoints on the host's mux, for the host's mux; CORS lets
// browser-based MCP clients call them (they carry no cookie, so no ambient
// authority is exposed).
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+MetadataPath, cors(s.metadata))
	mux.HandleFunc("GET "+ResourceMetadataPath, cors(s.resourceMetadata))
	mux.HandleFunc("GET "+ResourceMetadataPath+"/{rest...}", cors(s.resourceMetadata))
	mux.HandleFunc("GET "+AuthorizePath, s.authorize)
	mux.HandleFunc("GET "+DocsPath, s.docs)
	mux.HandleFunc("POST "+TokenPath, cors(s.token))
	mux.HandleFunc("POST "+RegisterPath, cors(s.register))
	mux.HandleFunc("POST "+RevokePath, cors(s.revoke))
	for _, p := range []string{MetadataPath, ResourceMetadataPath, ResourceMetadataPath + "/{rest...}", TokenPath, RegisterPath, RevokePath} {
		mux.HandleFunc("OPTIONS "+p, cors(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	}
}

// CrossOriginPaths are the POST endpoints that browser-based clients call
// from another origin; the host's CSRF protection must let them through
// (they authenticate nothing by cookie).
func CrossOriginPaths() []string {
	return []string{"POST " + TokenPath, "POST " + RegisterPath, "POST " + RevokePath}
}

func cors(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
		h.Set("Access-Control-Max-Age", "600")
		next(w, r)
	}
}

// authServerMetadata is the RFC 8414 §2 document.
type authServerMetadata struct {
	Issuer                                 string   `json:"issuer"`
	AuthorizationEndpoint                  string   `json:"authorization_endpoint"`
	TokenEndpoint                          string   `json:"token_endpoint"`
	RegistrationEndpoint                   string   `json:"registration_endpoint"`
	RevocationEndpoint                     string   `json:"revocation_endpoint"`
	ScopesSupported                        []string `json:"scopes_supported"`
	ResponseTypesSupported                 []string `json:"response_types_supported"`
	ResponseModesSupported                 []string `json:"response_modes_supported"`
	GrantTypesSupported                    []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported      []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported []string `json:"revocation_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported          []string `json:"code_challenge_methods_supported"`
	ServiceDocumentation                   string   `json:"service_documentation"`
	AuthorizationResponseIssParameter      bool     `json:"authorization_response_iss_parameter_supported"`
}

func (s *Server) metadata(w http.ResponseWriter, _ *http.Request) {
	iss := s.cfg.Issuer
	writeJSON(w, http.StatusOK, authServerMetadata{
		Issuer:                                 iss,
		AuthorizationEndpoint:                  iss + AuthorizePath,
		TokenEndpoint:                          iss + TokenPath,
		RegistrationEndpoint:                   iss + RegisterPath,
		RevocationEndpoint:                     iss + RevokePath,
		ScopesSupported:                        supportedScopes,
		ResponseTypesSupported:                 []string{"code"},
		ResponseModesSupported:                 []string{"query"},
		GrantTypesSupported:                    []string{"authorization_code", "refresh_token"},
		TokenEndpointAuthMethodsSupported:      []string{"none"},
		RevocationEndpointAuthMethodsSupported: []string{"none"},
		CodeChallengeMethodsSupported:          []string{"S256"},
		ServiceDocumentation:                   iss + DocsPath,
		AuthorizationResponseIssParameter:      true,
	})
}

// resourceMetadata is the RFC 9728 §2 document of /mcp. The root path
// answers it too, for clients that look there first: /mcp is the only
// resource this server protects.
func (s *Server) resourceMetadata(w http.ResponseWriter, r *http.Request) {
	if rest := r.PathValue("rest"); rest != "" && "/"+rest != s.cfg.ResourcePath {
		writeError(w, http.StatusNotFound, "invalid_request", "no protected resource at this path")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"resource":                 s.cfg.Resource(),
		"authorization_servers":    []string{s.cfg.Issuer},
		"scopes_supported":         supportedScopes,
		"bearer_methods_supported": []string{"header"},
		"resource_name":            "oakallow MCP connector",
		"resource_documentation":   s.cfg.Issuer + DocsPath,
	})
}

// Challenge is the WWW-Authenticate value of a request to the protected
// resource without a usable token (RFC 6750 §3, RFC 9728 §5.1); errCode is
// "" for a request that sent no token, else invalid_token or
// insufficient_scope (with the scope it needs).
func (s *Server) Challenge(errCode, scope string) string {
	v := `Bearer resource_metadata="` + s.cfg.ResourceMetadataURL() + `"`
	if errCode != "" {
		v += `, error="` + errCode + `"`
	}
	if scope == "" {
		scope = strings.Join(supportedScopes, " ")
	}
	return v + `, scope="` + scope + `"`
}

// writeJSON answers v; nothing the server answers may be cached (RFC 6749 §5.1).
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers an error response of RFC 6749 §5.2 (and RFC 7591 §3.2.2).
func writeError(w http.ResponseWriter, status int, code, description string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="oakallow"`)
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}

// newSecret is an opaque credential with its prefix and its SHA-256.
func newSecret(prefix string) (string, []byte) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	v := prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return v, hashOf(v)
}

func hashOf(v string) []byte {
	h := sha256.Sum256([]byte(v))
	return h[:]
}

// audit is one entry of the audit log.
type audit struct {
	kind, orgID, teamID, actorKind, actorID, subject, outcome string
	details                                                   map[string]any
}

// Actor kinds of the server's audit entries.
const (
	actorUser     = "user"
	actorClient   = "oauth_client"
	actorClientIP = "client_ip"
)

// Audit kinds.
const (
	KindClientRegistered = "oauth.client_registered"
	KindAuthorized       = "oauth.authorized"
	KindDenied           = "oauth.denied"
	KindTokenIssued      = "oauth.token_issued"
	KindTokenRefreshed   = "oauth.token_refreshed"
	KindCodeReused       = "oauth.code_reused"
	KindRefreshReused    = "oauth.refresh_reused"
	KindRevoked          = "oauth.revoked"
)

func (s *Server) audit(ctx context.Context, q *store.Queries, a audit) error {
	return writeAudit(ctx, q, s.d.Now(), s.d.RequestID(ctx), a)
}

// writeAudit records a, which occurred at, for the request requestID ("":
// none).
func writeAudit(ctx context.Context, q *store.Queries, at time.Time, requestID string, a audit) error {
	if a.details == nil {
		a.details = map[string]any{}
	}
	if requestID != "" {
		a.details["request_id"] = requestID
	}
	raw, err := json.Marshal(a.details)
	if err != nil {
		return fmt.Errorf("encode audit details of %s: %w", a.kind, err)
	}
	if err := q.InsertAuditEvent(ctx, store.InsertAuditEventParams{ID: store.NewID("evt"), OrgID: a.orgID, TeamID: a.teamID,
		OccurredAt: at, ActorKind: a.actorKind, ActorID: a.actorID, Kind: a.kind, Subject: a.subject,
		Outcome: a.outcome, Details: raw}); err != nil {
		return fmt.Errorf("audit %s: %w", a.kind, err)
	}
	return nil
}

// internal logs an unexpected error and answers server_error.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.log.ErrorContext(r.Context(), "oauth request failed", "path", r.URL.Path, "request_id", s.d.RequestID(r.Context()), "err", err)
	writeError(w, http.StatusInternalServerError, "server_error", "the server could not answer; try again")
}

// What the sweep (Sweep) deletes, and how much at once.
const (
	// expiredAge: requests, codes and tokens are deleted this long after
	// they expire (a used refresh token is kept until then, so its reuse
	// is still detected).
	expiredAge = time.Hour
	// endedGrantAge: a grant that ended this long ago is deleted with its
	// codes and tokens — revoked, or with every token expired (its
	// expires_at: the expiry of its latest refresh token). Nothing it held
	// can work again, and it is not among the org's connected clients; the
	// authorization, refreshes and revocation stay in the audit log. The
	// wait keeps an ended connection's rows for a month for anyone looking
	// into it. A grant that can still be refreshed has not ended.
	endedGrantAge = 30 * 24 * time.Hour
	// unusedClientAge: a client that no person has consented to a day after
	// it registered is deleted, and so is one whose every grant ended
	// endedGrantAge ago (it has none once they are swept). Registration is
	// open to anyone (RFC 7591), so without this the table only grows. An
	// MCP client registers right before it sends the person to the consent
	// page, and a consent has RequestTTL (at most an hour). A client that
	// comes back later with its old client_id is refused (unknownClient;
	// invalid_client at the token endpoint) and must register again.
	unusedClientAge = 24 * time.Hour
	// sweepBatch rows of a table are deleted per statement (its own short
	// transaction, cascades included: tens of milliseconds), and a pass
	// runs a bounded number of statements per table: a backlog — a flood
	// of authorization requests, a client refreshing in a loop — is worked
	// off over several passes instead of in one statement whose transaction
	// holds millions of row locks and all their WAL until it ends.
	sweepBatch = 500
	// expiredSweepBatches bounds the statements per pass of each of the
	// requests, codes and tokens: 50,000 rows of each per pass and replica,
	// above what the default OAKALLOW_LIMIT_OAUTH_AUTHORIZE_ALL admits
	// (6,000 requests per 10 minutes) and what tens of thousands of
	// connected clients refreshing every hour issue; tokens have no other
	// bound, since a refresh needs no consent.
	expiredSweepBatches = 100
	// endedSweepBatches bounds those of the grants and the clients, whose
	// deletes cascade and which come only as fast as people consent and
	// clients register (per address, in PostgreSQL): 10,000 per pass.
	endedSweepBatches = 20
)

// sweepBounds is how much a pass deletes: batch rows per statement, at
// most expired statements per table of requests, codes and tokens and
// ended per table of grants and clients.
type sweepBounds struct {
	batch          int32
	expired, ended int
}

// Sweep deletes requests, codes and tokens long past their expiry, then
// grants that ended long ago (see endedGrantAge), then clients nobody uses
// (see unusedClientAge), each in bounded batches (sweepBatch,
// expiredSweepBatches, endedSweepBatches); what a pass leaves is left to
// the next. Replicas may sweep at once: each statement skips the rows
// another replica is deleting, so none fails on another.
func (s *Server) Sweep(ctx context.Context) error {
	return s.sweep(ctx, sweepBounds{batch: sweepBatch, expired: expiredSweepBatches, ended: endedSweepBatches})
}

// sweep runs each of the sweep's deletes b.batch rows per statement, for at
// most its number of statements or until a statement finds fewer than
// b.batch.
func (s *Server) sweep(ctx context.Context, b sweepBounds) error {
	now := s.d.Now()
	expired, ended := now.Add(-expiredAge), now.Add(-endedGrantAge)
	st := s.d.Store
	for _, step := range []struct {
		what    string
		batches int
		del     func(context.Context, int32) (int64, error)
	}{
		{"requests", b.expired, func(ctx context.Context, n int32) (int64, error) {
			return st.SweepOAuthRequests(ctx, store.SweepOAuthRequestsParams{Cutoff: expired, RowLimit: n})
		}},
		{"codes", b.expired, func(ctx context.Context, n int32) (int64, error) {
			return st.SweepOAuthCodes(ctx, store.SweepOAuthCodesParams{Cutoff: expired, RowLimit: n})
		}},
		{"tokens", b.expired, func(ctx context.Context, n int32) (int64, error) {
			return st.SweepOAuthTokens(ctx, store.SweepOAuthTokensParams{Cutoff: expired, RowLimit: n})
		}},
		// Before the clients: a client whose grants all go here has none
		// left, and goes in the same pass.
		{"grants", b.ended, func(ctx context.Context, n int32) (int64, error) {
			return st.SweepOAuthGrants(ctx, store.SweepOAuthGrantsParams{EndedBefore: ended, RowLimit: n})
		}},
		{"clients", b.ended, func(ctx context.Context, n int32) (int64, error) {
			return st.SweepOAuthClients(ctx, store.SweepOAuthClientsParams{UnusedBefore: now.Add(-unusedClientAge),
				EndedBefore: ended, RowLimit: n})
		}},
	} {
		var total int64
		var err error
		for range step.batches {
			var n int64
			n, err = step.del(ctx, b.batch)
			total += n
			if err != nil || n < int64(b.batch) {
				break
			}
		}
		if total > 0 {
			s.log.Info("oauth sweep", "table", step.what, "deleted", total)
		}
		if err != nil {
			return fmt.Errorf("sweep oauth %s: %w", step.what, err)
		}
	}
	return nil
}

// SweepLoop sweeps every ten minutes until ctx ends.
func (s *Server) SweepLoop(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("oauth sweep", "err", err)
			}
		}
	}
}

func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

//go:embed docs.md
var docsMarkdown string

// docs serves the page that states what the server supports, with this
// server's issuer in it.
func (s *Server) docs(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write([]byte(strings.ReplaceAll(docsMarkdown, "{{ISSUER}}", s.cfg.Issuer)))
}
