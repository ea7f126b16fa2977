package api

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"oakallow/api/ratelimit"
)

// A native client registers a loopback IP redirect URI and then listens on
// whatever port the OS gives it: RFC 8252 §7.3 has the server accept any
// port there, and only there.
func TestOAuthLoopbackRedirectAnyPort(t *testing.T) {
	t.Parallel()
	o := newOAuthEnv(t, ratelimit.Limit{})
	clientID := o.register("http://127.0.0.1:3000/cb", "http://[::1]/cb", "http://localhost:3000/cb", "https://app.example/cb")
	verifier := oauth2.GenerateVerifier()
	authorize := func(redirect string) string {
		return o.base + "/oauth/authorize?" + url.Values{"response_type": {"code"}, "client_id": {clientID},
			"redirect_uri": {redirect}, "state": {"s"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)},
			"code_challenge_method": {"S256"}}.Encode()
	}

	t.Run("any port on a loopback IP literal", func(t *testing.T) {
		for _, ok := range []string{"http://127.0.0.1:53123/cb", "http://127.0.0.1/cb", "http://127.0.0.1:3000/cb",
			"http://[::1]:61000/cb", "http://[::1]/cb"} {
			resp, body := o.get(authorize(ok), false)
			require.Equal(t, http.StatusSeeOther, resp.StatusCode, "%s: %s", ok, body)
			require.Contains(t, resp.Header.Get("Location"), "/oauth/consent/", ok)
		}
	})

	t.Run("everything but the port still matches exactly", func(t *testing.T) {
		for _, bad := range []string{
			"http://127.0.0.1:53123/other", "http://127.0.0.1:53123/cb/", "http://127.0.0.1:53123/cb?x=1",
			"http://127.0.0.1:53123/CB", "http://127.0.0.2:53123/cb", "http://[::1]:53123/cb/x",
			"https://127.0.0.1:53123/cb", "https://127.0.0.1:3000/cb", "HTTP://127.0.0.1:53123/cb",
			"http://127.0.0.1:0/cb", "http://127.0.0.1:65536/cb", "http://127.0.0.1:+80/cb", "http://127.0.0.1:/cb",
			"http://127.0.0.1:80x/cb", "http://127.0.0.1.evil.example:53123/cb", "http://127.0.0.1@evil.example:53123/cb",
			"http://127.0.0.1:53123/cb#f", "http://[::ffff:127.0.0.1]:53123/cb", "http://2130706433:53123/cb",
			// localhost keeps the exact match (RFC 8252 §8.3), as do other hosts.
			"http://localhost:53123/cb", "https://app.example:8443/cb", "http://app.example/cb",
		} {
			resp, _ := o.get(authorize(bad), false)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, bad)
			require.Empty(t, resp.Header.Get("Location"), bad)
		}
		for _, ok := range []string{"http://localhost:3000/cb", "https://app.example/cb"} {
			resp, _ := o.get(authorize(ok), false)
			require.Equal(t, http.StatusSeeOther, resp.StatusCode, ok)
		}
	})

	t.Run("the code goes to the port asked for, and the token endpoint wants that URI", func(t *testing.T) {
		const used = "http://127.0.0.1:53123/cb"
		exchange := func(redirect string) (int, string) {
			to := o.consent(authorize(used), "approve", o.boot.OrgID, "mcp:read")
			require.Equal(t, "127.0.0.1:53123", to.Host)
			require.Equal(t, "/cb", to.Path)
			f := url.Values{"grant_type": {"authorization_code"}, "client_id": {clientID}, "code": {to.Query().Get("code")},
				"code_verifier": {verifier}}
			if redirect != "" {
				f.Set("redirect_uri", redirect)
			}
			return o.tokenError(f)
		}
		// RFC 6749 §4.1.3: identical to the authorization request's, so
		// neither the registered port nor another one will do.
		for _, bad := range []string{"http://127.0.0.1:3000/cb", "http://127.0.0.1:53124/cb", "http://127.0.0.1/cb"} {
			status, code := exchange(bad)
			require.Equal(t, http.StatusBadRequest, status, bad)
			require.Equal(t, "invalid_grant", code, bad)
		}
		status, code := exchange(used)
		require.Equal(t, http.StatusOK, status, code)
		status, code = exchange("")
		require.Equal(t, http.StatusOK, status, code)
	})
}
