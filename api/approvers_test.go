package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/store"
)

func testApproverGroups(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	mk, sk := e.boot.ManagementKey, e.boot.StandardKey
	reviewer := store.NewID("usr")
	require.NoError(t, s.st.CreateUser(context.Background(), store.CreateUserParams{ID: reviewer,
		Email: reviewer + "@example.com", Name: "Reviewer", CreatedAt: time.Now()}))
	require.NoError(t, s.st.CreateMembership(context.Background(), store.CreateMembershipParams{TeamID: e.boot.TeamID,
		UserID: reviewer, Role: RoleReviewer, CreatedAt: time.Now()}))
	other := s.org(t)

	groups := expect[struct {
		Items []ApproverGroup `json:"items"`
	}](e, http.StatusOK, http.MethodGet, "/v1/team/approver-groups", sk, nil)
	require.Equal(t, []ApproverGroup{{Level: 1, UserIDs: []string{}, Everyone: true}, {Level: 2, UserIDs: []string{}, Everyone: true}}, groups.Items)

	owner := bearer(e.signIn(e.boot.UserID, true).Token)
	set := expectAs[ApproverGroup](e, http.StatusOK, http.MethodPut, "/v1/team/approver-groups/1", owner,
		map[string]any{"user_ids": []string{reviewer, e.boot.UserID, reviewer}})
	require.False(t, set.Everyone)
	require.ElementsMatch(t, []string{reviewer, e.boot.UserID}, set.UserIDs, "duplicates collapse")
	got := expect[ApproverGroup](e, http.StatusOK, http.MethodGet, "/v1/team/approver-groups/1", sk, nil)
	require.Equal(t, set, got)

	cases := []struct {
		name   string
		hdr    map[string]string
		ids    []string
		status int
		code   string
	}{
		{"unknown user", owner, []string{"usr_nobody"}, http.StatusUnprocessableEntity, CodeValidationFailed},
		{"another team's user", owner, []string{other.boot.UserID}, http.StatusUnprocessableEntity, CodeValidationFailed},
		// The groups are the team's: a key of one org must not change them (an
		// emptied Approval 2 makes every org's two-level approvals one level).
		{"management key", map[string]string{"X-API-Key": mk}, []string{}, http.StatusForbidden, CodeWrongKeyTier},
		{"standard key", map[string]string{"X-API-Key": sk}, []string{reviewer}, http.StatusForbidden, CodeWrongKeyTier},
		{"reviewer session", bearer(e.signIn(reviewer, true).Token), []string{}, http.StatusForbidden, CodeInsufficientRole},
		{"enrollment-only owner session", bearer(e.signIn(e.boot.UserID, false).Token), []string{}, http.StatusForbidden, CodePasskeyRequired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, raw := e.asSession(http.MethodPut, "/v1/team/approver-groups/1", tc.hdr, map[string]any{"user_ids": tc.ids})
			requireStatusCode(t, tc.status, tc.code, status, raw)
		})
	}
	// The refused writes changed nothing.
	require.Equal(t, set, expect[ApproverGroup](e, http.StatusOK, http.MethodGet, "/v1/team/approver-groups/1", mk, nil))

	cleared := expectAs[ApproverGroup](e, http.StatusOK, http.MethodPut, "/v1/team/approver-groups/1", owner, map[string]any{"user_ids": []string{}})
	require.True(t, cleared.Everyone)
	require.Equal(t, 2, e.count(`SELECT count(*) FROM audit_events WHERE team_id = (SELECT team_id FROM orgs WHERE id = $1)
		AND kind = 'approver_group.updated' AND actor_kind = 'user'`))
	// Another team's groups are its own.
	require.True(t, expect[ApproverGroup](other, http.StatusOK, http.MethodGet, "/v1/team/approver-groups/1", other.boot.StandardKey, nil).Everyone)
}

// expectAs sends a request with headers (a session) and decodes the answer.
func expectAs[T any](e *testEnv, status int, method, path string, hdr map[string]string, body any) T {
	e.t.Helper()
	got, raw := e.asSession(method, path, hdr, body)
	require.Equal(e.t, status, got, "%s %s: %s", method, path, raw)
	var v T
	if len(raw) > 0 {
		require.NoError(e.t, json.Unmarshal(raw, &v), string(raw))
	}
	return v
}

// setApproverGroup sets a group as the team's owner, signed in.
func (e *testEnv) setApproverGroup(level int, ids []string) ApproverGroup {
	e.t.Helper()
	return expectAs[ApproverGroup](e, http.StatusOK, http.MethodPut, fmt.Sprintf("/v1/team/approver-groups/%d", level),
		bearer(e.signIn(e.boot.UserID, true).Token), map[string]any{"user_ids": ids})
}
