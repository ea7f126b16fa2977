package devtest

import (
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStripeMockBesideAnother: a stripe-mock starts and answers while
// another process holds stripe-mock's default HTTPS port (12112), as a
// second test process's would.
func TestStripeMockBesideAnother(t *testing.T) {
	bin, err := findStripeMock()
	if err != nil {
		t.Skip(err)
	}
	if l, err := net.Listen("tcp", ":12112"); err == nil {
		t.Cleanup(func() { _ = l.Close() })
	} // else someone holds it already, which is the case under test
	url, cmd, err := launchStripeMock(bin)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	resp, err := http.Get(url + "/v1/customers")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "stripe-mock answers (no key given)")
}
