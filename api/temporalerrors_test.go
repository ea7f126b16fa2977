package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"
)

// testClosedWorkflowErrorsAreTyped: a decide Update that fails because the approval's
// workflow has closed is answered from PostgreSQL, whichever way Temporal says so — and
// recognised by the error's type, never by its text.
func testClosedWorkflowErrorsAreTyped(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	e.seedTool("drop_table", "", nil)
	created := e.requestApproval(map[string]any{"tool": "drop_table", "reasoning": "cleanup"})
	expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+created.ID+"/decide", e.boot.ManagementKey,
		map[string]any{"decision": "deny"})

	for _, tc := range []struct {
		name   string
		err    error
		closed bool
	}{
		{"update to a closed run", serviceerror.NewNotFound("workflow execution already completed"), true},
		{"update aborted by the closing run", serviceerror.NewNotFound("workflow update was aborted by closing workflow"), true},
		{"accepted update, then the run closed", fmt.Errorf("update: %w", temporal.NewNonRetryableApplicationError(
			"Workflow Update failed because the Workflow completed before the Update completed.", acceptedUpdateCompletedWorkflow, nil)), true},
		{"the same words, untyped", errors.New("workflow execution already completed"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.srv.decideProblem(context.Background(), e.boot.OrgID, created.ID, tc.err)
			var p *Problem
			if !tc.closed {
				require.False(t, errors.As(err, &p), "an unrecognised error stays an internal one: %v", err)
				return
			}
			require.True(t, errors.As(err, &p), "%v", err)
			require.Equal(t, http.StatusConflict, p.Status)
			require.Equal(t, CodeAlreadyDecided, p.Code)
			require.NotNil(t, p.Approval)
			require.Equal(t, "denied", p.Approval.Status)
		})
	}
}
