package notify_test

import (
	"net/http"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/activities/notify"
)

// Values smuggled into free text to prove they never leave the process.
const (
	leakEmail   = "alice.smith@example.com"
	leakAPIKey  = "oak_live_0123456789abcdef0123456789abcdef"
	leakAgent   = "oak_agent_Zm9vYmFyYmF6cXV4"
	leakToken   = "oak_tok_eyJ0aWQiOiJ0b2tfMSJ9.c2lnbmF0dXJl"
	leakSecret  = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ"
	leakyReason = "Refund for " + leakEmail + " using key " + leakAPIKey +
		", agent " + leakAgent + ", token " + leakToken + " and secret " + leakSecret
)

// leaks lists every smuggled value.
var leaks = []string{leakEmail, leakAPIKey, leakAgent, leakToken, leakSecret,
	"0123456789abcdef0123456789abcdef", "Zm9vYmFyYmF6cXV4", "c2lnbmF0dXJl", "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}

// emailPattern stands in for the PII scrubber in these tests. It knows
// nothing about oakallow keys, so the tests also prove the senders' own
// credential redaction.
var emailPattern = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`)

func scrubEmails(s string) string { return emailPattern.ReplaceAllString(s, "[redacted:email]") }

// testClient may reach the loopback http fakes.
func testClient(t *testing.T) *http.Client {
	t.Helper()
	c, err := notify.NewHTTPClient(notify.HTTPClientConfig{AllowInsecure: true, AllowPrivateAddresses: true})
	require.NoError(t, err)
	return c
}

func newNotifier(t *testing.T) *notify.Notifier {
	t.Helper()
	n, err := notify.New(notify.Config{HTTPClient: testClient(t), Scrub: scrubEmails})
	require.NoError(t, err)
	return n
}

// requireNoLeaks fails if any smuggled value appears in b.
func requireNoLeaks(t *testing.T, b []byte) {
	t.Helper()
	for _, l := range leaks {
		require.NotContains(t, string(b), l)
	}
}

func createdAlert() notify.Alert {
	return notify.Alert{
		Type:         notify.EventApprovalCreated,
		ToolName:     "stripe.refund",
		Reason:       leakyReason,
		Reference:    "REF-7K3M9Q2X-4F8A",
		DashboardURL: "https://oakallow.example.com/approvals/REF-7K3M9Q2X-4F8A",
	}
}

func decidedAlert(decision string) notify.Alert {
	a := createdAlert()
	a.Type = notify.EventApprovalDecided
	a.Decision = decision
	a.Decider = "Bob Reviewer"
	a.Note = "Checked with " + leakEmail + "; key " + leakAPIKey
	return a
}
