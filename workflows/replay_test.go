package workflows

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestReplay replays histories recorded from a real server (record_test.go) against the
// current workflow code: a change in the commands the workflow issues that is not guarded
// by workflow.GetVersion fails here, before it can break running approvals.
func TestReplay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		file string
		// wantEvents are event counts the history must contain, so the file proves it
		// covers the path it is named for.
		wantEvents map[enumspb.EventType]int
		// lastUpsertAfterActivity: the final decision's search attribute upsert comes
		// after its projection activity completed (flowV4), in the completing task.
		lastUpsertAfterActivity bool
		// deletion: the history is an AccountDeletionWorkflow's (otherwise an
		// ApprovalWorkflow's).
		deletion bool
		// unversioned: a run started on flowV5 or later records no version marker and no
		// TemporalChangeVersion upsert.
		unversioned bool
	}{
		{
			name: "flowV5: approve level 1 then level 2, no version marker",
			file: "testdata/approval_two_level.json",
			wantEvents: map[enumspb.EventType]int{
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: 2,
				enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:            2, // the two decisions' projections
				enumspb.EVENT_TYPE_MARKER_RECORDED:                    6, // 6 local activities
				enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:  2, // escalated and approved; none at creation
				enumspb.EVENT_TYPE_TIMER_STARTED:                      2,
				enumspb.EVENT_TYPE_TIMER_CANCELED:                     2,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:       1,
			},
			lastUpsertAfterActivity: true,
			unversioned:             true,
		},
		{
			name: "flowV5: deny at level 1",
			file: "testdata/approval_deny_l1.json",
			wantEvents: map[enumspb.EventType]int{
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: 1,
				enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:            1,
				enumspb.EVENT_TYPE_TIMER_CANCELED:                     1,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:       1,
			},
			lastUpsertAfterActivity: true,
			unversioned:             true,
		},
		{
			name: "flowV5: approve level 1, deny level 2",
			file: "testdata/approval_deny_l2.json",
			wantEvents: map[enumspb.EventType]int{
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: 2,
				enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:            2,
				enumspb.EVENT_TYPE_TIMER_CANCELED:                     2,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:       1,
			},
			unversioned: true,
		},
		{
			name: "flowV5: level 1 expires",
			file: "testdata/approval_expired_l1.json",
			wantEvents: map[enumspb.EventType]int{
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: 0,
				enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:            0,
				enumspb.EVENT_TYPE_TIMER_FIRED:                        1,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:       1,
			},
			unversioned: true,
		},
		{
			name: "flowV5: escalated, then level 2 expires",
			file: "testdata/approval_expired_l2.json",
			wantEvents: map[enumspb.EventType]int{
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: 1,
				enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:            1,
				enumspb.EVENT_TYPE_TIMER_CANCELED:                     1,
				enumspb.EVENT_TYPE_TIMER_FIRED:                        1,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:       1,
			},
			unversioned: true,
		},
		{
			name: "flowV5: cancelled while pending",
			file: "testdata/approval_cancelled.json",
			wantEvents: map[enumspb.EventType]int{
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED: 1,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:         1,
			},
			unversioned: true,
		},
		{
			name: "flowV4: approve level 1 then level 2, the flow in a version marker",
			file: "testdata/approval_two_level_v4.json",
			wantEvents: map[enumspb.EventType]int{
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: 2,
				enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:            2, // the two decisions' projections
				enumspb.EVENT_TYPE_MARKER_RECORDED:                    7, // the version and 6 local activities
				enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:  3, // GetVersion's, then escalated and approved; none at creation
				enumspb.EVENT_TYPE_TIMER_STARTED:                      2,
				enumspb.EVENT_TYPE_TIMER_CANCELED:                     2,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:       1,
			},
			lastUpsertAfterActivity: true,
		},
		{
			name: "flowV3: approve level 1 then level 2, search attributes upserted with each acceptance",
			file: "testdata/approval_two_level_v3.json",
			wantEvents: map[enumspb.EventType]int{
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: 2,
				enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:            2, // the two decisions' projections
				enumspb.EVENT_TYPE_MARKER_RECORDED:                    7, // the version and 6 local activities
				enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:  3,
				enumspb.EVENT_TYPE_TIMER_STARTED:                      2,
				enumspb.EVENT_TYPE_TIMER_CANCELED:                     2,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:       1,
			},
		},
		{
			name: "flowV2: approve level 1 then level 2 with local activities",
			file: "testdata/approval_two_level_v2.json",
			wantEvents: map[enumspb.EventType]int{
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: 2,
				enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:            0,
				enumspb.EVENT_TYPE_MARKER_RECORDED:                    9, // the version and 8 local activities
				enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:  3, // GetVersion's, then escalated and approved; none at creation
				enumspb.EVENT_TYPE_TIMER_STARTED:                      2,
				enumspb.EVENT_TYPE_TIMER_CANCELED:                     2,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:       1,
			},
		},
		{
			name: "flowV1: approve level 1 then level 2 with regular activities",
			file: "testdata/approval_two_level_v1.json",
			wantEvents: map[enumspb.EventType]int{
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: 2,
				enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:            8,
				enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:  4, // GetVersion's and one per transition
				enumspb.EVENT_TYPE_TIMER_STARTED:                      2,
				enumspb.EVENT_TYPE_TIMER_CANCELED:                     2,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:       1,
			},
		},
		{
			name: "account deletion: the timer until the purge time, then the purge (retried once)",
			file: "testdata/account_deletion.json",
			wantEvents: map[enumspb.EventType]int{
				enumspb.EVENT_TYPE_TIMER_STARTED:                      1,
				enumspb.EVENT_TYPE_TIMER_FIRED:                        1,
				enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:            1,
				enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:            1,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:       1,
				enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: 0,
			},
			deletion: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := os.Open(tc.file)
			require.NoError(t, err)
			defer f.Close()
			hist, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
			require.NoError(t, err)
			counts := map[enumspb.EventType]int{}
			for _, ev := range hist.GetEvents() {
				counts[ev.GetEventType()]++
			}
			for typ, n := range tc.wantEvents {
				require.Equal(t, n, counts[typ], "%s events in %s", typ, tc.file)
			}
			if tc.unversioned {
				for _, ev := range hist.GetEvents() {
					if m := ev.GetMarkerRecordedEventAttributes(); m != nil {
						require.NotEqual(t, "Version", m.GetMarkerName(), "event %d of %s is a version marker", ev.GetEventId(), tc.file)
					}
					if u := ev.GetUpsertWorkflowSearchAttributesEventAttributes(); u != nil {
						require.NotContains(t, u.GetSearchAttributes().GetIndexedFields(), "TemporalChangeVersion",
							"event %d of %s upserts the change version", ev.GetEventId(), tc.file)
					}
				}
			}
			if tc.lastUpsertAfterActivity {
				lastUpsert, lastActivity := 0, 0
				for i, ev := range hist.GetEvents() {
					switch ev.GetEventType() {
					case enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
						lastUpsert = i
					case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
						lastActivity = i
					}
				}
				require.Greater(t, lastUpsert, lastActivity, "the final upsert follows the decision's projection in %s", tc.file)
			}

			replayer := worker.NewWorkflowReplayer()
			if tc.deletion {
				replayer.RegisterWorkflowWithOptions(AccountDeletionWorkflow, workflow.RegisterOptions{Name: AccountDeletionWorkflowName})
			} else {
				replayer.RegisterWorkflowWithOptions(ApprovalWorkflow, workflow.RegisterOptions{Name: ApprovalWorkflowName})
			}
			require.NoError(t, replayer.ReplayWorkflowHistory(quietLogger(), hist))
		})
	}
}

// TestReplayRejectsChangedAccountDeletion proves the account deletion case of TestReplay
// can fail: a deletion that purges at once, without its timer, does not replay the
// recorded history.
func TestReplayRejectsChangedAccountDeletion(t *testing.T) {
	t.Parallel()
	purgeAtOnce := func(ctx workflow.Context, in AccountDeletionInput) (PurgeAccountResult, error) {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{ActivityID: "purge", StartToCloseTimeout: PurgeStartToClose})
		var res PurgeAccountResult
		err := workflow.ExecuteActivity(ctx, ActivityPurgeAccount, PurgeAccountInput{UserID: in.UserID}).Get(ctx, &res)
		return res, err
	}
	replayer := worker.NewWorkflowReplayer()
	replayer.RegisterWorkflowWithOptions(purgeAtOnce, workflow.RegisterOptions{Name: AccountDeletionWorkflowName})
	err := replayer.ReplayWorkflowHistoryFromJSONFile(quietLogger(), "testdata/account_deletion.json")
	require.Error(t, err)
	require.Contains(t, err.Error(), "TMPRL1100", "a non-determinism error")
}

// TestReplayRejectsChangedCommandOrder proves TestReplay can fail: a workflow that notifies
// before projecting, registered under the same name, does not replay the recorded history.
func TestReplayRejectsChangedCommandOrder(t *testing.T) {
	t.Parallel()
	reordered := func(ctx workflow.Context, in ApprovalInput) (State, error) {
		_ = workflow.GetVersion(ctx, changeApprovalFlow, flowV1, flowMax)
		if err := workflow.UpsertTypedSearchAttributes(ctx, SearchAttributeStatus.ValueSet(string(StatusPending))); err != nil {
			return State{}, err
		}
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
		err := workflow.ExecuteActivity(ctx, ActivityEnqueueNotifications, EnqueueNotificationsInput{}).Get(ctx, nil)
		return State{}, err
	}
	replayer := worker.NewWorkflowReplayer()
	replayer.RegisterWorkflowWithOptions(reordered, workflow.RegisterOptions{Name: ApprovalWorkflowName})
	err := replayer.ReplayWorkflowHistoryFromJSONFile(quietLogger(), "testdata/approval_two_level_v1.json")
	require.Error(t, err)
	require.Contains(t, err.Error(), "TMPRL1100", "a non-determinism error")
}

// TestReplayOfUnversionedRunNeedsFlowV5: a worker from before flowV5, whose only way to
// choose a flow was GetVersion from flowV1 on, refuses a flowV5 run (it has no version
// marker) instead of running it on a flow of its own choosing; and the current worker
// replays it (TestReplay).
func TestReplayOfUnversionedRunNeedsFlowV5(t *testing.T) {
	t.Parallel()
	beforeV5 := func(ctx workflow.Context, in ApprovalInput) (State, error) {
		return runApproval(ctx, in, func(ctx workflow.Context) workflow.Version {
			return workflow.GetVersion(ctx, changeApprovalFlow, flowV1, flowV4)
		})
	}
	replayer := worker.NewWorkflowReplayer()
	replayer.RegisterWorkflowWithOptions(beforeV5, workflow.RegisterOptions{Name: ApprovalWorkflowName})
	err := replayer.ReplayWorkflowHistoryFromJSONFile(quietLogger(), "testdata/approval_two_level.json")
	require.ErrorContains(t, err, `removed support of version -1. for "approval-flow"`)
}

func quietLogger() log.Logger {
	return log.NewStructuredLogger(slog.New(slog.DiscardHandler))
}
