package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
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
	// Committers is the number of concurrent commit loops. Default 2.
	Committers int
	// CostMicros is the price of one billable call. Default 5000 ($0.005).
	CostMicros int64
	// Now is the clock (credit expiry is judged at commit). Default time.Now.
	Now func() time.Time
	// Logger for commit failures. Default: discard.
	Logger *slog.Logger
}

func (c *RecorderConfig) validate() error {
	if c.MaxBatch == 0 {
		c.MaxBatch = 512
	}
	if c.QueueSize == 0 {
		c.QueueSize = 8192
	}
	if c.Committers == 0 {
		c.Committers = 2
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
	if c.MaxBatch < 1 || c.QueueSize < 1 || c.Committers < 1 || c.CostMicros < 0 {
		return errors.New("store: invalid recorder config")
	}
	return nil
}

// Entry is one audit event to make durable; Billable entries are charged
// CostMicros to TeamID in the same transaction.
type Entry struct {
	Event    InsertAuditEventsParams
	Billable bool
}

type pending struct {
	entry Entry
	done  chan error
}

// Recorder makes audit events durable with group commit: callers block in
// Record until the transaction holding their event has committed, and every
// transaction carries all events queued while the previous one was in
// flight. Billing happens in the same transaction — the team's credit
// grants are locked, debited and written to the ledger next to the audit
// rows — so billed calls, billable audit rows and the drop in balance are
// equal by construction, across replicas and crashes: a call is answered
// only after its charge and its audit row committed together.
type Recorder struct {
	st    *Store
	cfg   RecorderConfig
	queue chan pending
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

// NewRecorder starts the commit loops.
func NewRecorder(st *Store, cfg RecorderConfig) (*Recorder, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Recorder{st: st, cfg: cfg, queue: make(chan pending, cfg.QueueSize), stop: make(chan struct{})}
	for range cfg.Committers {
		r.wg.Add(1)
		go r.loop()
	}
	return r, nil
}

// Record queues the entry and waits until it is durable. It returns
// ErrInsufficientCredits for a billable entry that could not be paid for,
// and a wrapped database error when the commit failed (nothing was
// recorded or charged then).
func (r *Recorder) Record(ctx context.Context, e Entry) error {
	p := pending{entry: e, done: make(chan error, 1)}
	select {
	case <-r.stop:
		return ErrRecorderStopped
	default:
	}
	select {
	case r.queue <- p:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.stop:
		return ErrRecorderStopped
	}
	// Once queued the entry will be committed or failed; wait for the
	// outcome even if the caller gave up, so an answer is never sent for an
	// event whose fate is unknown. (The wait is bounded by the commit.)
	return <-p.done
}

// Stop drains the queue, commits what is in it, and stops the loops.
func (r *Recorder) Stop() {
	r.once.Do(func() { close(r.stop) })
	r.wg.Wait()
}

func (r *Recorder) loop() {
	defer r.wg.Done()
	batch := make([]pending, 0, r.cfg.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case p := <-r.queue:
			batch = append(batch, p)
		case <-r.stop:
			// Drain whatever is still queued, then exit.
			for {
				select {
				case p := <-r.queue:
					batch = append(batch, p)
					if len(batch) == r.cfg.MaxBatch {
						r.commit(batch)
						batch = batch[:0]
					}
				default:
					if len(batch) > 0 {
						r.commit(batch)
					}
					return
				}
			}
		}
	fill:
		for len(batch) < r.cfg.MaxBatch {
			select {
			case p := <-r.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		r.commit(batch)
	}
}

// commit writes one batch in one transaction and reports each entry's fate.
func (r *Recorder) commit(batch []pending) {
	results := make([]error, len(batch))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.st.InTx(ctx, func(_ pgx.Tx, q *Queries) error {
		clear(results)
		if err := r.charge(ctx, q, batch, results); err != nil {
			return err
		}
		rows := make([]InsertAuditEventsParams, len(batch))
		for i, p := range batch {
			rows[i] = p.entry.Event
			if p.entry.Billable && results[i] == nil {
				rows[i].Billable = true
				rows[i].CostMicros = r.cfg.CostMicros
			} else {
				rows[i].Billable = false
				rows[i].CostMicros = 0
				if results[i] != nil {
					rows[i].Outcome = "insufficient_credits"
				}
			}
		}
		if _, err := q.InsertAuditEvents(ctx, rows); err != nil {
			return fmt.Errorf("insert audit events: %w", err)
		}
		return nil
	})
	if err != nil {
		r.cfg.Logger.Error("audit commit failed", "entries", len(batch), "err", err)
		err = fmt.Errorf("record audit events: %w", err)
	}
	for i, p := range batch {
		if err != nil {
			p.done <- err
		} else {
			p.done <- results[i]
		}
	}
}

// charge debits each team's grants for its billable entries, in team-id
// order so concurrent committers (and replicas) lock in the same order.
// Entries the team cannot pay for get ErrInsufficientCredits in results.
func (r *Recorder) charge(ctx context.Context, q *Queries, batch []pending, results []error) error {
	byTeam := map[string][]int{}
	for i, p := range batch {
		if p.entry.Billable {
			byTeam[p.entry.Event.TeamID] = append(byTeam[p.entry.Event.TeamID], i)
		}
	}
	teams := make([]string, 0, len(byTeam))
	for t := range byTeam {
		teams = append(teams, t)
	}
	slices.Sort(teams)
	now := r.cfg.Now().UTC()
	cost := r.cfg.CostMicros
	for _, team := range teams {
		idx := byTeam[team]
		grants, err := q.LockSpendableGrants(ctx, LockSpendableGrantsParams{TeamID: team, Now: now})
		if err != nil {
			return fmt.Errorf("lock credit grants: %w", err)
		}
		var available int64
		for _, g := range grants {
			available += g.RemainingMicros
		}
		affordable := len(idx)
		if cost > 0 && available/cost < int64(affordable) {
			affordable = int(available / cost)
		}
		for _, i := range idx[affordable:] {
			results[i] = ErrInsufficientCredits
		}
		// Spend free grants first (the query orders them); a call's price
		// may straddle two grants.
		owed := int64(affordable) * cost
		// The batch's call count goes on the team's first ledger entry, so
		// the ledger's calls sum to exactly the calls billed.
		calls := int32(affordable)
		for _, g := range grants {
			if owed == 0 {
				break
			}
			take := min(g.RemainingMicros, owed)
			if err := q.DebitGrant(ctx, DebitGrantParams{ID: g.ID, Amount: take}); err != nil {
				return fmt.Errorf("debit grant: %w", err)
			}
			if err := q.InsertLedgerEntry(ctx, InsertLedgerEntryParams{TeamID: team, GrantID: g.ID,
				DeltaMicros: -take, Calls: calls, Reason: "usage", CreatedAt: now}); err != nil {
				return fmt.Errorf("ledger entry: %w", err)
			}
			owed -= take
			calls = 0
		}
	}
	return nil
}
