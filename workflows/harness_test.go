package workflows

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// t0 is the mock clock's start and the approvals' CreatedAt.
var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

var (
	alice    = Decider{Kind: DeciderUser, ID: "usr_alice", Display: "Alice"}
	bob      = Decider{Kind: DeciderUser, ID: "usr_bob", Display: "Bob"}
	mgmtKey  = Decider{Kind: DeciderManagementKey, ID: "key_01", Display: "oak_live_3f2a"}
	aliceKey = Decider{Kind: DeciderManagementKey, ID: "usr_alice", Display: "key with a colliding id"}
)

func testInput(twoLevels bool) ApprovalInput {
	return ApprovalInput{
		ApprovalID:   "apr_01",
		Reference:    "REF-ABCDEFGH-JKMN",
		OrgID:        "org_01",
		ToolName:     "delete_customer",
		TenantID:     "ten_01",
		TwoLevels:    twoLevels,
		LevelTimeout: time.Hour,
		CreatedAt:    t0,
	}
}

func decideReq(level int, d DecisionValue, who Decider, requestID string) DecideRequest {
	return DecideRequest{Level: level, Decision: d, Decider: who, Note: "looked at it", RequestID: requestID}
}

// fakeActivities is the test double for package activities: it records every call, in
// order, and answers like the real implementations would.
type fakeActivities struct {
	mu        sync.Mutex
	calls     []any // ProjectApprovalInput, EnqueueNotificationsInput or MintApprovalTokenInput
	projectFn func(ProjectApprovalInput) error
	notifyErr error
	// seq is every activity's key and every search attribute upsert ("upsert status=…
	// level=…", recorded by the harness), in the order the workflow issued them.
	seq []string
}

func (f *fakeActivities) record(in any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, in)
	switch in := in.(type) {
	case ProjectApprovalInput:
		f.seq = append(f.seq, in.Key)
	case EnqueueNotificationsInput:
		f.seq = append(f.seq, in.Key)
	case MintApprovalTokenInput:
		f.seq = append(f.seq, in.Key)
	}
}

// mark adds a non-activity step to seq.
func (f *fakeActivities) mark(step string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq = append(f.seq, step)
}

// sequence returns seq.
func (f *fakeActivities) sequence() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string{}, f.seq...)
}

func (f *fakeActivities) ProjectApproval(_ context.Context, in ProjectApprovalInput) error {
	f.record(in)
	if f.projectFn != nil {
		return f.projectFn(in)
	}
	return nil
}

func (f *fakeActivities) EnqueueNotifications(_ context.Context, in EnqueueNotificationsInput) (EnqueueNotificationsResult, error) {
	f.record(in)
	if f.notifyErr != nil {
		return EnqueueNotificationsResult{}, f.notifyErr
	}
	return EnqueueNotificationsResult{Enqueued: 2}, nil
}

func (f *fakeActivities) MintApprovalToken(_ context.Context, in MintApprovalTokenInput) (MintApprovalTokenResult, error) {
	f.record(in)
	return MintApprovalTokenResult{TokenID: "tok_" + in.ApprovalID, TokenHash: "9f86d081884c7d65"}, nil
}

// keys lists the activity keys called, in order.
func (f *fakeActivities) keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.calls))
	for _, c := range f.calls {
		switch in := c.(type) {
		case ProjectApprovalInput:
			out = append(out, in.Key)
		case EnqueueNotificationsInput:
			out = append(out, in.Key)
		case MintApprovalTokenInput:
			out = append(out, in.Key)
		}
	}
	return out
}

func (f *fakeActivities) mints() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if _, ok := c.(MintApprovalTokenInput); ok {
			n++
		}
	}
	return n
}

// testWriter sends log lines to the test's log, shown only when the test fails.
// The SDK's test environment can still log from a local activity's goroutine
// after the test has returned (a late "completed after activity deadline"),
// and testing panics on a Log after completion, so lines arriving once the
// test's cleanup has run are dropped.
type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func newTestWriter(t *testing.T) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// updateOutcome is what the caller of one decide Update saw.
type updateOutcome struct {
	accepted  bool
	rejected  error
	completed bool
	result    DecideResult
	err       error
}

// rejection returns the Reject* reason, "" if the update was not rejected.
func (o *updateOutcome) rejection(t *testing.T) string {
	t.Helper()
	if o.rejected == nil {
		return ""
	}
	reason, ok := RejectionReason(o.rejected)
	require.True(t, ok, "rejection without a reason: %v", o.rejected)
	return reason
}

type saUpsert struct {
	status string
	level  int64
	org    string
}

type harness struct {
	t       *testing.T
	env     *testsuite.TestWorkflowEnvironment
	acts    *fakeActivities
	mu      sync.Mutex
	upserts []saUpsert
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessFor(t, ApprovalWorkflow)
}

// newFlowHarness is a harness whose runs take the branches of flow, as runs started on
// that flow do when they are replayed.
func newFlowHarness(t *testing.T, flow workflow.Version) *harness {
	t.Helper()
	return newHarnessFor(t, func(ctx workflow.Context, in ApprovalInput) (State, error) {
		return runApproval(ctx, in, func(workflow.Context) workflow.Version { return flow })
	})
}

func newHarnessFor(t *testing.T, wf func(workflow.Context, ApprovalInput) (State, error)) *harness {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelWarn}))))
	env := suite.NewTestWorkflowEnvironment()
	env.SetStartTime(t0)
	env.RegisterWorkflowWithOptions(wf, workflow.RegisterOptions{Name: ApprovalWorkflowName})
	acts := &fakeActivities{}
	env.RegisterActivityWithOptions(acts.ProjectApproval, activity.RegisterOptions{Name: ActivityProjectApproval})
	env.RegisterActivityWithOptions(acts.EnqueueNotifications, activity.RegisterOptions{Name: ActivityEnqueueNotifications})
	env.RegisterActivityWithOptions(acts.MintApprovalToken, activity.RegisterOptions{Name: ActivityMintApprovalToken})
	h := &harness{t: t, env: env, acts: acts}
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa, ok := args.Get(0).(temporal.SearchAttributes)
		require.True(t, ok)
		var u saUpsert
		u.status, _ = sa.GetKeyword(SearchAttributeStatus)
		u.level, _ = sa.GetInt64(SearchAttributeLevel)
		u.org, _ = sa.GetKeyword(SearchAttributeOrg)
		h.mu.Lock()
		h.upserts = append(h.upserts, u)
		h.mu.Unlock()
		acts.mark(fmt.Sprintf("upsert status=%s level=%d", u.status, u.level))
	}).Return(nil)
	return h
}

// decideAt sends a decide Update after delay of mock time, with the RequestID as update id
// (as the API does).
func (h *harness) decideAt(delay time.Duration, req DecideRequest) *updateOutcome {
	return h.decideWithUpdateID(delay, req.RequestID, req)
}

func (h *harness) decideWithUpdateID(delay time.Duration, updateID string, req DecideRequest) *updateOutcome {
	o := &updateOutcome{}
	h.env.RegisterDelayedCallback(func() {
		h.env.UpdateWorkflow(UpdateDecide, updateID, &testsuite.TestUpdateCallback{
			OnAccept: func() { o.accepted = true },
			OnReject: func(err error) { o.rejected = err },
			OnComplete: func(v any, err error) {
				o.completed = true
				o.err = err
				if r, ok := v.(DecideResult); ok {
					o.result = r
				} else if v != nil {
					o.err = fmt.Errorf("unexpected update result type %T", v)
				}
			},
		}, req)
	}, delay)
	return o
}

// queryAt queries the state after delay of mock time.
func (h *harness) queryAt(delay time.Duration) *State {
	st := &State{}
	h.env.RegisterDelayedCallback(func() {
		v, err := h.env.QueryWorkflow(QueryState)
		require.NoError(h.t, err)
		require.NoError(h.t, v.Get(st))
	}, delay)
	return st
}

// run executes the workflow to completion and returns its result.
func (h *harness) run(in ApprovalInput) (State, error) {
	h.env.ExecuteWorkflow(ApprovalWorkflowName, in)
	require.True(h.t, h.env.IsWorkflowCompleted())
	if err := h.env.GetWorkflowError(); err != nil {
		return State{}, err
	}
	var st State
	require.NoError(h.t, h.env.GetWorkflowResult(&st))
	return st, nil
}

func (h *harness) saUpserts() []saUpsert {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]saUpsert{}, h.upserts...)
}
