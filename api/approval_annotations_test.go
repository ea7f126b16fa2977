package api

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"oakallow/api/runtime"
)

// testApprovalToolAnnotations: an approval, read alone or in a list, carries
// its tool's MCP annotations and risk level as stored for the tool now, so a
// reviewer sees what approving lets the tool do.
func testApprovalToolAnnotations(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.seedTool("read_ledger", "", nil)
	mk := e.boot.ManagementKey
	expect[Tool](e, http.StatusOK, http.MethodPatch, "/v1/tools/read_ledger", mk, map[string]any{
		"read_only": true, "idempotent": true, "destructive": false, "open_world": false, "annotations_acknowledged": true, "risk_level": "low"})
	created := e.requestApproval(map[string]any{"tool": "read_ledger", "reasoning": "month-end totals"})

	type list struct {
		Items []Approval `json:"items"`
	}
	want := runtime.ToolAnnotations{ReadOnly: true, Idempotent: true, Acknowledged: true, RiskLevel: "low"}
	require.Equal(t, want, expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+created.Reference, mk, nil).ToolAnnotations)
	got := expect[list](e, http.StatusOK, http.MethodGet, "/v1/approvals?status=pending", mk, nil)
	require.Len(t, got.Items, 1)
	require.Equal(t, want, got.Items[0].ToolAnnotations)

	// An admin corrects the annotations while the approval waits: reviewers
	// see the tool as it is now, not as it was claimed when requested.
	expect[Tool](e, http.StatusOK, http.MethodPatch, "/v1/tools/read_ledger", mk, map[string]any{
		"read_only": false, "destructive": true, "open_world": true, "risk_level": "critical"})
	want = runtime.ToolAnnotations{Destructive: true, Idempotent: true, OpenWorld: true, Acknowledged: true, RiskLevel: "critical"}
	require.Equal(t, want, expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+created.ID, e.boot.StandardKey, nil).ToolAnnotations)
	got = expect[list](e, http.StatusOK, http.MethodGet, "/v1/approvals", e.boot.StandardKey, nil)
	require.Equal(t, want, got.Items[0].ToolAnnotations)
}
