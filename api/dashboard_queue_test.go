package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testDashboardRecentUnderFullQueue: with more approvals pending than one
// page of the approvals list holds, the approvals page still shows the
// ended ones under "Recently decided", newest end first, and every row
// shows its tool's annotations.
func testDashboardRecentUnderFullQueue(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	toolID := e.seedTool("wire_money", "", nil)
	e.want(http.StatusOK, http.MethodPatch, "/v1/tools/wire_money", e.boot.ManagementKey, map[string]any{
		"destructive": true, "open_world": true, "risk_level": "critical"})
	reviewer := e.signIn(e.person(RoleReviewer), true)
	now := time.Now().UTC()
	insert := func(i int, status string, created time.Time, decided *time.Time) string {
		ref := fmt.Sprintf("REF-Q%s-%04d", strings.ToUpper(e.boot.OrgID[4:11]), i)
		_, err := e.st.Pool.Exec(context.Background(), `INSERT INTO approvals (id, org_id, reference, tool_id, tool_name, reasoning,
			status, level, two_levels, level_timeout_seconds, expires_at, created_at, updated_at, decided_at, workflow_id, created_by_kind, created_by_id)
			VALUES ($1, $2, $3, $4, 'wire_money', 'r', $5, 1, false, 3600, $6, $7, $7, $8, $3, 'api_key', 'key_test')`,
			fmt.Sprintf("apr_queue_%s_%03d", strings.ToLower(e.boot.OrgID[4:12]), i), e.boot.OrgID, ref, toolID, status, created.Add(time.Hour), created, decided)
		require.NoError(t, err)
		return ref
	}
	early, late := now.Add(-2*time.Hour), now.Add(-90*time.Minute)
	olderEnd := insert(0, "denied", now.Add(-3*time.Hour), &early)
	newerEnd := insert(1, "approved", now.Add(-4*time.Hour), &late)
	for i := range 60 {
		insert(2+i, "pending", now.Add(-time.Duration(60-i)*time.Second), nil)
	}

	status, _, body := e.page("/approvals", reviewer.Token)
	require.Equal(t, http.StatusOK, status, body)
	queue, recent, ok := strings.Cut(body, `id="recent-title"`)
	require.True(t, ok)
	require.Equal(t, 60, strings.Count(queue, `href="/approvals/REF-Q`), "the whole queue")
	require.Equal(t, 60, strings.Count(queue, "risk critical"), "each pending row shows the tool's annotations")
	require.Equal(t, 60, strings.Count(queue, `<span class="hint-tag bad">destructive</span>`))
	require.NotContains(t, recent, "No decided or expired approvals yet.")
	i, j := strings.Index(recent, newerEnd), strings.Index(recent, olderEnd)
	require.True(t, i >= 0 && j > i, "both ended approvals are shown, the later end first")
}
