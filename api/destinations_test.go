package api

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestInternalDestinationsRefusedWhenSet: with the production default
// (OAKALLOW_WEBHOOKS_ALLOW_PRIVATE off), a webhook or channel URL whose host
// is plainly internal is refused with 422 when it is set, not stored to fail
// on every send.
func TestInternalDestinationsRefusedWhenSet(t *testing.T) {
	t.Parallel()
	st, boot := bootstrappedStore(t)
	e := startEnvWith(t, Config{Addr: "127.0.0.1:0"}, Deps{Store: st, SecretBox: testBox(t)}, boot)
	mk := boot.ManagementKey

	// A public destination is accepted everywhere.
	expect[OrgSettings](e, http.StatusOK, http.MethodPatch, "/v1/settings", mk, map[string]any{"webhook_url": "https://hooks.example.com/x"})
	hook := expect[ChannelWithSecret](e, http.StatusCreated, http.MethodPost, "/v1/channels", mk,
		map[string]any{"kind": "webhook", "name": "siem", "url": "https://siem.example.com/in"})

	for _, u := range []string{
		"https://localhost/hook",
		"https://app.localhost/hook",
		"https://127.0.0.1/hook",
		"https://10.0.0.8/hook",
		"https://169.254.169.254/latest/meta-data/",
		"https://[::1]/hook",
		"https://[fd00::1]/hook",
		"https://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
		"https://[::ffff:169.254.169.254]/latest/meta-data/",
		"https://2130706433/hook",
		"http://localhost:9000/hook",
		"http://hooks.example.com/x",
	} {
		t.Run(u, func(t *testing.T) {
			t.Parallel()
			e := *e
			e.t = t
			for _, req := range []struct {
				method, path string
				body         map[string]any
			}{
				{http.MethodPatch, "/v1/settings", map[string]any{"webhook_url": u}},
				{http.MethodPost, "/v1/channels", map[string]any{"kind": "webhook", "name": "internal", "url": u}},
				{http.MethodPost, "/v1/channels", map[string]any{"kind": "slack", "name": "internal", "webhook_url": u}},
				{http.MethodPost, "/v1/channels", map[string]any{"kind": "pagerduty", "name": "internal", "api_key": "u+abcdefghijklmnopqrs",
					"from_email": "oncall@example.com", "service_id": "PABC123", "base_url": u}},
				{http.MethodPatch, "/v1/channels/" + hook.ID, map[string]any{"url": u}},
			} {
				body := e.expectProblem(http.StatusUnprocessableEntity, CodeValidationFailed, req.method, req.path, mk, req.body)
				var p Problem
				require.NoError(t, json.Unmarshal(body, &p))
				require.NotEmpty(t, p.Errors, "%s %s: the problem names the field", req.method, req.path)
			}
		})
	}
	t.Cleanup(func() {
		// Nothing internal was stored.
		settings := expect[OrgSettings](e, http.StatusOK, http.MethodGet, "/v1/settings", mk, nil)
		require.Equal(t, "https://hooks.example.com/x", settings.WebhookURL)
		got := expect[Channel](e, http.StatusOK, http.MethodGet, "/v1/channels/"+hook.ID, mk, nil)
		require.Equal(t, "https://siem.example.com/in", got.URL)
	})
}
