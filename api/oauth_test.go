package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"oakallow/api/passkeys"
	"oakallow/api/passkeys/passkeystest"
	"oakallow/api/ratelimit"
	"oakallow/store"
)

// oauthEnv is a server whose public URL is its real address (the issuer
// and the /mcp resource clients discover), a second org in the team, and
// the owner signed in with a real passkey (a full session).
type oauthEnv struct {
	*testEnv
	session  string                      // the owner's full session token, sent as the browser's cookie
	auth     *passkeystest.Authenticator // the owner's passkey
	codes    []string                    // the owner's recovery codes, from enrolling that passkey
	org2     string
	noFollow *http.Client
}

const testRedirect = "http://127.0.0.1:9/callback"

func newOAuthEnv(t *testing.T, registrations ratelimit.Limit) *oauthEnv {
	t.Helper()
	st, boot := bootstrappedStore(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := testConfig()
	cfg.Listener, cfg.PublicURL, cfg.OAuthRegistrationsPerIP = ln, "http://"+ln.Addr().String(), registrations
	e := startEnvWith(t, cfg, Deps{Store: st}, boot)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	a := passkeystest.New("localhost", "http://localhost:"+port)
	status, raw := e.enrollREST(a, bearer(e.signIn(boot.UserID, false).Token))
	require.Equal(t, http.StatusCreated, status, string(raw))
	var got enrolledAnswer
	require.NoError(t, json.Unmarshal(raw, &got))
	org2 := store.NewID("org")
	require.NoError(t, st.CreateOrg(context.Background(), store.CreateOrgParams{ID: org2, TeamID: boot.TeamID, Name: "second-app", CreatedAt: time.Now()}))
	return &oauthEnv{testEnv: e, session: got.Session.Token, auth: a, codes: got.RecoveryCodes, org2: org2, noFollow: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: hangDeadline}}
}

// browse sends a request as a browser would (with the session cookie when
// withSession; a form body when form is not nil), without following redirects.
func (o *oauthEnv) browse(method, u string, form url.Values, withSession bool) (*http.Response, []byte) {
	o.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	require.NoError(o.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if withSession {
		req.Header.Set("Cookie", sessionCookiePlain+"="+o.session)
	}
	resp, err := o.noFollow.Do(req)
	require.NoError(o.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// get sends a GET without following redirects.
func (o *oauthEnv) get(u string, withSession bool) (*http.Response, string) {
	resp, b := o.browse(http.MethodGet, u, nil, withSession)
	return resp, string(b)
}

// postForm posts a form to path.
func (o *oauthEnv) postForm(path string, form url.Values, withSession bool) (*http.Response, []byte) {
	return o.browse(http.MethodPost, o.base+path, form, withSession)
}

var (
	csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	orgOption = regexp.MustCompile(`<option value="(org_[^"]+)"`)
)

// consent follows an authorization URL as the person's browser would: the
// authorization endpoint, the consent page (signed in), and the form's
// answer (decision approve or deny, for org with scopes). It returns where
// the browser is sent back to the client.
func (o *oauthEnv) consent(authURL, decision, org, scopes string) *url.URL {
	o.t.Helper()
	resp, body := o.get(authURL, false)
	require.Equal(o.t, http.StatusSeeOther, resp.StatusCode, body)
	consentPath := resp.Header.Get("Location")
	require.True(o.t, strings.HasPrefix(consentPath, "/oauth/consent/"), consentPath)
	// Not signed in: the page sends the browser to sign in, and back here after.
	resp, _ = o.get(o.base+consentPath, false)
	require.Equal(o.t, http.StatusSeeOther, resp.StatusCode)
	require.Contains(o.t, resp.Header.Get("Location"), "/sign-in?next="+url.QueryEscape(consentPath))
	resp, page := o.get(o.base+consentPath, true)
	require.Equal(o.t, http.StatusOK, resp.StatusCode, page)
	au, err := url.Parse(authURL)
	require.NoError(o.t, err)
	back, err := url.Parse(au.Query().Get("redirect_uri"))
	require.NoError(o.t, err)
	require.Contains(o.t, resp.Header.Get("Content-Security-Policy"), "form-action 'self' "+back.Scheme+"://"+back.Host)
	m := csrfField.FindStringSubmatch(page)
	require.NotNil(o.t, m, page)
	orgs := orgOption.FindAllStringSubmatch(page, -1)
	require.Len(o.t, orgs, 2, "the person picks among the orgs of their memberships")
	resp, raw := o.postForm(consentPath, url.Values{"csrf": {m[1]}, "decision": {decision}, "org": {org}, "scopes": {scopes}}, true)
	require.Equal(o.t, http.StatusSeeOther, resp.StatusCode, string(raw))
	to, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(o.t, err)
	require.Equal(o.t, o.base, to.Query().Get("iss"), "RFC 9207: the issuer is named in the authorization response")
	return to
}

// register registers a client by RFC 7591 and returns its id.
func (o *oauthEnv) register(redirects ...string) string {
	o.t.Helper()
	status, raw := o.do(http.MethodPost, "/oauth/register", "", map[string]any{"client_name": "Test agent", "redirect_uris": redirects,
		"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none"})
	require.Equal(o.t, http.StatusCreated, status, string(raw))
	var out struct {
		ClientID   string `json:"client_id"`
		AuthMethod string `json:"token_endpoint_auth_method"`
	}
	require.NoError(o.t, json.Unmarshal(raw, &out))
	require.Equal(o.t, "none", out.AuthMethod)
	return out.ClientID
}

func (o *oauthEnv) oauth2Config(clientID string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{ClientID: clientID, RedirectURL: testRedirect, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: o.base + "/oauth/authorize", TokenURL: o.base + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams}}
}

// authorized runs the code flow with x/oauth2 for org and scopes and returns the tokens.
func (o *oauthEnv) authorized(cfg *oauth2.Config, org, scopes string) *oauth2.Token {
	o.t.Helper()
	verifier := oauth2.GenerateVerifier()
	to := o.consent(cfg.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier)), "approve", org, scopes)
	require.Equal(o.t, "st-1", to.Query().Get("state"))
	tok, err := cfg.Exchange(o.ctx(), to.Query().Get("code"), oauth2.VerifierOption(verifier))
	require.NoError(o.t, err)
	return tok
}

func (o *oauthEnv) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hangDeadline)
	o.t.Cleanup(cancel)
	return ctx
}

// mcpStatus posts one JSON-RPC request to /mcp with the bearer token and
// returns the status and the WWW-Authenticate challenge.
func (o *oauthEnv) mcpStatus(token, body string) (int, string) {
	o.t.Helper()
	req, err := http.NewRequest(http.MethodPost, o.base+mcpPath, strings.NewReader(body))
	require.NoError(o.t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(o.t, err)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

const listTools = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_my_tools","arguments":{}}}`

// tokenError posts to the token endpoint and returns the status and RFC 6749 error code.
func (o *oauthEnv) tokenError(form url.Values) (int, string) {
	o.t.Helper()
	resp, raw := o.postForm("/oauth/token", form, false)
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(raw, &e)
	return resp.StatusCode, e.Error
}

func TestOAuthGoSDKClientDiscoversRegistersAndCallsTools(t *testing.T) {
	t.Parallel()
	o := newOAuthEnv(t, ratelimit.Limit{})
	o.seedTool("read_file", "", ptr("allowed"))

	var fetched int
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			ClientName: "go-sdk agent", RedirectURIs: []string{testRedirect}, GrantTypes: []string{"authorization_code", "refresh_token"},
			TokenEndpointAuthMethod: "none"}},
		AuthorizationCodeFetcher: func(_ context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			fetched++
			to := o.consent(args.URL, "approve", o.boot.OrgID, "mcp:read mcp:write")
			q := to.Query()
			if q.Get("error") != "" {
				return nil, errors.New(q.Get("error"))
			}
			return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
		},
	})
	require.NoError(t, err)
	c := sdk.NewClient(&sdk.Implementation{Name: "oakallow-oauth-test", Version: "1"}, nil)
	s, err := c.Connect(o.ctx(), &sdk.StreamableClientTransport{Endpoint: o.base + mcpPath, OAuthHandler: h}, nil)
	require.NoError(t, err)
	defer s.Close()
	out, isErr := callTool(t, s, "check_permission", map[string]any{"tool": "read_file"})
	require.False(t, isErr, "%v", out)
	require.Equal(t, "allowed", out["permission"])
	require.Equal(t, 1, fetched, "one consent")
	// The check is the person's grant acting in the chosen org, and every step was audited.
	var actorKind string
	require.NoError(t, o.st.Pool.QueryRow(context.Background(), `SELECT actor_kind FROM audit_events WHERE id = $1`, out["check_id"]).Scan(&actorKind))
	require.Equal(t, PrincipalOAuth, actorKind)
	for _, kind := range []string{"oauth.authorized", "oauth.token_issued"} {
		require.Equal(t, 1, o.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = $2`, kind), kind)
	}
	require.Equal(t, 1, o.count(`SELECT count(*) FROM audit_events WHERE $1 <> '' AND kind = 'oauth.client_registered'`))
	var hashed int
	require.NoError(t, o.st.Pool.QueryRow(context.Background(), `SELECT count(*) FROM oauth_tokens WHERE length(token_hash) = 32`).Scan(&hashed))
	require.Equal(t, 2, hashed, "one access and one refresh token, stored as SHA-256")
}

func TestOAuthAuthorizationServer(t *testing.T) {
	t.Parallel()
	o := newOAuthEnv(t, ratelimit.Limit{N: 12, Per: time.Hour})
	o.seedTool("read_file", "", ptr("allowed"))
	o.seedTool("send_email", "", nil)
	clientID := o.register(testRedirect)
	cfg := o.oauth2Config(clientID, "mcp:read", "mcp:write")

	t.Run("metadata and the unauthenticated challenge", func(t *testing.T) {
		var as map[string]any
		resp, body := o.get(o.base+"/.well-known/oauth-authorization-server", false)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.NoError(t, json.Unmarshal([]byte(body), &as))
		require.Equal(t, o.base, as["issuer"])
		require.Equal(t, []any{"S256"}, as["code_challenge_methods_supported"])
		require.Equal(t, []any{"code"}, as["response_types_supported"])
		require.Equal(t, []any{"authorization_code", "refresh_token"}, as["grant_types_supported"])
		require.Equal(t, true, as["authorization_response_iss_parameter_supported"])
		for _, p := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
			var pr map[string]any
			resp, body = o.get(o.base+p, false)
			require.Equal(t, http.StatusOK, resp.StatusCode, p)
			require.NoError(t, json.Unmarshal([]byte(body), &pr))
			require.Equal(t, o.base+"/mcp", pr["resource"])
			require.Equal(t, []any{o.base}, pr["authorization_servers"])
		}
		status, challenge := o.mcpStatus("", listTools)
		require.Equal(t, http.StatusUnauthorized, status)
		require.Contains(t, challenge, `Bearer resource_metadata="`+o.base+`/.well-known/oauth-protected-resource/mcp"`)
		resp, body = o.get(o.base+"/docs/oauth", false)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Contains(t, body, "RFC 8707")
	})

	t.Run("x/oauth2: DCR, PKCE, refresh rotation and reuse", func(t *testing.T) {
		tok := o.authorized(cfg, o.boot.OrgID, "mcp:read mcp:write")
		require.True(t, strings.HasPrefix(tok.AccessToken, "oak_at_"))
		s := o.mcpSession(tok.AccessToken)
		out, isErr := callTool(t, s, "check_permission", map[string]any{"tool": "read_file"})
		require.False(t, isErr, "%v", out)
		require.Equal(t, "allowed", out["permission"])

		// Rotation: the refresh token is replaced, and the new access token works.
		next, err := cfg.TokenSource(o.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		require.NoError(t, err)
		require.NotEqual(t, tok.RefreshToken, next.RefreshToken)
		callTool(t, o.mcpSession(next.AccessToken), "list_my_tools", nil)
		require.Equal(t, 1, o.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'oauth.token_refreshed'`))

		// Reuse of the old refresh token revokes the whole family.
		_, err = cfg.TokenSource(o.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		var re *oauth2.RetrieveError
		require.ErrorAs(t, err, &re)
		require.Equal(t, "invalid_grant", re.ErrorCode)
		for _, at := range []string{tok.AccessToken, next.AccessToken} {
			status, challenge := o.mcpStatus(at, listTools)
			require.Equal(t, http.StatusUnauthorized, status)
			require.Contains(t, challenge, `error="invalid_token"`)
		}
		_, err = cfg.TokenSource(o.ctx(), &oauth2.Token{RefreshToken: next.RefreshToken}).Token()
		require.ErrorAs(t, err, &re, "the newest refresh token of the family is dead too")
		require.Equal(t, 1, o.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'oauth.refresh_reused'`))
	})

	t.Run("a code works once; its reuse revokes what it issued", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		to := o.consent(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), "approve", o.boot.OrgID, "mcp:read mcp:write")
		code := to.Query().Get("code")
		tok, err := cfg.Exchange(o.ctx(), code, oauth2.VerifierOption(verifier))
		require.NoError(t, err)
		status, _ := o.mcpStatus(tok.AccessToken, listTools)
		require.Equal(t, http.StatusOK, status)
		_, err = cfg.Exchange(o.ctx(), code, oauth2.VerifierOption(verifier))
		var re *oauth2.RetrieveError
		require.ErrorAs(t, err, &re)
		require.Equal(t, "invalid_grant", re.ErrorCode)
		status, _ = o.mcpStatus(tok.AccessToken, listTools)
		require.Equal(t, http.StatusUnauthorized, status, "the reused code's tokens are revoked")
		require.Equal(t, 1, o.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'oauth.code_reused'`))
	})

	t.Run("PKCE S256 only, exact redirect, the /mcp resource only", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		base := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {testRedirect}, "state": {"s"},
			"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
		with := func(k, v string) string {
			q := url.Values{}
			for a, b := range base {
				q[a] = b
			}
			if v == "" {
				q.Del(k)
			} else {
				q.Set(k, v)
			}
			return o.base + "/oauth/authorize?" + q.Encode()
		}
		for name, c := range map[string]struct{ url, err string }{
			"missing PKCE":   {with("code_challenge", ""), "invalid_request"},
			"plain PKCE":     {with("code_challenge_method", "plain"), "invalid_request"},
			"no method":      {with("code_challenge_method", ""), "invalid_request"},
			"implicit grant": {with("response_type", "token"), "unsupported_response_type"},
			"wrong resource": {with("resource", "https://evil.example/mcp"), "invalid_target"},
			"unknown scope":  {with("scope", "mcp:admin"), "invalid_scope"},
		} {
			resp, body := o.get(c.url, false)
			require.Equal(t, http.StatusSeeOther, resp.StatusCode, "%s: %s", name, body)
			to, err := url.Parse(resp.Header.Get("Location"))
			require.NoError(t, err)
			require.Equal(t, testRedirect, to.Scheme+"://"+to.Host+to.Path, name)
			require.Equal(t, c.err, to.Query().Get("error"), name)
			require.Equal(t, "s", to.Query().Get("state"), name)
			require.Equal(t, o.base, to.Query().Get("iss"), name)
		}
		// A redirect URI the client did not register is never redirected to.
		for _, bad := range []string{"http://127.0.0.1:9/callback/", "http://127.0.0.1:9/callback?x=1", "https://evil.example/callback", ""} {
			resp, _ := o.get(with("redirect_uri", bad), false)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, bad)
			require.Empty(t, resp.Header.Get("Location"), bad)
		}
		resp, _ := o.get(with("client_id", "cli_unknown"), false)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)

		// At the token endpoint: no verifier, a wrong one, another
		// redirect URI, another resource, another grant type.
		exchange := func(extra url.Values) (int, string) {
			to := o.consent(with("", ""), "approve", o.boot.OrgID, "mcp:read")
			f := url.Values{"grant_type": {"authorization_code"}, "client_id": {clientID}, "code": {to.Query().Get("code")},
				"code_verifier": {verifier}, "redirect_uri": {testRedirect}}
			for k, v := range extra {
				if v[0] == "" {
					f.Del(k)
				} else {
					f[k] = v
				}
			}
			return o.tokenError(f)
		}
		for name, c := range map[string]struct {
			extra url.Values
			err   string
		}{
			"no verifier":     {url.Values{"code_verifier": {""}}, "invalid_request"},
			"wrong verifier":  {url.Values{"code_verifier": {oauth2.GenerateVerifier()}}, "invalid_grant"},
			"other redirect":  {url.Values{"redirect_uri": {"http://127.0.0.1:9/other"}}, "invalid_grant"},
			"wrong resource":  {url.Values{"resource": {"https://evil.example/mcp"}}, "invalid_target"},
			"password grant":  {url.Values{"grant_type": {"password"}}, "unsupported_grant_type"},
			"unknown client":  {url.Values{"client_id": {"cli_nope"}}, "invalid_client"},
			"a client secret": {url.Values{"client_secret": {"s3cret"}}, "invalid_client"},
		} {
			status, code := exchange(c.extra)
			require.GreaterOrEqual(t, status, 400, name)
			require.Less(t, status, 500, name)
			require.Equal(t, c.err, code, name)
		}
		// The right resource, named explicitly, is accepted.
		status, code := exchange(url.Values{"resource": {o.base + "/mcp"}})
		require.Equal(t, http.StatusOK, status, code)
	})

	t.Run("deny returns access_denied", func(t *testing.T) {
		to := o.consent(cfg.AuthCodeURL("d", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "deny", "", "")
		require.Equal(t, "access_denied", to.Query().Get("error"))
		require.Equal(t, "d", to.Query().Get("state"))
		require.Empty(t, to.Query().Get("code"))
	})

	t.Run("the consent form needs its CSRF token", func(t *testing.T) {
		resp, _ := o.get(cfg.AuthCodeURL("c", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), false)
		consentPath := resp.Header.Get("Location")
		resp, _ = o.get(o.base+consentPath, true)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		resp, _ = o.postForm(consentPath, url.Values{"csrf": {"forged"}, "decision": {"approve"}, "org": {o.boot.OrgID}, "scopes": {"mcp:read"}}, true)
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		require.Empty(t, resp.Header.Get("Location"))
	})

	t.Run("expired and revoked tokens", func(t *testing.T) {
		tok := o.authorized(cfg, o.boot.OrgID, "mcp:read mcp:write")
		_, err := o.st.Pool.Exec(context.Background(), `UPDATE oauth_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = sha256($1::bytea)`, []byte(tok.AccessToken))
		require.NoError(t, err)
		status, challenge := o.mcpStatus(tok.AccessToken, listTools)
		require.Equal(t, http.StatusUnauthorized, status)
		require.Contains(t, challenge, `error="invalid_token"`)

		tok = o.authorized(cfg, o.boot.OrgID, "mcp:read mcp:write")
		resp, _ := o.postForm("/oauth/revoke", url.Values{"token": {tok.RefreshToken}, "client_id": {clientID}}, false)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		status, _ = o.mcpStatus(tok.AccessToken, listTools)
		require.Equal(t, http.StatusUnauthorized, status, "revoking the refresh token revokes the grant's access tokens")
		_, err = cfg.TokenSource(o.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		require.Error(t, err)
		require.Equal(t, 1, o.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'oauth.revoked'`))
		resp, _ = o.postForm("/oauth/revoke", url.Values{"token": {"oak_rt_unknown"}, "client_id": {clientID}}, false)
		require.Equal(t, http.StatusOK, resp.StatusCode, "RFC 7009 §2.2: an unknown token is not an error")
	})

	t.Run("a token acts in its own org only", func(t *testing.T) {
		tok := o.authorized(cfg, o.org2, "mcp:read mcp:write")
		s := o.mcpSession(tok.AccessToken)
		wantToolError(t, s, "check_permission", map[string]any{"tool": "read_file", "org": o.boot.OrgID}, "wrong_org")
		out, isErr := callTool(t, s, "list_my_tools", nil)
		require.False(t, isErr, "%v", out)
		require.Empty(t, out["tools"], "the second org's catalog, not the first's")
		// The token is for /mcp only: the REST API refuses it.
		status, raw := o.asSession(http.MethodGet, "/v1/tools", bearer(tok.AccessToken), nil)
		requireStatusCode(t, http.StatusForbidden, CodeOAuthTokenOnlyForMCP, status, raw)
	})

	t.Run("mcp:read cannot request an approval", func(t *testing.T) {
		tok := o.authorized(cfg, o.boot.OrgID, "mcp:read")
		require.Equal(t, "mcp:read", tok.Extra("scope"))
		status, challenge := o.mcpStatus(tok.AccessToken,
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"request_approval","arguments":{"tool":"send_email","reasoning":"r"}}}`)
		require.Equal(t, http.StatusForbidden, status)
		require.Contains(t, challenge, `error="insufficient_scope"`)
		require.Contains(t, challenge, `resource_metadata="`)
		s := o.mcpSession(tok.AccessToken)
		out, isErr := callTool(t, s, "list_my_tools", nil)
		require.False(t, isErr, "%v", out)
		_, err := s.CallTool(o.ctx(), &sdk.CallToolParams{Name: "check_permission", Arguments: map[string]any{"tool": "read_file"}})
		require.Error(t, err, "a billable tool is refused at the HTTP layer")
		require.Equal(t, 0, o.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind IN ('approval.requested', 'permission.check') AND actor_kind = 'oauth' AND actor_id IN (SELECT id FROM oauth_grants WHERE scopes = '{mcp:read}')`))
	})

	t.Run("registration is validated and rate-limited per address across replicas", func(t *testing.T) {
		for name, body := range map[string]any{
			"plain http elsewhere": map[string]any{"redirect_uris": []string{"http://evil.example/cb"}},
			"no redirect":          map[string]any{"redirect_uris": []string{}},
			"fragment":             map[string]any{"redirect_uris": []string{"https://a.example/cb#x"}},
			"custom scheme":        map[string]any{"redirect_uris": []string{"javascript:alert(1)"}},
			"too many":             map[string]any{"redirect_uris": strings.Split(strings.Repeat("https://a.example/cb,", 11), ",")[:11]},
			"implicit":             map[string]any{"redirect_uris": []string{testRedirect}, "grant_types": []string{"implicit"}},
			"long name":            map[string]any{"redirect_uris": []string{testRedirect}, "client_name": strings.Repeat("n", 201)},
			"not an object":        "[]",
		} {
			status, raw := o.do(http.MethodPost, "/oauth/register", "", body)
			require.Equal(t, http.StatusBadRequest, status, "%s: %s", name, raw)
		}
		status, _ := o.do(http.MethodPost, "/oauth/register", "", strings.Repeat("x", 20<<10))
		require.GreaterOrEqual(t, status, 400)
		require.Less(t, status, 500)
		rc := o.srv.cfg
		rc.Listener, rc.Addr = nil, "127.0.0.1:0"
		replica := startEnvWith(t, rc, Deps{Store: o.st}, o.boot)
		limited := false
		for i := 0; i < 13 && !limited; i++ {
			target := o.testEnv
			if i%2 == 1 {
				target = replica
			}
			status, raw := target.do(http.MethodPost, "/oauth/register", "", map[string]any{"redirect_uris": []string{testRedirect}})
			if status == http.StatusTooManyRequests {
				limited = true
				break
			}
			require.Equal(t, http.StatusCreated, status, string(raw))
		}
		require.True(t, limited, "12 registrations per hour from one address, counted across both replicas")
	})

	// Last: it takes the owner out of the team.
	t.Run("a person who leaves the team takes the client's access along", func(t *testing.T) {
		tok := o.authorized(cfg, o.boot.OrgID, "mcp:read mcp:write")
		status, _ := o.mcpStatus(tok.AccessToken, listTools)
		require.Equal(t, http.StatusOK, status)
		_, err := o.st.Pool.Exec(context.Background(), `DELETE FROM memberships WHERE user_id = $1`, o.boot.UserID)
		require.NoError(t, err)
		status, _ = o.mcpStatus(tok.AccessToken, listTools)
		require.Equal(t, http.StatusUnauthorized, status)
		_, err = cfg.TokenSource(o.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		var re *oauth2.RetrieveError
		require.ErrorAs(t, err, &re)
		require.Equal(t, "invalid_grant", re.ErrorCode)
	})
}

// TestRecoveryRevokesOAuthGrants: a recovery code is redeemed when a passkey
// is lost, perhaps to someone else, and every session ends. Whoever held the
// passkey may also have authorized an MCP client of their own; its grant
// ends with the sessions, or it would keep acting (and refreshing) for the
// person's org for as long as it likes. The OAuth server is on only while
// the public URL is https (or loopback), and grants outlive a change of it:
// a recovery on a replica where it is off — plain http elsewhere, passkeys
// configured explicitly — revokes them too, or they would work again on a
// replica where it is on.
func TestRecoveryRevokesOAuthGrants(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		oauthOff bool
	}{{"where OAuth is on", false}, {"where OAuth is off", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := newOAuthEnv(t, ratelimit.Limit{N: 12, Per: time.Hour})
			cfg := o.oauth2Config(o.register(testRedirect), "mcp:read", "mcp:write")
			tok := o.authorized(cfg, o.boot.OrgID, "mcp:read mcp:write")
			status, _ := o.mcpStatus(tok.AccessToken, listTools)
			require.Equal(t, http.StatusOK, status)

			replica := o.testEnv
			if tc.oauthOff {
				off := testConfig()
				off.PublicURL = "http://oakallow.test:8080"
				off.Passkeys = passkeys.Config{RPID: "localhost", Origins: []string{"http://localhost:8080"}}
				replica = startEnvWith(t, off, Deps{Store: o.st}, o.boot)
				require.Nil(t, replica.srv.oauth, "no OAuth server on plain http elsewhere than on this machine")
			}
			o.recoverWith(replica, o.codes[0])
			o.requireRecoveryRevoked(cfg, tok)
		})
	}
}

// recoverWith signs the owner in with recovery code on the server of e.
func (o *oauthEnv) recoverWith(e *testEnv, code string) {
	o.t.Helper()
	var email string
	require.NoError(o.t, o.st.Pool.QueryRow(context.Background(), `SELECT email FROM users WHERE id = $1`, o.boot.UserID).Scan(&email))
	expectAs[SessionInfo](e, http.StatusOK, http.MethodPost, "/v1/auth/recovery", nil,
		map[string]any{"email": email, "code": code, "client": "app"})
}

// requireRecoveryRevoked: the grant of tok (from cfg's client) was revoked
// by a recovery: its access token is refused by /mcp, its refresh token at
// the token endpoint, and the revocation is audited once.
func (o *oauthEnv) requireRecoveryRevoked(cfg *oauth2.Config, tok *oauth2.Token) {
	o.t.Helper()
	status, challenge := o.mcpStatus(tok.AccessToken, listTools)
	require.Equal(o.t, http.StatusUnauthorized, status)
	require.Contains(o.t, challenge, `error="invalid_token"`)
	_, err := cfg.TokenSource(o.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	var re *oauth2.RetrieveError
	require.ErrorAs(o.t, err, &re)
	require.Equal(o.t, "invalid_grant", re.ErrorCode)
	require.Equal(o.t, 1, o.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'oauth.revoked'
		AND details->>'reason' = 'account_recovered' AND actor_kind = 'user'`))
}
