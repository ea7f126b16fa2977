package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Every request served over a timed listener gives one server sample, also
// when keep-alive requests follow each other on one connection (net/http
// reads the next request's first byte in a background read).
func TestTimedListenerTimesEachRequest(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tm := &timings{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(timedListener{Listener: ln, t: tm}) }()
	defer srv.Close()

	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}, Timeout: 10 * time.Second}
	const requests = 5
	for range requests {
		resp, err := client.Post("http://"+ln.Addr().String()+"/", "application/json", strings.NewReader(`{"tool":"x"}`))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, resp.Body.Close())
	}
	// A request's sample is added once its response's write returns, which
	// may be after the client has read the response.
	require.Eventually(t, func() bool { return tm.split().Server.N >= requests }, 10*time.Second, time.Millisecond)
	sp := tm.split().Server
	require.Equal(t, requests, sp.N)
	require.Positive(t, sp.P50)
}
