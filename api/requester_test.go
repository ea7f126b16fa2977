package api

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"oakallow/dev/approvalcheck"
	"oakallow/store"
)

// newAgent creates an agent identity of e's org (as an admin would) and
// waits until the server knows it.
func (e *testEnv) newAgent(admin, name string) CreatedAgentIdentity {
	e.t.Helper()
	a := sessionCall[CreatedAgentIdentity](e, http.StatusCreated, http.MethodPost, "/v1/orgs/"+e.boot.OrgID+"/agents",
		admin, map[string]any{"name": name})
	require.Eventually(e.t, func() bool {
		status, _ := e.agentDo(http.MethodGet, "/v1/approvals?limit=1", a.Secret, nil)
		return status == http.StatusOK
	}, hangDeadline, 10*time.Millisecond, "the server never learned the agent identity")
	return a
}

// oauthAccessToken is an OAuth access token for /mcp of e's org, granted by
// e's owner to a new client with scopes, and the grant's id. The rows are
// written as the authorization server writes them after a consent (the
// flows themselves are tested in oauth_test.go).
func (e *testEnv) oauthAccessToken(scopes ...string) (string, string) {
	e.t.Helper()
	require.NotNil(e.t, e.srv.oauth, "the test server runs the authorization server")
	ctx, now := context.Background(), time.Now()
	token := "oak_at_" + store.NewID("test")
	hash := sha256.Sum256([]byte(token))
	clientID, grantID := store.NewID("cli"), store.NewID("grt")
	require.NoError(e.t, e.st.InTx(ctx, func(_ pgx.Tx, q *store.Queries) error {
		if err := q.CreateOAuthClient(ctx, store.CreateOAuthClientParams{ID: clientID, Name: "test client",
			RedirectUris: []string{"http://127.0.0.1/callback"}, CreatedAt: now}); err != nil {
			return err
		}
		if err := q.CreateOAuthGrant(ctx, store.CreateOAuthGrantParams{ID: grantID, ClientID: clientID, UserID: e.boot.UserID,
			OrgID: e.boot.OrgID, TeamID: e.boot.TeamID, Scopes: scopes, Resource: e.srv.oauth.Config().Resource(), CreatedAt: now,
			ExpiresAt: now.Add(time.Hour)}); err != nil {
			return err
		}
		return q.CreateOAuthToken(ctx, store.CreateOAuthTokenParams{TokenHash: hash[:], GrantID: grantID, Kind: "access",
			Scopes: scopes, CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	}))
	return token, grantID
}

// testApprovalsOfTheirRequester: standard keys, agent identities and OAuth
// clients read, poll and mint from only the approvals they requested, over
// REST and MCP; another's answers exactly like a REF that does not exist.
// Management keys and reviewers read them all.
func testApprovalsOfTheirRequester(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	e.allowDecide(true)
	allowed := "allowed"
	e.seedTool("send_email", "", nil)
	e.seedTool("read_file", "", &allowed)
	admin := e.signIn(e.person(RoleAdmin), true).Token
	reviewer := e.signIn(e.person(RoleReviewer), true).Token
	agentA, agentB := e.newAgent(admin, "agent a"), e.newAgent(admin, "agent b")
	otherKey := e.newKey(TierStandard)
	oauthTok, grantID := e.oauthAccessToken("mcp:read", "mcp:write")
	mcpA, mcpB, mcpO := e.mcpSession(agentA.Secret), e.mcpSession(agentB.Secret), e.mcpSession(oauthTok)

	request := func(name string, body map[string]any) map[string]any {
		body["tool"], body["reasoning"] = "send_email", "secret plans of "+name
		body["parameters"] = map[string]any{"to": name + "@example.com"}
		return body
	}
	// A over MCP, the bootstrap standard key over REST, the OAuth client over MCP.
	outA, isErr := callTool(t, mcpA, "request_approval", request("a", map[string]any{}))
	require.False(t, isErr, "%v", outA)
	refA, idA := outA["reference"].(string), outA["id"].(string)
	refK := e.requestApproval(request("key", map[string]any{})).Reference
	outO, isErr := callTool(t, mcpO, "request_approval", request("oauth", map[string]any{}))
	require.False(t, isErr, "%v", outO)
	refO := outO["reference"].(string)

	// The requester is recorded on the row, as the audit log names it.
	for ref, want := range map[string][2]string{refA: {"agent", agentA.ID}, refK: {"api_key", e.keyID(TierStandard)},
		refO: {"oauth", grantID}} {
		require.Equal(t, 1, e.count(`SELECT count(*) FROM approvals WHERE org_id = $1 AND reference = $2
			AND created_by_kind = $3 AND created_by_id = $4`, ref, want[0], want[1]), ref)
		got := expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+ref, e.boot.ManagementKey, nil)
		require.Equal(t, want[0], got.RequestedBy.Kind)
		require.Equal(t, want[1], got.RequestedBy.ID)
	}
	expect[Approval](e, http.StatusOK, http.MethodPost, "/v1/approvals/"+refA+"/decide", e.boot.ManagementKey,
		map[string]any{"decision": "approve"})

	// Another requester's approval answers like one that does not exist.
	const missing = "REF-00000000-0000"
	sameAsMissing := func(ref string, got map[string]any, gotMissing map[string]any) {
		t.Helper()
		require.Equal(t, gotMissing["error"], got["error"])
		require.Equal(t, gotMissing["message"], strings.ReplaceAll(got["message"].(string), ref, missing))
	}
	for _, other := range []string{refA, idA} {
		sameAsMissing(other, wantToolError(t, mcpB, "check_approval_status", map[string]any{"reference": other}, CodeNotFound),
			wantToolError(t, mcpB, "check_approval_status", map[string]any{"reference": missing}, CodeNotFound))
		sameAsMissing(other, wantToolError(t, mcpO, "check_approval_status", map[string]any{"reference": other}, CodeNotFound),
			wantToolError(t, mcpO, "check_approval_status", map[string]any{"reference": missing}, CodeNotFound))
		sameAsMissing(other, wantToolError(t, mcpB, "mint_token", map[string]any{"approval_id": other}, CodeNotFound),
			wantToolError(t, mcpB, "mint_token", map[string]any{"approval_id": missing}, CodeNotFound))
	}
	billedB := e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND actor_id = $2 AND billable`, agentB.ID)
	for _, cred := range []string{agentB.Secret, otherKey} {
		for _, other := range []string{refA, idA, refO} {
			var bodies [2][]byte
			for i, ref := range []string{other, missing} {
				status, raw := e.agentDo(http.MethodGet, "/v1/approvals/"+ref, cred, nil)
				requireStatusCode(t, http.StatusNotFound, CodeNotFound, status, raw)
				bodies[i] = raw
				status, raw = e.agentDo(http.MethodPost, "/v1/tokens/mint", cred, map[string]any{"approval_id": ref})
				requireStatusCode(t, http.StatusNotFound, CodeNotFound, status, raw)
				// The evidence names the tool, the parameters' hash and the
				// reviewers: another's is not found either.
				status, raw = e.agentDo(http.MethodGet, "/v1/approvals/"+ref+"/evidence", cred, nil)
				requireStatusCode(t, http.StatusNotFound, CodeNotFound, status, raw)
			}
			require.Equal(t, decodeAs[Problem](t, bodies[1]).Detail,
				strings.ReplaceAll(decodeAs[Problem](t, bodies[0]).Detail, other, missing))
		}
		status, raw := e.agentDo(http.MethodGet, "/v1/approvals", cred, nil)
		require.Equal(t, http.StatusOK, status, string(raw))
		require.Empty(t, decodeAs[listOutputBody[Approval]](t, raw).Items, "another's approvals are not listed")
		require.NotContains(t, string(raw), "secret plans")
	}
	require.Equal(t, billedB, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND actor_id = $2 AND billable`, agentB.ID),
		"refused mints are not billed")
	pending, _ := callTool(t, mcpB, "list_pending_approvals", nil)
	require.Empty(t, pending["approvals"])
	pending, _ = callTool(t, mcpO, "list_pending_approvals", nil)
	require.Len(t, pending["approvals"], 1)
	require.Equal(t, refO, pending["approvals"].([]any)[0].(map[string]any)["reference"])

	// The others' attempts left the decided approval as it was: its workflow
	// and PostgreSQL agree, with one token (before the requester's own mints,
	// which approvalcheck would count as more token.minted events).
	ctx, cancel := context.WithTimeout(context.Background(), hangDeadline)
	defer cancel()
	rep, err := approvalcheck.Check(ctx, s.st.Pool, s.tc, refA)
	require.NoError(t, err)
	require.NoError(t, rep.Err())

	// Each requester still reads its own and gets its token.
	st, isErr := callTool(t, mcpA, "check_approval_status", map[string]any{"reference": refA})
	require.False(t, isErr, "%v", st)
	require.Equal(t, "approved", st["status"])
	require.True(t, strings.HasPrefix(st["token"].(string), "oak_tok_"), "%v", st)
	minted, isErr := callTool(t, mcpA, "mint_token", map[string]any{"approval_id": refA})
	require.False(t, isErr, "%v", minted)
	require.Equal(t, st["token"], minted["token"])
	status, raw := e.agentDo(http.MethodGet, "/v1/approvals/"+refA, agentA.Secret, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Equal(t, st["token"], decodeAs[Approval](t, raw).Token)
	status, raw = e.agentDo(http.MethodGet, "/v1/approvals/"+refA+"/evidence", agentA.Secret, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Len(t, decodeAs[evidenceAnswer](t, raw).ManagementKeyDecisions, 1)
	status, raw = e.agentDo(http.MethodPost, "/v1/tokens/mint", agentA.Secret, map[string]any{"approval_id": idA})
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Equal(t, st["token"], decodeAs[MintedToken](t, raw).Token)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM execution_tokens WHERE org_id = $1 AND source_id = $2`, idA),
		"nobody else's mint made another token")
	status, raw = e.agentDo(http.MethodGet, "/v1/approvals", agentA.Secret, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	own := decodeAs[listOutputBody[Approval]](t, raw).Items
	require.Len(t, own, 1)
	require.Equal(t, refA, own[0].Reference)
	own = expect[listOutputBody[Approval]](e, http.StatusOK, http.MethodGet, "/v1/approvals", e.boot.StandardKey, nil).Items
	require.Len(t, own, 1)
	require.Equal(t, refK, own[0].Reference)
	expect[Approval](e, http.StatusOK, http.MethodGet, "/v1/approvals/"+refK, e.boot.StandardKey, nil)

	// Management keys and reviewers read them all, filters and pages too.
	all := expect[listOutputBody[Approval]](e, http.StatusOK, http.MethodGet, "/v1/approvals", e.boot.ManagementKey, nil).Items
	require.Len(t, all, 3)
	status, raw = e.asSession(http.MethodGet, "/v1/approvals?status=pending&limit=1", bearer(reviewer), nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Len(t, decodeAs[listOutputBody[Approval]](t, raw).Items, 1)
	require.Contains(t, string(raw), "next_cursor", "two pending approvals: refK and refO")
	for _, ref := range []string{refA, refK, refO} {
		status, raw = e.asSession(http.MethodGet, "/v1/approvals/"+ref, bearer(reviewer), nil)
		require.Equal(t, http.StatusOK, status, string(raw))
	}
	pending, isErr = callTool(t, e.mcpSession(e.boot.ManagementKey), "list_pending_approvals", nil)
	require.False(t, isErr, "%v", pending)
	require.Len(t, pending["approvals"], 2)

	// A token is minted only from the caller's own check, too.
	check, isErr := callTool(t, mcpA, "check_permission", map[string]any{"tool": "read_file"})
	require.False(t, isErr, "%v", check)
	wantToolError(t, mcpB, "mint_token", map[string]any{"check_id": check["check_id"]}, CodeNotFound)
	status, raw = e.agentDo(http.MethodPost, "/v1/tokens/mint", otherKey, map[string]any{"check_id": check["check_id"]})
	requireStatusCode(t, http.StatusNotFound, CodeNotFound, status, raw)
	minted, isErr = callTool(t, mcpA, "mint_token", map[string]any{"check_id": check["check_id"]})
	require.False(t, isErr, "%v", minted)
}
