package workflows

import (
	"errors"
	"slices"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// Names shared by the worker (which registers), the API (which starts, updates and queries)
// and operators (who find these strings in the Temporal UI). Renaming any of them breaks
// running workflows and recorded histories.
const (
	// TaskQueue is the task queue the approval workflow and its activities run on.
	TaskQueue = "oakallow-approvals"

	// ApprovalWorkflowName is the workflow type of [ApprovalWorkflow]. Register it with
	// workflow.RegisterOptions{Name: ApprovalWorkflowName} and start it by this name.
	ApprovalWorkflowName = "ApprovalWorkflow"

	// UpdateDecide is the Update that records a reviewer's decision. Argument:
	// [DecideRequest]; result: [DecideResult]. Use the request's RequestID as the Update id
	// so Temporal deduplicates retried calls; the workflow also deduplicates by RequestID.
	UpdateDecide = "decide"

	// QueryState is the Query that answers the approval's current [State].
	QueryState = "state"
)

// Activity names. The activities package implements them; the worker registers each
// implementation with activity.RegisterOptions{Name: ...}. The workflow calls them by name
// only, so workflows never imports activities.
const (
	// ActivityProjectApproval writes a transition of the approval into PostgreSQL: the
	// approval row (status, level, expires_at, token id), the decision row when there is
	// one, and the audit event. Signature:
	//
	//	func(ctx context.Context, in ProjectApprovalInput) error
	//
	// It must be idempotent on (in.RunID, in.Key): a retry, or a replayed attempt after a
	// worker crash, writes nothing new. Retried without limit (PostgreSQL being down must
	// delay an approval, not lose it) except for the non-retryable [ErrorTypeValidation],
	// [ErrorTypePermission] and [ErrorTypeNotFound], which fail the workflow.
	ActivityProjectApproval = "ProjectApproval"

	// ActivityEnqueueNotifications records the webhook deliveries and channel notifications
	// (Slack, PagerDuty, HTTPS channel) due for an approval event and starts their delivery.
	// Signature:
	//
	//	func(ctx context.Context, in EnqueueNotificationsInput) (EnqueueNotificationsResult, error)
	//
	// It must return quickly: delivery itself happens elsewhere. Once the rows are
	// recorded, the worker process makes each first attempt in the background, outside
	// Temporal, and starts a [DeliveryWorkflow] only when a retry is needed (or at once when
	// it cannot attempt: at its bound or shutting down); deliveries a dead process left
	// behind are swept into their workflows. Idempotent on (in.RunID, in.Key). The workflow retries it for at most
	// [NotifyScheduleToClose] and then carries on without it: a notification failure never
	// fails or delays an approval beyond that (polling GET /v1/approvals/{id} always works).
	ActivityEnqueueNotifications = "EnqueueNotifications"

	// ActivityMintApprovalToken mints the single-use execution token of an approved
	// approval and stores it. Signature:
	//
	//	func(ctx context.Context, in MintApprovalTokenInput) (MintApprovalTokenResult, error)
	//
	// It returns only the token id and the hex SHA-256 of the token: the token itself never
	// enters workflow history. It must be idempotent per approval (in.ApprovalID), not just
	// per (RunID, Key), so a reset or replayed workflow can never mint a second token. It
	// must refuse ([ErrorTypePermission]) to mint for an approval whose stored status is not
	// approved. Retried like [ActivityProjectApproval].
	ActivityMintApprovalToken = "MintApprovalToken"
)

// Application error types an activity returns, through
// temporal.NewNonRetryableApplicationError(msg, ErrorType..., cause), for failures that
// retrying cannot fix. They are also listed in every retry policy's NonRetryableErrorTypes,
// so a plain temporal.NewApplicationError with these types is not retried either.
const (
	// ErrorTypeValidation: the input is malformed or inconsistent with stored data.
	ErrorTypeValidation = "OakallowValidation"
	// ErrorTypePermission: the write is not allowed in the stored state (for example
	// minting a token for an approval that is not approved).
	ErrorTypePermission = "OakallowPermission"
	// ErrorTypeNotFound: the org or approval row does not exist.
	ErrorTypeNotFound = "OakallowNotFound"
	// ErrorTypeConflict: the write contradicts what PostgreSQL already holds for the same
	// run (another decision at a decided level, another final status). It means the
	// approval invariant broke; the workflow fails so that an operator sees it.
	ErrorTypeConflict = "OakallowConflict"
)

// Reasons an [UpdateDecide] call is rejected by the validator, before anything reaches
// history. The caller receives a *temporal.ApplicationError whose Type() is one of these;
// [RejectionReason] extracts it. Suggested HTTP mapping in parentheses.
const (
	// RejectInvalidRequest: the request itself is malformed (422).
	RejectInvalidRequest = "DecideInvalidRequest"
	// RejectAlreadyDecided: the approval is already approved or denied (409).
	RejectAlreadyDecided = "DecideAlreadyDecided"
	// RejectExpired: the current level's deadline has passed or the approval expired (409).
	RejectExpired = "DecideExpired"
	// RejectWrongLevel: the request names a level other than the current one (409).
	RejectWrongLevel = "DecideWrongLevel"
	// RejectSameApprover: the decider decided level 1 and now tries to decide level 2 (403).
	RejectSameApprover = "DecideSameApprover"
	// RejectRequestIDReused: the RequestID was already used for a different decision (409).
	RejectRequestIDReused = "DecideRequestIDReused"
)

var rejectionReasons = []string{
	RejectInvalidRequest, RejectAlreadyDecided, RejectExpired,
	RejectWrongLevel, RejectSameApprover, RejectRequestIDReused,
}

// RejectionReason reports which Reject* reason err carries, if it is (or wraps) the
// rejection of an [UpdateDecide] call by the workflow's validator.
func RejectionReason(err error) (string, bool) {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return "", false
	}
	if slices.Contains(rejectionReasons, appErr.Type()) {
		return appErr.Type(), true
	}
	return "", false
}

// RejectionState is the approval's state carried by a rejection for an ended approval, a
// wrong level or a passed deadline: the decisions that won. ok is false when err carries
// none.
func RejectionState(err error) (State, bool) {
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || !ae.HasDetails() {
		return State{}, false
	}
	var st State
	if ae.Details(&st) != nil || st.Status == "" {
		return State{}, false
	}
	return st, true
}

// Search attribute names. Operators filter on them in the Temporal UI and CLI, for example
// `temporal workflow list --query "OakallowOrg = 'org_…' AND OakallowStatus = 'pending'"`.
const (
	SearchAttributeNameOrg    = "OakallowOrg"
	SearchAttributeNameTool   = "OakallowTool"
	SearchAttributeNameTenant = "OakallowTenant"
	SearchAttributeNameStatus = "OakallowStatus"
	SearchAttributeNameLevel  = "OakallowLevel"
)

// Typed search attribute keys. The starter sets org, tool, tenant (when there is one),
// status and level ([StartSearchAttributes]); the workflow upserts all of them when it
// projects creation, and status and level at every later transition.
var (
	// SearchAttributeOrg is the org's public id (org_…).
	SearchAttributeOrg = temporal.NewSearchAttributeKeyKeyword(SearchAttributeNameOrg)
	// SearchAttributeTool is the tool name.
	SearchAttributeTool = temporal.NewSearchAttributeKeyKeyword(SearchAttributeNameTool)
	// SearchAttributeTenant is the tenant id; unset when the approval has no tenant.
	SearchAttributeTenant = temporal.NewSearchAttributeKeyKeyword(SearchAttributeNameTenant)
	// SearchAttributeStatus is pending, approved, denied or expired.
	SearchAttributeStatus = temporal.NewSearchAttributeKeyKeyword(SearchAttributeNameStatus)
	// SearchAttributeLevel is the current approval level, 1 or 2.
	SearchAttributeLevel = temporal.NewSearchAttributeKeyInt64(SearchAttributeNameLevel)
)

// SearchAttributeTypes returns the custom search attributes a namespace must have before
// the first approval starts (operator service AddSearchAttributes, or the dev server's
// configuration). Upserting an unregistered attribute fails the workflow task.
func SearchAttributeTypes() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		SearchAttributeNameOrg:    enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SearchAttributeNameTool:   enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SearchAttributeNameTenant: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SearchAttributeNameStatus: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SearchAttributeNameLevel:  enumspb.INDEXED_VALUE_TYPE_INT,
	}
}

// StartSearchAttributes builds the search attributes to start the workflow with, so the
// approval is findable by org, tool, tenant, status and level from the first moment.
func StartSearchAttributes(in ApprovalInput) temporal.SearchAttributes {
	updates := []temporal.SearchAttributeUpdate{
		SearchAttributeOrg.ValueSet(in.OrgID),
		SearchAttributeTool.ValueSet(in.ToolName),
		SearchAttributeStatus.ValueSet(string(StatusPending)),
		SearchAttributeLevel.ValueSet(1),
	}
	if in.TenantID != "" {
		updates = append(updates, SearchAttributeTenant.ValueSet(in.TenantID))
	}
	return temporal.NewSearchAttributes(updates...)
}

// StartWorkflowOptions returns the options to start the approval workflow for in with
// client.ExecuteWorkflow(ctx, opts, ApprovalWorkflowName, in):
//   - the workflow id is the approval's REF, so operators find it by REF;
//   - a REF is never reused (RejectDuplicate), and starting it again while it runs attaches
//     to the running workflow (UseExisting), so a retried create is harmless;
//   - search attributes from [StartSearchAttributes].
//
// No execution timeout is set: the workflow ends itself at its deadline and projects that,
// whereas a Temporal timeout would end it without telling PostgreSQL.
func StartWorkflowOptions(in ApprovalInput) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       in.Reference,
		TaskQueue:                TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes:    StartSearchAttributes(in),
	}
}
