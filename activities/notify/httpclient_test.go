package notify_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/activities/notify"
)

func TestValidateURL(t *testing.T) {
	t.Parallel()
	longOK := "https://example.com/" + strings.Repeat("a", notify.MaxURLLength-len("https://example.com/"))
	tests := []struct {
		name          string
		raw           string
		allowInsecure bool
		wantErr       bool
	}{
		{name: "https", raw: "https://hooks.example.com/oakallow?x=1"},
		{name: "https with port", raw: "https://hooks.example.com:8443/in"},
		{name: "exactly max length", raw: longOK},
		{name: "one byte over max length", raw: longOK + "a", wantErr: true},
		{name: "http refused", raw: "http://hooks.example.com/in", wantErr: true},
		{name: "http allowed when insecure", raw: "http://127.0.0.1:8080/in", allowInsecure: true},
		{name: "other scheme even when insecure", raw: "ftp://example.com/in", allowInsecure: true, wantErr: true},
		{name: "javascript scheme", raw: "javascript:alert(1)", allowInsecure: true, wantErr: true},
		{name: "userinfo", raw: "https://user:pass@hooks.example.com/in", wantErr: true},
		{name: "user only", raw: "https://user@hooks.example.com/in", wantErr: true},
		{name: "no host", raw: "https:///in", wantErr: true},
		{name: "relative", raw: "/hooks/in", wantErr: true},
		{name: "empty", raw: "", wantErr: true},
		{name: "fragment", raw: "https://hooks.example.com/in#frag", wantErr: true},
		{name: "space", raw: "https://hooks.example.com/a b", wantErr: true},
		{name: "newline", raw: "https://hooks.example.com/a\nb", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := notify.ValidateURL(tc.raw, tc.allowInsecure)
			if !tc.wantErr {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, notify.ErrURLPolicy)
			require.NotContains(t, err.Error(), "pass", "the error must not echo credentials")
		})
	}
}

// statusServer answers every request with status and a body.
func statusServer(t *testing.T, status int, body string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if status >= 300 && status < 400 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func deliverTo(t *testing.T, client *http.Client, url string) notify.Attempt {
	t.Helper()
	return notify.Deliver(context.Background(), client, url, [][]byte{[]byte(newSecret(t))}, sampleEvent(), "dlv_x", time.Now())
}

func TestRetryClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status        int
		wantOK        bool
		wantRetryable bool
	}{
		{status: 200, wantOK: true},
		{status: 201, wantOK: true},
		{status: 202, wantOK: true},
		{status: 204, wantOK: true},
		{status: 301},
		{status: 302},
		{status: 307},
		{status: 400},
		{status: 401},
		{status: 403},
		{status: 404},
		{status: 405},
		{status: 410},
		{status: 413},
		{status: 422},
		{status: 408, wantRetryable: true},
		{status: 429, wantRetryable: true},
		{status: 500, wantRetryable: true},
		{status: 502, wantRetryable: true},
		{status: 503, wantRetryable: true},
		{status: 504, wantRetryable: true},
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			t.Parallel()
			srv, hits := statusServer(t, tc.status, "nope")
			att := deliverTo(t, testClient(t), srv.URL+"/hook")
			require.Equal(t, tc.status, att.StatusCode)
			require.Equal(t, tc.wantOK, att.OK(), att.Error)
			require.Equal(t, tc.wantRetryable, att.Retryable)
			require.Equal(t, int32(1), hits.Load(), "redirects are not followed, nothing is retried inline")
			if !tc.wantOK {
				require.Contains(t, att.Error, "HTTP ")
			}
		})
	}
}

// TestRetryAfterOnlyOnRetryableAnswers: a receiver's Retry-After is kept for
// an answer worth retrying and ignored on a final one.
func TestRetryAfterOnlyOnRetryableAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		header string
		want   time.Duration
	}{
		{name: "429 with delay seconds", status: 429, header: "7", want: 7 * time.Second},
		{name: "503 with delay seconds", status: 503, header: "120", want: 2 * time.Minute},
		{name: "503 without the header", status: 503, want: 0},
		{name: "400 is final whatever it asks", status: 400, header: "7", want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if tc.header != "" {
					w.Header().Set("Retry-After", tc.header)
				}
				w.WriteHeader(tc.status)
			}))
			t.Cleanup(srv.Close)
			att := deliverTo(t, testClient(t), srv.URL+"/hook")
			require.False(t, att.OK())
			require.Equal(t, tc.want, att.RetryAfter)
		})
	}
}

func TestNetworkErrorsAreRetryableAndURLFree(t *testing.T) {
	t.Parallel()
	// A listener that is closed right away: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	url := "http://" + addr + "/services/T000/B000/SUPERSECRETTOKEN?token=QUERYSECRET"
	att := deliverTo(t, testClient(t), url)
	require.False(t, att.OK())
	require.True(t, att.Retryable)
	require.Zero(t, att.StatusCode)
	require.NotContains(t, att.Error, "SUPERSECRETTOKEN")
	require.NotContains(t, att.Error, "QUERYSECRET")
}

func TestTimeoutIsRetryable(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	client, err := notify.NewHTTPClient(notify.HTTPClientConfig{Timeout: 200 * time.Millisecond, AllowInsecure: true, AllowPrivateAddresses: true})
	require.NoError(t, err)
	// The receiver never answers: without the client's timeout the attempt would hang
	// until the test binary's own timeout, so a generous deadline tells the two apart.
	secret := newSecret(t)
	done := make(chan notify.Attempt, 1)
	go func() {
		done <- notify.Deliver(context.Background(), client, srv.URL, [][]byte{[]byte(secret)}, sampleEvent(), "dlv_x", time.Now())
	}()
	var att notify.Attempt
	select {
	case att = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the attempt outlived its 200 ms timeout by 30 s: it hangs")
	}
	require.False(t, att.OK())
	require.True(t, att.Retryable)
	require.Contains(t, att.Error, "timeout")
}

func TestErrorBodyIsBoundedAndSanitized(t *testing.T) {
	t.Parallel()
	body := "first line\r\nsecond\x00line " + strings.Repeat("x", 10_000) + " TAIL-MARKER"
	srv, _ := statusServer(t, http.StatusBadRequest, body)
	att := deliverTo(t, testClient(t), srv.URL)
	require.False(t, att.OK())
	require.True(t, strings.HasPrefix(att.Error, "HTTP 400: first line second"), att.Error)
	require.LessOrEqual(t, len(att.Error), len("HTTP 400: ")+256)
	require.NotContains(t, att.Error, "TAIL-MARKER")
	require.NotContains(t, att.Error, "\n")
	require.NotContains(t, att.Error, "\x00")
}

func TestClientPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  notify.HTTPClientConfig
	}{
		{name: "http refused by default", cfg: notify.HTTPClientConfig{AllowPrivateAddresses: true}},
		{name: "loopback refused by default", cfg: notify.HTTPClientConfig{AllowInsecure: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, hits := statusServer(t, http.StatusOK, "ok")
			client, err := notify.NewHTTPClient(tc.cfg)
			require.NoError(t, err)
			att := deliverTo(t, client, srv.URL+"/hook")
			require.False(t, att.OK())
			require.False(t, att.Retryable, att.Error)
			require.Contains(t, att.Error, "url not allowed")
			require.Zero(t, hits.Load(), "the request must not reach the server")
		})
	}
}

func TestNilClientUsesProductionPolicy(t *testing.T) {
	t.Parallel()
	srv, hits := statusServer(t, http.StatusOK, "ok")
	att := deliverTo(t, nil, srv.URL)
	require.False(t, att.OK())
	require.False(t, att.Retryable)
	require.Zero(t, hits.Load())
}

func TestHostnameResolvingToLoopbackIsRefused(t *testing.T) {
	t.Parallel()
	// "localhost" passes the URL check; the dial-time check sees 127.0.0.1.
	srv, hits := statusServer(t, http.StatusOK, "ok")
	_, port, err := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	client, err := notify.NewHTTPClient(notify.HTTPClientConfig{AllowInsecure: true})
	require.NoError(t, err)
	att := deliverTo(t, client, "http://localhost:"+port+"/hook")
	require.False(t, att.OK())
	require.False(t, att.Retryable)
	require.Contains(t, att.Error, "not public")
	require.Zero(t, hits.Load())
}

// TestEmbeddedIPv4IsJudgedByItsTarget: an IPv6 address that a NAT64
// translator or a 6to4 relay would carry to an internal IPv4 address is
// refused before any packet is sent — not dialled and left to fail.
func TestEmbeddedIPv4IsJudgedByItsTarget(t *testing.T) {
	t.Parallel()
	client, err := notify.NewHTTPClient(notify.HTTPClientConfig{AllowInsecure: true})
	require.NoError(t, err)
	for _, addr := range []string{"64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "2002:a9fe:a9fe::1", "::a9fe:a9fe",
		"2001:0:4136:e378:8000:63bf:3fff:fdd2"} {
		t.Run(addr, func(t *testing.T) {
			t.Parallel()
			att := deliverTo(t, client, "http://["+addr+"]/latest/meta-data/")
			require.False(t, att.OK())
			require.False(t, att.Retryable, att.Error)
			require.Contains(t, att.Error, "not public")
		})
	}
}

func TestCheckDestination(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url  string
		want string // "" when accepted
	}{
		{url: "https://hooks.example.com/x"},
		{url: "https://8.8.8.8/x"},
		{url: "https://[2606:4700:4700::1111]/x"},
		{url: "https://[64:ff9b::808:808]/x"},
		{url: "https://localhost/x", want: "this machine"},
		{url: "https://LOCALHOST./x", want: "this machine"},
		{url: "https://api.localhost:8443/x", want: "this machine"},
		{url: "https://127.0.0.1/x", want: "not public"},
		{url: "https://10.1.2.3/x", want: "not public"},
		{url: "https://169.254.169.254/latest/meta-data/", want: "not public"},
		{url: "https://[::1]/x", want: "not public"},
		{url: "https://[fe80::1%25eth0]/x", want: "not public"},
		{url: "https://[::ffff:127.0.0.1]/x", want: "not public"},
		{url: "https://[64:ff9b::a9fe:a9fe]/x", want: "not public"},
		{url: "https://[2002:a00:1::1]/x", want: "not public"},
		{url: "https://2130706433/x", want: "dotted decimal"},
		{url: "https://0x7f.1/x", want: "dotted decimal"},
		{url: "https://0177.0.0.1/x", want: "dotted decimal"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			t.Parallel()
			require.NoError(t, notify.ValidateURL(tc.url, false))
			err := notify.CheckDestination(tc.url)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, notify.ErrURLPolicy)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestHTTPClientConfigValidate(t *testing.T) {
	t.Parallel()
	_, err := notify.NewHTTPClient(notify.HTTPClientConfig{Timeout: -time.Second})
	require.Error(t, err)
}
