package api

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"oakallow/activities"
	"oakallow/activities/notify"
	"oakallow/activities/notify/notifytest"
	"oakallow/activities/pii"
	"oakallow/dev/devtest"
)

// slackEnv is a real API server with a Slack app pointed at a fake Slack,
// a secrets key, a channel tester and a clock the test can move.
type slackEnv struct {
	*testEnv
	slack *notifytest.Slack
	skew  *atomic.Int64 // added to the wall clock, in nanoseconds
}

type slackEnvOptions struct {
	noSlack bool // the server has no Slack app credentials
}

func newSlackEnv(t *testing.T, opts slackEnvOptions) *slackEnv {
	t.Helper()
	st := devtest.Store(t)
	boot, err := Bootstrap(context.Background(), st, BootstrapInput{
		TeamName: "Acme", OwnerEmail: "owner@example.com", OwnerName: "Owner", OrgName: "acme-app",
	}, time.Now())
	require.NoError(t, err)
	fake := notifytest.NewSlack(t)
	skew := &atomic.Int64{}
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }

	// The fakes listen on loopback over http.
	hc, err := notify.NewHTTPClient(notify.HTTPClientConfig{AllowInsecure: true, AllowPrivateAddresses: true, Timeout: 5 * time.Second})
	require.NoError(t, err)
	deps := Deps{Store: st, Logger: testLogger(), Keyring: testKeyring, Now: now, SlackHTTPClient: hc, SecretBox: testBox(t)}
	// The channel test action sends directly and never touches Temporal; a
	// lazy client that is never dialled satisfies activities.New without a
	// Temporal server.
	tc, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	require.NoError(t, err)
	n, err := notify.New(notify.Config{HTTPClient: hc, Scrub: pii.Scrub, Logger: testLogger()})
	require.NoError(t, err)
	deps.Activities, err = activities.New(activities.Deps{Store: st, Keyring: testKeyring, Temporal: tc, Notifier: n,
		HTTPClient: hc, SecretBox: deps.SecretBox, Logger: testLogger()})
	require.NoError(t, err)
	if !opts.noSlack {
		deps.Slack = &notify.SlackApp{ClientID: fake.ClientID, ClientSecret: fake.ClientSecret,
			AuthorizeURL: "https://slack.example/oauth/v2/authorize", APIURL: fake.APIURL(), AllowInsecure: true}
	}
	srv, err := NewServer(Config{Addr: "127.0.0.1:0", PublicURL: "http://oakallow.test:8080/"}, deps)
	require.NoError(t, err)
	require.NoError(t, srv.Start(context.Background()))
	t.Cleanup(srv.Stop)
	return &slackEnv{testEnv: &testEnv{t: t, st: st, srv: srv, base: "http://" + srv.Addr(), boot: boot}, slack: fake, skew: skew}
}

// install starts an install with the management key and returns the
// authorize URL's query.
func (e *slackEnv) install(name, scope string) url.Values {
	e.t.Helper()
	body := map[string]any{"name": name}
	if scope != "" {
		body["scope"] = scope
	}
	started := expect[SlackInstallStarted](e.testEnv, http.StatusOK, http.MethodPost, "/v1/channels/slack/install", e.boot.ManagementKey, body)
	u, err := url.Parse(started.AuthorizeURL)
	require.NoError(e.t, err)
	return u.Query()
}

// callback is the installer's browser arriving from Slack.
func (e *slackEnv) callback(q url.Values) (int, http.Header, string) {
	e.t.Helper()
	status, hdr, body := e.send(http.MethodGet, SlackCallbackPath+"?"+q.Encode(), "", nil, nil)
	return status, hdr, string(body)
}

// approve is Slack's authorize page approving the install: it issues a code
// for the redirect URI and sends the browser back with the state.
func (e *slackEnv) approve(authorize url.Values) url.Values {
	return url.Values{"code": {e.slack.IssueCode(authorize.Get("redirect_uri"))}, "state": {authorize.Get("state")}}
}

func (e *slackEnv) channelsNamed(name string) int {
	e.t.Helper()
	return e.count(`SELECT count(*) FROM notification_channels WHERE org_id = $1 AND name = $2`, name)
}

func TestSlackInstallCreatesSealedChannel(t *testing.T) {
	t.Parallel()
	e := newSlackEnv(t, slackEnvOptions{})
	mk, sk := e.boot.ManagementKey, e.boot.StandardKey

	before := time.Now()
	started := expect[SlackInstallStarted](e.testEnv, http.StatusOK, http.MethodPost, "/v1/channels/slack/install", mk,
		map[string]any{"name": "approvals-l2", "scope": "level_2"})
	requireBetween(t, started.ExpiresAt, before.Add(10*time.Minute), time.Now().Add(10*time.Minute))
	u, err := url.Parse(started.AuthorizeURL)
	require.NoError(t, err)
	require.Equal(t, "https://slack.example/oauth/v2/authorize", u.Scheme+"://"+u.Host+u.Path)
	authorize := u.Query()
	require.Equal(t, e.slack.ClientID, authorize.Get("client_id"))
	require.Equal(t, []string{"incoming-webhook"}, authorize["scope"], "the only scope asked for")
	require.Empty(t, authorize.Get("user_scope"))
	require.Equal(t, "http://oakallow.test:8080"+SlackCallbackPath, authorize.Get("redirect_uri"))
	state := authorize.Get("state")
	require.GreaterOrEqual(t, len(state), 32)
	require.NotContains(t, started.AuthorizeURL, e.slack.ClientSecret)

	// The state is stored only as its hash.
	require.Equal(t, 0, e.count(`SELECT count(*) FROM slack_oauth_states WHERE org_id = $1 AND position($2::bytea IN state_hash) > 0`, []byte(state)))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM slack_oauth_states WHERE org_id = $1`))

	back := e.approve(authorize)
	status, hdr, page := e.callback(back)
	require.Equal(t, http.StatusOK, status, page)
	require.Equal(t, "text/html; charset=utf-8", hdr.Get("Content-Type"))
	require.Equal(t, "no-store", hdr.Get("Cache-Control"))
	require.Equal(t, "no-referrer", hdr.Get("Referrer-Policy"))
	require.Contains(t, page, "Slack connected to "+e.slack.Channel)
	require.Contains(t, page, "approvals-l2")
	require.Contains(t, page, "Fake Team")
	require.Equal(t, 1, e.slack.Exchanges())

	secrets := []string{e.slack.WebhookURL(), strings.TrimPrefix(e.slack.WebhookURL(), "http://"), e.slack.ClientSecret, state, back.Get("code")}
	noSecret := func(what string, raw []byte) {
		t.Helper()
		for _, sec := range secrets {
			require.False(t, bytes.Contains(raw, []byte(sec)), "%s shows a secret: %s", what, raw)
		}
	}
	noSecret("callback page", []byte(page))

	// The channel exists, shown masked to both key tiers.
	var list channelList
	for _, key := range []string{mk, sk} {
		status, raw := e.do(http.MethodGet, "/v1/channels", key, nil)
		require.Equal(t, http.StatusOK, status, string(raw))
		noSecret("channel list", raw)
		list = expect[channelList](e.testEnv, http.StatusOK, http.MethodGet, "/v1/channels", key, nil)
	}
	require.Len(t, list.Items, 1)
	ch := list.Items[0]
	require.Equal(t, "slack", ch.Kind)
	require.Equal(t, "approvals-l2", ch.Name)
	require.Equal(t, "level_2", ch.Scope)
	require.True(t, ch.Enabled)
	require.Equal(t, e.slack.Channel, ch.SlackChannel)
	require.Equal(t, "Fake Team", ch.SlackTeam)
	wh, err := url.Parse(e.slack.WebhookURL())
	require.NoError(t, err)
	require.Equal(t, wh.Host+"/…", ch.WebhookURLMasked, "the stored URL opens with the channel's key")
	status, raw := e.do(http.MethodGet, "/v1/channels/"+ch.ID, mk, nil)
	require.Equal(t, http.StatusOK, status)
	noSecret("channel", raw)

	// Sealed at rest, and bound to this channel's id.
	var cfg string
	var sealedURL []byte
	require.NoError(t, e.st.Pool.QueryRow(context.Background(),
		`SELECT config::text, secret_ciphertext FROM notification_channels WHERE id = $1`, ch.ID).Scan(&cfg, &sealedURL))
	noSecret("stored config", []byte(cfg))
	noSecret("stored ciphertext", sealedURL)
	opened, err := e.srv.deps.SecretBox.Open(sealedURL, activities.ChannelSecretAAD(ch.ID))
	require.NoError(t, err)
	require.Equal(t, e.slack.WebhookURL(), string(opened))
	_, err = e.srv.deps.SecretBox.Open(sealedURL, activities.ChannelSecretAAD("chn_other"))
	require.Error(t, err)

	// Audited as created through the install, by the key that started it.
	var actor string
	var details []byte
	require.NoError(t, e.st.Pool.QueryRow(context.Background(),
		`SELECT actor_id, details::text FROM audit_events WHERE org_id = $1 AND kind = 'channel.created' AND subject = $2`,
		e.boot.OrgID, ch.ID).Scan(&actor, &details))
	require.Equal(t, e.keyID(TierManagement), actor)
	require.Contains(t, string(details), `"via": "slack_oauth"`)
	noSecret("audit", details)

	// The channel works: the test action reaches the fake's webhook.
	res := expect[ChannelTestResult](e.testEnv, http.StatusOK, http.MethodPost, "/v1/channels/"+ch.ID+"/test", mk, nil)
	require.True(t, res.OK, "%+v", res)
	require.Len(t, e.slack.Messages(), 1)
	require.Contains(t, string(e.slack.Messages()[0]), "oakallow.test_notification")

	// The state is spent: replaying it, even with a fresh valid code, fails.
	replay := e.approve(authorize)
	status, _, page = e.callback(replay)
	require.Equal(t, http.StatusBadRequest, status, page)
	require.Contains(t, page, "already been used")
	require.Equal(t, 1, e.slack.Exchanges(), "a spent state never reaches Slack")
	require.Equal(t, 1, e.channelsNamed("approvals-l2"))
	require.Equal(t, 0, e.count(`SELECT count(*) FROM slack_oauth_states WHERE org_id = $1`))
}

func TestSlackInstallCallbackRefusals(t *testing.T) {
	t.Parallel()
	e := newSlackEnv(t, slackEnvOptions{})
	cases := []struct {
		name string
		// back returns the callback query for an install started as name.
		back     func(t *testing.T, name string) url.Values
		status   int
		contains string
	}{
		{"unknown state", func(t *testing.T, name string) url.Values {
			authorize := e.install(name, "")
			q := e.approve(authorize)
			q.Set("state", strings.Repeat("A", 32))
			return q
		}, http.StatusBadRequest, "unknown or has already been used"},
		{"missing state", func(t *testing.T, name string) url.Values {
			q := e.approve(e.install(name, ""))
			q.Del("state")
			return q
		}, http.StatusBadRequest, "missing its state"},
		{"state of another install with a tampered character", func(t *testing.T, name string) url.Values {
			q := e.approve(e.install(name, ""))
			s := []byte(q.Get("state"))
			s[0] ^= 1
			q.Set("state", string(s))
			return q
		}, http.StatusBadRequest, "unknown or has already been used"},
		{"wrong code", func(t *testing.T, name string) url.Values {
			authorize := e.install(name, "")
			return url.Values{"code": {"1111.not-issued"}, "state": {authorize.Get("state")}}
		}, http.StatusBadRequest, "invalid_code"},
		{"code issued for another redirect uri", func(t *testing.T, name string) url.Values {
			authorize := e.install(name, "")
			return url.Values{"code": {e.slack.IssueCode("https://evil.example/cb")}, "state": {authorize.Get("state")}}
		}, http.StatusBadRequest, "bad_redirect_uri"},
		{"missing code", func(t *testing.T, name string) url.Values {
			q := e.approve(e.install(name, ""))
			q.Del("code")
			return q
		}, http.StatusBadRequest, "did not send an authorization code"},
		{"oversized code", func(t *testing.T, name string) url.Values {
			q := e.approve(e.install(name, ""))
			q.Set("code", strings.Repeat("c", 4096))
			return q
		}, http.StatusBadRequest, "malformed"},
		{"declined in slack", func(t *testing.T, name string) url.Values {
			authorize := e.install(name, "")
			return url.Values{"error": {"access_denied"}, "state": {authorize.Get("state")}}
		}, http.StatusOK, "cancelled in Slack"},
		{"other slack error with markup", func(t *testing.T, name string) url.Values {
			authorize := e.install(name, "")
			return url.Values{"error": {"<script>alert(1)</script>"}, "state": {authorize.Get("state")}}
		}, http.StatusBadRequest, "&lt;script&gt;"},
	}
	// The subtests share the server's clock and the org's management key
	// (the last one revokes it), so they run in order.
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.slack.Exchanges()
			q := tc.back(t, tc.name)
			status, hdr, page := e.callback(q)
			require.Equal(t, tc.status, status, page)
			require.Equal(t, "text/html; charset=utf-8", hdr.Get("Content-Type"))
			require.Contains(t, page, tc.contains)
			require.NotContains(t, page, "<script>")
			require.Equal(t, before, e.slack.Exchanges(), "no install completed")
			require.Equal(t, 0, e.channelsNamed(tc.name), "nothing created")
		})
	}

	t.Run("declined state cannot be completed later", func(t *testing.T) {
		authorize := e.install("declined then approved", "")
		status, _, page := e.callback(url.Values{"error": {"access_denied"}, "state": {authorize.Get("state")}})
		require.Equal(t, http.StatusOK, status, page)
		status, _, page = e.callback(e.approve(authorize))
		require.Equal(t, http.StatusBadRequest, status, page)
		require.Equal(t, 0, e.channelsNamed("declined then approved"))
	})

	t.Run("failed exchange spends the state", func(t *testing.T) {
		authorize := e.install("failed then retried", "")
		status, _, page := e.callback(url.Values{"code": {"1111.not-issued"}, "state": {authorize.Get("state")}})
		require.Equal(t, http.StatusBadRequest, status, page)
		status, _, page = e.callback(e.approve(authorize))
		require.Equal(t, http.StatusBadRequest, status, page)
		require.Contains(t, page, "already been used")
		require.Equal(t, 0, e.channelsNamed("failed then retried"))
	})

	t.Run("slack unreachable", func(t *testing.T) {
		// A second server whose Slack API is a closed port.
		app := *e.srv.deps.Slack
		app.APIURL = "http://127.0.0.1:1/api/"
		app.RedirectURL = ""
		srv, err := NewServer(Config{Addr: "127.0.0.1:0", PublicURL: "http://oakallow.test:8080"},
			Deps{Store: e.st, Logger: testLogger(), Keyring: testKeyring, SecretBox: e.srv.deps.SecretBox, Slack: &app,
				SlackHTTPClient: e.srv.deps.SlackHTTPClient})
		require.NoError(t, err)
		require.NoError(t, srv.Start(context.Background()))
		t.Cleanup(srv.Stop)
		authorize := e.install("unreachable", "")
		status, _, body := e.testEnv.on(srv).send(http.MethodGet, SlackCallbackPath+"?"+e.approve(authorize).Encode(), "", nil, nil)
		require.Equal(t, http.StatusBadGateway, status, string(body))
		require.Contains(t, string(body), "could not complete the install with Slack")
		require.Equal(t, 0, e.channelsNamed("unreachable"))
	})

	t.Run("expired state", func(t *testing.T) {
		authorize := e.install("expired", "")
		e.skew.Add(int64(10*time.Minute + time.Second))
		t.Cleanup(func() { e.skew.Add(-int64(10*time.Minute + time.Second)) })
		before := e.slack.Exchanges()
		status, _, page := e.callback(e.approve(authorize))
		require.Equal(t, http.StatusBadRequest, status, page)
		require.Contains(t, page, "expired")
		require.Equal(t, before, e.slack.Exchanges())
		require.Equal(t, 0, e.channelsNamed("expired"))
	})

	t.Run("state of a revoked key", func(t *testing.T) {
		authorize := e.install("revoked", "")
		// A key revoked after starting the install cannot complete it.
		_, err := e.st.Pool.Exec(context.Background(), `UPDATE api_keys SET revoked_at = now() WHERE id = $1`, e.keyID(TierManagement))
		require.NoError(t, err)
		status, _, page := e.callback(e.approve(authorize))
		require.Equal(t, http.StatusBadRequest, status, page)
		require.Contains(t, page, "revoked")
		require.Equal(t, 0, e.channelsNamed("revoked"))
	})
}

func TestSlackInstallRefusedRequests(t *testing.T) {
	t.Parallel()
	e := newSlackEnv(t, slackEnvOptions{})
	cases := []struct {
		name   string
		key    string
		body   map[string]any
		status int
		code   string
	}{
		{"standard key", e.boot.StandardKey, map[string]any{"name": "n"}, http.StatusForbidden, CodeWrongKeyTier},
		{"no key", "", map[string]any{"name": "n"}, http.StatusUnauthorized, CodeInvalidKey},
		{"no name", e.boot.ManagementKey, map[string]any{}, http.StatusUnprocessableEntity, CodeValidationFailed},
		{"control character in name", e.boot.ManagementKey, map[string]any{"name": "a\nb"}, http.StatusUnprocessableEntity, CodeValidationFailed},
		{"unknown scope", e.boot.ManagementKey, map[string]any{"name": "n", "scope": "level_3"}, http.StatusUnprocessableEntity, CodeValidationFailed},
		{"unknown field", e.boot.ManagementKey, map[string]any{"name": "n", "webhook_url": "https://hooks.slack.com/x"}, http.StatusUnprocessableEntity, CodeValidationFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.expectProblem(tc.status, tc.code, http.MethodPost, "/v1/channels/slack/install", tc.key, tc.body)
		})
	}
	require.Equal(t, 0, e.count(`SELECT count(*) FROM slack_oauth_states WHERE org_id = $1`))

	t.Run("too many installs in progress", func(t *testing.T) {
		for range maxPendingSlackInstalls {
			e.install("pending", "")
		}
		e.expectProblem(http.StatusTooManyRequests, CodeRateLimited, http.MethodPost, "/v1/channels/slack/install",
			e.boot.ManagementKey, map[string]any{"name": "one too many"})
		// Expired installs stop counting and are purged.
		e.skew.Add(int64(slackStateTTL))
		e.install("after expiry", "")
		require.Equal(t, 1, e.count(`SELECT count(*) FROM slack_oauth_states WHERE org_id = $1`))
	})
}

func TestSlackInstallNotConfigured(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		opts     slackEnvOptions
		code     string
		callback int
	}{
		{"no slack app", slackEnvOptions{noSlack: true}, CodeSlackNotConfigured, http.StatusServiceUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newSlackEnv(t, tc.opts)
			e.expectProblem(http.StatusServiceUnavailable, tc.code, http.MethodPost, "/v1/channels/slack/install",
				e.boot.ManagementKey, map[string]any{"name": "n"})
			// The standard key is refused for what it is, configured or not.
			e.expectProblem(http.StatusForbidden, CodeWrongKeyTier, http.MethodPost, "/v1/channels/slack/install",
				e.boot.StandardKey, map[string]any{"name": "n"})
			status, hdr, page := e.callback(url.Values{"code": {"1111.x"}, "state": {strings.Repeat("A", 32)}})
			require.Equal(t, tc.callback, status, page)
			require.Equal(t, "text/html; charset=utf-8", hdr.Get("Content-Type"))
			require.Equal(t, 0, e.slack.Exchanges())
			require.Equal(t, 0, e.count(`SELECT count(*) FROM notification_channels WHERE org_id = $1`))
		})
	}
}

func TestSlackAppConfigurationIsCheckedAtStart(t *testing.T) {
	t.Parallel()
	st := devtest.Store(t)
	cases := []struct {
		name      string
		app       notify.SlackApp
		publicURL string
		errSubstr string
	}{
		{"no secret", notify.SlackApp{ClientID: "1.2"}, "https://oak.example", "client id and secret"},
		{"plain http public url", notify.SlackApp{ClientID: "1.2", ClientSecret: "s"}, "http://oak.example", "https"},
		{"api url without slash", notify.SlackApp{ClientID: "1.2", ClientSecret: "s", APIURL: "https://slack.example/api"}, "https://oak.example", "end in '/'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewServer(Config{Addr: "127.0.0.1:0", PublicURL: tc.publicURL},
				Deps{Store: st, Keyring: testKeyring, SecretBox: testSecretBox, Slack: &tc.app})
			require.ErrorContains(t, err, tc.errSubstr)
		})
	}
	// A valid app does not need its RedirectURL: it follows the public URL.
	_, err := NewServer(Config{Addr: "127.0.0.1:0", PublicURL: "https://oak.example"},
		Deps{Store: st, Keyring: testKeyring, SecretBox: testSecretBox, Slack: &notify.SlackApp{ClientID: "1.2", ClientSecret: "s"}})
	require.NoError(t, err)
}

// cookie is the session cookie as this server names it (its public URL is
// not localhost, so the Secure name).
func (e *slackEnv) cookie(session string) map[string]string {
	if session == "" {
		return map[string]string{}
	}
	return map[string]string{"Cookie": e.srv.sessionCookieName() + "=" + session}
}

// get is the browser opening a dashboard page with session, not
// following redirects.
func (e *slackEnv) get(path, session string) (int, http.Header, string) {
	e.t.Helper()
	status, hdr, body := e.sendVia(noRedirects, http.MethodGet, path, "", e.cookie(session), nil)
	return status, hdr, string(body)
}

// sessionCallback is the installer's browser, holding session, arriving
// from Slack.
func (e *slackEnv) sessionCallback(q url.Values, session string) (int, http.Header, string) {
	e.t.Helper()
	status, hdr, body := e.sendVia(noRedirects, http.MethodGet, SlackCallbackPath+"?"+q.Encode(), "", e.cookie(session), nil)
	return status, hdr, string(body)
}

// startFromSettings clicks "Add to Slack" on Settings and follows the
// redirect to Slack's authorize page, returning its query.
func (e *slackEnv) startFromSettings(session string) url.Values {
	e.t.Helper()
	status, _, body := e.get("/settings", session)
	require.Equal(e.t, http.StatusOK, status, body)
	require.Contains(e.t, body, `href="/settings/slack">Add to Slack</a>`)
	status, hdr, body := e.get("/settings/slack", session)
	require.Equal(e.t, http.StatusSeeOther, status, body)
	u, err := url.Parse(hdr.Get("Location"))
	require.NoError(e.t, err)
	require.Equal(e.t, "https://slack.example/oauth/v2/authorize", u.Scheme+"://"+u.Host+u.Path)
	return u.Query()
}

func TestSlackInstallFromDashboardSession(t *testing.T) {
	t.Parallel()
	e := newSlackEnv(t, slackEnvOptions{})
	adminID := e.person(RoleAdmin)
	admin := e.signIn(adminID, true).Token
	other := e.signIn(e.person(RoleOwner), true).Token

	// Start → Slack's authorize page → callback → back on Settings.
	authorize := e.startFromSettings(admin)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM slack_oauth_states WHERE org_id = $1 AND session_id IS NOT NULL AND key_id IS NULL`))
	status, hdr, page := e.sessionCallback(e.approve(authorize), admin)
	require.Equal(t, http.StatusSeeOther, status, page)
	require.Equal(t, SlackInstalledRedirect, hdr.Get("Location"))
	require.Equal(t, 1, e.slack.Exchanges())
	status, _, page = e.get(hdr.Get("Location"), admin)
	require.Equal(t, http.StatusOK, status, page)
	require.Contains(t, page, "Slack added")
	require.Contains(t, page, "<b>Slack "+e.slack.Channel+"</b>")
	require.NotContains(t, page, e.slack.WebhookURL())
	require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'channel.created'
		AND actor_kind = 'user' AND actor_id = $2 AND details->>'via' = 'slack_oauth'`, adminID), "audited as the admin's install")

	// Reuse of a spent state: refused, nothing stored.
	status, _, page = e.sessionCallback(e.approve(authorize), admin)
	require.Equal(t, http.StatusBadRequest, status, page)
	require.Contains(t, page, "already been used")

	// Another person's session (or none) cannot complete it; the state is spent.
	authorize = e.startFromSettings(admin)
	status, _, page = e.sessionCallback(e.approve(authorize), other)
	require.Equal(t, http.StatusBadRequest, status, page)
	require.Contains(t, page, "another browser session")
	status, _, page = e.sessionCallback(e.approve(authorize), admin)
	require.Equal(t, http.StatusBadRequest, status, "spent by the refused callback: %s", page)
	authorize = e.startFromSettings(admin)
	status, _, page = e.sessionCallback(e.approve(authorize), "")
	require.Equal(t, http.StatusBadRequest, status, page)

	// Expired.
	authorize = e.startFromSettings(admin)
	e.skew.Add(int64(slackStateTTL + time.Second))
	status, _, page = e.sessionCallback(e.approve(authorize), admin)
	e.skew.Store(0)
	require.Equal(t, http.StatusBadRequest, status, page)
	require.Contains(t, page, "expired")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM notification_channels WHERE org_id = $1`), "only the first install stored a channel")
	require.Equal(t, 1, e.slack.Exchanges(), "refused callbacks never reach Slack")

	// Reviewers neither see the button nor may start an install.
	reviewer := e.signIn(e.person(RoleReviewer), true).Token
	status, _, page = e.get("/settings", reviewer)
	require.Equal(t, http.StatusForbidden, status)
	require.NotContains(t, page, "Add to Slack</a>")
	status, _, _ = e.get("/settings/slack", reviewer)
	require.Equal(t, http.StatusForbidden, status)
	// A cross-site navigation cannot start one either.
	st, _, _ := e.sendVia(noRedirects, http.MethodGet, "/settings/slack", "", with(e.cookie(admin), "Sec-Fetch-Site", "cross-site"), nil)
	require.Equal(t, http.StatusForbidden, st)
	require.Equal(t, 0, e.count(`SELECT count(*) FROM slack_oauth_states WHERE org_id = $1 AND expires_at > now()`))
}

func TestSlackInstallButtonNeedsSlackApp(t *testing.T) {
	t.Parallel()
	e := newSlackEnv(t, slackEnvOptions{noSlack: true})
	owner := e.signIn(e.boot.UserID, true).Token
	status, _, page := e.get("/settings", owner)
	require.Equal(t, http.StatusOK, status, page)
	require.NotContains(t, page, "Add to Slack</a>")
	require.Contains(t, page, "SLACK_CLIENT_ID")
	require.Contains(t, page, "http://oakallow.test:8080"+SlackCallbackPath)
	status, _, page = e.get("/settings/slack", owner)
	require.Equal(t, http.StatusServiceUnavailable, status, page)
}
