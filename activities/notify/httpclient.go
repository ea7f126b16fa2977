package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxURLLength is the longest webhook or channel URL accepted.
const MaxURLLength = 2048

// Defaults for NewHTTPClient.
const (
	DefaultTimeout = 10 * time.Second
	// maxErrorSnippet bounds how much of a failed response body is kept in
	// Attempt.Error.
	maxErrorSnippet = 256
	// maxDrain bounds how much of a response body is read (and discarded) so
	// that the connection can be reused.
	maxDrain = 64 << 10
	// maxJSONResponse bounds a response body that is decoded (PagerDuty).
	maxJSONResponse = 1 << 20
)

// ErrURLPolicy is wrapped by every URL or address policy refusal; such a
// failure is never retryable.
var ErrURLPolicy = errors.New("url not allowed")

// errInvalidRequest marks a request that could not be built; never retryable.
var errInvalidRequest = errors.New("invalid request")

// ValidateURL enforces the outbound URL policy for webhook and channel URLs:
// an absolute https URL (http only when allowInsecure, for development and
// tests), a host, no userinfo (credentials in URLs end up in logs), no
// fragment, and at most MaxURLLength bytes.
func ValidateURL(raw string, allowInsecure bool) error {
	if raw == "" {
		return fmt.Errorf("%w: empty", ErrURLPolicy)
	}
	if len(raw) > MaxURLLength {
		return fmt.Errorf("%w: longer than %d bytes", ErrURLPolicy, MaxURLLength)
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("%w: contains spaces or control characters", ErrURLPolicy)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL, which may hold a token; keep only the cause.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("%w: %v", ErrURLPolicy, err)
	}
	if u.Scheme != "https" && (u.Scheme != "http" || !allowInsecure) {
		return fmt.Errorf("%w: scheme must be https", ErrURLPolicy)
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%w: no host", ErrURLPolicy)
	}
	if u.User != nil {
		return fmt.Errorf("%w: userinfo is not allowed", ErrURLPolicy)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("%w: fragment is not allowed", ErrURLPolicy)
	}
	return nil
}

// HTTPClientConfig configures NewHTTPClient. The zero value is the
// production policy.
type HTTPClientConfig struct {
	// Timeout bounds a whole request, from dial to the end of the body.
	// Default DefaultTimeout (10 s).
	Timeout time.Duration
	// AllowInsecure permits http:// URLs. Development and tests only.
	AllowInsecure bool
	// AllowPrivateAddresses permits connections to loopback, private
	// (RFC 1918, RFC 4193), link-local (including cloud metadata at
	// 169.254.169.254), shared (RFC 6598), unspecified and multicast
	// addresses. Off by default so that an org's webhook URL cannot reach the
	// server's own network; turn it on only for a self-hosted install whose
	// receivers live on the internal network, and for tests.
	AllowPrivateAddresses bool
}

// Validate reports whether the configuration is usable.
func (c HTTPClientConfig) Validate() error {
	if c.Timeout < 0 {
		return errors.New("http client timeout is negative")
	}
	return nil
}

// NewHTTPClient returns the http.Client every send should use: overall
// timeout (default 10 s), no redirects followed (the 3xx answer is returned
// and counts as a failure), every request URL checked with ValidateURL, and
// non-public addresses refused at dial time — after DNS resolution, so a
// hostname that resolves to an internal address is refused too. The
// environment's HTTP proxy settings are deliberately not used: a proxy would
// make the address check meaningless.
func NewHTTPClient(cfg HTTPClientConfig) (*http.Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	dialer := &net.Dialer{Timeout: min(5*time.Second, timeout), KeepAlive: 30 * time.Second}
	if !cfg.AllowPrivateAddresses {
		dialer.Control = refusePrivateAddress
	}
	transport := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    min(5*time.Second, timeout),
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Transport: &policyTransport{base: transport, allowInsecure: cfg.AllowInsecure},
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			// A receiver that redirects has not accepted the delivery, and
			// following it would re-send a signed body to an address nobody
			// validated.
			return http.ErrUseLastResponse
		},
	}, nil
}

// policyTransport applies ValidateURL to every request, so the policy also
// covers URLs built inside third-party code (slack-go).
type policyTransport struct {
	base          http.RoundTripper
	allowInsecure bool
}

func (t *policyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := ValidateURL(req.URL.String(), t.allowInsecure); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	return t.base.RoundTrip(req)
}

// refusePrivateAddress is a net.Dialer Control hook: it runs with the
// resolved address right before connect.
func refusePrivateAddress(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: bad address", ErrURLPolicy)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: bad address", ErrURLPolicy)
	}
	if !isPublicAddr(ip) {
		return fmt.Errorf("%w: address %s is not public", ErrURLPolicy, ip)
	}
	return nil
}

var nonPublicPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space, RFC 6598
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, incl. broadcast
	netip.MustParsePrefix("::/96"),           // IPv4-compatible, deprecated (RFC 4291 §2.5.5.1); also :: and ::1
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (RFC 2765 §2.1)
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64 (RFC 8215)
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/32"),       // Teredo (RFC 4380): tunnels to an IPv4 address
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
}

// IPv6 prefixes whose addresses carry the IPv4 address they reach.
var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052 §2.1: IPv4 in the last 32 bits
	sixToFour      = netip.MustParsePrefix("2002::/16")    // RFC 3056 §2: IPv4 in bits 16-47
)

// isPublicAddr reports whether ip is a globally routable unicast address.
// An IPv6 address that embeds an IPv4 address a translator or relay would
// reach (IPv4-mapped, NAT64, 6to4) is judged by that IPv4 address, so
// 64:ff9b::a9fe:a9fe is the metadata address 169.254.169.254; the other
// transition forms (IPv4-compatible, IPv4-translated, Teredo) are refused.
func isPublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64WellKnown.Contains(ip):
			return isPublicAddr(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(ip):
			return isPublicAddr(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		ip.IsMulticast() {
		return false
	}
	for _, p := range nonPublicPrefixes {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// CheckDestination refuses a webhook or channel URL whose host is plainly
// internal, so the mistake (or the probe) is refused when the URL is set
// rather than on every send: an IP address that is not public (see
// isPublicAddr; IPv4 written in a form other than dotted decimal, which some
// resolvers accept, counts as not public), or the name localhost or a name
// under it (RFC 6761 §6.3). A name that resolves to an internal address is
// refused when dialled. raw must have passed ValidateURL.
func CheckDestination(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: not a URL", ErrURLPolicy)
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return fmt.Errorf("%w: host %s is this machine", ErrURLPolicy, host)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !isPublicAddr(ip) {
			return fmt.Errorf("%w: address %s is not public", ErrURLPolicy, ip)
		}
		return nil
	}
	if numericIPv4(host) {
		return fmt.Errorf("%w: write an IPv4 address in dotted decimal", ErrURLPolicy)
	}
	return nil
}

// numericIPv4 reports whether host is an IPv4 address in one of the forms
// inet_aton accepts besides dotted decimal (2130706433, 0x7f.1, 0177.0.0.1):
// one to four parts, each a decimal, octal or hex number.
func numericIPv4(host string) bool {
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return false
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 0, 32); err != nil {
			return false
		}
	}
	return true
}

// Attempt is the outcome of one send, for the caller to record and to
// decide on a retry. Error is empty exactly when the send succeeded.
type Attempt struct {
	// StatusCode is the HTTP status of the last response, 0 when none was
	// received.
	StatusCode int
	// Latency is the wall time the send took, all requests included.
	Latency time.Duration
	// Error describes a failure. It never contains URLs (Slack webhook URLs
	// are credentials), secrets, or more than 256 bytes of a response body.
	Error string
	// Retryable is true when trying again later can succeed: network errors,
	// timeouts, 408, 429 and 5xx. Policy violations, invalid input, redirects
	// and other 4xx answers are final.
	Retryable bool
	// Detail explains a success that needed no change, e.g. a PagerDuty
	// incident that was already open or already resolved.
	Detail string
	// RetryAfter is the wait the receiver asked for with a Retry-After header
	// (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) on a retryable answer,
	// at most MaxRetryAfter; 0 when it sent none, or one that does not parse
	// or lies in the past.
	RetryAfter time.Duration
}

// MaxRetryAfter caps Attempt.RetryAfter: a receiver may slow retries down, but
// not park a delivery beyond the retry schedule's own longest wait.
const MaxRetryAfter = time.Hour

// parseRetryAfter reads a Retry-After value relative to now (see
// Attempt.RetryAfter).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}

// OK reports whether the send succeeded.
func (a Attempt) OK() bool { return a.Error == "" }

// invalidAttempt is the Attempt for input rejected before any request.
func invalidAttempt(err error) Attempt {
	return Attempt{Error: "invalid request: " + err.Error()}
}

// RetryableStatus reports whether an HTTP status is worth retrying.
func RetryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// response is what the send helpers keep of an HTTP exchange.
type response struct {
	status     int
	snippet    string        // for non-2xx answers, sanitized and bounded
	body       []byte        // only when the caller asked to decode it
	retryAfter time.Duration // for non-2xx answers, from Retry-After
}

// do sends req and reads the answer within bounds. keepBody asks for up to
// maxJSONResponse bytes of a 2xx body to be returned.
func do(client *http.Client, req *http.Request, keepBody bool) (response, error) {
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	r := response{status: resp.StatusCode}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if keepBody {
			r.body, err = io.ReadAll(io.LimitReader(resp.Body, maxJSONResponse))
			if err != nil {
				return r, fmt.Errorf("read response: %w", err)
			}
		}
	} else {
		buf, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorSnippet))
		r.snippet = sanitizeSnippet(buf)
		r.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	return r, nil
}

// attemptFor turns the result of do into an Attempt.
func attemptFor(r response, err error, latency time.Duration) Attempt {
	a := Attempt{StatusCode: r.status, Latency: latency}
	if err != nil {
		a.Error, a.Retryable = describeTransportError(err)
		return a
	}
	if err := statusError(r); err != "" {
		a.Error = err
		a.Retryable = RetryableStatus(r.status)
		if a.Retryable {
			a.RetryAfter = r.retryAfter
		}
	}
	return a
}

// statusError describes a non-2xx answer, or returns "" for 2xx.
func statusError(r response) string {
	switch {
	case r.status >= 200 && r.status < 300:
		return ""
	case r.status >= 300 && r.status < 400:
		return fmt.Sprintf("HTTP %d: redirects are not followed", r.status)
	case r.snippet != "":
		return fmt.Sprintf("HTTP %d: %s", r.status, r.snippet)
	default:
		return fmt.Sprintf("HTTP %d", r.status)
	}
}

// describeTransportError returns a URL-free description of a failed
// request and whether it is worth retrying.
func describeTransportError(err error) (string, bool) {
	if errors.Is(err, ErrURLPolicy) || errors.Is(err, errInvalidRequest) {
		return stripURLError(err).Error(), false
	}
	cause := stripURLError(err)
	msg := cause.Error()
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return "timeout: " + msg, true
	}
	return "request failed: " + msg, true
}

// stripURLError drops the *url.Error wrapper, whose message repeats the
// request URL — for Slack the URL itself is the credential.
func stripURLError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// sanitizeSnippet makes up to maxErrorSnippet bytes of a response body safe
// to store and display: valid UTF-8, no control characters.
func sanitizeSnippet(b []byte) string {
	if len(b) > maxErrorSnippet {
		b = b[:maxErrorSnippet]
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		switch {
		case r == utf8.RuneError && size <= 1:
			// Invalid byte or a rune cut at the bound: drop it.
		case unicode.IsControl(r) || unicode.IsSpace(r):
			sb.WriteByte(' ')
		default:
			sb.WriteRune(r)
		}
	}
	return strings.Join(strings.Fields(sb.String()), " ")
}

// defaultClient is the production-policy client used when a caller passes
// a nil *http.Client; it is shared so connections are reused.
var defaultClient = sync.OnceValue(func() *http.Client {
	c, err := NewHTTPClient(HTTPClientConfig{})
	if err != nil {
		// The zero configuration always validates.
		panic(err)
	}
	return c
})

// clientOrDefault returns client, or the shared production-policy client.
func clientOrDefault(client *http.Client) *http.Client {
	if client != nil {
		return client
	}
	return defaultClient()
}
