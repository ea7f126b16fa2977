package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Versioning. A run's flow is chosen once, at its start (chooseFlow), and kept in
// approval.flow. A change to the order or set of commands the workflow issues adds a new
// flowV constant, raises flowMax to it and branches on a.flow where the old and new
// orders differ; the old branch stays until no run started before the change can still be
// open (2 × MaxLevelTimeout plus retention), and a new history is recorded in testdata/.
// Runs of flowV1 to flowV4 recorded their flow with workflow.GetVersion (changeApprovalFlow);
// flowV5 runs record nothing (see flowV5), so the next flow must leave a mark that tells
// its runs from flowV5's — GetVersion(changeApprovalFlow) in a fresh run again, at the
// price flowV5 saves, or another recorded difference — and chooseFlow must read it.
const (
	changeApprovalFlow = "approval-flow"
	// flowV1: regular activities; every transition upserts its search attributes.
	flowV1 workflow.Version = 1
	// flowV2: projection, notification and minting run as local activities (a marker in
	// the workflow task instead of a task-queue round trip and three history events
	// each), and a search attribute is upserted only when its value changes, so the
	// creation upserts nothing the starter already set.
	flowV2 workflow.Version = 2
	// flowV3: a decision's first side effect — its projection — runs as a regular activity,
	// so its command is committed together with the Update's acceptance and runs only once
	// the acceptance is in history (see decisionBoundary); the keys of a decision's
	// projection and notification name the decision. Everything else stays local.
	flowV3 workflow.Version = 3
	// flowV4: a decision's search attributes are upserted after its effects, in the
	// workflow task after the decision boundary, instead of with the acceptance. A final
	// decision's upsert then shares its task with the run's completion, and the server
	// writes no visibility record for it (the close record carries the attributes); with
	// the upsert in the accepting task, the run was still open when the visibility queue
	// processed it, which cost every approval one visibility write more than flowV2.
	flowV4 workflow.Version = 4
	// flowV5: the run's flow is no longer recorded by workflow.GetVersion. Its marker came
	// with an upsert of the TemporalChangeVersion search attribute in the run's first
	// workflow task: two history events, and a search attribute the server had to apply
	// and index. (The visibility write of that task stays: the server itself sets BuildIds
	// when a run's first workflow task completes.) A fresh run takes flowMax without
	// recording it; a replayed run reads the marker back if it has one (a run started on
	// flowV1–flowV4), and a run without one is a flowV5 run. The commands are flowV4's.
	flowV5  workflow.Version = 5
	flowMax                  = flowV5
)

// chooseFlow returns the run's flow; see flowV5. Only a replay looks for the marker: in a
// run's first execution there is none to find, and GetVersion would record one. A replay
// that finds none records nothing either (the SDK adds a marker only outside replay), so
// the choice is the same however often the run is replayed. A worker older than flowV5
// replaying a flowV5 run finds no marker, which its GetVersion refuses: the workflow task
// fails and is retried until a worker that knows flowV5 takes it.
func chooseFlow(ctx workflow.Context) workflow.Version {
	if !workflow.IsReplaying(ctx) {
		return flowMax
	}
	if v := workflow.GetVersion(ctx, changeApprovalFlow, workflow.DefaultVersion, flowV4); v != workflow.DefaultVersion {
		return v
	}
	return flowV5
}

// transition is one change of the approval's state, queued by whoever caused it (the start,
// the decide handler, the deadline, a cancellation) and carried out in order by the main
// loop: search attributes, projection, notification and, for an approval, the token.
type transition struct {
	event    Event
	decision *Decision
	at       time.Time
	// state is the approval right after the transition.
	state State
	// result is state plus whatever processing added (the token); valid once done.
	result State
	done   bool
}

// approval is the workflow's state. Handlers only mutate it through accept; the main loop
// owns all commands (activities, timers, upserts).
type approval struct {
	in     ApprovalInput
	runID  string
	flow   workflow.Version
	state  State
	queue  []*transition
	next   int   // index of the first transition not yet processed
	failed error // set when the main loop stops with an error, to release waiting handlers
	logger log.Logger
	// afterCancel marks the clean-up after a cancellation: activities get
	// distinct ids there (see activityID).
	afterCancel bool
}

// ApprovalWorkflow runs one approval request from creation to a final status. See the
// package documentation for the flow, the contract with activities and the deadline rule.
// It returns the final [State].
func ApprovalWorkflow(ctx workflow.Context, in ApprovalInput) (State, error) {
	return runApproval(ctx, in, chooseFlow)
}

// runApproval is [ApprovalWorkflow] with the choice of flow as a parameter, so tests can
// run the branches of older flows that a fresh run no longer takes.
func runApproval(ctx workflow.Context, in ApprovalInput, flow func(workflow.Context) workflow.Version) (State, error) {
	if err := in.Validate(); err != nil {
		return State{}, temporal.NewNonRetryableApplicationError(
			"invalid approval input: "+err.Error(), ErrorTypeValidation, nil)
	}
	a := &approval{
		in:    in,
		runID: workflow.GetInfo(ctx).WorkflowExecution.RunID,
		state: State{
			Status:    StatusPending,
			Level:     1,
			ExpiresAt: in.CreatedAt.Add(in.LevelTimeout),
			Decisions: []Decision{},
		},
		logger: log.With(workflow.GetLogger(ctx),
			"approval_id", in.ApprovalID, "reference", in.Reference, "org_id", in.OrgID),
	}
	a.enqueue(EventCreated, nil, in.CreatedAt)

	// Handlers are registered before anything can block, so an Update delivered with the
	// first workflow task finds them.
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (State, error) {
		return a.state.clone(), nil
	}); err != nil {
		return State{}, fmt.Errorf("register query %s: %w", QueryState, err)
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateDecide, a.decide,
		workflow.UpdateHandlerOptions{
			Validator:   a.validate,
			Description: "Record a reviewer's decision (approve or deny) for the current level.",
		}); err != nil {
		return State{}, fmt.Errorf("register update %s: %w", UpdateDecide, err)
	}
	a.flow = flow(ctx)
	a.logger = log.With(a.logger, "flow_version", a.flow)

	err := a.run(ctx)
	// Disconnected from cancellation: the cleanup below and the wait for handlers must run
	// even when the workflow was cancelled.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if err != nil && ctx.Err() != nil {
		err = a.cancel(dctx, err)
	}
	if err != nil {
		a.failed = err
	}
	// Let every accepted Update return its result before the run closes; otherwise its
	// caller would see "workflow completed" instead of the decision's outcome.
	if werr := workflow.Await(dctx, func() bool { return workflow.AllHandlersFinished(dctx) }); werr != nil && err == nil {
		err = werr
	}
	return a.state.clone(), err
}

// run is the main loop: process queued transitions, then wait for a decision or the current
// level's deadline, until the approval is final.
func (a *approval) run(ctx workflow.Context) error {
	for {
		if err := a.drain(ctx); err != nil {
			return err
		}
		if a.state.Status != StatusPending {
			return nil
		}
		// The deadline is absolute. A non-positive wait (the workflow got here late) starts
		// no timer and expires at once. The timer is cancelled once a decision arrives, so
		// a decided level leaves no timer behind to wake the workflow later.
		wait := a.state.ExpiresAt.Sub(workflow.Now(ctx))
		tctx, cancelTimer := workflow.WithCancel(ctx)
		deadline := workflow.NewTimerWithOptions(tctx, wait,
			workflow.TimerOptions{Summary: fmt.Sprintf("level %d deadline", a.state.Level)})
		err := workflow.Await(ctx, func() bool { return a.hasQueued() || deadline.IsReady() })
		cancelTimer()
		if err != nil {
			return err
		}
		// Cancelling the run also cancels the timer, which makes it "ready":
		// that is a cancellation, not the deadline; cancel() ends the approval.
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A queued decision wins whatever the timer did: the validator accepted it only in
		// a workflow task that started before the deadline (see validate).
		if !a.hasQueued() {
			a.expire(ctx)
		}
	}
}

// cancel ends a cancelled approval: a pending one expires (the tool must not run), and
// every queued transition is still projected so PostgreSQL does not show it pending forever.
// It returns the cancellation error, or the error that stopped the cleanup.
func (a *approval) cancel(dctx workflow.Context, cause error) error {
	a.logger.Info("Approval workflow cancelled; ending the approval", "status", a.state.Status)
	// A transition interrupted by the cancellation left its activity command
	// pending cancellation in this very task; scheduling the same activity id
	// again would be a duplicate command. The retry gets its own activity id
	// (the idempotency Key in its input stays the same).
	a.afterCancel = true
	if a.state.Status == StatusPending {
		a.expire(dctx)
	}
	if err := a.drain(dctx); err != nil {
		return err
	}
	return cause
}

// activityID is the activity id for an idempotency key: the key itself,
// suffixed on the clean-up path after a cancellation (see cancel).
func (a *approval) activityID(key string) string {
	if a.afterCancel {
		return key + ":after-cancel"
	}
	return key
}

func (a *approval) hasQueued() bool { return a.next < len(a.queue) }

// enqueue records a transition of a.state that has just happened.
func (a *approval) enqueue(event Event, d *Decision, at time.Time) *transition {
	t := &transition{event: event, decision: d, at: at, state: a.state.clone()}
	a.queue = append(a.queue, t)
	return t
}

func (a *approval) expire(ctx workflow.Context) {
	a.state.Status = StatusExpired
	a.enqueue(EventExpired, nil, workflow.Now(ctx))
}

// drain processes queued transitions in order. Processing is idempotent (activity keys), so
// a transition interrupted by cancellation is safely processed again.
func (a *approval) drain(ctx workflow.Context) error {
	for a.hasQueued() {
		t := a.queue[a.next]
		if err := a.process(ctx, t); err != nil {
			return err
		}
		t.done = true
		a.next++
	}
	return nil
}

func (a *approval) process(ctx workflow.Context, t *transition) error {
	st := t.state.clone()
	// From flowV4 on, a decision's search attributes follow its effects (see flowV4).
	upsertLast := a.flow >= flowV4 && t.decision != nil
	if !upsertLast {
		if err := a.upsertSearchAttributes(ctx, t.event, st); err != nil {
			return err
		}
	}
	if err := a.project(ctx, t.event, t.decision, st, t.at); err != nil {
		return err
	}
	if err := a.notify(ctx, t.event, t.decision, st, t.at); err != nil {
		return err
	}
	if st.Status == StatusApproved {
		tok, err := a.mint(ctx, st.Level)
		if err != nil {
			return err
		}
		a.state.TokenID, a.state.TokenHash = tok.TokenID, tok.TokenHash
		st.TokenID, st.TokenHash = tok.TokenID, tok.TokenHash
		if err := a.project(ctx, EventTokenMinted, nil, st, workflow.Now(ctx)); err != nil {
			return err
		}
	}
	if upsertLast {
		if err := a.upsertSearchAttributes(ctx, t.event, st); err != nil {
			return err
		}
	}
	t.result = st
	a.logger.Info("Approval transition processed", "event", t.event, "status", st.Status, "level", st.Level)
	return nil
}

func (a *approval) upsertSearchAttributes(ctx workflow.Context, event Event, st State) error {
	var updates []temporal.SearchAttributeUpdate
	if a.flow >= flowV2 {
		if updates = a.changedSearchAttributes(ctx, st); len(updates) == 0 {
			return nil
		}
	} else {
		updates = []temporal.SearchAttributeUpdate{
			SearchAttributeStatus.ValueSet(string(st.Status)),
			SearchAttributeLevel.ValueSet(int64(st.Level)),
		}
		if event == EventCreated {
			// Makes the approval findable even when its starter did not use StartWorkflowOptions.
			updates = append(updates,
				SearchAttributeOrg.ValueSet(a.in.OrgID),
				SearchAttributeTool.ValueSet(a.in.ToolName))
			if a.in.TenantID != "" {
				updates = append(updates, SearchAttributeTenant.ValueSet(a.in.TenantID))
			}
		}
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
		return fmt.Errorf("upsert search attributes for %s: %w", event, err)
	}
	return nil
}

// execute runs the activity name with input in and waits for its result (into out, when
// not nil): as a regular activity on flowV1 runs, as a local activity from flowV2 on. The
// activities are idempotent on the input's RunID and Key either way, so a local activity
// re-run after a worker crash writes nothing twice.
func (a *approval) execute(ctx workflow.Context, opts callOptions, name string, in, out any) error {
	var f workflow.Future
	if a.flow >= flowV2 && !opts.regular {
		lctx := opts.localActivityContext(ctx)
		f = workflow.ExecuteLocalActivity(lctx, name, in)
	} else {
		actx := opts.activityContext(ctx)
		f = workflow.ExecuteActivity(actx, name, in)
	}
	return f.Get(ctx, out)
}

// changedSearchAttributes are the search attributes whose current value (as started or
// last upserted) differs from what st and the input say.
func (a *approval) changedSearchAttributes(ctx workflow.Context, st State) []temporal.SearchAttributeUpdate {
	cur := workflow.GetTypedSearchAttributes(ctx)
	var updates []temporal.SearchAttributeUpdate
	keyword := func(key temporal.SearchAttributeKeyKeyword, want string) {
		if v, ok := cur.GetKeyword(key); !ok || v != want {
			updates = append(updates, key.ValueSet(want))
		}
	}
	keyword(SearchAttributeOrg, a.in.OrgID)
	keyword(SearchAttributeTool, a.in.ToolName)
	if a.in.TenantID != "" {
		keyword(SearchAttributeTenant, a.in.TenantID)
	}
	keyword(SearchAttributeStatus, string(st.Status))
	if v, ok := cur.GetInt64(SearchAttributeLevel); !ok || v != int64(st.Level) {
		updates = append(updates, SearchAttributeLevel.ValueSet(int64(st.Level)))
	}
	return updates
}

// decisionBoundary reports whether the projection of a transition caused by decision d
// must run as a regular activity. A decision is accepted in a workflow task that the server
// may still discard (an aborted Update, a failed or timed-out task, a lost worker); a
// local activity runs inside that task, so its PostgreSQL write would survive a discarded
// acceptance while the retried task accepts a different decision. A regular activity's
// command is committed in the same task completion as the acceptance, and is executed only
// after it: nothing a decision causes reaches PostgreSQL, a webhook or a token before the
// decision is in history. Later effects of the transition (notification, mint) run in
// later tasks, after that boundary, and may stay local.
func (a *approval) decisionBoundary(d *Decision) bool {
	return a.flow >= flowV3 && d != nil
}

// effectKey is the idempotency key of one effect of a transition. From flowV3 on it names
// the decision too (level and value), so two different decisions can never share a key
// and be mistaken for retries of one another.
func (a *approval) effectKey(effect string, event Event, d *Decision, level int) string {
	if a.flow >= flowV3 && d != nil {
		return fmt.Sprintf("%s:%s:L%d:%s:L%d", effect, event, level, d.Decision, d.Level)
	}
	return fmt.Sprintf("%s:%s:L%d", effect, event, level)
}

func (a *approval) project(ctx workflow.Context, event Event, d *Decision, st State, at time.Time) error {
	key := a.effectKey("project", event, d, st.Level)
	in := ProjectApprovalInput{
		RunID: a.runID, Key: key,
		OrgID: a.in.OrgID, ApprovalID: a.in.ApprovalID, Reference: a.in.Reference,
		Event: event, Decision: d, State: st, At: at,
		StartRecovered: event == EventCreated && a.in.StartRecovered,
	}
	opts := durableOptions(a.activityID(key), fmt.Sprintf("project %s (level %d)", event, st.Level), ProjectStartToClose)
	opts.regular = a.decisionBoundary(d)
	if err := a.execute(ctx, opts, ActivityProjectApproval, in, nil); err != nil {
		return fmt.Errorf("project %s: %w", event, err)
	}
	return nil
}

// notify enqueues the event's notifications. Failing to do so is logged, never fatal:
// notifications are alerts, and the approval's state is already in PostgreSQL. Only
// cancellation is returned, so the caller can finish the approval.
func (a *approval) notify(ctx workflow.Context, event Event, d *Decision, st State, at time.Time) error {
	key := a.effectKey("notify", event, d, st.Level)
	in := EnqueueNotificationsInput{
		RunID: a.runID, Key: key,
		OrgID: a.in.OrgID, ApprovalID: a.in.ApprovalID, Reference: a.in.Reference,
		Event: event, Level: st.Level, Status: st.Status, ExpiresAt: st.ExpiresAt,
		Decision: d, At: at,
	}
	opts := notifyOptions(a.activityID(key), fmt.Sprintf("notify %s (level %d)", event, st.Level))
	var res EnqueueNotificationsResult
	if err := a.execute(ctx, opts, ActivityEnqueueNotifications, in, &res); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("notify %s: %w", event, err)
		}
		a.logger.Warn("Notifications not enqueued; the approval continues without them",
			"event", event, "level", st.Level, "error", err)
		return nil
	}
	a.logger.Debug("Notifications enqueued", "event", event, "enqueued", res.Enqueued)
	return nil
}

func (a *approval) mint(ctx workflow.Context, level int) (MintApprovalTokenResult, error) {
	key := fmt.Sprintf("mint:L%d", level)
	in := MintApprovalTokenInput{
		RunID: a.runID, Key: key,
		OrgID: a.in.OrgID, ApprovalID: a.in.ApprovalID, Reference: a.in.Reference,
	}
	opts := durableOptions(a.activityID(key), "mint execution token", MintStartToClose)
	var res MintApprovalTokenResult
	if err := a.execute(ctx, opts, ActivityMintApprovalToken, in, &res); err != nil {
		return MintApprovalTokenResult{}, fmt.Errorf("mint approval token: %w", err)
	}
	if res.TokenID == "" || res.TokenHash == "" {
		return MintApprovalTokenResult{}, temporal.NewNonRetryableApplicationError(
			"mint approval token: activity returned an empty token id or hash", ErrorTypeValidation, nil)
	}
	return res, nil
}

// validate is the decide Update's validator. It runs before the Update is written to
// history (and is skipped on replay), so it may read the clock: a decision is accepted only
// in a workflow task that started strictly before the current level's deadline. A task that
// delivers the deadline timer starts at or after the deadline, so a decision racing the
// timer is always rejected as expired, never half-applied.
func (a *approval) validate(ctx workflow.Context, req DecideRequest) error {
	if err := req.Validate(); err != nil {
		return reject(RejectInvalidRequest, "invalid decision: %v", err)
	}
	if t := a.byRequestID(req.RequestID); t != nil {
		if t.decision.sameRequest(req) {
			return nil // a retry: the handler answers with the original outcome
		}
		return reject(RejectRequestIDReused, "request id %q was already used for another decision", req.RequestID)
	}
	if err := a.checkState(req); err != nil {
		return err
	}
	if !workflow.Now(ctx).Before(a.state.ExpiresAt) {
		return a.rejectWithState(RejectExpired, "level %d expired at %s", a.state.Level, a.state.ExpiresAt.UTC().Format(time.RFC3339))
	}
	// Nobody decides two levels of one approval (issue 9: a reviewer "did not decide the
	// other level"), whichever way. Only the validator can hold this against races: it
	// runs on the state of every decision accepted before, in history order.
	for _, d := range a.state.Decisions {
		if d.Level != req.Level && d.Decider.Kind == req.Decider.Kind && d.Decider.ID == req.Decider.ID {
			return reject(RejectSameApprover, "the decider of level %d cannot also decide level %d", d.Level, req.Level)
		}
	}
	return nil
}

// checkState refuses a decision the approval's state cannot take. It depends only on state
// derived from history, so the handler can repeat it on replay.
func (a *approval) checkState(req DecideRequest) error {
	switch a.state.Status {
	case StatusPending:
	case StatusExpired:
		return a.rejectWithState(RejectExpired, "approval expired")
	default:
		return a.rejectWithState(RejectAlreadyDecided, "approval is already %s", a.state.Status)
	}
	if req.Level != a.state.Level {
		return a.rejectWithState(RejectWrongLevel, "approval is at level %d, not %d", a.state.Level, req.Level)
	}
	return nil
}

// rejectWithState is a rejection that carries the approval's state as its details, so the
// refused caller learns the decision that won. A rejection reaches the caller only with
// the completion of the workflow task that made it, which also commits the acceptance of
// any decision the state shows.
func (a *approval) rejectWithState(reason, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), reason, nil, a.state.clone())
}

// decide is the decide Update's handler: it applies the decision to the state at once (so
// the next validator already sees it), then waits for the main loop to process it and
// answers the resulting state.
func (a *approval) decide(ctx workflow.Context, req DecideRequest) (DecideResult, error) {
	t := a.byRequestID(req.RequestID)
	if t == nil {
		var err error
		if t, err = a.accept(ctx, req); err != nil {
			return DecideResult{}, err
		}
	}
	if err := workflow.Await(ctx, func() bool { return t.done || a.failed != nil }); err != nil {
		return DecideResult{}, err
	}
	if !t.done {
		return DecideResult{}, fmt.Errorf("decision accepted but not processed: %w", a.failed)
	}
	return DecideResult{State: t.result.clone()}, nil
}

// accept applies a validated decision to the state and queues its transition.
func (a *approval) accept(ctx workflow.Context, req DecideRequest) (*transition, error) {
	// The validator guarantees this; repeating the history-derived part keeps the state
	// machine sound even if a validator change ever let a decision through.
	if err := a.checkState(req); err != nil {
		return nil, err
	}
	now := workflow.Now(ctx)
	d := Decision{
		Level: req.Level, Decision: req.Decision, Decider: req.Decider,
		Note: req.Note, At: now, RequestID: req.RequestID,
	}
	a.state.Decisions = append(a.state.Decisions, d)
	event := EventDecided
	switch {
	case req.Decision == Deny:
		a.state.Status = StatusDenied
	case a.state.Level < a.in.levels():
		event = EventEscalated
		a.state.Level++
		a.state.ExpiresAt = now.Add(a.in.LevelTimeout)
	default:
		a.state.Status = StatusApproved
	}
	a.logger.Info("Decision accepted", "level", d.Level, "decision", d.Decision, "decider_kind", d.Decider.Kind)
	return a.enqueue(event, &d, now), nil
}

func (a *approval) byRequestID(id string) *transition {
	for _, t := range a.queue {
		if t.decision != nil && t.decision.RequestID == id {
			return t
		}
	}
	return nil
}

func reject(reason, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), reason, nil)
}
