package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// envVar is one documented environment variable. Every variable the binary
// reads is listed here, and docs/CONFIGURATION.md must list exactly these
// with the same defaults (TestConfigurationTableMatchesCode).
type envVar struct {
	Name    string
	Default string
	Doc     string
}

var envVars = []envVar{
	{"DATABASE_URL", "", "PostgreSQL connection URL. Required by serve, worker and migrate."},
	{"DATABASE_MAX_CONNS", "20", "Maximum connections in the pool of each process."},
	{"OAKALLOW_ADDR", ":8080", "Listen address of the API server (serve)."},
	{"OAKALLOW_PUBLIC_URL", "http://localhost:8080", "External base URL, used in links (dashboard, Slack cards)."},
	{"OAKALLOW_WEBAUTHN_RP_ID", "", "WebAuthn relying-party id: the domain passkeys belong to (e.g. `oakallow.example.com`). Empty: the host of OAKALLOW_PUBLIC_URL. Passkeys enrolled under one id work only under it: do not change it once people have enrolled."},
	{"OAKALLOW_WEBAUTHN_ORIGINS", "", "Comma-separated web origins passkey ceremonies may come from (`https://host[:port]`; plain http only on localhost), each within the relying-party id. Empty: the origin of OAKALLOW_PUBLIC_URL."},
	{"OAKALLOW_SIGNING_KEYS", "", "Execution-token and receipt signing keys: `kid:base64secret[,kid:base64secret…]`; the first is active, a `!` before an id retires it. Required by serve and worker. Generate one with `oakallow keygen`."},
	{"OAKALLOW_SECRET_KEY", "", "32-byte key (base64) that encrypts the secrets oakallow stores (execution tokens, org webhook signing secrets, channel credentials, stored idempotent answers). Required by serve and worker, which must share it; migrate needs it to upgrade a database that holds secrets in clear. Generate one with `openssl rand -base64 32`. See \"Rotating the secret key\" below."},
	{"OAKALLOW_SECRET_KEY_PREVIOUS", "", "Former values of OAKALLOW_SECRET_KEY, comma-separated: what they sealed still opens, new values are sealed with OAKALLOW_SECRET_KEY only. Set during a rotation, until `oakallow reseal` has run."},
	{"OAKALLOW_WEBHOOKS_ALLOW_PRIVATE", "false", "Allow webhooks and channels to reach http:// URLs and private, loopback and link-local addresses. Off by default (SSRF protection): a URL naming localhost or a non-public IP address (IPv4 embedded in IPv6 included) is refused with 422 when it is set, and every address is checked again when dialled. Turn on only for receivers on your own network, on serve and worker alike."},
	{"SLACK_CLIENT_ID", "", "Client ID of your Slack app. With SLACK_CLIENT_SECRET it turns on the \"Add to Slack\" install (OAuth v2, scope `incoming-webhook` only); without both, Slack channels are configured by pasting an incoming-webhook URL. See \"Add to Slack\" below."},
	{"SLACK_CLIENT_SECRET", "", "Client secret of your Slack app; set together with SLACK_CLIENT_ID."},
	{"OAKALLOW_WORKER_METRICS_ADDR", ":9090", "Listen address of the worker's Prometheus /metrics (approval time to decision, delivery attempts). Empty: no metrics server."},
	{"TEMPORAL_ADDRESS", "127.0.0.1:7233", "Temporal frontend host:port."},
	{"TEMPORAL_NAMESPACE", "default", "Temporal namespace (Temporal Cloud: `<namespace>.<account>`)."},
	{"TEMPORAL_TLS", "false", "Connect to Temporal over TLS. Implied by every other TEMPORAL_TLS_* variable and by TEMPORAL_API_KEY."},
	{"TEMPORAL_TLS_CERT_PATH", "", "Client certificate (PEM) for mutual TLS, e.g. a Temporal Cloud namespace's mTLS certificate; with TEMPORAL_TLS_KEY_PATH."},
	{"TEMPORAL_TLS_KEY_PATH", "", "Private key (PEM) of TEMPORAL_TLS_CERT_PATH."},
	{"TEMPORAL_TLS_CA_PATH", "", "CA certificates (PEM) that sign the Temporal server's certificate. Default: the system's roots."},
	{"TEMPORAL_TLS_SERVER_NAME", "", "Server name expected in the Temporal server's certificate, when it differs from the host of TEMPORAL_ADDRESS."},
	{"TEMPORAL_API_KEY", "", "API key for Temporal Cloud (or a server that takes bearer API keys); turns TLS on. A secret: keep it out of logs and images."},
	{"LOG_LEVEL", "info", "debug, info, warn or error."},
	{"LOG_FORMAT", "json", "json or text."},
	{"SHUTDOWN_TIMEOUT", "10s", "How long serve waits for in-flight requests on SIGTERM. (The worker waits for its tasks under way as the Temporal SDK does, and up to 10 s for direct delivery attempts.)"},
	{"OAKALLOW_TRUSTED_PROXIES", "", "Comma-separated addresses or CIDR prefixes of the reverse proxies and load balancers in front of serve. Only a connection from one of them may name the client in `X-Forwarded-For` (the rightmost address that is not a trusted proxy is the client). Empty: `X-Forwarded-For` is ignored. Behind a proxy, set it, or every client shares the proxy's rate-limit budget. See \"Rate limits\" below."},
	{"OAKALLOW_LIMIT_AUTH_FAILURES_PER_IP", "60/1m", "Failed authentications (missing, unknown or revoked API key) allowed from one client address (IPv6: per /64), as `<count>/<period>`: that many at once, refilled at that many per period; `off` turns the limit off. Past it, every request from the address that needs a key answers 429, a valid key included."},
	{"OAKALLOW_LIMIT_AUTH_FAILURES_PER_KEY", "10/1m", "Failed authentications allowed with one well-formed but unknown or revoked key, from any address (`<count>/<period>` or `off`). Past it, that key answers 429 instead of 401."},
	{"OAKALLOW_LIMIT_VERIFY_FAILURES_PER_IP", "300/1m", "Failed token verifications (invalid, expired, wrong org, parameters mismatch, replayed) allowed from one client address (`<count>/<period>` or `off`). Past it, every verification from the address answers 429."},
	{"OAKALLOW_LIMIT_VERIFY_FAILURES_PER_KEY", "120/1m", "Failed token verifications allowed per API key (`<count>/<period>` or `off`). Past it, every verification with the key answers 429."},
	{"OAKALLOW_LIMIT_VERIFIES_PER_KEY", "100/1s", "All token verifications allowed per API key (`<count>/<period>` or `off`)."},
	{"OAKALLOW_LIMIT_OAUTH_AUTHORIZE_PER_IP", "30/1m", "Requests to the MCP connector's OAuth authorization endpoint (`GET /oauth/authorize`) from one client address (`<count>/<period>` or `off`). Each valid one stores an authorization request until it is answered or expires. Past it, the endpoint answers a 429 page (`error: rate_limited`, `Retry-After`)."},
	{"OAKALLOW_LIMIT_OAUTH_AUTHORIZE_ALL", "600/1m", "The same from every client address together (`<count>/<period>` or `off`): how fast a flood from many addresses can store authorization requests."},
	{"OAKALLOW_LIMIT_PASSKEY_OPTIONS_PER_IP", "30/1m", "Passkey sign-in, enrollment and confirmation options (`POST /v1/auth/passkey/options`, `POST /v1/me/passkeys/options`, and the options confirming new recovery codes or adding or removing a passkey) from one client address (`<count>/<period>` or `off`); each stores a WebAuthn ceremony until it is finished or expires. Past it, 429 `rate_limited` with `Retry-After`. The only per-address limit on passkey sign-in starts (it replaced OAKALLOW_LIMIT_PASSKEY_SIGN_INS_PER_IP)."},
	{"OAKALLOW_LIMIT_PASSKEY_OPTIONS_ALL", "1200/1m", "The same from every client address together (`<count>/<period>` or `off`)."},
	{"OAKALLOW_BILLING_MODE", "prepaid", "How billable calls are paid for: `stripe` (credit is bought through Stripe Checkout), `prepaid` (operators grant credit with `oakallow credits grant`) or `off` (self-hosted: calls are metered and shown as usage, never refused with 402, nothing is debited). See \"Billing\" below."},
	{"OAKALLOW_CREDIT_PACKS", "starter:10:10,growth:50:50,scale:200:220", "Credit packs on sale in mode stripe: `id:price_usd:credit_usd`, comma-separated (credit may exceed the price, as a volume discount)."},
	{"OAKALLOW_LOW_BALANCE_USD", "1.00", "The `credits.low` alert threshold in dollars: when a debit leaves a team's spendable balance below it, one `credits.low` event goes to the webhook and the Slack and webhook channels of every org of the team, and one e-mail to each owner (with SMTP configured); again only after credit lifted the balance back to it or above. Not in billing mode `off`. `0` turns the alert off."},
	{"STRIPE_SECRET_KEY", "", "Stripe secret key (`sk_live_…`, `sk_test_…`, or a restricted key that may write Checkout sessions). Required in mode stripe. A secret."},
	{"STRIPE_WEBHOOK_SECRET", "", "Signing secret (`whsec_…`) of the Stripe webhook endpoint `<OAKALLOW_PUBLIC_URL>/v1/billing/stripe/webhook`. Required in mode stripe. A secret."},
	{"STRIPE_API_URL", "", "Another address for Stripe's API, e.g. `http://localhost:12111` for stripe-mock. Empty: Stripe's."},
	{"OAKALLOW_STRIPE_WEBHOOK_MAX_BYTES", "1048576", "Largest Stripe webhook body accepted (64 KiB … 16 MiB); larger ones answer 413."},
	{"OAKALLOW_LIMIT_TRACKED_KEYS", "65536", "How many client addresses or keys each rate limit keeps state for (at least 64); bounds the limits' memory."},
	{"OAKALLOW_SMTP_HOST", "", "SMTP server that sends sign-in codes and invitations (any provider). Without it serve answers e-mail sign-in with 503 `mail_not_configured`."},
	{"OAKALLOW_SMTP_PORT", "0", "SMTP port; 0 means 587, or 465 with `OAKALLOW_SMTP_TLS=tls`."},
	{"OAKALLOW_SMTP_TLS", "starttls", "`starttls` (required, not opportunistic), `tls` (implicit TLS) or `none` (only for a relay on the same host or network)."},
	{"OAKALLOW_SMTP_USERNAME", "", "SMTP AUTH user name; with `OAKALLOW_SMTP_PASSWORD`."},
	{"OAKALLOW_SMTP_PASSWORD", "", "SMTP AUTH password. A secret."},
	{"OAKALLOW_SMTP_FROM", "", "Sender address of oakallow's mail, e.g. `oakallow <no-reply@example.com>`. Required with `OAKALLOW_SMTP_HOST`."},
	{"OAKALLOW_OPEN_SIGNUP", "false", "Let anyone sign up with an e-mail code, which creates a new team with the free credit. Off: only invited people and existing users sign in (`oakallow bootstrap` invites the first owner)."},
	{"OAKALLOW_LIMIT_SIGN_IN_CODES_PER_ADDRESS", "5/15m", "Sign-in codes mailed to one address, as `<count>/<window>` (a fixed window kept in PostgreSQL, so it holds across replicas) or `off`. Past it, asking for a code for the address answers 429."},
	{"OAKALLOW_LIMIT_SIGN_IN_CODES_PER_IP", "20/15m", "Sign-in codes asked for from one client address (`<count>/<window>` or `off`, in PostgreSQL)."},
	{"OAKALLOW_LIMIT_SIGN_IN_CODE_FAILURES_PER_IP", "30/15m", "Wrong sign-in codes from one client address (`<count>/<window>` or `off`, in PostgreSQL); past it every code verification from there answers 429. Each code also allows at most 5 tries."},
	{"OAKALLOW_LIMIT_OAUTH_REGISTRATIONS_PER_IP", "20/1h", "Dynamic client registrations (RFC 7591) at the MCP connector's authorization server from one client address (`<count>/<window>` or `off`, in PostgreSQL, so it holds across replicas). Past it, registering answers 429 with `Retry-After`."},
	{"OAKALLOW_AUTODISCOVERY_HOURLY_CAP", "50", "Auto-discovery cap a new org starts with: at most this many unknown tools checked over MCP become drafts in any sliding hour (0 … 1000000; 0 turns auto-discovery off). Each org's owners and admins change their own (`autodiscovery_hourly_cap` in the org's settings); existing orgs keep theirs."},
	{"OAKALLOW_AUTODISCOVERY_TOTAL_CAP", "500", "Auto-discovery cap a new org starts with: at most this many auto-registered drafts in all (0 … 1000000). Each org changes its own (`autodiscovery_total_cap`)."},
	{"OAKALLOW_WEBAUTHN_CEREMONY_TTL", "5m", "How long a started passkey ceremony (enrollment, sign-in, decision) may be finished, between `10s` and `1h`; each is single use. Failed passkey sign-ins count against `OAKALLOW_LIMIT_AUTH_FAILURES_PER_IP`."},
	{"OAKALLOW_SESSION_IDLE", "12h", "A session unused this long ends."},
	{"OAKALLOW_SESSION_ABSOLUTE", "336h", "Every session ends this long after sign-in, used or not."},
	{"OAKALLOW_SESSION_CACHE_ENTRIES", "10000", "How many recently authenticated sessions each API replica keeps in memory (a cache hit costs no database round trip). Negative: no cache, every session request reads PostgreSQL."},
	{"OAKALLOW_SESSION_CACHE_TTL", "0s", "How long a cached session answers before PostgreSQL is asked again, when no change notification ended it sooner (revocations, sign-outs, role and membership changes end it on every replica at once). `0s`: 30 s, or a quarter of `OAKALLOW_SESSION_IDLE` when that is shorter; at most a quarter of it."},
}

// removedVar is an environment variable a former version read. One that is
// still set stops serve with what replaced it: an operator who set it meant
// something by it, and ignoring it could quietly loosen what they asked for.
type removedVar struct {
	Name       string
	ReplacedBy string
}

var removedVars = []removedVar{
	{"OAKALLOW_LIMIT_PASSKEY_SIGN_INS_PER_IP", "passkey sign-in starts count only against OAKALLOW_LIMIT_PASSKEY_OPTIONS_PER_IP " +
		"(per client address, default 30/1m) and OAKALLOW_LIMIT_PASSKEY_OPTIONS_ALL (all addresses together, default " +
		"1200/1m), kept in each replica's memory so that a refused start costs no database write; set those instead " +
		"(docs/CONFIGURATION.md, \"Rate limits\") and unset it"},
}

// checkRemovedVars fails, naming each and what replaced it, when a removed
// variable is set (even to the empty string).
func checkRemovedVars() error {
	var errs []error
	for _, v := range removedVars {
		if _, ok := os.LookupEnv(v.Name); ok {
			errs = append(errs, fmt.Errorf("%s is no longer read: %s", v.Name, v.ReplacedBy))
		}
	}
	return errors.Join(errs...)
}

// getenv returns the variable's value or its documented default. Reading an
// undocumented variable is a programming error.
func getenv(name string) string {
	for _, v := range envVars {
		if v.Name == name {
			if val, ok := os.LookupEnv(name); ok {
				return val
			}
			return v.Default
		}
	}
	panic("getenv: undocumented environment variable " + name)
}

func getenvInt(name string) (int, error) {
	n, err := strconv.Atoi(getenv(name))
	if err != nil {
		return 0, fmt.Errorf("%s: not an integer", name)
	}
	return n, nil
}

func getenvDuration(name string) (time.Duration, error) {
	d, err := time.ParseDuration(getenv(name))
	if err != nil {
		return 0, fmt.Errorf("%s: not a duration (e.g. 10s)", name)
	}
	return d, nil
}

func required(name string) (string, error) {
	v := getenv(name)
	if v == "" {
		return "", fmt.Errorf("%s is required (see docs/CONFIGURATION.md)", name)
	}
	return v, nil
}

// newLogger builds the process logger from LOG_LEVEL and LOG_FORMAT.
func newLogger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(getenv("LOG_LEVEL"))); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(getenv("LOG_FORMAT")) {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("LOG_FORMAT must be json or text")
	}
}
