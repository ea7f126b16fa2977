package api

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMalformedBodiesAre4xx sends request bodies whose framing is broken —
// the kind only a raw connection can produce — and requires a client error
// with a stable code: the body is the client's to get right, never a 500.
func TestMalformedBodiesAre4xx(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	addr := strings.TrimPrefix(e.base, "http://")
	head := func(framing string) string {
		return "POST /v1/permissions/check HTTP/1.1\r\nHost: oakallow.test\r\nX-API-Key: " + e.boot.StandardKey +
			"\r\nContent-Type: application/json\r\n" + framing + "\r\n"
	}
	const body = `{"tool":"send_email"}`
	for _, tc := range []struct {
		name    string
		request string
		// halfClose ends the client's side of the connection after the
		// request, so the server sees the body end early.
		halfClose bool
	}{
		{name: "chunk size is not hex", request: head("Transfer-Encoding: chunked\r\n") + "zz\r\n" + body + "\r\n0\r\n\r\n"},
		{name: "chunk longer than its size", request: head("Transfer-Encoding: chunked\r\n") + "4\r\n" + body + "\r\n0\r\n\r\n"},
		{name: "chunk size overflows", request: head("Transfer-Encoding: chunked\r\n") + "fffffffffffffffffff\r\n" + body + "\r\n0\r\n\r\n"},
		{name: "chunked body cut off", request: head("Transfer-Encoding: chunked\r\n") + "15\r\n" + body[:10], halfClose: true},
		{name: "body shorter than Content-Length", request: head("Content-Length: 100\r\n") + body, halfClose: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			require.NoError(t, err)
			defer func() { _ = conn.Close() }()
			require.NoError(t, conn.SetDeadline(time.Now().Add(hangDeadline)))
			_, err = io.WriteString(conn, tc.request)
			require.NoError(t, err)
			if tc.halfClose {
				require.NoError(t, conn.(*net.TCPConn).CloseWrite())
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err)
			defer func() { _ = resp.Body.Close() }()
			raw, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(raw))
			require.Equal(t, CodeBadRequest, problemCode(t, raw))
			require.NotContains(t, string(raw), "send_email", "the body is not echoed")
		})
	}
}

// TestUnknownTransferCodingIs501 pins the one framing error that is not a
// 400: a transfer coding the server does not implement. RFC 9112 §6.1 says
// a server answers it 501 (Go's net/http does, before any handler runs); it
// is documented in the README, and what matters here is that it is never a
// 500 and never reaches the check.
func TestUnknownTransferCodingIs501(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(e.base, "http://"), 5*time.Second)
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	require.NoError(t, conn.SetDeadline(time.Now().Add(hangDeadline)))
	_, err = io.WriteString(conn, "POST /v1/permissions/check HTTP/1.1\r\nHost: oakallow.test\r\nX-API-Key: "+e.boot.StandardKey+
		"\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n15\r\n{\"tool\":\"send_email\"}\r\n0\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotImplemented, resp.StatusCode, string(raw))
}
