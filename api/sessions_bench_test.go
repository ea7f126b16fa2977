package api

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkAuthenticatedRead is the same read (GET /v1/tools) over HTTP
// with an API key and with a session (issue 9: a session-authenticated read
// costs at most 1.5× the key's). Recorded in docs/PERFORMANCE.md.
func BenchmarkAuthenticatedRead(b *testing.B) {
	e := newTestEnv(b)
	sess := e.signIn(e.boot.UserID, true)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	read := func(b *testing.B, set func(*http.Request)) {
		b.ReportAllocs()
		for b.Loop() {
			req, err := http.NewRequest(http.MethodGet, e.base+"/v1/tools", nil)
			if err != nil {
				b.Fatal(err)
			}
			set(req)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	}
	b.Run("api_key", func(b *testing.B) {
		read(b, func(r *http.Request) { r.Header.Set("X-API-Key", e.boot.ManagementKey) })
	})
	b.Run("session_bearer", func(b *testing.B) {
		read(b, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+sess.Token) })
	})
	b.Run("session_cookie", func(b *testing.B) {
		read(b, func(r *http.Request) { r.Header.Set("Cookie", sessionCookiePlain+"="+sess.Token) })
	})
}
