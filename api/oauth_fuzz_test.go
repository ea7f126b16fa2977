package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// oauthFuzzEnv is a server with one registered client, for the fuzz targets.
func oauthFuzzEnv(f *testing.F) (*testEnv, string) {
	e := newTestEnv(f)
	req := httptest.NewRequest(http.MethodPost, "/oauth/register", bytes.NewReader([]byte(
		`{"client_name":"fuzz","redirect_uris":["http://127.0.0.1:9/cb"]}`)))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		f.Fatalf("register: %d %s", rec.Code, rec.Body.String())
	}
	var out struct {
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		f.Fatal(err)
	}
	return e, out.ClientID
}

// FuzzOAuthToken throws arbitrary form bodies at the token endpoint of a
// real server on a real database: nothing a client sends may produce a 5xx
// or a panic. Run with `go test -run '^$' -fuzz FuzzOAuthToken ./api/`.
func FuzzOAuthToken(f *testing.F) {
	e, clientID := oauthFuzzEnv(f)
	for _, s := range []string{
		"grant_type=authorization_code&client_id=" + clientID + "&code=oak_ac_x&code_verifier=" + string(bytes.Repeat([]byte("a"), 43)),
		"grant_type=refresh_token&client_id=" + clientID + "&refresh_token=oak_rt_x",
		"grant_type=refresh_token&client_id=" + clientID + "&refresh_token=oak_rt_x&scope=mcp:read&resource=http://x",
		"grant_type=password&username=a&password=b", "grant_type=client_credentials", "",
		"grant_type=authorization_code&grant_type=refresh_token", "client_id=%zz", "code=\x00\xff",
		"grant_type=refresh_token&refresh_token=oak_rt_x&client_id=\x8b", "grant_type=authorization_code&client_id=%00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/oauth/token", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body.String())
		}
	})
}

// FuzzOAuthAuthorize throws arbitrary query strings at the authorization
// endpoint: never a 5xx or a panic, and never a redirect anywhere but the
// client's registered URI or our consent page.
func FuzzOAuthAuthorize(f *testing.F) {
	e, clientID := oauthFuzzEnv(f)
	for _, s := range []string{
		"response_type=code&client_id=" + clientID + "&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&code_challenge=" +
			string(bytes.Repeat([]byte("a"), 43)) + "&code_challenge_method=S256&state=s&scope=mcp:read&resource=http://localhost:8080/mcp",
		"response_type=token&client_id=" + clientID + "&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb",
		"client_id=" + clientID + "&client_id=x", "redirect_uri=javascript:alert(1)", "%zz", "",
		"response_type=code&client_id=" + clientID + "&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&state=%00%ff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		req, err := http.NewRequest(http.MethodGet, "/oauth/authorize", nil)
		if err != nil {
			t.Skip()
		}
		req.URL.RawQuery = query
		req.RemoteAddr = "127.0.0.1:1234"
		rec := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for query %q: %s", rec.Code, query, rec.Body.String())
		}
		if loc := rec.Header().Get("Location"); loc != "" && !bytes.HasPrefix([]byte(loc), []byte("http://127.0.0.1:9/cb?")) &&
			!bytes.HasPrefix([]byte(loc), []byte("/oauth/consent/")) {
			t.Fatalf("redirect to %q for query %q", loc, query)
		}
	})
}
