package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/activities/notify/notifytest"
	"oakallow/api/runtime"
)

// discoverCheck is an MCP-style check (Discover) of tool through srv's
// runtime core, as the key's principal.
func (e *testEnv) discoverCheck(srv *Server, tool string) (runtime.CheckResult, error) {
	p, ok := srv.keys.Lookup(e.boot.StandardKey)
	require.True(e.t, ok, "the replica knows the standard key")
	return srv.rt.Check(context.Background(), p.caller(), &runtime.CheckRequest{Call: runtime.Call{Tool: tool}, Discover: true})
}

// restVerdict is the REST check's permission/level_name/reason for tool on e.
func (e *testEnv) restVerdict(tool string) string {
	e.t.Helper()
	res := expect[CheckResult](e, http.StatusOK, http.MethodPost, "/v1/permissions/check", e.boot.StandardKey, map[string]any{"tool": tool})
	return res.Permission + "/" + res.LevelName + "/" + res.Reason
}

func TestAutoDiscovery(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	other := e.on(startEnv(t, e.st, e.boot).srv)
	other.waitForKey(e.boot.StandardKey)
	s := e.mcpSession(e.boot.StandardKey)
	billable := func() int {
		return e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND billable AND kind = 'permission.check'`)
	}

	t.Run("an unknown tool becomes a draft at once, on every replica", func(t *testing.T) {
		before := billable()
		out, isErr := callTool(t, s, "check_permission", map[string]any{"tool": "deploy_service", "reason": "ship it"})
		require.False(t, isErr, "%v", out)
		require.Equal(t, "requires_approval", out["permission"])
		require.Equal(t, runtime.ReasonToolAutoCreated, out["reason"])
		require.Equal(t, "gate", out["scope"])
		require.Equal(t, before+1, billable(), "billed exactly like a check")
		require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND id = $2 AND outcome = 'requires_approval'`, out["check_id"]))

		var status, perm, risk string
		var ro, destructive, idem, open, acked, approved bool
		require.NoError(t, e.st.Pool.QueryRow(context.Background(), `SELECT status, default_permission, risk_level, read_only,
			destructive, idempotent, open_world, annotations_acknowledged, approved FROM tools
			WHERE org_id = $1 AND name = 'deploy_service' AND discovered_at IS NOT NULL`, e.boot.OrgID).
			Scan(&status, &perm, &risk, &ro, &destructive, &idem, &open, &acked, &approved))
		require.Equal(t, []any{"draft", "requires_approval", "high", false, true, false, true, false, false},
			[]any{status, perm, risk, ro, destructive, idem, open, acked, approved})
		require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'tool.auto_created'
			AND tool = 'deploy_service' AND NOT billable AND actor_id = $2`, e.keyID(TierStandard)))

		// The next check on this replica sees the draft (no wait), and the
		// other replica sees it once the change notification arrives.
		require.Equal(t, "requires_approval/tool_default/", e.restVerdict("deploy_service"))
		require.Eventually(t, func() bool { return other.restVerdict("deploy_service") == "requires_approval/tool_default/" },
			hangDeadline, 10*time.Millisecond)

		// A second MCP check of the same name is an ordinary check of the draft.
		out, _ = callTool(t, s, "check_permission", map[string]any{"tool": "deploy_service"})
		require.Equal(t, "tool_default", out["level_name"])
		require.Equal(t, 1, e.count(`SELECT count(*) FROM tools WHERE org_id = $1 AND name = 'deploy_service'`))
	})

	t.Run("REST callers still manage their catalog", func(t *testing.T) {
		require.Equal(t, "disabled/tool_not_registered/tool_not_registered", e.restVerdict("rest_only_tool"))
		require.Zero(t, e.count(`SELECT count(*) FROM tools WHERE org_id = $1 AND name = 'rest_only_tool'`))
	})

	t.Run("never allowed, whatever the rules", func(t *testing.T) {
		// An org wildcard allowing everything: the unknown tool's own check
		// still answers requires_approval.
		expect[Rule](e, http.StatusCreated, http.MethodPost, "/v1/rules", e.boot.ManagementKey, map[string]any{"permission": "allowed"})
		out, _ := callTool(t, s, "check_permission", map[string]any{"tool": "wipe_disk"})
		require.Equal(t, "requires_approval", out["permission"])
		require.Equal(t, runtime.ReasonToolAutoCreated, out["reason"])
	})

	t.Run("names are validated, nothing is registered for a bad one", func(t *testing.T) {
		before := e.count(`SELECT count(*) FROM tools WHERE org_id = $1`)
		for _, name := range []string{"send\u200bemail", "send_email ", " send_email", "send  email", "cafe\u0301", "a\u202eb", "x\ty"} {
			out := wantToolError(t, s, "check_permission", map[string]any{"tool": name}, CodeValidationFailed)
			require.Contains(t, out["message"], "tool", name)
		}
		require.Equal(t, before, e.count(`SELECT count(*) FROM tools WHERE org_id = $1`))
	})
}

// TestAutoDiscoveryCapsHold drives concurrent discovering checks of many new
// names through two replicas: the caps are never exceeded, every check
// answers requires_approval, and past a cap no row is added.
func TestAutoDiscoveryCapsHold(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	replicas := []*Server{e.srv, startEnv(t, e.st, e.boot).srv}
	e.on(replicas[1]).waitForKey(e.boot.StandardKey)
	setCaps := func(hourly, total int) {
		expect[map[string]any](e, http.StatusOK, http.MethodPatch, "/v1/settings", e.boot.ManagementKey,
			map[string]any{"autodiscovery_hourly_cap": hourly, "autodiscovery_total_cap": total})
	}
	drafts := func() int {
		return e.count(`SELECT count(*) FROM tools WHERE org_id = $1 AND discovered_at IS NOT NULL`)
	}
	burst := func(prefix string, n int) (created int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				res, err := e.discoverCheck(replicas[i%2], fmt.Sprintf("%s_%d", prefix, i))
				require.NoError(t, err)
				require.Equal(t, "requires_approval", res.Permission)
				mu.Lock()
				defer mu.Unlock()
				switch res.Reason {
				case runtime.ReasonToolAutoCreated:
					created++
				default:
					require.Equal(t, runtime.ReasonDiscoveryCapped, res.Reason)
				}
			})
		}
		wg.Wait()
		return created
	}

	setCaps(5, 8)
	require.Equal(t, 5, burst("hourly", 40), "the hourly cap")
	require.Equal(t, 5, drafts())

	setCaps(1000, 8)
	require.Equal(t, 3, burst("total", 40), "the total cap")
	require.Equal(t, 8, drafts())

	// Many checks of one new name register it once, with one event.
	setCaps(1000, 1000)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			res, err := e.discoverCheck(replicas[i%2], "same_name")
			require.NoError(t, err)
			require.Equal(t, "requires_approval", res.Permission)
		})
	}
	wg.Wait()
	require.Equal(t, 1, e.count(`SELECT count(*) FROM tools WHERE org_id = $1 AND name = 'same_name'`))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'tool.auto_created' AND tool = 'same_name'`))

	// A cap of 0 turns discovery off.
	setCaps(0, 1000)
	require.Zero(t, burst("off", 4))
	require.Equal(t, 9, drafts())
}

// testAutoDiscoveryDelivers: a discovered tool's tool.auto_created event
// reaches the org webhook (signed) and the org's channels, once each.
func testAutoDiscoveryDelivers(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	mk := e.boot.ManagementKey
	secret := expect[WebhookSecret](e, http.StatusOK, http.MethodPost, "/v1/webhook/rotate-secret", mk, nil)
	hook := notifytest.NewWebhookReceiver(t, secret.Secret)
	expect[map[string]any](e, http.StatusOK, http.MethodPatch, "/v1/settings", mk, map[string]any{"webhook_url": hook.URL()})
	wh := expect[ChannelWithSecret](e, http.StatusCreated, http.MethodPost, "/v1/channels", mk,
		map[string]any{"kind": "webhook", "name": "siem", "url": "https://example.com/hook", "scope": "level_2"})
	channel := notifytest.NewWebhookReceiver(t, wh.Secret)
	expect[ChannelWithSecret](e, http.StatusOK, http.MethodPatch, "/v1/channels/"+wh.ID, mk,
		map[string]any{"url": channel.URL(), "secret": wh.Secret})

	out, isErr := callTool(t, e.mcpSession(e.boot.StandardKey), "check_permission", map[string]any{"tool": "export_db"})
	require.False(t, isErr, "%v", out)
	require.Equal(t, runtime.ReasonToolAutoCreated, out["reason"])

	got := hook.WaitForDeliveries(t, 1, hangDeadline)
	require.Equal(t, "tool.auto_created", got[0].Event)
	var ev struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(got[0].Body, &ev))
	require.Equal(t, "tool.auto_created", ev.Type)
	require.Equal(t, "export_db", ev.Data["name"])
	require.Equal(t, "draft", ev.Data["status"])
	require.Equal(t, out["check_id"], ev.Data["check_id"])

	alert := channel.WaitForDeliveries(t, 1, hangDeadline)
	require.Equal(t, "tool.auto_created", alert[0].Event)
	require.Contains(t, string(alert[0].Body), `"tool_name":"export_db"`)
	require.Equal(t, 2, e.count(`SELECT count(*) FROM webhook_deliveries WHERE org_id = $1 AND event_type = 'tool.auto_created'`),
		"one delivery to the org webhook and one to the channel")
}
