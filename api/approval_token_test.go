package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/activities"
)

// testApprovalTokenFollowsItsDecision: the workflow projects a decision before
// it mints the token, so an agent polling GET /v1/approvals/{id} can read the
// approval approved a moment before its token exists. It must get the token
// in that answer (the answer waits for the mint), not "approved" without one.
// A decision long past whose token never came is answered at once, tokenless.
func testApprovalTokenFollowsItsDecision(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.seedTool("send_email", "", nil)
	ctx := context.Background()

	// approvedWithoutToken is an approval as PostgreSQL shows it between the
	// decision's projection and the mint; its workflow is ended so that only
	// the test writes it.
	approvedWithoutToken := func(decidedAgo time.Duration) ApprovalCreated {
		created := e.requestApproval(map[string]any{"tool": "send_email", "reasoning": "r"})
		require.NoError(t, s.tc.TerminateWorkflow(ctx, created.Reference, "", "the test plays the workflow"))
		_, err := s.st.Pool.Exec(ctx, `UPDATE approvals SET status = 'approved', decided_at = now() - $2::interval WHERE id = $1`,
			created.ID, decidedAgo.String())
		require.NoError(t, err)
		return created
	}

	recent := approvedWithoutToken(0)
	var minted activities.MintedToken
	mintErr := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond) // the GET below is waiting by then
		var a struct{ ID, OrgID, ToolName, TenantName, Resource, Method, ParamsHash string }
		err := s.st.Pool.QueryRow(ctx, `SELECT id, org_id, tool_name, tenant_name, resource, method, params_hash FROM approvals WHERE id = $1`,
			recent.ID).Scan(&a.ID, &a.OrgID, &a.ToolName, &a.TenantName, &a.Resource, &a.Method, &a.ParamsHash)
		if err == nil {
			minted, err = activities.MintToken(ctx, s.st, testKeyring, s.box, activities.TokenSource{Kind: activities.SourceApproval,
				ID: a.ID, OrgID: a.OrgID, Tool: a.ToolName, Tenant: a.TenantName, Resource: a.Resource, Method: a.Method,
				ParamsHash: a.ParamsHash}, time.Now(), activities.DefaultTokenTTL)
		}
		mintErr <- err
	}()
	polled := expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+recent.Reference, e.boot.StandardKey, nil)
	require.NoError(t, <-mintErr)
	require.Equal(t, "approved", polled.Status)
	require.Equal(t, minted.Token, polled.Token, "the answer waited for the token being minted")
	require.Equal(t, minted.ID, polled.TokenID)

	old := approvedWithoutToken(time.Hour)
	polled = expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+old.Reference, e.boot.StandardKey, nil)
	require.Equal(t, "approved", polled.Status)
	require.Empty(t, polled.Token)
}
