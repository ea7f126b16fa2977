package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"oakallow/activities"
	"oakallow/store"
	"oakallow/workflows"
)

// testAccountDeletion (in TestApprovalSuite: it needs the real worker and
// Temporal) deletes a person through the real server: everything they could
// use stops at once, on every replica; the purge workflow is started; the
// purge itself (the workflow's activity, run here rather than after 30 days —
// workflows/deletion_test.go covers the timer) leaves a pseudonym.
func testAccountDeletion(t *testing.T, s *approvalSuite) {
	e := s.org(t)
	ctx := context.Background()
	replica := e.on(s.startServer(t))
	replica.waitSessionCache()
	owner := e.signIn(e.boot.UserID, true)
	personID := e.person(RoleAdmin)
	var email string
	require.NoError(t, s.st.Pool.QueryRow(ctx, `SELECT email FROM users WHERE id = $1`, personID).Scan(&email))
	first, second := e.signIn(personID, true), e.signIn(personID, true)
	enrolling := e.signIn(personID, false)
	key := sessionCall[CreatedAPIKey](e, http.StatusCreated, http.MethodPost, "/v1/orgs/"+e.boot.OrgID+"/keys", first.Token,
		map[string]any{"name": "theirs", "tier": "standard"})
	replica.waitForKey(key.Key)
	_, err := s.st.Pool.Exec(ctx, `INSERT INTO recovery_codes (user_id, hash, created_at) VALUES ($1, $2, now())`,
		personID, sha256.New().Sum(nil))
	require.NoError(t, err)
	_, err = s.st.Pool.Exec(ctx, `INSERT INTO passkeys (id, user_id, credential_id, public_key, created_at) VALUES ($1, $2, $3, $4, now())`,
		store.NewID("pk"), personID, []byte(personID), []byte{1, 2, 3})
	require.NoError(t, err)
	_, err = s.st.Pool.Exec(ctx, `UPDATE users SET webauthn_handle = $2 WHERE id = $1`, personID, make([]byte, 64))
	require.NoError(t, err)
	// The second session is in the other replica's cache.
	status, raw := replica.asSession(http.MethodGet, "/v1/tools", bearer(second.Token), nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.True(t, replica.cached(second.Token))

	// The last owner of a team is refused, and so is an enrollment-only session.
	status, raw = e.asSession(http.MethodDelete, "/v1/me", bearer(owner.Token), nil)
	requireStatusCode(t, http.StatusConflict, CodeLastOwner, status, raw)
	status, raw = e.asSession(http.MethodDelete, "/v1/me", bearer(enrolling.Token), nil)
	requireStatusCode(t, http.StatusForbidden, CodePasskeyRequired, status, raw)
	require.Equal(t, "active", userStatus(t, s.st, e.boot.UserID))

	requested := time.Now()
	d := sessionCall[AccountDeletion](e, http.StatusAccepted, http.MethodDelete, "/v1/me", first.Token, nil)
	require.Equal(t, personID, d.UserID)
	requireBetween(t, d.PurgeAt, requested.Add(workflows.AccountPurgeDelay-time.Second), time.Now().Add(workflows.AccountPurgeDelay))

	// At once, here: no session, no key.
	for _, is := range []issuedSession{first, second, enrolling} {
		status, raw = e.asSession(http.MethodGet, "/v1/me", bearer(is.Token), nil)
		requireStatusCode(t, http.StatusUnauthorized, CodeInvalidSession, status, raw)
	}
	e.expectProblem(http.StatusUnauthorized, CodeInvalidKey, http.MethodGet, "/v1/credits", key.Key, nil)
	// And on the other replica as soon as the notifications arrive.
	replica.refusedWithin(requested, "account deletion", http.MethodGet, "/v1/tools", second.Token, http.StatusUnauthorized, CodeInvalidSession)
	require.Eventually(t, func() bool {
		status, _ := replica.do(http.MethodGet, "/v1/credits", key.Key, nil)
		return status == http.StatusUnauthorized
	}, hangDeadline, time.Millisecond)
	for q, want := range map[string]int{
		`SELECT count(*) FROM passkeys WHERE user_id = $1`:                                              0,
		`SELECT count(*) FROM recovery_codes WHERE user_id = $1`:                                        0,
		`SELECT count(*) FROM memberships WHERE user_id = $1`:                                           0,
		`SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL`:                       0,
		`SELECT count(*) FROM api_keys WHERE created_by = $1 AND revoked_at IS NULL`:                    0,
		`SELECT count(*) FROM audit_events WHERE actor_id = $1 AND kind = 'api_key.revoked'`:            1,
		`SELECT count(*) FROM audit_events WHERE subject = $1 AND kind = 'account.purged'`:              0,
		`SELECT count(*) FROM audit_events WHERE actor_id = $1 AND kind = 'account.deletion_requested'`: 1,
	} {
		var n int
		require.NoError(t, s.st.Pool.QueryRow(ctx, q, personID).Scan(&n))
		require.Equal(t, want, n, q)
	}
	require.Equal(t, "deleted", userStatus(t, s.st, personID))
	// The purge is scheduled, durably.
	desc, err := s.tc.DescribeWorkflowExecution(ctx, workflows.AccountDeletionWorkflowID(personID), "")
	require.NoError(t, err)
	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.GetWorkflowExecutionInfo().GetStatus())
	t.Cleanup(func() {
		_ = s.tc.TerminateWorkflow(context.Background(), workflows.AccountDeletionWorkflowID(personID), "", "test over")
	})
	// Deleting again is refused: the session is gone.
	status, raw = e.asSession(http.MethodDelete, "/v1/me", bearer(second.Token), nil)
	requireStatusCode(t, http.StatusUnauthorized, CodeInvalidSession, status, raw)

	// The purge: the personal data goes, the person's audit trail stays.
	var auditBefore int
	require.NoError(t, s.st.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE actor_id = $1`, personID).Scan(&auditBefore))
	for range 2 { // idempotent
		res, err := s.acts.PurgeAccount(ctx, workflows.PurgeAccountInput{UserID: personID})
		require.NoError(t, err)
		require.True(t, res.Purged)
	}
	var gotEmail, name string
	var handle []byte
	require.NoError(t, s.st.Pool.QueryRow(ctx, `SELECT email, name, webauthn_handle FROM users WHERE id = $1`, personID).Scan(&gotEmail, &name, &handle))
	pseudo := activities.Pseudonym(personID)
	require.Equal(t, []string{pseudo, pseudo}, []string{gotEmail, name})
	require.Nil(t, handle)
	require.NotContains(t, pseudo, email)
	var auditAfter, purged int
	require.NoError(t, s.st.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE actor_id = $1`, personID).Scan(&auditAfter))
	require.Equal(t, auditBefore, auditAfter, "the person's audit entries stay")
	require.NoError(t, s.st.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE subject = $1 AND kind = 'account.purged' AND team_id = $2`,
		personID, e.boot.TeamID).Scan(&purged))
	require.Equal(t, 1, purged)
	var details json.RawMessage
	require.NoError(t, s.st.Pool.QueryRow(ctx, `SELECT details FROM audit_events WHERE subject = $1 AND kind = 'account.purged'`, personID).Scan(&details))
	require.NotContains(t, string(details), email)

	// A person who is not deleted is never purged.
	res, err := s.acts.PurgeAccount(ctx, workflows.PurgeAccountInput{UserID: e.boot.UserID})
	require.NoError(t, err)
	require.False(t, res.Purged)
	require.NoError(t, s.st.Pool.QueryRow(ctx, `SELECT email FROM users WHERE id = $1`, e.boot.UserID).Scan(&gotEmail))
	require.NotEqual(t, activities.Pseudonym(e.boot.UserID), gotEmail)
}

func userStatus(t *testing.T, st *store.Store, id string) string {
	t.Helper()
	var status string
	require.NoError(t, st.Pool.QueryRow(context.Background(), `SELECT status FROM users WHERE id = $1`, id).Scan(&status))
	return status
}
