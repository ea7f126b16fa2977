package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrInsufficientCredits is returned by Recorder.Record for a billable entry
// when its team has no spendable credit left. The entry is still recorded,
// as not billable, with outcome "insufficient_credits".
var ErrInsufficientCredits = errors.New("insufficient credits")

// ErrRecorderStopped is returned once Stop has been called.
var ErrRecorderStopped = errors.New("audit recorder stopped")

// RecorderConfig configures the audit group committer.
type RecorderConfig struct {
	// MaxBatch bounds the entries committed in one transaction. Default 512.
	MaxBatch int
	// QueueSize bounds entries waiting for a commit; Record blocks (until
	// its context ends) when the queue is full. Default 8192.
	QueueSize int
	// Committers is the number of commits that may be in flight at once.
	// Default 1: commits of one team serialise on its balance row anyway,
	// and one at a time makes the largest batches (BenchmarkRecordParallel:
	// 1 ≈ 30k entries/s, 2 ≈ 26k, 4 ≈ 16k for one team). More help only when
	// many teams share a replica.
	Committers int
	// CostMicros is the price of one billable call. Default 5000 ($0.005).
	CostMicros int64
	// MeterOnly is billing mode off: every billable entry is metered (a
	// billable audit row with its cost, counted in the team's billed totals)
	// and none is refused or debited. Default false: entries are paid from
	// the team's balance, and refused when it cannot pay.
	MeterOnly bool
	// LowBalanceMicros is the low-balance alert threshold: a commit that
	// leaves a team's spendable balance below it, when the team has not been
	// alerted since it was last at or above it, records a credits.low alert
	// (table credit_alerts) in the same transaction. 0 turns alerts off.
	LowBalanceMicros int64
	// Now is the clock (credit expiry is judged at commit). Default time.Now.
	Now func() time.Time
	// Logger for commit failures. Default: discard.
	Logger *slog.Logger
	// ObserveRecord, when set, is called as every Record returns, with how
	// long the call took: queueing, the commit it ran or waited for (round
	// trip, statement, WAL flush), the answer. For measurements such as
	// dev/loadpeers' split of a check's latency; unset, Record reads no
	// clock for it.
	ObserveRecord func(took time.Duration)
}

func (c *RecorderConfig) validate() error {
	if c.MaxBatch == 0 {
		c.MaxBatch = 512
	}
	if c.QueueSize == 0 {
		c.QueueSize = 8192
	}
	if c.Committers == 0 {
		c.Committers = 1
	}
	if c.CostMicros == 0 {
		c.CostMicros = 5000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBatch < 1 || c.QueueSize < 1 || c.Committers < 1 || c.CostMicros < 0 || c.LowBalanceMicros < 0 {
		return errors.New("store: invalid recorder config")
	}
	return nil
}

// AuditRecord is one audit log entry as its writer describes it; whether it
// is billable, and its cost, are decided by the recorder at commit.
type AuditRecord struct {
	ID         string
	OrgID      string
	TeamID     string
	OccurredAt time.Time
	ActorKind  string
	ActorID    string
	Kind       string
	Subject    string
	Outcome    string
	Tool       string
	Tenant     string
	Details    json.RawMessage
}

// Entry is one audit event to make durable; Billable entries are charged
// CostMicros to TeamID in the same transaction.
type Entry struct {
	Event    AuditRecord
	Billable bool
}

type pending struct {
	entry Entry
	done  chan error
}

// commitSlot is what one commit in flight works with, reused by the
// commits that take the slot in turn: the batch and the statement's
// parameters.
type commitSlot struct {
	batch []pending
	args  auditBatch
}

// Recorder makes audit events durable with group commit: callers block in
// Record until the transaction holding their event has committed, and every
// transaction carries all events queued while the previous one was in
// flight. Billing happens in the same transaction — the team's credit
// grants are locked, debited and written to the ledger next to the audit
// rows — so billed calls, billable audit rows and the drop in balance are
// equal by construction, across replicas and crashes: a call is answered
// only after its charge and its audit row committed together.
//
// The commits run in the callers' goroutines: a waiting caller that finds
// a commit free to start (at most Committers run at once) commits what is
// queued, its own entry with the others. A lone caller's entry thus goes
// to PostgreSQL and its answer comes back without the hand-off to a commit
// goroutine and back — two goroutine wake-ups — that a dedicated commit
// loop adds to every commit.
type Recorder struct {
	st    *Store
	cfg   RecorderConfig
	queue chan pending
	// leads holds one commit slot per commit that may be in flight; a
	// caller that takes one commits the queue's head with it.
	leads chan *commitSlot
	stop  chan struct{}
	once  sync.Once
}

// NewRecorder makes a recorder.
func NewRecorder(st *Store, cfg RecorderConfig) (*Recorder, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Recorder{st: st, cfg: cfg, queue: make(chan pending, cfg.QueueSize), leads: make(chan *commitSlot, cfg.Committers),
		stop: make(chan struct{})}
	for range cfg.Committers {
		r.leads <- &commitSlot{batch: make([]pending, 0, min(cfg.MaxBatch, 64))}
	}
	return r, nil
}

// CostMicros is the price of one billable call.
func (r *Recorder) CostMicros() int64 { return r.cfg.CostMicros }

// Record queues the entry and waits until it is durable. It returns
// ErrInsufficientCredits for a billable entry that could not be paid for,
// and a wrapped database error when the commit failed: nothing was recorded
// or charged then, nor will be. When the connection broke after the commit
// was sent, the recorder first makes the outcome final and finds it out (see
// resolve, for up to ResolveTimeout), so a batch that did commit is reported
// as committed.
func (r *Recorder) Record(ctx context.Context, e Entry) error {
	if observe := r.cfg.ObserveRecord; observe != nil {
		t0 := time.Now()
		err := r.record(ctx, e)
		observe(time.Since(t0))
		return err
	}
	return r.record(ctx, e)
}

func (r *Recorder) record(ctx context.Context, e Entry) error {
	select {
	case <-r.stop:
		return ErrRecorderStopped
	default:
	}
	p := pending{entry: e, done: doneChans.Get().(chan error)}
	select {
	case r.queue <- p:
	case <-ctx.Done():
		doneChans.Put(p.done)
		return ctx.Err()
	case <-r.stop:
		doneChans.Put(p.done)
		return ErrRecorderStopped
	}
	// Once queued the entry will be committed or failed; wait for the
	// outcome even if the caller gave up, so an answer is never sent for an
	// event whose fate is unknown. (The wait is bounded by the commit.)
	// Whenever a commit is free to start meanwhile, this caller runs it.
	for {
		select {
		case err := <-p.done:
			doneChans.Put(p.done)
			return err
		default:
		}
		select {
		case err := <-p.done:
			doneChans.Put(p.done)
			return err
		case slot := <-r.leads:
			r.lead(slot)
		}
	}
}

// doneChans recycles the channels a commit answers its entries on: each
// gets exactly one answer, which Record receives before putting the
// channel back, so a recycled channel is always empty.
var doneChans = sync.Pool{New: func() any { return make(chan error, 1) }}

// lead runs one commit with the slot, then hands the slot on.
func (r *Recorder) lead(slot *commitSlot) {
	slot.batch = slot.batch[:0]
	defer func() {
		if v := recover(); v != nil {
			// Whether the batch committed is unknown, so no answer may be
			// sent for it: end the process, as a panic in a commit loop of
			// its own did (in a caller's goroutine, net/http would recover
			// it and go on serving, with this commit slot lost).
			go func() { panic(v) }()
			select {}
		}
		clear(slot.batch) // keep no entry alive until the next commit
		slot.batch = slot.batch[:0]
		r.leads <- slot
	}()
	r.commitQueued(slot)
}

// commitQueued commits up to MaxBatch queued entries, if any, in one
// transaction, collecting them in slot.batch (empty on entry).
func (r *Recorder) commitQueued(slot *commitSlot) {
fill:
	for len(slot.batch) < r.cfg.MaxBatch {
		select {
		case p := <-r.queue:
			slot.batch = append(slot.batch, p)
		default:
			break fill
		}
	}
	if len(slot.batch) > 0 {
		r.commit(slot, slot.batch)
	}
}

// Refund gives back, in q's transaction, the charge of the billable entry
// auditID that Record committed, because what it paid for failed afterwards
// (SPEC §9: a call that fails after being charged is not billed). It is
// idempotent, and does nothing for an entry that was not charged. In
// MeterOnly mode only the billed totals go down (nothing was debited).
func (r *Recorder) Refund(ctx context.Context, q *Queries, auditID, reason string, at time.Time) error {
	_, err := q.RefundCall(ctx, RefundCallParams{AuditID: auditID, Reason: reason, CreatedAt: at, Credit: !r.cfg.MeterOnly})
	if err != nil {
		return fmt.Errorf("refund call %s: %w", auditID, err)
	}
	return nil
}

// Stop refuses new entries, waits for the commits in flight and commits
// what is still queued. (A Record that raced with Stop and queued after it
// commits its entry itself.)
func (r *Recorder) Stop() {
	r.once.Do(func() { close(r.stop) })
	held := make([]*commitSlot, 0, r.cfg.Committers)
	for range r.cfg.Committers {
		held = append(held, <-r.leads)
	}
	for len(r.queue) > 0 {
		r.commitQueued(held[0])
		clear(held[0].batch)
		held[0].batch = held[0].batch[:0]
	}
	for _, slot := range held {
		r.leads <- slot
	}
}

// ResolveTimeout bounds how long a commit whose outcome is unknown is
// looked for before its entries are failed.
const ResolveTimeout = 10 * time.Second

// outcomeUnknown reports whether a failed commit may nevertheless have
// committed: the database became unreachable, or the commit timed out, after
// the statement was sent. A refused connection, an error PostgreSQL itself
// returned, or a failure before anything was sent leaves no doubt: nothing
// committed.
func outcomeUnknown(err error) bool {
	if pgconn.SafeToRetry(err) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if !errors.Is(err, ErrUnavailable) {
		return false
	}
	var pgErr *pgconn.PgError
	var connectErr *pgconn.ConnectError
	return !errors.As(err, &pgErr) && !errors.As(err, &connectErr)
}

// resolve finds out whether the batch of ids committed after its commit
// failed with an unknown outcome (cause). First it makes the outcome final:
// the batch may still be running on the server, or (behind a pooler) not even
// have started, so the recorder fences it (oakallow_fence_audit_batch, see
// migrations/010_fence_audit_batches.sql), which waits for a running batch to
// end and stops a later one from committing. No server process is ended: the
// process id a client sees is not the one running its statements behind a
// pooler. Then the batch's rows tell: a batch is one transaction, so either
// all exist or none do. It retries while the database is unreachable, for up
// to ResolveTimeout. Committed: the charges as the commit would have returned
// them, and the callers get their answers. Not committed, or still unknown at
// the deadline: cause.
func (r *Recorder) resolve(ids []string, cause error) ([]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ResolveTimeout)
	defer cancel()
	wait := 50 * time.Millisecond
	for {
		rows, err := r.lookUpLostBatch(ctx, ids)
		switch {
		case err == nil && len(rows) == 0:
			r.cfg.Logger.Warn("audit commit lost its connection; it had not committed", "entries", len(ids))
			return nil, cause
		case err == nil && len(rows) != len(ids):
			return nil, fmt.Errorf("audit batch partly present (%d of %d rows) after a lost commit: %w", len(rows), len(ids), cause)
		case err == nil:
			billable := make(map[string]bool, len(rows))
			for _, row := range rows {
				billable[row.ID] = row.Billable
			}
			charged := make([]bool, len(ids))
			for i, id := range ids {
				charged[i] = billable[id]
			}
			r.cfg.Logger.Warn("audit commit lost its connection; it had committed", "entries", len(ids))
			return charged, nil
		case !errors.Is(err, ErrUnavailable):
			return nil, fmt.Errorf("look for a lost commit's rows: %w (commit: %w)", err, cause)
		}
		select {
		case <-ctx.Done():
			r.cfg.Logger.Error("audit commit outcome unknown: the database stayed unreachable", "entries", len(ids))
			return nil, cause
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// lookUpLostBatch fences the lost batch, which makes its outcome final, and
// then returns its rows.
func (r *Recorder) lookUpLostBatch(ctx context.Context, ids []string) ([]AuditBillableByIDsRow, error) {
	if err := r.st.FenceAuditBatch(ctx, ids[0]); err != nil {
		return nil, fmt.Errorf("fence the batch: %w", err)
	}
	return r.st.AuditBillableByIDs(ctx, ids)
}

// commit writes one batch in one statement (its own transaction): the
// oakallow_record_audit_batch function charges, writes the ledger and
// inserts the audit rows server-side, so a commit is one round trip plus
// one WAL flush however many entries it carries. The statement's
// parameters are built in slot.args.
func (r *Recorder) commit(slot *commitSlot, batch []pending) {
	n := len(batch)
	a := &slot.args
	a.reset()
	var params [][]byte
	if n == 1 {
		a.one(&batch[0].entry)
		params = a.finishOne(r.cfg.CostMicros, r.cfg.Now(), !r.cfg.MeterOnly, r.cfg.LowBalanceMicros)
	} else {
		for i := range batch {
			a.add(&batch[i].entry)
		}
		params = a.finish(r.cfg.CostMicros, r.cfg.Now(), !r.cfg.MeterOnly, r.cfg.LowBalanceMicros)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	charged, err := r.st.recordAuditBatch(ctx, a, params)
	if err != nil && outcomeUnknown(err) {
		// The statement went out and the connection broke before the answer came
		// back: it may have committed. Answering "failed" for a committed batch
		// would bill calls whose callers were told they failed (and retry them).
		charged, err = r.resolve(a.ids, err)
	}
	if errors.Is(err, ErrInvalid) && n > 1 {
		// One entry carries a value PostgreSQL refuses (the API validates
		// input, so this is a bug elsewhere); commit the others one by one
		// so a single bad entry cannot fail its neighbours.
		for i := range batch {
			r.commit(slot, batch[i:i+1])
		}
		return
	}
	if err == nil && len(charged) != n {
		err = fmt.Errorf("audit batch returned %d results for %d entries", len(charged), n)
	}
	if err != nil {
		r.cfg.Logger.Error("audit commit failed", "entries", n, "err", err)
		err = fmt.Errorf("record audit events: %w", err)
	}
	for i, b := range batch {
		switch {
		case err != nil:
			b.done <- err
		case b.entry.Billable && !charged[i]:
			b.done <- ErrInsufficientCredits
		default:
			b.done <- nil
		}
	}
}
