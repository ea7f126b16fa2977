package workflows

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Limits enforced on inputs. They keep workflow history small and the data in it bounded.
const (
	// MinLevelTimeout and MaxLevelTimeout bound ApprovalInput.LevelTimeout (SPEC §1: any
	// timeout is clamped to 60 s … 7 d; the API clamps, the workflow refuses anything else).
	MinLevelTimeout = 60 * time.Second
	MaxLevelTimeout = 7 * 24 * time.Hour
	// MaxNoteRunes is the longest decision note, in characters (Unicode code points).
	MaxNoteRunes = 1000
	// MaxIDRunes bounds every id and the RequestID.
	MaxIDRunes = 200
	// MaxDisplayRunes bounds Decider.Display.
	MaxDisplayRunes = 200
)

// Status is the lifecycle state of an approval.
type Status string

// The approval statuses. Everything but StatusPending is final.
const (
	StatusPending  Status = "pending"
	StatusApproved Status = "approved"
	StatusDenied   Status = "denied"
	StatusExpired  Status = "expired"
)

// DecisionValue is what a reviewer decided.
type DecisionValue string

// The two decisions a reviewer can make.
const (
	Approve DecisionValue = "approve"
	Deny    DecisionValue = "deny"
)

// DeciderKind says what kind of identity made a decision.
type DeciderKind string

// The identities that may decide. Standard keys and agent identities never decide; the API
// refuses them before the workflow is asked.
const (
	DeciderUser          DeciderKind = "user"
	DeciderManagementKey DeciderKind = "management_key"
)

// Event names a transition of an approval. The first four are also the webhook event types
// (SPEC §4) passed to EnqueueNotifications.
type Event string

// The approval events.
const (
	EventCreated   Event = "approval.created"
	EventEscalated Event = "approval.escalated"
	EventDecided   Event = "approval.decided"
	EventExpired   Event = "approval.expired"
	// EventTokenMinted is projected (ProjectApproval) after MintApprovalToken so the
	// approval row carries the token id. It is not a webhook event and never notified.
	EventTokenMinted Event = "approval.token_minted"
)

// ApprovalInput starts an [ApprovalWorkflow]. It carries ids, the level plan and the
// deadline only: never parameters, reasoning, context or other customer data, because
// operators read workflow inputs in the Temporal UI. Activities load anything else from
// PostgreSQL by ApprovalID.
type ApprovalInput struct {
	// ApprovalID is the approval's primary key in PostgreSQL.
	ApprovalID string `json:"approval_id"`
	// Reference is the approval's REF (REF-XXXXXXXX-XXXX); it is also the workflow id.
	Reference string `json:"reference"`
	// OrgID is the org's public id.
	OrgID string `json:"org_id"`
	// ToolName is the tool the approval is for.
	ToolName string `json:"tool_name"`
	// TenantID is the tenant's id, or "" when the request named no tenant.
	TenantID string `json:"tenant_id,omitempty"`
	// TwoLevels is true when the tool requires a second approval AND the team's Approval 2
	// group is non-empty (computed by the API at creation). False means one level.
	TwoLevels bool `json:"two_levels"`
	// LevelTimeout is how long each level waits for a decision, already resolved and
	// clamped by the API (request → tool override → org setting → 1 h; 60 s … 7 d).
	// Level 1 expires at CreatedAt+LevelTimeout; level 2 at escalation time+LevelTimeout.
	LevelTimeout time.Duration `json:"level_timeout"`
	// CreatedAt is when the API created the approval; level 1's deadline counts from it so
	// the workflow's expires_at equals the one the API returned to the caller.
	CreatedAt time.Time `json:"created_at"`
	// StartRecovered is set only by the worker's start reconciler, when it starts the
	// workflow of an approval whose row was committed but whose workflow never started
	// (activities.RecoverUnstartedApprovals). The creation's projection then audits
	// approval.start_recovered in its own transaction: the record of the recovery is
	// written from history, so it exists exactly when a run the reconciler created runs
	// the approval, also when the reconciler's process is lost right after the start.
	StartRecovered bool `json:"start_recovered,omitempty"`
}

// Validate reports the first problem with in, or nil. The workflow refuses (fails with a
// non-retryable [ErrorTypeValidation]) an input that does not validate; the API should call
// Validate before starting it.
func (in ApprovalInput) Validate() error {
	for _, f := range []struct{ name, value string }{
		{"approval id", in.ApprovalID},
		{"reference", in.Reference},
		{"org id", in.OrgID},
		{"tool name", in.ToolName},
	} {
		if f.value == "" {
			return fmt.Errorf("%s is required", f.name)
		}
		if err := checkText(f.name, f.value, MaxIDRunes); err != nil {
			return err
		}
	}
	if err := checkText("tenant id", in.TenantID, MaxIDRunes); err != nil {
		return err
	}
	if in.LevelTimeout < MinLevelTimeout || in.LevelTimeout > MaxLevelTimeout {
		return fmt.Errorf("level timeout %s outside %s … %s", in.LevelTimeout, MinLevelTimeout, MaxLevelTimeout)
	}
	if in.CreatedAt.IsZero() {
		return errors.New("created at is required")
	}
	return nil
}

// levels is how many levels the approval has.
func (in ApprovalInput) levels() int {
	if in.TwoLevels {
		return 2
	}
	return 1
}

// Decider is the identity that made a decision.
type Decider struct {
	// Kind is user or management_key.
	Kind DeciderKind `json:"kind"`
	// ID is the user id or the management key id. Two decisions are by the same decider
	// when Kind and ID are equal.
	ID string `json:"id"`
	// Display is a human-readable label (a name, or a key prefix) shown in the dashboard
	// and notifications. Never an e-mail address or a key.
	Display string `json:"display,omitempty"`
}

// DecideRequest is the argument of the [UpdateDecide] Update. The API has already checked
// that the decider may decide this approval at this level (approver group, passkey
// assertion, management-key setting); the workflow checks what only it knows: status,
// current level, deadline and who decided earlier levels.
type DecideRequest struct {
	// Level is the level the decider is deciding; it must equal the current level, so a
	// decision made while looking at level 1 cannot land on level 2.
	Level int `json:"level"`
	// Decision is approve or deny.
	Decision DecisionValue `json:"decision"`
	// Decider is who decides.
	Decider Decider `json:"decider"`
	// Note is an optional comment, at most MaxNoteRunes characters.
	Note string `json:"note,omitempty"`
	// RequestID identifies the request for idempotency (use it as the Update id too): a
	// repeated request with the same RequestID and the same content is answered with the
	// original result instead of being decided again. Required.
	RequestID string `json:"request_id"`
}

// Validate reports the first problem with the request's own fields, or nil. It does not
// know the approval's state; the workflow's validator runs it and then the state checks.
func (r DecideRequest) Validate() error {
	if r.Level < 1 || r.Level > 2 {
		return fmt.Errorf("level %d is not 1 or 2", r.Level)
	}
	if r.Decision != Approve && r.Decision != Deny {
		return fmt.Errorf("decision %q is not approve or deny", r.Decision)
	}
	if r.Decider.Kind != DeciderUser && r.Decider.Kind != DeciderManagementKey {
		return fmt.Errorf("decider kind %q is not user or management_key", r.Decider.Kind)
	}
	if r.Decider.ID == "" {
		return errors.New("decider id is required")
	}
	if err := checkText("decider id", r.Decider.ID, MaxIDRunes); err != nil {
		return err
	}
	if err := checkText("decider display", r.Decider.Display, MaxDisplayRunes); err != nil {
		return err
	}
	if err := checkText("note", r.Note, MaxNoteRunes); err != nil {
		return err
	}
	if r.RequestID == "" {
		return errors.New("request id is required")
	}
	return checkText("request id", r.RequestID, MaxIDRunes)
}

// checkText refuses invalid UTF-8 and values longer than maxRunes characters.
func checkText(name, value string, maxRunes int) error {
	if !utf8.ValidString(value) {
		return fmt.Errorf("%s is not valid UTF-8", name)
	}
	if n := utf8.RuneCountInString(value); n > maxRunes {
		return fmt.Errorf("%s has %d characters, more than %d", name, n, maxRunes)
	}
	return nil
}

// Decision is an accepted decision, as recorded in [State].
type Decision struct {
	// Level is the level that was decided.
	Level int `json:"level"`
	// Decision is approve or deny.
	Decision DecisionValue `json:"decision"`
	// Decider is who decided.
	Decider Decider `json:"decider"`
	// Note is the decider's comment, if any.
	Note string `json:"note,omitempty"`
	// At is the workflow time the decision was accepted.
	At time.Time `json:"at"`
	// RequestID is the request's idempotency key.
	RequestID string `json:"request_id"`
}

// sameRequest reports whether r repeats the request that produced d.
func (d Decision) sameRequest(r DecideRequest) bool {
	return d.Level == r.Level && d.Decision == r.Decision && d.Decider == r.Decider && d.Note == r.Note
}

// DecideResult is the result of the [UpdateDecide] Update.
type DecideResult struct {
	// State is the approval's state once the decision has been fully processed: projected
	// into PostgreSQL and, for a final approval, the token minted (TokenID set).
	State State `json:"state"`
}

// State is the approval as the workflow sees it: the [QueryState] answer, the workflow's
// result, and the snapshot every projection carries.
type State struct {
	// Status is pending, approved, denied or expired.
	Status Status `json:"status"`
	// Level is the current level (1 or 2); after the approval ends, the level it ended at.
	Level int `json:"level"`
	// ExpiresAt is the current level's deadline.
	ExpiresAt time.Time `json:"expires_at"`
	// Decisions are the accepted decisions, oldest first.
	Decisions []Decision `json:"decisions"`
	// TokenID is the execution token's id once minted (approved approvals only).
	TokenID string `json:"token_id,omitempty"`
	// TokenHash is the hex SHA-256 of the execution token once minted.
	TokenHash string `json:"token_hash,omitempty"`
}

// clone returns a copy of s that shares no memory with it.
func (s State) clone() State {
	s.Decisions = append([]Decision{}, s.Decisions...)
	return s
}

// ProjectApprovalInput is the input of [ActivityProjectApproval].
type ProjectApprovalInput struct {
	// RunID and Key together identify this write: a unique column on them makes retries
	// and replays write nothing twice. Key is unique within a run, e.g.
	// "project:approval.decided:L2".
	RunID string `json:"run_id"`
	Key   string `json:"key"`
	// OrgID, ApprovalID and Reference identify the approval; writes are scoped to OrgID.
	OrgID      string `json:"org_id"`
	ApprovalID string `json:"approval_id"`
	Reference  string `json:"reference"`
	// Event is the transition being projected; it is also the audit event kind.
	Event Event `json:"event"`
	// Decision is the decision that caused the transition (escalated, decided); nil for
	// created, expired and token_minted.
	Decision *Decision `json:"decision,omitempty"`
	// State is the approval's state right after the transition.
	State State `json:"state"`
	// At is when the transition happened (workflow time).
	At time.Time `json:"at"`
	// StartRecovered is set on the creation's projection of a run the start reconciler
	// started (ApprovalInput.StartRecovered): the projection also audits that recovery.
	StartRecovered bool `json:"start_recovered,omitempty"`
}

// EnqueueNotificationsInput is the input of [ActivityEnqueueNotifications]. The activity
// loads the org's webhook and channels and the approval's scrubbed reason from PostgreSQL.
type EnqueueNotificationsInput struct {
	// RunID and Key identify this enqueueing for idempotency, as in ProjectApprovalInput.
	RunID string `json:"run_id"`
	Key   string `json:"key"`
	// OrgID, ApprovalID and Reference identify the approval.
	OrgID      string `json:"org_id"`
	ApprovalID string `json:"approval_id"`
	Reference  string `json:"reference"`
	// Event is the webhook event type (created, escalated, decided, expired).
	Event Event `json:"event"`
	// Level is the audience: channels scoped to level_1 or level_2 hear about events at
	// their level; for decided and expired it is the level the approval ended at.
	Level int `json:"level"`
	// Status and ExpiresAt are the approval's after the transition.
	Status    Status    `json:"status"`
	ExpiresAt time.Time `json:"expires_at"`
	// Decision is the decision for escalated and decided events; nil otherwise.
	Decision *Decision `json:"decision,omitempty"`
	// At is when the event happened (workflow time); the webhook's created_at.
	At time.Time `json:"at"`
}

// EnqueueNotificationsResult is the result of [ActivityEnqueueNotifications].
type EnqueueNotificationsResult struct {
	// Enqueued is how many deliveries (webhook + channels) were recorded; 0 when the org
	// has neither. Used for logging only.
	Enqueued int `json:"enqueued"`
}

// MintApprovalTokenInput is the input of [ActivityMintApprovalToken]. The token's binding
// (tool, tenant, resource, method, parameters hash) is read from the approval row.
type MintApprovalTokenInput struct {
	// RunID and Key identify the attempt; the mint itself is idempotent per ApprovalID.
	RunID string `json:"run_id"`
	Key   string `json:"key"`
	// OrgID, ApprovalID and Reference identify the approved approval.
	OrgID      string `json:"org_id"`
	ApprovalID string `json:"approval_id"`
	Reference  string `json:"reference"`
}

// MintApprovalTokenResult is the result of [ActivityMintApprovalToken]: only the id and the
// hash, never the token.
type MintApprovalTokenResult struct {
	// TokenID is the execution token's id.
	TokenID string `json:"token_id"`
	// TokenHash is the lowercase hex SHA-256 of the token string.
	TokenHash string `json:"token_hash"`
}
