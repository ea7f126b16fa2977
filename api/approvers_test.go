package api

import (
	"context"
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

	set := expect[ApproverGroup](e, http.StatusOK, http.MethodPut, "/v1/team/approver-groups/1", mk,
		map[string]any{"user_ids": []string{reviewer, e.boot.UserID, reviewer}})
	require.False(t, set.Everyone)
	require.ElementsMatch(t, []string{reviewer, e.boot.UserID}, set.UserIDs, "duplicates collapse")
	got := expect[ApproverGroup](e, http.StatusOK, http.MethodGet, "/v1/team/approver-groups/1", sk, nil)
	require.Equal(t, set, got)

	cases := []struct {
		name   string
		key    string
		ids    []string
		status int
		code   string
	}{
		{"unknown user", mk, []string{"usr_nobody"}, http.StatusUnprocessableEntity, CodeValidationFailed},
		{"another team's user", mk, []string{other.boot.UserID}, http.StatusUnprocessableEntity, CodeValidationFailed},
		{"standard key", sk, []string{reviewer}, http.StatusForbidden, CodeWrongKeyTier},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.expectProblem(tc.status, tc.code, http.MethodPut, "/v1/team/approver-groups/1", tc.key, map[string]any{"user_ids": tc.ids})
		})
	}
	// The refused writes changed nothing.
	require.Equal(t, set, expect[ApproverGroup](e, http.StatusOK, http.MethodGet, "/v1/team/approver-groups/1", mk, nil))

	cleared := expect[ApproverGroup](e, http.StatusOK, http.MethodPut, "/v1/team/approver-groups/1", mk, map[string]any{"user_ids": []string{}})
	require.True(t, cleared.Everyone)
	require.Equal(t, 2, e.count(`SELECT count(*) FROM audit_events WHERE org_id = $1 AND kind = 'approver_group.updated'`))
	// Another team's groups are its own.
	require.True(t, expect[ApproverGroup](other, http.StatusOK, http.MethodGet, "/v1/team/approver-groups/1", other.boot.StandardKey, nil).Everyone)
}
