package workflows

import (
	"errors"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Account deletion (SPEC §8). The API revokes the person's sessions,
// passkeys, recovery codes and keys at once and starts this workflow; it
// waits out the grace period on a durable timer and then purges the
// personal data. Renaming these strings breaks running deletions.
const (
	// AccountDeletionWorkflowName is the workflow type of [AccountDeletionWorkflow]; it
	// runs on [TaskQueue].
	AccountDeletionWorkflowName = "AccountDeletionWorkflow"

	// ActivityPurgeAccount replaces a deleted person's personal data (e-mail, display
	// name, user handle; and what still holds the address) by a stable pseudonym, and
	// audits it. Signature:
	//
	//	func(ctx context.Context, in PurgeAccountInput) (PurgeAccountResult, error)
	//
	// Idempotent: a person already purged is left as is. A person who is not deleted
	// (the deletion's transaction never committed) is not touched.
	ActivityPurgeAccount = "PurgeAccount"

	// AccountPurgeDelay is how long personal data is kept after a deletion request.
	AccountPurgeDelay = 30 * 24 * time.Hour

	// PurgeStartToClose bounds one attempt of PurgeAccount.
	PurgeStartToClose = time.Minute
)

// AccountDeletionInput starts an [AccountDeletionWorkflow]: the person's id and when
// the purge is due. No personal data enters history.
type AccountDeletionInput struct {
	// UserID is the deleted person.
	UserID string `json:"user_id"`
	// PurgeAt is when the personal data is purged (the request plus AccountPurgeDelay).
	PurgeAt time.Time `json:"purge_at"`
}

// Validate reports the first problem with in, or nil.
func (in AccountDeletionInput) Validate() error {
	if in.UserID == "" {
		return errors.New("user id is required")
	}
	if err := checkText("user id", in.UserID, MaxIDRunes); err != nil {
		return err
	}
	if in.PurgeAt.IsZero() {
		return errors.New("purge time is required")
	}
	return nil
}

// PurgeAccountInput is the input of [ActivityPurgeAccount].
type PurgeAccountInput struct {
	UserID string `json:"user_id"`
}

// PurgeAccountResult tells what [ActivityPurgeAccount] found.
type PurgeAccountResult struct {
	// Purged: the personal data is gone (now or by an earlier attempt).
	Purged bool `json:"purged"`
}

// AccountDeletionWorkflowID is the workflow id of a person's deletion.
func AccountDeletionWorkflowID(userID string) string { return "account-deletion-" + userID }

// AccountDeletionStartWorkflowOptions starts the deletion of userID: a second request
// while one runs attaches to it; one after a run that ended (the person was not
// deleted after all) starts anew.
func AccountDeletionStartWorkflowOptions(userID string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       AccountDeletionWorkflowID(userID),
		TaskQueue:                TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}
}

// AccountDeletionWorkflow waits until in.PurgeAt on a durable timer (a worker restart
// or a month of downtime changes nothing: the timer lives in Temporal) and then runs
// [ActivityPurgeAccount], retried until PostgreSQL takes it. Deletions run for 30
// days: a change to the commands it issues must be guarded with workflow.GetVersion,
// and TestReplay replays the recorded testdata/account_deletion.json against it.
func AccountDeletionWorkflow(ctx workflow.Context, in AccountDeletionInput) (PurgeAccountResult, error) {
	if err := in.Validate(); err != nil {
		return PurgeAccountResult{}, temporal.NewNonRetryableApplicationError(
			"invalid account deletion input: "+err.Error(), ErrorTypeValidation, nil)
	}
	if wait := in.PurgeAt.Sub(workflow.Now(ctx)); wait > 0 {
		if err := workflow.Sleep(ctx, wait); err != nil {
			return PurgeAccountResult{}, err
		}
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		ActivityID:          "purge",
		Summary:             "purge " + in.UserID,
		StartToCloseTimeout: PurgeStartToClose,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        10 * time.Minute,
			NonRetryableErrorTypes: nonRetryable,
		},
	})
	var res PurgeAccountResult
	err := workflow.ExecuteActivity(actx, ActivityPurgeAccount, PurgeAccountInput{UserID: in.UserID}).Get(actx, &res)
	if err == nil {
		workflow.GetLogger(ctx).Info("Account purge done", "user_id", in.UserID, "purged", res.Purged)
	}
	return res, err
}
