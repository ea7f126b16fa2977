package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/store"
)

// The "Add to Slack" install (SPEC §4): an OAuth v2 authorization code flow
// (RFC 6749 §4.1) asking Slack for the incoming-webhook scope only. A
// management key starts it and receives Slack's authorize URL; whoever
// opens that URL picks a Slack channel; Slack sends their browser back to
// the public callback, which trades the code for the channel's
// incoming-webhook URL and creates the Slack notification channel with it,
// sealed at rest exactly like a pasted URL.
//
// The state parameter is the CSRF defence RFC 6749 §10.12 requires ("The
// client MUST implement CSRF protection for its redirection URI … The
// binding value used for CSRF protection MUST contain a non-guessable
// value"). Here it is 192 random bits that bind the callback to the org,
// the key or session that started the install and the channel to create. Only its
// SHA-256 is stored; it expires after slackStateTTL and is spent by the
// first callback that presents it, whatever the outcome (RFC 9700 §4.7.1:
// one-time-use CSRF tokens). An install started with a management key
// cannot be bound to the installer's browser: its authorize URL must be
// handed only to the person meant to install. An install started by an
// owner's or admin's session (the dashboard's "Add to Slack") is bound to
// that session: the callback completes it only when it carries the same
// live session cookie, still of an owner or admin of the org, and then
// sends the browser back to the dashboard's Settings page.

// SlackCallbackPath is the install callback; the Slack app's redirect URL
// is the server's public URL followed by this path.
const SlackCallbackPath = "/v1/integrations/slack/callback"

// CodeSlackNotConfigured: the server has no Slack app credentials
// (SLACK_CLIENT_ID, SLACK_CLIENT_SECRET), so "Add to Slack" is off.
const CodeSlackNotConfigured = "slack_not_configured"

const (
	// slackStateTTL is how long an authorize URL can be completed.
	slackStateTTL = 10 * time.Minute
	// maxPendingSlackInstalls bounds an org's unexpired installs, and so
	// the rows one management key can make the server keep.
	maxPendingSlackInstalls = 20
	// maxSlackCallbackParam bounds each callback parameter; Slack's codes
	// and our states are far shorter.
	maxSlackCallbackParam = 512
	// slackViaOAuth marks channels created by the install in the audit log.
	slackViaOAuth = "slack_oauth"
	// SlackInstalledRedirect is where a session-started install sends the
	// browser once the channel is saved: the dashboard's Settings page,
	// with its "Slack added" notice.
	SlackInstalledRedirect = "/settings?done=slack-installed"
)

// SlackInstallStarted answers POST /v1/channels/slack/install.
type SlackInstallStarted struct {
	AuthorizeURL string    `json:"authorize_url" doc:"Slack's \"Add to Slack\" page for this install (OAuth v2, scope incoming-webhook only). Open it in a browser signed in to the Slack workspace and pick the channel; it works once, until expires_at. Anyone holding it can complete the install into this org, so hand it only to the installer."`
	ExpiresAt    time.Time `json:"expires_at" doc:"When the authorize URL stops working."`
}

type slackInstallRequest struct {
	Name  string `json:"name" minLength:"1" maxLength:"200" pattern:"^[^\\x00-\\x1f\\x7f]+$" patternDescription:"no control characters" doc:"Name of the Slack channel to create in oakallow once the install completes."`
	Scope string `json:"scope,omitempty" enum:"all,level_1,level_2" default:"all" doc:"Which approval events the channel hears about: all levels, only level 1, or only level 2."`
}

type slackInstallInput struct {
	IdempotencyHeader
	Body slackInstallRequest `additionalProperties:"false"`
}

type slackInstallOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed" doc:"true when this is the stored answer to an earlier request with the same Idempotency-Key."`
	Body     SlackInstallStarted
}

// slackCallbackInput is what Slack appends to the redirect URL: code and
// state on success, error and state when the user declined (RFC 6749
// §4.1.2, §4.1.2.1). Lengths are checked by the handler so that every
// refusal is a page, not a JSON problem.
type slackCallbackInput struct {
	Code  string `query:"code" doc:"The authorization code Slack issued."`
	State string `query:"state" doc:"The state from the authorize URL."`
	Error string `query:"error" doc:"Set by Slack instead of code when the install did not happen, e.g. access_denied."`
	// Cookie carries the session of an install started from the dashboard.
	Cookie string `header:"Cookie" hidden:"true"`
}

// slackCallbackOutput is an HTML page. The callback URL carries the code
// and state, so the page is not cached, sends no referrer and loads
// nothing (RFC 9700 §4.2.4).
type slackCallbackOutput struct {
	Status         int
	ContentType    string `header:"Content-Type"`
	CacheControl   string `header:"Cache-Control"`
	CSP            string `header:"Content-Security-Policy"`
	ReferrerPolicy string `header:"Referrer-Policy"`
	NoSniff        string `header:"X-Content-Type-Options"`
	Location       string `header:"Location"`
	Body           []byte
}

// slackInstaller serves the install and its callback.
type slackInstaller struct {
	s      *Server
	app    *notify.SlackApp // nil: not configured
	client *http.Client
}

// registerSlackInstall registers the install and callback operations. It
// fails when the server's Slack app is configured but unusable, so a bad
// configuration stops start-up instead of failing installs later.
func registerSlackInstall(api huma.API, s *Server) error {
	si := &slackInstaller{s: s, client: s.deps.SlackHTTPClient}
	if s.deps.Slack != nil {
		app := *s.deps.Slack
		if app.RedirectURL == "" {
			app.RedirectURL = strings.TrimRight(s.cfg.PublicURL, "/") + SlackCallbackPath
		}
		if err := app.Validate(); err != nil {
			return fmt.Errorf("api: %w", err)
		}
		si.app = &app
		if si.client == nil {
			c, err := notify.NewHTTPClient(notify.HTTPClientConfig{})
			if err != nil {
				return fmt.Errorf("api: slack http client: %w", err)
			}
			si.client = c
		}
	}

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "start-slack-install", Method: http.MethodPost, Path: "/v1/channels/slack/install",
		Summary: "Start an \"Add to Slack\" install",
		// Owner and admin sessions may start it too: the dashboard's
		// Settings page does, and the state is then bound to the session.
		Description: "Returns Slack's OAuth v2 authorize URL (scope incoming-webhook only). When the installer approves it in Slack, " +
			"Slack redirects to " + SlackCallbackPath + " and oakallow creates a Slack channel with the given name and scope; its " +
			"incoming-webhook URL is encrypted at rest and never returned. The URL works once, for 10 minutes. " +
			"Started by an owner's or admin's session, the install completes only in the browser holding that session. " +
			"503 slack_not_configured when the server has no Slack app credentials.",
		Tags: []string{tagChannels}, Errors: append(manageWriteErrors, http.StatusTooManyRequests, http.StatusServiceUnavailable),
	}, accessManageWrite), func(ctx context.Context, in *slackInstallInput) (*slackInstallOutput, error) {
		status, body, replayed, err := idempotent(ctx, s, in.IdempotencyKey, "start-slack-install", in.Body,
			func(ctx context.Context) (int, SlackInstallStarted, error) {
				res, err := si.start(ctx, mustPrincipal(ctx), &in.Body)
				return http.StatusOK, res, err
			})
		if err != nil {
			return nil, err
		}
		return &slackInstallOutput{Status: status, Replayed: replayedHeader(replayed), Body: body}, nil
	})

	huma.Register(api, withAccess(huma.Operation{
		OperationID: "slack-install-callback", Method: http.MethodGet, Path: SlackCallbackPath,
		Summary: "Slack install callback",
		Description: "Where Slack sends the installer's browser after the \"Add to Slack\" page. Public (no API key): the " +
			"single-use state authenticates it. Answers an HTML page saying whether the channel was created.",
		Tags: []string{tagChannels},
		Responses: map[string]*huma.Response{
			"200": {Description: "The channel was created (or the install was cancelled in Slack).", Content: map[string]*huma.MediaType{"text/html": {}}},
			"400": {Description: "Unknown, expired or used state, or Slack refused the code.", Content: map[string]*huma.MediaType{"text/html": {}}},
			"500": {Description: "An internal error; nothing was created.", Content: map[string]*huma.MediaType{"text/html": {}}},
			"502": {Description: "Slack could not be reached.", Content: map[string]*huma.MediaType{"text/html": {}}},
			"503": {Description: "The server cannot complete installs (no Slack app or no secrets key).", Content: map[string]*huma.MediaType{"text/html": {}}},
		},
	}, accessPublic), func(ctx context.Context, in *slackCallbackInput) (*slackCallbackOutput, error) {
		return si.callback(ctx, in), nil
	})
	return nil
}

// start records a pending install and returns its authorize URL.
func (si *slackInstaller) start(ctx context.Context, p Principal, req *slackInstallRequest) (SlackInstallStarted, error) {
	if si.app == nil {
		return SlackInstallStarted{}, problem(http.StatusServiceUnavailable, CodeSlackNotConfigured,
			"\"Add to Slack\" is not available: the server has no Slack app credentials (SLACK_CLIENT_ID, SLACK_CLIENT_SECRET). "+
				"Create the channel with an incoming-webhook URL instead")
	}
	scope := req.Scope
	if scope == "" {
		scope = notify.ScopeAll
	}
	state, err := notify.NewOAuthState()
	if err != nil {
		return SlackInstallStarted{}, err
	}
	authorizeURL, err := si.app.AuthCodeURL(state)
	if err != nil {
		return SlackInstallStarted{}, fmt.Errorf("slack authorize url: %w", err)
	}
	hash := sha256.Sum256([]byte(state))
	now := si.s.now()
	expires := now.Add(slackStateTTL)
	err = si.s.inTx(ctx, func(q *store.Queries) error {
		if _, err := q.DeleteExpiredSlackOAuthStates(ctx, now); err != nil {
			return fmt.Errorf("purge slack states: %w", err)
		}
		n, err := q.CountPendingSlackOAuthStates(ctx, store.CountPendingSlackOAuthStatesParams{OrgID: p.OrgID, Now: now})
		if err != nil {
			return fmt.Errorf("count slack states: %w", err)
		}
		if n >= maxPendingSlackInstalls {
			return problem(http.StatusTooManyRequests, CodeRateLimited, fmt.Sprintf(
				"this org has %d Slack installs in progress; complete one or wait until they expire (%s after they were started)",
				n, slackStateTTL))
		}
		return q.CreateSlackOAuthState(ctx, store.CreateSlackOAuthStateParams{StateHash: hash[:], OrgID: p.OrgID,
			TeamID: p.TeamID, KeyID: p.KeyID, SessionID: p.SessionID, ChannelName: req.Name, Scope: scope, CreatedAt: now, ExpiresAt: expires})
	})
	if err != nil {
		return SlackInstallStarted{}, err
	}
	return SlackInstallStarted{AuthorizeURL: authorizeURL, ExpiresAt: expires}, nil
}

// pendingInstall is a spent state's binding.
type pendingInstall struct {
	principal Principal
	name      string
	scope     string
	// sessionID is set when a session started the install; principal is
	// then completed from the callback's session (bySession).
	sessionID string
}

// Reasons a state does not authorize a callback; each is a plain 400 page.
var (
	errSlackStateUnknown = errors.New("unknown or already used state")
	errSlackStateExpired = errors.New("expired state")
	errSlackStateRevoked = errors.New("state of a revoked key")
	errSlackStateSession = errors.New("state of another or ended session")
)

// stateRefused reports whether err is one of the state refusals rather
// than a failure to check the state.
func stateRefused(err error) bool {
	return errors.Is(err, errSlackStateUnknown) || errors.Is(err, errSlackStateExpired) || errors.Is(err, errSlackStateRevoked) ||
		errors.Is(err, errSlackStateSession)
}

// consume spends state and returns what it was bound to.
func (si *slackInstaller) consume(ctx context.Context, state string) (pendingInstall, error) {
	if len(state) < 16 || len(state) > maxSlackCallbackParam {
		return pendingInstall{}, errSlackStateUnknown
	}
	hash := sha256.Sum256([]byte(state))
	row, err := si.s.deps.Store.ConsumeSlackOAuthState(ctx, hash[:])
	switch {
	case errors.Is(err, store.ErrNotFound):
		return pendingInstall{}, errSlackStateUnknown
	case err != nil:
		return pendingInstall{}, fmt.Errorf("consume slack state: %w", err)
	case !si.s.now().Before(row.ExpiresAt):
		return pendingInstall{}, errSlackStateExpired
	case row.SessionID != "":
		return pendingInstall{principal: Principal{Kind: PrincipalUser, SessionID: row.SessionID, OrgID: row.OrgID, TeamID: row.TeamID},
			name: row.ChannelName, scope: row.Scope, sessionID: row.SessionID}, nil
	case !row.KeyActive:
		return pendingInstall{}, errSlackStateRevoked
	}
	return pendingInstall{
		principal: Principal{Kind: PrincipalAPIKey, KeyID: row.KeyID, OrgID: row.OrgID, TeamID: row.TeamID, Tier: TierManagement},
		name:      row.ChannelName,
		scope:     row.Scope,
	}, nil
}

// bySession checks that the callback comes from the live session that
// started the install, still of an owner or admin of its org, and completes
// the install's principal with that person.
func (si *slackInstaller) bySession(ctx context.Context, pending pendingInstall, cookie string) (pendingInstall, error) {
	s := si.s
	raw := cookieValue(cookie, s.sessionCookieName())
	if !wellFormedSessionToken(raw) {
		return pendingInstall{}, errSlackStateSession
	}
	now := s.now()
	hash := sha256.Sum256([]byte(raw))
	rows, err := s.deps.Store.AuthenticateSession(ctx, store.AuthenticateSessionParams{TokenHash: hash[:], Now: now,
		IdleCutoff: now.Add(-s.cfg.Sessions.Idle), OrgID: pending.principal.OrgID, TeamID: pending.principal.TeamID})
	if err != nil {
		return pendingInstall{}, fmt.Errorf("slack install session: %w", err)
	}
	if len(rows) == 0 {
		return pendingInstall{}, errSlackStateSession
	}
	r := rows[0]
	if r.ID != pending.sessionID || r.State != sessionStateFull || r.OrgID != pending.principal.OrgID ||
		(r.Role != RoleOwner && r.Role != RoleAdmin) {
		return pendingInstall{}, errSlackStateSession
	}
	pending.principal.UserID, pending.principal.Role = r.UserID, r.Role
	return pending, nil
}

// callback completes an install and renders the page the installer sees.
// Every outcome is a page; none shows the code, the state or the webhook URL.
func (si *slackInstaller) callback(ctx context.Context, in *slackCallbackInput) *slackCallbackOutput {
	log := si.s.log
	rid := requestIDFrom(ctx)
	restart := "Start the install again from oakallow."
	if si.app == nil {
		return slackPage(http.StatusServiceUnavailable, "Slack is not set up on this server",
			"This oakallow server has no Slack app credentials, so \"Add to Slack\" cannot be completed.", rid)
	}
	if len(in.Code) > maxSlackCallbackParam || len(in.Error) > maxSlackCallbackParam {
		return slackPage(http.StatusBadRequest, "Slack install failed", "The request is malformed. "+restart, rid)
	}
	if in.Error != "" {
		// RFC 6749 §4.1.2.1: the user or Slack refused; nothing to create.
		// The state is spent anyway, so the link cannot be completed later.
		if in.State != "" {
			pending, err := si.consume(ctx, in.State)
			switch {
			case err == nil:
				log.InfoContext(ctx, "slack install declined", "request_id", rid, "org_id", pending.principal.OrgID,
					"error", cleanSlackText(in.Error, 64))
			case !stateRefused(err):
				log.ErrorContext(ctx, "slack install callback", "request_id", rid, "err", err)
			}
		}
		if in.Error == "access_denied" {
			return slackPage(http.StatusOK, "Slack install cancelled",
				"The install was cancelled in Slack. Nothing was changed in oakallow.", rid)
		}
		return slackPage(http.StatusBadRequest, "Slack install failed",
			"Slack reported “"+cleanSlackText(in.Error, 64)+"”. Nothing was changed in oakallow. "+restart, rid)
	}
	if in.State == "" {
		return slackPage(http.StatusBadRequest, "Slack install failed",
			"The link is missing its state parameter, so it cannot be matched to an install. "+restart, rid)
	}

	// The state is spent before anything else happens: a failed or
	// replayed callback can never be completed later with it.
	pending, err := si.consume(ctx, in.State)
	switch {
	case errors.Is(err, errSlackStateUnknown):
		return slackPage(http.StatusBadRequest, "Slack install failed",
			"This install link is unknown or has already been used. "+restart, rid)
	case errors.Is(err, errSlackStateExpired):
		return slackPage(http.StatusBadRequest, "Slack install expired",
			fmt.Sprintf("This install link has expired: it must be completed within %s. ", slackStateTTL)+restart, rid)
	case errors.Is(err, errSlackStateRevoked):
		return slackPage(http.StatusBadRequest, "Slack install failed",
			"The API key that started this install has been revoked. "+restart, rid)
	case err == nil && pending.sessionID != "":
		if pending, err = si.bySession(ctx, pending, in.Cookie); errors.Is(err, errSlackStateSession) {
			return slackPage(http.StatusBadRequest, "Slack install failed",
				"This install was started in another browser session, or that session has ended or lost its admin role. "+
					"Sign in and click \"Add to Slack\" on the Settings page again.", rid)
		}
	}
	switch {
	case err != nil:
		log.ErrorContext(ctx, "slack install callback", "request_id", rid, "err", err)
		return slackPage(http.StatusInternalServerError, "Slack install failed", "An internal error occurred. "+restart, rid)
	}
	if in.Code == "" {
		return slackPage(http.StatusBadRequest, "Slack install failed",
			"Slack did not send an authorization code. "+restart, rid)
	}

	inst, err := si.app.Exchange(ctx, si.client, in.Code)
	switch {
	case errors.Is(err, notify.ErrSlackInstallRejected):
		log.InfoContext(ctx, "slack install rejected", "request_id", rid, "org_id", pending.principal.OrgID, "err", err)
		return slackPage(http.StatusBadRequest, "Slack install failed",
			"Slack refused to complete the install ("+cleanSlackText(strings.TrimPrefix(err.Error(), notify.ErrSlackInstallRejected.Error()+": "), 120)+"). "+
				"Nothing was changed in oakallow. "+restart, rid)
	case err != nil:
		// Exchange strips URLs from transport errors; the code and client
		// secret travel in the request body and are never in err.
		log.WarnContext(ctx, "slack install exchange", "request_id", rid, "org_id", pending.principal.OrgID, "err", err)
		return slackPage(http.StatusBadGateway, "Slack install failed",
			"oakallow could not complete the install with Slack. Nothing was changed in oakallow. "+restart, rid)
	}

	// Slack has created the webhook by now: store it even if the browser
	// has gone away meanwhile.
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	c, err := si.createChannel(saveCtx, pending, inst)
	if err != nil {
		log.ErrorContext(ctx, "slack install: create channel", "request_id", rid, "org_id", pending.principal.OrgID, "err", err)
		return slackPage(http.StatusInternalServerError, "Slack install failed",
			"Slack approved the install but oakallow could not save the channel. "+restart, rid)
	}
	log.InfoContext(ctx, "slack channel installed", "request_id", rid, "org_id", c.OrgID, "channel_id", c.ID)
	if pending.sessionID != "" {
		// Back to the dashboard, which lists the new channel.
		out := slackPage(http.StatusSeeOther, "Slack connected", "The channel was added; continue to the Settings page.", rid)
		out.Location = SlackInstalledRedirect
		return out
	}
	where := "its channel"
	if inst.Channel != "" {
		where = cleanSlackText(inst.Channel, 200)
	}
	title := "Slack connected to " + where
	msg := fmt.Sprintf("oakallow will post %s approval alerts to %s", scopeWords(c.Scope), where)
	if inst.TeamName != "" {
		msg += " in " + cleanSlackText(inst.TeamName, 200)
	}
	msg += fmt.Sprintf(" through the channel “%s” (%s). You can close this page.", c.Name, c.ID)
	return slackPage(http.StatusOK, title, msg, rid)
}

// createChannel stores the installed incoming webhook as a Slack channel,
// sealed under the channel's id like a pasted URL (see createChannel in
// channels.go), and audits it with via: slack_oauth.
func (si *slackInstaller) createChannel(ctx context.Context, pending pendingInstall, inst notify.SlackInstall) (store.NotificationChannel, error) {
	s := si.s
	config, err := json.Marshal(activities.SlackChannelConfig{
		Channel: cleanSlackText(inst.Channel, 200), Team: cleanSlackText(inst.TeamName, 200)})
	if err != nil {
		return store.NotificationChannel{}, fmt.Errorf("encode channel config: %w", err)
	}
	id := store.NewID("chn")
	sealedURL, err := s.deps.SecretBox.Seal([]byte(inst.WebhookURL), activities.ChannelSecretAAD(id))
	if err != nil {
		return store.NotificationChannel{}, err
	}
	name := pending.name
	if pending.sessionID != "" && inst.Channel != "" {
		// The dashboard's button asks for no name: the channel is named
		// after the Slack channel picked on Slack's page.
		name = "Slack " + cleanSlackText(inst.Channel, 190)
	}
	now := s.now()
	var c store.NotificationChannel
	err = s.inTx(ctx, func(q *store.Queries) error {
		var err error
		c, err = q.CreateChannel(ctx, store.CreateChannelParams{ID: id, OrgID: pending.principal.OrgID, Kind: activities.ChannelSlack,
			Name: name, Scope: pending.scope, Config: config, SecretCiphertext: sealedURL, Enabled: true, CreatedAt: now})
		if err != nil {
			return err
		}
		return s.recordChange(ctx, q, pending.principal, now, change{kind: kindChannelCreated, subject: id,
			details: map[string]any{"kind": c.Kind, "name": c.Name, "scope": c.Scope, "enabled": c.Enabled, "via": slackViaOAuth,
				"slack_channel": cleanSlackText(inst.Channel, 200), "slack_team": cleanSlackText(inst.TeamName, 200)}})
	})
	return c, err
}

// scopeWords describes a channel scope for the page.
func scopeWords(scope string) string {
	switch scope {
	case notify.ScopeLevel1:
		return "level-1"
	case notify.ScopeLevel2:
		return "level-2"
	}
	return "all"
}

// cleanSlackText makes text from Slack or the query string safe to store
// and show: valid UTF-8, no control characters, at most limit runes.
func cleanSlackText(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) > limit {
		s = string([]rune(s)[:limit]) + "…"
	}
	return s
}

var slackPageTemplate = template.Must(template.New("slack").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Title}} · oakallow</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1d1c1d}h1{font-size:1.4rem}.rid{color:#777;font-size:.8rem}</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{if .RequestID}}<p class="rid">Request id: {{.RequestID}}</p>{{end}}
</body>
</html>
`))

// slackPage renders the callback's answer. Values are HTML-escaped by
// html/template.
func slackPage(status int, title, message, requestID string) *slackCallbackOutput {
	var buf bytes.Buffer
	if err := slackPageTemplate.Execute(&buf, struct{ Title, Message, RequestID string }{title, message, requestID}); err != nil {
		// The template is fixed and its data are strings; this cannot fail
		// short of running out of memory.
		buf.Reset()
		buf.WriteString("Slack install: " + template.HTMLEscapeString(title))
	}
	return &slackCallbackOutput{
		Status:         status,
		ContentType:    "text/html; charset=utf-8",
		CacheControl:   "no-store",
		CSP:            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
		ReferrerPolicy: "no-referrer",
		NoSniff:        "nosniff",
		Body:           buf.Bytes(),
	}
}
