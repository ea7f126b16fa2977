package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/prometheus/client_golang/prometheus"

	"oakallow/api/ratelimit"
	"oakallow/store"
)

// Rate limits on failed authentication, on token verification, and on the
// unauthenticated writes that store a row (OAuth authorization requests,
// passkey ceremonies).
//
// The buckets live in each replica's memory (package ratelimit): a limit
// applies per replica, so N replicas behind a load balancer let through up
// to N times each budget. That is deliberate: a shared counter in
// PostgreSQL would put a write on every failed request, which is exactly
// the traffic these limits exist to make cheap, and the budgets are there
// to stop floods, not to meter them.
//
// A successful authentication takes no lock: it asks the per-address
// limiter whether any address is held back at all (one atomic load), and
// only then where the request comes from.

// LimitsConfig sets the rate limits. A zero Limit takes its default;
// ratelimit.Limit{Off: true} turns one off.
type LimitsConfig struct {
	// AuthFailuresPerIP: missing, unknown or revoked API keys from one client
	// address (IPv6: its /64). Past the budget, every request from that
	// address that needs a key is refused with 429 — a correct key too, or
	// the refusal would not slow a guesser down. Default 60 per minute.
	AuthFailuresPerIP ratelimit.Limit
	// AuthFailuresPerKey: failed authentications with one well-formed but
	// unknown or revoked key, from any address. Past the budget that key is
	// answered 429 instead of 401. Default 10 per minute.
	AuthFailuresPerKey ratelimit.Limit
	// VerifyFailuresPerIP: token verifications from one client address that
	// fail (invalid, expired, wrong org, parameters mismatch, replayed). Past
	// the budget every verification from the address is refused. Default 300
	// per minute (a tool server's host verifies for many agents).
	VerifyFailuresPerIP ratelimit.Limit
	// VerifyFailuresPerKey: the same, per API key. Default 120 per minute:
	// above what a busy tool server's expired or retried tokens come to.
	VerifyFailuresPerKey ratelimit.Limit
	// VerifiesPerKey caps all verifications made with one API key. Default
	// 100 per second.
	VerifiesPerKey ratelimit.Limit
	// OAuthAuthorizePerIP: requests to the OAuth authorization endpoint
	// (GET /oauth/authorize) from one client address. Anyone may call it,
	// and each valid request stores an authorization request until it is
	// answered or expires. Default 30 per minute.
	OAuthAuthorizePerIP ratelimit.Limit
	// OAuthAuthorizeAll: the same from every address together: how fast a
	// flood from many addresses can add authorization requests. Default 600
	// per minute.
	OAuthAuthorizeAll ratelimit.Limit
	// PasskeyOptionsPerIP: passkey sign-in and enrollment options from one
	// client address; each stores a WebAuthn ceremony until it is finished
	// or expires. Default 30 per minute.
	PasskeyOptionsPerIP ratelimit.Limit
	// PasskeyOptionsAll: the same from every address together. Default 1200
	// per minute.
	PasskeyOptionsAll ratelimit.Limit
	// MaxTracked is how many addresses or keys each limit keeps state for
	// (at least 64). Full buckets are not kept; past the bound the fullest
	// of a few sampled buckets is forgotten. Default 65536.
	MaxTracked int
	// TrustedProxies are the addresses of the reverse proxies and load
	// balancers in front of the server. Only a request whose connection
	// comes from one of them has its client address taken from
	// X-Forwarded-For (the rightmost address that is not itself a trusted
	// proxy). Empty (the default): X-Forwarded-For is ignored and the
	// connection's address is the client's.
	TrustedProxies []netip.Prefix
}

// Default limits.
var (
	defaultAuthFailuresPerIP    = ratelimit.Limit{N: 60, Per: time.Minute}
	defaultAuthFailuresPerKey   = ratelimit.Limit{N: 10, Per: time.Minute}
	defaultVerifyFailuresPerIP  = ratelimit.Limit{N: 300, Per: time.Minute}
	defaultVerifyFailuresPerKey = ratelimit.Limit{N: 120, Per: time.Minute}
	defaultVerifiesPerKey       = ratelimit.Limit{N: 100, Per: time.Second}
	defaultOAuthAuthorizePerIP  = ratelimit.Limit{N: 30, Per: time.Minute}
	defaultOAuthAuthorizeAll    = ratelimit.Limit{N: 600, Per: time.Minute}
	defaultPasskeyOptionsPerIP  = ratelimit.Limit{N: 30, Per: time.Minute}
	defaultPasskeyOptionsAll    = ratelimit.Limit{N: 1200, Per: time.Minute}
)

const defaultMaxTracked = 65536

// Validate fills defaults and checks values.
func (c *LimitsConfig) Validate() error {
	for _, f := range []struct {
		name string
		l    *ratelimit.Limit
		def  ratelimit.Limit
	}{
		{"AuthFailuresPerIP", &c.AuthFailuresPerIP, defaultAuthFailuresPerIP},
		{"AuthFailuresPerKey", &c.AuthFailuresPerKey, defaultAuthFailuresPerKey},
		{"VerifyFailuresPerIP", &c.VerifyFailuresPerIP, defaultVerifyFailuresPerIP},
		{"VerifyFailuresPerKey", &c.VerifyFailuresPerKey, defaultVerifyFailuresPerKey},
		{"VerifiesPerKey", &c.VerifiesPerKey, defaultVerifiesPerKey},
		{"OAuthAuthorizePerIP", &c.OAuthAuthorizePerIP, defaultOAuthAuthorizePerIP},
		{"OAuthAuthorizeAll", &c.OAuthAuthorizeAll, defaultOAuthAuthorizeAll},
		{"PasskeyOptionsPerIP", &c.PasskeyOptionsPerIP, defaultPasskeyOptionsPerIP},
		{"PasskeyOptionsAll", &c.PasskeyOptionsAll, defaultPasskeyOptionsAll},
	} {
		if *f.l == (ratelimit.Limit{}) {
			*f.l = f.def
		}
		if err := f.l.Validate(); err != nil {
			return fmt.Errorf("api: Limits.%s: %w", f.name, err)
		}
	}
	if c.MaxTracked == 0 {
		c.MaxTracked = defaultMaxTracked
	}
	if c.MaxTracked < ratelimit.MinTracked || c.MaxTracked > ratelimit.MaxTracked {
		return fmt.Errorf("api: Limits.MaxTracked must be between %d and %d", ratelimit.MinTracked, ratelimit.MaxTracked)
	}
	for i, p := range c.TrustedProxies {
		if !p.IsValid() {
			return fmt.Errorf("api: Limits.TrustedProxies[%d] is not a valid prefix", i)
		}
		c.TrustedProxies[i] = p.Masked()
	}
	return nil
}

// ParseTrustedProxies reads a comma-separated list of IP addresses and CIDR
// prefixes (OAKALLOW_TRUSTED_PROXIES).
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or CIDR prefix", f)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR prefix", f)
		}
		a = plainAddr(a)
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Names of the limits: the metrics' limit label and the audit subject.
const (
	limitAuthFailuresPerIP    = "auth_failures_per_ip"
	limitAuthFailuresPerKey   = "auth_failures_per_key"
	limitVerifyFailuresPerIP  = "verify_failures_per_ip"
	limitVerifyFailuresPerKey = "verify_failures_per_key"
	limitVerifiesPerKey       = "verifies_per_key"
	limitOAuthAuthorizePerIP  = "oauth_authorize_per_ip"
	limitOAuthAuthorizeAll    = "oauth_authorize_all"
	limitPasskeyOptionsPerIP  = "passkey_options_per_ip"
	limitPasskeyOptionsAll    = "passkey_options_all"
)

// limitNames are every limit's name, for the metrics' labels.
var limitNames = []string{limitAuthFailuresPerIP, limitAuthFailuresPerKey, limitVerifyFailuresPerIP,
	limitVerifyFailuresPerKey, limitVerifiesPerKey, limitOAuthAuthorizePerIP, limitOAuthAuthorizeAll,
	limitPasskeyOptionsPerIP, limitPasskeyOptionsAll}

// kindRateLimited is the audit kind written once when a limit is crossed.
const kindRateLimited = "rate_limit.exceeded"

// limits are a server's limiters.
type limits struct {
	authIP        *ratelimit.Limiter[netip.Addr]
	authKey       *ratelimit.Limiter[[sha256.Size]byte]
	verifyFailIP  *ratelimit.Limiter[netip.Addr]
	verifyFailKey *ratelimit.Limiter[string]
	verifyKey     *ratelimit.Limiter[string]
	// Unauthenticated writes that store a row: OAuth authorization
	// requests and passkey ceremonies.
	authorize      writeLimit
	passkeyOptions writeLimit
	trusted        []netip.Prefix
}

// writeLimit bounds a write anyone may make: per client address, and for
// every address together, so that neither one address nor a flood from
// many can store rows faster than the limits allow (the rows expire and
// are swept, so the table stays bounded too).
type writeLimit struct {
	ipName, allName string
	ip              *ratelimit.Limiter[netip.Addr]
	all             *ratelimit.Limiter[struct{}]
}

func newWriteLimit(ipName string, perIP ratelimit.Limit, allName string, all ratelimit.Limit, maxTracked int) (writeLimit, error) {
	w := writeLimit{ipName: ipName, allName: allName}
	var err error
	if w.ip, err = ratelimit.New[netip.Addr](perIP, maxTracked); err != nil {
		return w, err
	}
	// One key: the smallest table a limiter may have.
	w.all, err = ratelimit.New[struct{}](all, ratelimit.MinTracked)
	return w, err
}

// spend takes one event of ip from the address's budget, then from
// everyone's, and returns the refusing limit's name and verdict, if any. An
// address past its own budget spends nothing of everyone's.
func (w writeLimit) spend(ip netip.Addr, now time.Time) (string, ratelimit.Verdict) {
	if v := w.ip.Spend(ip, now); v.Limited {
		return w.ipName, v
	}
	if v := w.all.Spend(struct{}{}, now); v.Limited {
		return w.allName, v
	}
	return "", ratelimit.Verdict{}
}

// newLimits builds the limiters of a validated configuration and registers
// a gauge of each one's tracked keys.
func newLimits(c LimitsConfig, reg *prometheus.Registry) (*limits, error) {
	l := &limits{trusted: c.TrustedProxies}
	var err error
	if l.authIP, err = ratelimit.New[netip.Addr](c.AuthFailuresPerIP, c.MaxTracked); err != nil {
		return nil, err
	}
	if l.authKey, err = ratelimit.New[[sha256.Size]byte](c.AuthFailuresPerKey, c.MaxTracked); err != nil {
		return nil, err
	}
	if l.verifyFailIP, err = ratelimit.New[netip.Addr](c.VerifyFailuresPerIP, c.MaxTracked); err != nil {
		return nil, err
	}
	if l.verifyFailKey, err = ratelimit.New[string](c.VerifyFailuresPerKey, c.MaxTracked); err != nil {
		return nil, err
	}
	if l.verifyKey, err = ratelimit.New[string](c.VerifiesPerKey, c.MaxTracked); err != nil {
		return nil, err
	}
	if l.authorize, err = newWriteLimit(limitOAuthAuthorizePerIP, c.OAuthAuthorizePerIP,
		limitOAuthAuthorizeAll, c.OAuthAuthorizeAll, c.MaxTracked); err != nil {
		return nil, err
	}
	if l.passkeyOptions, err = newWriteLimit(limitPasskeyOptionsPerIP, c.PasskeyOptionsPerIP,
		limitPasskeyOptionsAll, c.PasskeyOptionsAll, c.MaxTracked); err != nil {
		return nil, err
	}
	for name, tracked := range map[string]func() int{
		limitAuthFailuresPerIP: l.authIP.Tracked, limitAuthFailuresPerKey: l.authKey.Tracked,
		limitVerifyFailuresPerIP: l.verifyFailIP.Tracked, limitVerifyFailuresPerKey: l.verifyFailKey.Tracked,
		limitVerifiesPerKey: l.verifyKey.Tracked, limitOAuthAuthorizePerIP: l.authorize.ip.Tracked,
		limitPasskeyOptionsPerIP: l.passkeyOptions.ip.Tracked,
	} {
		err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "oakallow_rate_limit_tracked_keys",
			Help:        "Client addresses or API keys a rate limit currently holds state for (bounded by OAKALLOW_LIMIT_TRACKED_KEYS).",
			ConstLabels: prometheus.Labels{"limit": name},
		}, func() float64 { return float64(tracked()) }))
		if err != nil {
			return nil, fmt.Errorf("api: register rate limit gauge: %w", err)
		}
	}
	return l, nil
}

// sweepInterval is how often idle buckets are refilled and forgotten, so
// memory and the hot path's fast test reflect only clients still held back.
const sweepInterval = 10 * time.Second

// sweepLoop runs until ctx ends.
func (l *limits) sweepLoop(ctx context.Context, now func() time.Time) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n := now()
			l.authIP.Sweep(n)
			l.authKey.Sweep(n)
			l.verifyFailIP.Sweep(n)
			l.verifyFailKey.Sweep(n)
			l.verifyKey.Sweep(n)
			for _, w := range []writeLimit{l.authorize, l.passkeyOptions} {
				w.ip.Sweep(n)
				w.all.Sweep(n)
			}
		}
	}
}

// clientIP is the request's client address as a rate-limit key: the
// connection's peer, or — only when the peer is a trusted proxy — the
// rightmost X-Forwarded-For address that is not a trusted proxy. An IPv6
// address stands for its /64, the block one subscriber gets.
func (l *limits) clientIP(ctx huma.Context) netip.Addr {
	peer := plainAddr(parsePeer(ctx.RemoteAddr()))
	if len(l.trusted) == 0 || !l.isTrusted(peer) {
		return bucketAddr(peer)
	}
	var hops []string
	ctx.EachHeader(func(name, value string) {
		if strings.EqualFold(name, "X-Forwarded-For") {
			hops = append(hops, value) // in the order the lines arrived
		}
	})
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, ok := parseHop(parts[j])
			if !ok {
				// A trusted proxy passed on something that is not an
				// address: the hop it came from is the last one we know.
				return bucketAddr(client)
			}
			client = plainAddr(a)
			if !l.isTrusted(client) {
				return bucketAddr(client)
			}
		}
	}
	return bucketAddr(client)
}

func (l *limits) isTrusted(a netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parsePeer reads a connection's remote address (host:port). Anything else
// (a Unix socket) is the zero Addr: such clients share one bucket.
func parsePeer(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr()
	}
	a, _ := netip.ParseAddr(remote)
	return a
}

// parseHop reads one X-Forwarded-For element: an address, possibly with a
// port or in brackets.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a, true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), true
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return a, true
	}
	return netip.Addr{}, false
}

// plainAddr is a without zone, and IPv4 when it is IPv4 mapped into IPv6.
func plainAddr(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// bucketAddr is the key a plain address is counted under: IPv4 as is, IPv6
// by its /64.
func bucketAddr(a netip.Addr) netip.Addr {
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a
}

// addrString is how a bucket's address is shown in audit entries and logs.
func addrString(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "unknown"
	case a.Is6():
		return a.String() + "/64"
	}
	return a.String()
}

// limited is who a refusal is about, for its audit entry.
type limited struct {
	ip        netip.Addr // per-address limits
	principal *Principal // per-key limits of an authenticated key
	keyHash   *[sha256.Size]byte
	keyPrefix string // display prefix of a failing, well-formed key
}

// refuse answers 429 with Retry-After, counts it, and audits the crossing
// when v is the first refusal of an episode.
func (s *Server) refuse(ctx huma.Context, limit string, v ratelimit.Verdict, who limited, detail string) {
	s.metrics.rateLimited.WithLabelValues(limit).Inc()
	if v.Crossed {
		s.metrics.limitCrossings.WithLabelValues(limit).Inc()
		s.auditCrossing(ctx.Context(), limit, v, who)
	}
	secs := v.RetryAfterSeconds()
	ctx.SetHeader("Retry-After", strconv.Itoa(secs))
	writeProblem(s.api, ctx, problem(http.StatusTooManyRequests, CodeRateLimited,
		fmt.Sprintf("%s; retry after %d s", detail, secs)))
}

// limitOf is a limit's configured shape, for audit details.
func (s *Server) limitOf(name string) ratelimit.Limit {
	switch name {
	case limitAuthFailuresPerIP:
		return s.limits.authIP.Limit()
	case limitAuthFailuresPerKey:
		return s.limits.authKey.Limit()
	case limitVerifyFailuresPerIP:
		return s.limits.verifyFailIP.Limit()
	case limitVerifyFailuresPerKey:
		return s.limits.verifyFailKey.Limit()
	case limitOAuthAuthorizePerIP:
		return s.limits.authorize.ip.Limit()
	case limitOAuthAuthorizeAll:
		return s.limits.authorize.all.Limit()
	case limitPasskeyOptionsPerIP:
		return s.limits.passkeyOptions.ip.Limit()
	case limitPasskeyOptionsAll:
		return s.limits.passkeyOptions.all.Limit()
	}
	return s.limits.verifyKey.Limit()
}

// admitWrite spends one event of the client ip against w. Past either
// limit it counts and audits the refusal like refuse does and returns the
// 429 problem (with Retry-After) to answer — what is refused is named in
// its detail — and the seconds until a retry may succeed.
func (s *Server) admitWrite(ctx context.Context, w writeLimit, ip netip.Addr, what string) (int, *Problem) {
	name, v := w.spend(ip, s.deps.Now())
	if !v.Limited {
		return 0, nil
	}
	s.metrics.rateLimited.WithLabelValues(name).Inc()
	if v.Crossed {
		s.metrics.limitCrossings.WithLabelValues(name).Inc()
		s.auditCrossing(ctx, name, v, limited{ip: ip})
	}
	from := "from this address"
	if name == w.allName {
		from = "from all addresses together; the server is under a flood"
	}
	secs := v.RetryAfterSeconds()
	p := problem(http.StatusTooManyRequests, CodeRateLimited, fmt.Sprintf("too many %s %s; retry after %d s", what, from, secs))
	p.headers = http.Header{"Retry-After": []string{strconv.Itoa(secs)}}
	return secs, p
}

// crossingDetails are the audit details of a crossed limit.
type crossingDetails struct {
	Limit       string `json:"limit"`
	Allowed     string `json:"allowed"`
	RetryAfterS int    `json:"retry_after_seconds"`
	ClientIP    string `json:"client_ip"`
	KeyID       string `json:"key_id,omitempty"`
	KeyPrefix   string `json:"key_prefix,omitempty"`
	RequestID   string `json:"request_id,omitempty"`
}

// auditCrossing writes the one audit entry of a crossed limit, and logs it.
// A per-key limit of a key that belongs to an org is audited in that org (a
// revoked key still in use shows in its org's activity); a per-address
// limit, or a key nobody issued, belongs to no org: an installation-level
// entry (empty org id) for operators. It never records a key, only the
// display prefix of a failing one.
func (s *Server) auditCrossing(ctx context.Context, limit string, v ratelimit.Verdict, who limited) {
	ctx = context.WithoutCancel(ctx)
	d := crossingDetails{Limit: limit, Allowed: s.limitOf(limit).String(), RetryAfterS: v.RetryAfterSeconds(),
		ClientIP: addrString(who.ip), KeyPrefix: who.keyPrefix, RequestID: requestIDFrom(ctx)}
	evt := store.AuditRecord{ID: store.NewID("evt"), OccurredAt: s.now(), Kind: kindRateLimited, Subject: limit,
		Outcome: "limited", ActorKind: actorClientIP, ActorID: d.ClientIP}
	switch {
	case who.principal != nil:
		p := who.principal
		evt.OrgID, evt.TeamID, evt.ActorKind, evt.ActorID, d.KeyID = p.OrgID, p.TeamID, p.Kind, p.KeyID, p.KeyID
	case who.keyHash != nil:
		evt.ActorKind, evt.ActorID = actorAPIKey, ""
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		k, err := s.deps.Store.GetAPIKeyByHash(lctx, who.keyHash[:])
		cancel()
		switch {
		case err == nil:
			evt.OrgID, evt.TeamID, evt.ActorID, d.KeyID = k.OrgID, k.TeamID, k.ID, k.ID
		case !errors.Is(err, store.ErrNotFound):
			s.log.WarnContext(ctx, "rate limit: look up the failing key", "request_id", d.RequestID, "err", err)
		}
	}
	s.log.WarnContext(ctx, "rate limit crossed", "request_id", d.RequestID, "limit", limit, "allowed", d.Allowed,
		"client_ip", d.ClientIP, "key_id", d.KeyID, "key_prefix", d.KeyPrefix, "org_id", evt.OrgID)
	raw, err := json.Marshal(d)
	if err != nil {
		s.log.ErrorContext(ctx, "rate limit: encode audit details", "err", err)
		return
	}
	evt.Details = raw
	if err := s.recorder.Record(ctx, store.Entry{Event: evt}); err != nil {
		s.log.WarnContext(ctx, "rate limit: audit the crossing", "request_id", d.RequestID, "err", err)
	}
}

// Actor kinds of rate-limit audit entries that name no authenticated key.
const (
	actorClientIP = "client_ip"
	actorAPIKey   = "api_key"
)

// displayPrefixLen is the length of a key's display prefix (oak_live_ and
// six hex digits), which is shown in the dashboard and is not secret.
const displayPrefixLen = len(apiKeyPrefix) + 6

// wellFormedKey reports whether raw has the shape of an API key (oak_live_
// and 32 lower-case hex digits), so that counting and auditing it per key
// means something.
func wellFormedKey(raw string) bool {
	if len(raw) != apiKeyLen || !strings.HasPrefix(raw, apiKeyPrefix) {
		return false
	}
	for _, c := range []byte(raw[len(apiKeyPrefix):]) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// authFailed counts a failed authentication from ip with the presented key
// raw and answers it: 401, or 429 once that key has failed too often.
func (s *Server) authFailed(ctx huma.Context, raw string, ip netip.Addr) {
	now := s.deps.Now()
	s.limits.authIP.Fail(ip, now)
	if wellFormedKey(raw) {
		h := sha256.Sum256([]byte(raw))
		who := limited{ip: ip, keyHash: &h, keyPrefix: raw[:displayPrefixLen]}
		if v := s.limits.authKey.Check(h, now); v.Limited {
			s.refuse(ctx, limitAuthFailuresPerKey, v, who, "this API key has failed authentication too often")
			return
		}
		s.limits.authKey.Fail(h, now)
	}
	writeProblem(s.api, ctx, s.unauthenticated(ctx))
}

// CodeInvalidToken is the problem code of a /mcp request without a usable
// credential (RFC 6750's error of the same name is in its challenge).
const CodeInvalidToken = "invalid_token"

// unauthenticated is the 401 of a request without a usable credential. On
// /mcp it speaks to an MCP client first (SPEC §7): OAuth 2.1, discovered
// from the protected resource metadata its WWW-Authenticate names (RFC
// 9728 §5.1), with agent identities and API keys as the alternative.
func (s *Server) unauthenticated(ctx huma.Context) *Problem {
	if ctx.Operation() != &mcpOperation {
		return problem(http.StatusUnauthorized, CodeInvalidKey, "missing, unknown or revoked API key")
	}
	if s.oauth == nil {
		return problem(http.StatusUnauthorized, CodeInvalidToken, "this MCP server needs a bearer credential: an agent identity "+
			"(Authorization: Bearer oak_agent_…) or an API key (oak_live_…); OAuth is off on this server")
	}
	return problem(http.StatusUnauthorized, CodeInvalidToken, "this MCP server needs an OAuth 2.1 access token "+
		"(Authorization: Bearer): read the protected resource metadata at "+s.oauth.Config().ResourceMetadataURL()+
		" (RFC 9728, also named by WWW-Authenticate) to find the authorization server and sign in. Alternatively, send an "+
		"agent identity (oak_agent_…) or an API key (oak_live_…) as the bearer")
}

// verifyIPKey carries the client address from limitVerifies to the handler.
type verifyIPKey struct{}

// limitVerifies is POST /v1/tokens/verify's own middleware (after
// authenticate): a key or an address that has failed too many
// verifications is refused every verification until its budget refills,
// and each key has a cap on all of them.
func (s *Server) limitVerifies(ctx huma.Context, next func(huma.Context)) {
	p, ok := principalFrom(ctx.Context())
	if !ok {
		panic("api: limitVerifies reached without a principal; authenticate middleware missing")
	}
	ip := s.limits.clientIP(ctx)
	now := s.deps.Now()
	if v := s.limits.verifyFailKey.Check(p.KeyID, now); v.Limited {
		s.refuse(ctx, limitVerifyFailuresPerKey, v, limited{ip: ip, principal: &p}, "this API key has failed too many token verifications")
		return
	}
	if v := s.limits.verifyFailIP.Check(ip, now); v.Limited {
		s.refuse(ctx, limitVerifyFailuresPerIP, v, limited{ip: ip}, "too many failed token verifications from this address")
		return
	}
	if v := s.limits.verifyKey.Spend(p.KeyID, now); v.Limited {
		s.refuse(ctx, limitVerifiesPerKey, v, limited{ip: ip, principal: &p}, "too many token verifications with this API key")
		return
	}
	next(huma.WithValue(ctx, verifyIPKey{}, ip))
}

// verifyFailed counts a failed verification against the key and the
// client address.
func (s *Server) verifyFailed(ctx context.Context, p Principal) {
	now := s.deps.Now()
	s.limits.verifyFailKey.Fail(p.KeyID, now)
	if ip, ok := ctx.Value(verifyIPKey{}).(netip.Addr); ok {
		s.limits.verifyFailIP.Fail(ip, now)
	}
}
