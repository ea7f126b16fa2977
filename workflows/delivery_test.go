package workflows

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// fakeDelivery stands in for the delivery activities: attempt n (1-based) returns
// outcome(n), and every call is recorded with the workflow clock's time.
type fakeDelivery struct {
	mu       sync.Mutex
	now      func() time.Time
	outcome  func(n int) error
	attempts []time.Time
	marked   []string
}

func (f *fakeDelivery) DeliverNotification(_ context.Context, in DeliverNotificationInput) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts = append(f.attempts, f.now())
	if in.DeliveryID == "" {
		return errors.New("no delivery id")
	}
	return f.outcome(len(f.attempts))
}

func (f *fakeDelivery) MarkDeliveryFailed(_ context.Context, in MarkDeliveryFailedInput) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.marked = append(f.marked, in.DeliveryID)
	return nil
}

// alwaysRetryable is a receiver that is down: every attempt fails retryably.
func alwaysRetryable(int) error {
	return temporal.NewApplicationError("receiver answered 503", ErrorTypeDeliveryRetryable)
}

// quietWorkflowEnv is a time-skipping test environment starting at t0 that
// logs only what is worse than an error (the tests provoke failures).
func quietWorkflowEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelError + 1}))))
	env := suite.NewTestWorkflowEnvironment()
	env.SetStartTime(t0)
	return env
}

func newDeliveryEnv(t *testing.T, f *fakeDelivery) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	env := quietWorkflowEnv(t)
	env.RegisterWorkflowWithOptions(DeliveryWorkflow, workflow.RegisterOptions{Name: DeliveryWorkflowName})
	env.RegisterActivityWithOptions(f.DeliverNotification, activity.RegisterOptions{Name: ActivityDeliverNotification})
	env.RegisterActivityWithOptions(f.MarkDeliveryFailed, activity.RegisterOptions{Name: ActivityMarkDeliveryFailed})
	f.now = env.Now
	return env
}

func TestDeliveryWorkflow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		in           DeliveryInput
		outcome      func(n int) error
		wantAttempts [2]int // inclusive range
		wantMarked   bool
		// wantGaps are the exact waits before the first attempts, when checked.
		wantGaps []time.Duration
	}{
		{
			name: "delivered at the first attempt",
			in:   DeliveryInput{DeliveryID: "whd_1", OrgID: "org_01"},
			outcome: func(int) error {
				return nil
			},
			wantAttempts: [2]int{1, 1},
		},
		{
			name: "receiver down twice, then delivered, backing off 5 s then 10 s",
			in:   DeliveryInput{DeliveryID: "whd_2", OrgID: "org_01"},
			outcome: func(n int) error {
				if n < 3 {
					return alwaysRetryable(n)
				}
				return nil
			},
			wantAttempts: [2]int{3, 3},
			wantGaps:     []time.Duration{5 * time.Second, 10 * time.Second},
		},
		{
			name: "rejected for good: one attempt, then marked failed",
			in:   DeliveryInput{DeliveryID: "whd_3", OrgID: "org_01"},
			outcome: func(int) error {
				return temporal.NewNonRetryableApplicationError("receiver answered 410", ErrorTypeDeliveryRejected, nil)
			},
			wantAttempts: [2]int{1, 1},
			wantMarked:   true,
		},
		{
			name: "rejected type is final even when raised as retryable",
			in:   DeliveryInput{DeliveryID: "whd_4", OrgID: "org_01"},
			outcome: func(int) error {
				return temporal.NewApplicationError("receiver answered 404", ErrorTypeDeliveryRejected)
			},
			wantAttempts: [2]int{1, 1},
			wantMarked:   true,
		},
		{
			name:         "test overrides shorten the schedule",
			in:           DeliveryInput{DeliveryID: "whd_6", InitialInterval: time.Second, MaximumInterval: 2 * time.Second, ScheduleToClose: 10 * time.Second},
			outcome:      alwaysRetryable,
			wantAttempts: [2]int{6, 7},
			wantMarked:   true,
			wantGaps:     []time.Duration{time.Second, 2 * time.Second, 2 * time.Second},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeDelivery{outcome: tc.outcome}
			env := newDeliveryEnv(t, f)
			env.ExecuteWorkflow(DeliveryWorkflowName, tc.in)
			require.True(t, env.IsWorkflowCompleted())
			err := env.GetWorkflowError()
			n := len(f.attempts)
			require.GreaterOrEqual(t, n, tc.wantAttempts[0], "attempts")
			require.LessOrEqual(t, n, tc.wantAttempts[1], "attempts")
			for i, want := range tc.wantGaps {
				require.Equal(t, want, f.attempts[i+1].Sub(f.attempts[i]), "wait before attempt %d", i+2)
			}
			if !tc.wantMarked {
				require.NoError(t, err)
				require.Empty(t, f.marked)
				return
			}
			require.Equal(t, []string{tc.in.DeliveryID}, f.marked, "marked failed exactly once")
			var appErr *temporal.ApplicationError
			require.ErrorAs(t, err, &appErr)
			require.Equal(t, ErrorTypeDeliveryFailed, appErr.Type())
		})
	}
}

// TestDeliveryRetryPolicy pins the production schedule, which the test environment cannot
// run in full (it caps unlimited retries at ten attempts): 5 s doubling up to 1 h between
// attempts for 24 h, rejections never retried.
func TestDeliveryRetryPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        DeliveryInput
		wantFirst time.Duration
		wantMax   time.Duration
		wantTotal time.Duration
	}{
		{name: "defaults", in: DeliveryInput{DeliveryID: "whd_1"}, wantFirst: 5 * time.Second, wantMax: time.Hour, wantTotal: 24 * time.Hour},
		{name: "overrides", in: DeliveryInput{DeliveryID: "whd_1", InitialInterval: time.Second, MaximumInterval: time.Minute, ScheduleToClose: time.Hour},
			wantFirst: time.Second, wantMax: time.Minute, wantTotal: time.Hour},
		{name: "initial interval above the default maximum raises the maximum", in: DeliveryInput{DeliveryID: "whd_1", InitialInterval: 2 * time.Hour},
			wantFirst: 2 * time.Hour, wantMax: 2 * time.Hour, wantTotal: 24 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, total := tc.in.retryPolicy()
			require.Equal(t, tc.wantFirst, p.InitialInterval)
			require.Equal(t, tc.wantMax, p.MaximumInterval)
			require.Equal(t, tc.wantTotal, total)
			require.Equal(t, 2.0, p.BackoffCoefficient)
			require.Zero(t, p.MaximumAttempts, "bounded by time, not attempts")
			require.Contains(t, p.NonRetryableErrorTypes, ErrorTypeDeliveryRejected)
			require.Contains(t, p.NonRetryableErrorTypes, ErrorTypeNotFound)
			require.NotContains(t, p.NonRetryableErrorTypes, ErrorTypeDeliveryRetryable)
		})
	}
}

func TestDeliveryWorkflowRefusesInvalidInput(t *testing.T) {
	t.Parallel()
	f := &fakeDelivery{outcome: func(int) error { return nil }}
	env := newDeliveryEnv(t, f)
	env.ExecuteWorkflow(DeliveryWorkflowName, DeliveryInput{})
	require.True(t, env.IsWorkflowCompleted())
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, env.GetWorkflowError(), &appErr)
	require.Equal(t, ErrorTypeValidation, appErr.Type())
	require.Empty(t, f.attempts)
	require.Empty(t, f.marked)
}

func TestDeliveryInputValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      DeliveryInput
		wantErr string
	}{
		{name: "defaults", in: DeliveryInput{DeliveryID: "whd_1"}},
		{name: "all overrides", in: DeliveryInput{DeliveryID: "whd_1", OrgID: "org_1", InitialInterval: time.Second, MaximumInterval: time.Minute, ScheduleToClose: time.Hour}},
		{name: "24 h is the longest schedule", in: DeliveryInput{DeliveryID: "whd_1", ScheduleToClose: DeliveryScheduleToClose}},
		{name: "missing id", in: DeliveryInput{}, wantErr: "delivery id is required"},
		{name: "overlong id", in: DeliveryInput{DeliveryID: strings.Repeat("d", MaxIDRunes+1)}, wantErr: "delivery id has 201 characters"},
		{name: "negative interval", in: DeliveryInput{DeliveryID: "whd_1", InitialInterval: -time.Second}, wantErr: "must not be negative"},
		{name: "initial above maximum", in: DeliveryInput{DeliveryID: "whd_1", InitialInterval: time.Minute, MaximumInterval: time.Second}, wantErr: "exceeds maximum interval"},
		{name: "schedule above 24 h", in: DeliveryInput{DeliveryID: "whd_1", ScheduleToClose: DeliveryScheduleToClose + time.Second}, wantErr: "schedule-to-close"},
		{name: "schedule under a second", in: DeliveryInput{DeliveryID: "whd_1", ScheduleToClose: time.Millisecond}, wantErr: "shorter than a second"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.in.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

// TestDeliveryReplay replays a delivery history recorded on a real server against the
// current code: a receiver answering 503 until it came back up, so the one activity
// needed several attempts (worker's TestWebhookReceiverDownThenUpIsDeliveredOnce writes
// it with OAKALLOW_RECORD=1). Re-record after a versioned change to DeliveryWorkflow.
func TestDeliveryReplay(t *testing.T) {
	t.Parallel()
	const file = "testdata/delivery_retried.json"
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	hist, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	require.NoError(t, err)
	var attempts int32
	var completed bool
	for _, ev := range hist.GetEvents() {
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil {
			attempts = a.GetAttempt()
		}
		completed = completed || ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
	}
	require.Greater(t, attempts, int32(1), "the history covers a retried delivery")
	require.True(t, completed)

	replayer := worker.NewWorkflowReplayer()
	replayer.RegisterWorkflowWithOptions(DeliveryWorkflow, workflow.RegisterOptions{Name: DeliveryWorkflowName})
	require.NoError(t, replayer.ReplayWorkflowHistory(quietLogger(), hist))

	// And it can fail: a workflow that skips straight to marking the delivery failed
	// does not replay this history.
	broken := func(ctx workflow.Context, in DeliveryInput) error {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
		return workflow.ExecuteActivity(ctx, ActivityMarkDeliveryFailed, MarkDeliveryFailedInput{DeliveryID: in.DeliveryID}).Get(ctx, nil)
	}
	replayer = worker.NewWorkflowReplayer()
	replayer.RegisterWorkflowWithOptions(broken, workflow.RegisterOptions{Name: DeliveryWorkflowName})
	require.ErrorContains(t, replayer.ReplayWorkflowHistory(quietLogger(), hist), "TMPRL1100")
}

// TestDeliveryDataCarriesNoCustomerData pins the fields of everything the delivery
// workflow puts into history: ids and retry settings only. The payload, the target and
// its secrets stay in PostgreSQL.
func TestDeliveryDataCarriesNoCustomerData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		value any
		want  []string
	}{
		{name: "DeliveryInput", value: DeliveryInput{}, want: []string{
			"delivery_id", "org_id", "initial_interval", "maximum_interval", "schedule_to_close"}},
		{name: "DeliverNotificationInput", value: DeliverNotificationInput{}, want: []string{"delivery_id"}},
		{name: "MarkDeliveryFailedInput", value: MarkDeliveryFailedInput{}, want: []string{"delivery_id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			typ := reflect.TypeOf(tc.value)
			var got []string
			for i := range typ.NumField() {
				name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
				got = append(got, name)
			}
			require.Equal(t, tc.want, got)
		})
	}
}
