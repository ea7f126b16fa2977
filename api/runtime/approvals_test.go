package runtime

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"oakallow/worker"
)

// TestStartRecoveryWaitsForTheAPI: the worker's start reconciler takes an approval
// only once RequestApproval can no longer be starting or withdrawing it, so it never
// races a start under way (were it to, both starts name the same workflow and input).
func TestStartRecoveryWaitsForTheAPI(t *testing.T) {
	t.Parallel()
	// After its commit, RequestApproval starts the workflow within the insert's deadline
	// (startTimeout+5 s), describes it on a fresh startTimeout, then withdraws the row on
	// abortTimeout.
	longest := startTimeout + 5*time.Second + startTimeout + abortTimeout
	require.Less(t, longest, worker.StartRecoveryAfter)
}
