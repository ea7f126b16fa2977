package workflows

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// fakePurge stands in for PurgeAccount: it records when (on the workflow clock) and
// for whom it ran, failing the first failures attempts.
type fakePurge struct {
	mu       sync.Mutex
	now      func() time.Time
	failures int
	calls    []time.Time
	users    []string
}

func (f *fakePurge) PurgeAccount(_ context.Context, in PurgeAccountInput) (PurgeAccountResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, f.now())
	f.users = append(f.users, in.UserID)
	if len(f.calls) <= f.failures {
		return PurgeAccountResult{}, errors.New("database unavailable")
	}
	return PurgeAccountResult{Purged: true}, nil
}

func newDeletionEnv(t *testing.T, f *fakePurge) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	env := quietWorkflowEnv(t)
	env.RegisterWorkflowWithOptions(AccountDeletionWorkflow, workflow.RegisterOptions{Name: AccountDeletionWorkflowName})
	env.RegisterActivityWithOptions(f.PurgeAccount, activity.RegisterOptions{Name: ActivityPurgeAccount})
	f.now = env.Now
	return env
}

func TestAccountDeletionPurgesAfterThirtyDays(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		purgeAt  time.Time
		failures int
		wantAt   time.Time
		calls    int
	}{
		{name: "after the timer", purgeAt: t0.Add(AccountPurgeDelay), wantAt: t0.Add(AccountPurgeDelay), calls: 1},
		{name: "retried while the database is down", purgeAt: t0.Add(AccountPurgeDelay), failures: 2,
			wantAt: t0.Add(AccountPurgeDelay), calls: 3},
		// A workflow started late (the purge time already passed) purges at once.
		{name: "already due", purgeAt: t0.Add(-time.Hour), wantAt: t0, calls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakePurge{failures: tc.failures}
			env := newDeletionEnv(t, f)
			// Halfway through, nothing is purged yet.
			env.RegisterDelayedCallback(func() {
				f.mu.Lock()
				defer f.mu.Unlock()
				if tc.purgeAt.After(t0) {
					require.Empty(t, f.calls, "purged before the 30 days ran out")
				}
			}, AccountPurgeDelay/2)
			env.ExecuteWorkflow(AccountDeletionWorkflowName, AccountDeletionInput{UserID: "usr_1", PurgeAt: tc.purgeAt})
			require.True(t, env.IsWorkflowCompleted())
			require.NoError(t, env.GetWorkflowError())
			var res PurgeAccountResult
			require.NoError(t, env.GetWorkflowResult(&res))
			require.True(t, res.Purged)
			require.Len(t, f.calls, tc.calls)
			require.False(t, f.calls[0].Before(tc.wantAt), "first purge at %s, due %s", f.calls[0], tc.wantAt)
			require.Less(t, f.calls[0].Sub(tc.wantAt), time.Minute)
			require.Equal(t, "usr_1", f.users[0])
		})
	}
}

func TestAccountDeletionRefusesInvalidInput(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]AccountDeletionInput{
		"no user":     {PurgeAt: t0},
		"no time":     {UserID: "usr_1"},
		"huge userid": {UserID: strings.Repeat("u", MaxIDRunes+1), PurgeAt: t0},
	} {
		f := &fakePurge{}
		env := newDeletionEnv(t, f)
		env.ExecuteWorkflow(AccountDeletionWorkflowName, in)
		var appErr *temporal.ApplicationError
		require.ErrorAs(t, env.GetWorkflowError(), &appErr, name)
		require.Equal(t, ErrorTypeValidation, appErr.Type(), name)
		require.Empty(t, f.calls, name)
	}
}

// TestAccountDeletionDataCarriesNoPersonalData pins what enters history: ids and a time.
func TestAccountDeletionDataCarriesNoPersonalData(t *testing.T) {
	t.Parallel()
	for value, want := range map[any][]string{
		AccountDeletionInput{}: {"user_id", "purge_at"},
		PurgeAccountInput{}:    {"user_id"},
		PurgeAccountResult{}:   {"purged"},
	} {
		typ := reflect.TypeOf(value)
		var got []string
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			got = append(got, name)
		}
		require.Equal(t, want, got, typ.Name())
	}
}
