package notify

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// Slack channel scopes (SPEC §4): which approval levels a channel hears about.
const (
	ScopeAll    = "all"
	ScopeLevel1 = "level_1"
	ScopeLevel2 = "level_2"
)

// slackHeaderMaxRunes is Block Kit's limit on a header block's text.
const slackHeaderMaxRunes = 150

// Slack endpoints used by the "Add to Slack" install.
const (
	DefaultSlackAuthorizeURL = "https://slack.com/oauth/v2/authorize"
	DefaultSlackAPIURL       = "https://slack.com/api/"
	// SlackInstallScope is the only scope oakallow ever asks for: it lets
	// the installer pick a channel and gives us an incoming-webhook URL for
	// it, and nothing else.
	SlackInstallScope = "incoming-webhook"
)

// ErrSlackInstallRejected wraps an error Slack returned for an OAuth code
// exchange (invalid_code, bad_redirect_uri, …): the user should start the
// install again; retrying the same code cannot succeed.
var ErrSlackInstallRejected = errors.New("slack rejected the install")

// ValidScope reports whether scope is one of ScopeAll, ScopeLevel1,
// ScopeLevel2.
func ValidScope(scope string) bool {
	return scope == ScopeAll || scope == ScopeLevel1 || scope == ScopeLevel2
}

// ScopeMatches reports whether a channel with scope should be told about an
// approval event at level (1 or 2). An unknown scope matches nothing.
func ScopeMatches(scope string, level int) bool {
	switch scope {
	case ScopeAll:
		return level == 1 || level == 2
	case ScopeLevel1:
		return level == 1
	case ScopeLevel2:
		return level == 2
	}
	return false
}

// SlackChannel is a Slack notification channel.
type SlackChannel struct {
	// WebhookURL is the incoming-webhook URL (https://hooks.slack.com/…).
	// It is a credential: anyone holding it can post to the channel.
	WebhookURL string
}

// SlackMessage returns the Block Kit message SendSlack would post for a:
// a header, the tool and REF (plus decision and decider for decisions), the
// reason, the note for decisions, a button to the dashboard, and a plain
// fallback text. All text is sanitized first (see Alert).
func (n *Notifier) SlackMessage(a Alert) (*slack.WebhookMessage, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return slackMessage(a.sanitize(n.scrub)), nil
}

// slackMessage builds the card from an already sanitized alert.
func slackMessage(s Alert) *slack.WebhookMessage {
	title := alertTitle(s)
	blocks := []slack.Block{
		slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, cleanText(title, slackHeaderMaxRunes), false, false)),
	}
	var fields []*slack.TextBlockObject
	if s.ToolName != "" {
		fields = append(fields, mrkdwnText("Tool", s.ToolName))
	}
	if s.Reference != "" {
		fields = append(fields, mrkdwnText("Reference", s.Reference))
	}
	if s.Type == EventApprovalDecided {
		decision := "Denied"
		if s.Decision == DecisionApproved {
			decision = "Approved"
		}
		fields = append(fields, mrkdwnText("Decision", decision))
		if s.Decider != "" {
			fields = append(fields, mrkdwnText("Decided by", s.Decider))
		}
	}
	if len(fields) > 0 {
		blocks = append(blocks, slack.NewSectionBlock(nil, fields, nil))
	}
	if s.Reason != "" {
		label := "Reason"
		if !IsApprovalEvent(s.Type) {
			label = "Details"
		}
		blocks = append(blocks, slack.NewSectionBlock(mrkdwnText(label, s.Reason), nil, nil))
	}
	if s.Note != "" {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwnText("Note", s.Note), nil, nil))
	}
	value, context, text := s.Type, "oakallow · "+s.Type, escapeMrkdwn(title)
	if s.Reference != "" {
		value, context, text = s.Reference, context+" · "+s.Reference, text+" ("+s.Reference+")"
	}
	if s.DashboardURL != "" {
		button := slack.NewButtonBlockElement("open_dashboard", value,
			slack.NewTextBlockObject(slack.PlainTextType, "Open in oakallow", false, false)).WithURL(s.DashboardURL)
		blocks = append(blocks, slack.NewActionBlock("", button))
	}
	blocks = append(blocks, slack.NewContextBlock("",
		slack.NewTextBlockObject(slack.MarkdownType, context, false, false)))

	return &slack.WebhookMessage{
		// The fallback shows in notifications and in clients that cannot
		// render blocks; it is mrkdwn too, so it is escaped.
		Text:   text,
		Blocks: &slack.Blocks{BlockSet: blocks},
	}
}

// mrkdwnText renders "*label*\nvalue" with value escaped. Values are at most
// MaxTextRunes runes and escaping grows a rune to at most five ("&amp;"),
// so the text stays well below Slack's 2,000 (field) and 3,000 (section)
// character limits.
func mrkdwnText(label, value string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, "*"+label+"*\n"+escapeMrkdwn(value), false, false)
}

// escapeMrkdwn escapes the three characters Slack's mrkdwn gives meaning
// to, so user text cannot create links, @channel pings or user mentions
// (<!channel>, <@U…>, <https://…|…>).
func escapeMrkdwn(s string) string { return mrkdwnEscaper.Replace(s) }

var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// SendSlack posts the alert's Block Kit card to the channel's incoming
// webhook with slack-go. The caller checks ScopeMatches first.
func (n *Notifier) SendSlack(ctx context.Context, ch SlackChannel, a Alert) Attempt {
	start := time.Now()
	if err := a.Validate(); err != nil {
		return invalidAttempt(err)
	}
	if u, err := url.Parse(ch.WebhookURL); err != nil || u.Host == "" {
		// Not echoed: the URL is the credential.
		return invalidAttempt(fmt.Errorf("%w: Slack webhook URL is not an absolute URL", ErrURLPolicy))
	}
	msg := slackMessage(a.sanitize(n.scrub))

	// slack-go reports non-200 answers as errors without their body and
	// reads the body unbounded; observe the exchange underneath it instead.
	capture := &captureTransport{base: n.client.Transport}
	client := *n.client
	client.Transport = capture
	err := slack.PostWebhookCustomHTTPContext(ctx, ch.WebhookURL, &client, msg)
	latency := time.Since(start)
	if capture.status == 0 {
		if err == nil {
			// Not reachable: slack-go returns an error when no response came.
			err = errors.New("no response")
		}
		return attemptFor(response{}, err, latency)
	}
	return attemptFor(response{status: capture.status, snippet: sanitizeSnippet(capture.snippet), retryAfter: capture.retryAfter}, nil, latency)
}

// captureTransport records the status and the start of an error body of
// the one request it carries, and bounds how much of the body can be read.
type captureTransport struct {
	base       http.RoundTripper
	status     int
	snippet    []byte
	retryAfter time.Duration
}

func (c *captureTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := c.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	c.status = resp.StatusCode
	body := &boundedBody{r: io.LimitReader(resp.Body, maxDrain), c: resp.Body}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		body.keep = &c.snippet
		c.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	resp.Body = body
	return resp, nil
}

// boundedBody reads at most a bounded number of bytes and optionally keeps
// the first maxErrorSnippet of them.
type boundedBody struct {
	r    io.Reader
	c    io.Closer
	keep *[]byte
}

func (b *boundedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if b.keep != nil && len(*b.keep) < maxErrorSnippet {
		*b.keep = append(*b.keep, p[:min(n, maxErrorSnippet-len(*b.keep))]...)
	}
	return n, err
}

func (b *boundedBody) Close() error { return b.c.Close() }

// SlackApp is the server's Slack app, used for the "Add to Slack" OAuth v2
// install when SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are configured.
type SlackApp struct {
	// ClientID and ClientSecret are the app's credentials.
	ClientID     string
	ClientSecret string
	// RedirectURL is the install callback registered with the app.
	RedirectURL string
	// AuthorizeURL is Slack's authorize page. Default DefaultSlackAuthorizeURL.
	AuthorizeURL string
	// APIURL is the Web API base, ending in "/". Default DefaultSlackAPIURL;
	// tests point it at a fake.
	APIURL string
	// AllowInsecure accepts an http:// incoming-webhook URL in the exchange
	// answer. Tests only.
	AllowInsecure bool
}

// Validate reports whether the app configuration is usable.
func (a SlackApp) Validate() error {
	if a.ClientID == "" || a.ClientSecret == "" {
		return errors.New("slack app: client id and secret are required")
	}
	if err := ValidateURL(a.RedirectURL, a.AllowInsecure); err != nil {
		return fmt.Errorf("slack app redirect URL: %w", err)
	}
	if a.APIURL != "" && !strings.HasSuffix(a.APIURL, "/") {
		return errors.New("slack app: API URL must end in '/'")
	}
	return nil
}

// NewOAuthState returns a random OAuth state value (RFC 6749 §10.12: bind
// the authorization response to the user agent that started it). Store it
// in the installer's session and compare it on the callback.
func NewOAuthState() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate oauth state: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// AuthCodeURL returns the "Add to Slack" URL: Slack's OAuth v2 authorize
// page asking for the incoming-webhook scope only, with state for CSRF
// protection. state must be unguessable (see NewOAuthState).
func (a SlackApp) AuthCodeURL(state string) (string, error) {
	if err := a.Validate(); err != nil {
		return "", err
	}
	if len(state) < 16 {
		return "", errors.New("slack install: state must be at least 16 characters of randomness")
	}
	base := a.AuthorizeURL
	if base == "" {
		base = DefaultSlackAuthorizeURL
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("slack authorize URL: %w", err)
	}
	q := url.Values{}
	q.Set("client_id", a.ClientID)
	q.Set("scope", SlackInstallScope)
	q.Set("redirect_uri", a.RedirectURL)
	q.Set("state", state)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// SlackInstall is what oakallow keeps from a completed install: the
// incoming-webhook URL (a credential) and where it posts. The bot access
// token Slack also returns is dropped — oakallow never calls the Web API.
type SlackInstall struct {
	WebhookURL       string
	Channel          string
	ChannelID        string
	ConfigurationURL string
	TeamID           string
	TeamName         string
}

// Exchange trades the code from the install callback for the channel's
// incoming webhook (oauth.v2.access). Check the state before calling it.
// Errors Slack reports wrap ErrSlackInstallRejected.
func (a SlackApp) Exchange(ctx context.Context, client *http.Client, code string) (SlackInstall, error) {
	if err := a.Validate(); err != nil {
		return SlackInstall{}, err
	}
	if code == "" {
		return SlackInstall{}, fmt.Errorf("%w: empty code", ErrSlackInstallRejected)
	}
	apiURL := a.APIURL
	if apiURL == "" {
		apiURL = DefaultSlackAPIURL
	}
	resp, err := slack.GetOAuthV2ResponseContext(ctx, clientOrDefault(client), a.ClientID, a.ClientSecret, code, a.RedirectURL,
		slack.OAuthOptionAPIURL(apiURL))
	if err != nil {
		var serr slack.SlackErrorResponse
		if errors.As(err, &serr) {
			return SlackInstall{}, fmt.Errorf("%w: %s", ErrSlackInstallRejected, sanitizeSnippet([]byte(serr.Err)))
		}
		return SlackInstall{}, fmt.Errorf("slack oauth.v2.access: %w", stripURLError(err))
	}
	hook := resp.IncomingWebhook
	if hook.URL == "" {
		return SlackInstall{}, fmt.Errorf("%w: no incoming webhook in the answer (was the %s scope granted?)", ErrSlackInstallRejected, SlackInstallScope)
	}
	if err := ValidateURL(hook.URL, a.AllowInsecure); err != nil {
		return SlackInstall{}, fmt.Errorf("slack incoming webhook URL: %w", err)
	}
	return SlackInstall{
		WebhookURL:       hook.URL,
		Channel:          hook.Channel,
		ChannelID:        hook.ChannelID,
		ConfigurationURL: hook.ConfigurationURL,
		TeamID:           resp.Team.ID,
		TeamName:         resp.Team.Name,
	}, nil
}
