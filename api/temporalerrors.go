package api

import (
	"errors"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"
)

// acceptedUpdateCompletedWorkflow is the type of the failure the Temporal server gives an
// Update it had accepted when the workflow closed before the Update completed (a run
// terminated mid-decision, for instance).
const acceptedUpdateCompletedWorkflow = "AcceptedUpdateCompletedWorkflow"

// workflowClosed reports, by the errors' types and never their text, whether an Update
// failed because its workflow has closed: the server refuses an Update to a closed run
// with NotFound ("workflow execution already completed", or an Update aborted by the
// closing workflow), and fails one it had accepted with acceptedUpdateCompletedWorkflow.
func workflowClosed(err error) bool {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return true
	}
	var ae *temporal.ApplicationError
	return errors.As(err, &ae) && ae.Type() == acceptedUpdateCompletedWorkflow
}
