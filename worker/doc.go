// Package worker runs oakallow's Temporal worker: it registers the approval and delivery
// workflows and every activity of package activities under the names package workflows
// defines, on workflows.TaskQueue, and polls that queue until stopped.
//
// Any number of workers (processes running `oakallow worker`, or the all-in-one server)
// may poll the same queue; Temporal hands each workflow and activity task to one of them.
// Stopping a worker mid-approval loses nothing: the approval's state is in its workflow
// history, every activity is idempotent, and the next worker to poll carries on.
//
// Deliveries are the exception to "everything is in Temporal": their first attempt runs
// in the worker process, outside any workflow (see activities.Activities.EnqueueNotifications).
// Stop waits a bounded time for those attempts, and every worker periodically sweeps the
// deliveries a dead or stopped process left pending without a workflow, and starts one.
package worker
