package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/store"
)

func TestSettings(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	mk, org := e.boot.ManagementKey, e.boot.OrgID

	def := decodeAs[OrgSettings](t, e.want(http.StatusOK, http.MethodGet, "/v1/settings", e.boot.StandardKey, nil))
	require.Equal(t, org, def.ID)
	require.Equal(t, "acme-app", def.Name)
	require.Equal(t, int32(3600), def.ApprovalTimeoutSeconds)
	require.Empty(t, def.WebhookURL)
	require.False(t, def.ManagementKeysMayDecide)
	require.True(t, def.ScrubParameters)

	patches := []struct {
		name  string
		patch map[string]any
		want  func(t *testing.T, s OrgSettings)
	}{
		{"timeout below the minimum is clamped", map[string]any{"approval_timeout_seconds": 5}, func(t *testing.T, s OrgSettings) {
			require.Equal(t, int32(60), s.ApprovalTimeoutSeconds)
		}},
		{"timeout above the maximum is clamped", map[string]any{"approval_timeout_seconds": 1 << 40}, func(t *testing.T, s OrgSettings) {
			require.Equal(t, int32(604800), s.ApprovalTimeoutSeconds)
		}},
		{"a preset is stored as is", map[string]any{"approval_timeout_seconds": 900}, func(t *testing.T, s OrgSettings) {
			require.Equal(t, int32(900), s.ApprovalTimeoutSeconds)
		}},
		{"https webhook", map[string]any{"webhook_url": "https://hooks.example.com/oak?token=abc"}, func(t *testing.T, s OrgSettings) {
			require.Equal(t, "https://hooks.example.com/oak?token=abc", s.WebhookURL)
			require.Equal(t, int32(900), s.ApprovalTimeoutSeconds, "other settings keep their values")
		}},
		{"http to localhost", map[string]any{"webhook_url": "http://localhost:9000/hook"}, func(t *testing.T, s OrgSettings) {
			require.Equal(t, "http://localhost:9000/hook", s.WebhookURL)
		}},
		{"http to [::1]", map[string]any{"webhook_url": "http://[::1]:9000/hook"}, func(t *testing.T, s OrgSettings) {
			require.Equal(t, "http://[::1]:9000/hook", s.WebhookURL)
		}},
		{"flags and caps", map[string]any{"management_keys_may_decide": true, "webhook_include_parameters": true,
			"scrub_parameters": false, "autodiscovery_hourly_cap": 0, "autodiscovery_total_cap": 10, "name": "acme-prod"},
			func(t *testing.T, s OrgSettings) {
				require.True(t, s.ManagementKeysMayDecide)
				require.True(t, s.WebhookIncludeParameters)
				require.False(t, s.ScrubParameters)
				require.Equal(t, int32(0), s.AutodiscoveryHourlyCap)
				require.Equal(t, int32(10), s.AutodiscoveryTotalCap)
				require.Equal(t, "acme-prod", s.Name)
				require.Equal(t, "http://[::1]:9000/hook", s.WebhookURL)
			}},
		{"empty URL removes the webhook", map[string]any{"webhook_url": ""}, func(t *testing.T, s OrgSettings) {
			require.Empty(t, s.WebhookURL)
		}},
	}
	for _, p := range patches {
		t.Run(p.name, func(t *testing.T) {
			got := decodeAs[OrgSettings](t, e.want(http.StatusOK, http.MethodPatch, "/v1/settings", mk, p.patch))
			p.want(t, got)
			again := decodeAs[OrgSettings](t, e.want(http.StatusOK, http.MethodGet, "/v1/settings", mk, nil))
			got.WebhookSecret = "" // shown once, in the answer that generated it
			require.Equal(t, got, again)
		})
	}

	for _, c := range []struct{ name, url string }{
		{"plain http", "http://hooks.example.com/oak"},
		{"http to a private address", "http://10.0.0.5/hook"},
		{"another scheme", "ftp://example.com/hook"},
		{"not absolute", "/hook"},
		{"no host", "https:///hook"},
		{"credentials", "https://user:pass@hooks.example.com/oak"},
		{"fragment", "https://hooks.example.com/oak#x"},
		{"not a URL", "https://exa mple.com/"},
	} {
		t.Run("refuses "+c.name, func(t *testing.T) {
			requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPatch, "/v1/settings", mk,
				map[string]any{"webhook_url": c.url}), CodeValidationFailed, "body.webhook_url")
		})
	}
	t.Run("refuses an over-long URL", func(t *testing.T) {
		long := "https://example.com/" + strings.Repeat("a", 2048)
		requireProblem(t, e.want(http.StatusUnprocessableEntity, http.MethodPatch, "/v1/settings", mk,
			map[string]any{"webhook_url": long}), CodeValidationFailed, "body.webhook_url")
	})
	got := decodeAs[OrgSettings](t, e.want(http.StatusOK, http.MethodGet, "/v1/settings", mk, nil))
	require.Empty(t, got.WebhookURL, "refused updates change nothing")

	rows := e.audits(org, kindSettingsUpdated, org)
	require.Len(t, rows, len(patches))
	for _, r := range rows {
		raw, err := json.Marshal(r.Details)
		require.NoError(t, err)
		require.NotContains(t, string(raw), "abc", "webhook URL queries are not recorded")
	}
	require.Equal(t, map[string]any{"from": "", "to": "https://hooks.example.com/oak?redacted"},
		rows[3].Details["changed"].(map[string]any)["webhook_url"])
	require.Equal(t, map[string]any{"from": false, "to": true},
		rows[6].Details["changed"].(map[string]any)["management_keys_may_decide"])
}

// TestSettingWebhookURLGeneratesTheSigningSecretOnce: the first webhook URL
// comes with a signing secret, shown in that answer only; later changes do
// not rotate it, and deliveries would otherwise have nothing to sign with.
func TestSettingWebhookURLGeneratesTheSigningSecretOnce(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	status, raw := e.do(http.MethodPatch, "/v1/settings", e.boot.ManagementKey, map[string]any{"webhook_url": "https://hooks.example.com/oakallow"})
	require.Equal(t, http.StatusOK, status, string(raw))
	var first OrgSettings
	require.NoError(t, json.Unmarshal(raw, &first))
	require.True(t, strings.HasPrefix(first.WebhookSecret, "whsec_"), string(raw))

	// Stored sealed for the org's row, never in clear.
	stored := func() string {
		var sealedSecret []byte
		var row string
		require.NoError(t, e.st.Pool.QueryRow(context.Background(), "SELECT webhook_secret_sealed, o::text FROM orgs o WHERE id = $1",
			e.boot.OrgID).Scan(&sealedSecret, &row))
		require.NotContains(t, row, first.WebhookSecret)
		require.NotContains(t, row, strings.TrimPrefix(first.WebhookSecret, "whsec_"))
		secret, err := e.srv.deps.SecretBox.Open(sealedSecret, store.OrgWebhookSecretAAD(e.boot.OrgID))
		require.NoError(t, err)
		return string(secret)
	}
	require.Equal(t, first.WebhookSecret, stored())

	status, raw = e.do(http.MethodPatch, "/v1/settings", e.boot.ManagementKey, map[string]any{"webhook_url": "https://hooks.example.com/v2"})
	require.Equal(t, http.StatusOK, status, string(raw))
	require.NotContains(t, string(raw), "whsec_", "the secret is shown once")
	status, raw = e.do(http.MethodGet, "/v1/settings", e.boot.ManagementKey, nil)
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, string(raw), "whsec_")
	require.Equal(t, first.WebhookSecret, stored(), "changing the URL keeps the secret")
}
