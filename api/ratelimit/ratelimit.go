// Package ratelimit keeps token buckets in memory, one per key (a client
// address, an API key), with bounded memory: full buckets are forgotten
// (a full bucket and no bucket are the same state), and each limiter tracks
// at most a fixed number of keys.
//
// A Limiter counts events against a Limit: up to N at once, refilled at N
// per Per. Two uses:
//
//   - failures (Fail counts one, Check refuses while the bucket is empty), so
//     the request after the budget of failures is refused, whether it would
//     have failed or not;
//   - all events (Spend takes one, or refuses when there is none).
//
// A Verdict that refuses says how long until the next event would be
// accepted, and whether it is the first refusal since the bucket was last
// full — a threshold crossing, reported once per episode of abuse rather
// than once per refused request.
//
// The state is per process. Callers on the hot path ask Active first: while
// no bucket is below one token, nothing can be refused, and the answer costs
// one atomic load and no lock.
package ratelimit

import (
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limit is a token bucket's shape: up to N events at once, refilled
// continuously at N per Per. A zero Limit (and not Off) means "use the
// default" to the configuration that holds it.
type Limit struct {
	N   int
	Per time.Duration
	// Off turns the limit off: nothing is counted or refused.
	Off bool
}

// Bounds of a Limit, so that a typo cannot make a limiter that refuses
// everything for days or counts nothing.
const (
	maxN   = 1_000_000
	minPer = time.Millisecond
	maxPer = 24 * time.Hour
)

// Validate checks a limit that is on.
func (l Limit) Validate() error {
	if l.Off {
		return nil
	}
	if l.N < 1 || l.N > maxN {
		return fmt.Errorf("count must be between 1 and %d, not %d", maxN, l.N)
	}
	if l.Per < minPer || l.Per > maxPer {
		return fmt.Errorf("period must be between %s and %s, not %s", minPer, maxPer, l.Per)
	}
	return nil
}

// String is the form ParseLimit reads: "30/1m0s", or "off".
func (l Limit) String() string {
	if l.Off {
		return "off"
	}
	return strconv.Itoa(l.N) + "/" + l.Per.String()
}

// ParseLimit reads "<count>/<duration>" (e.g. "30/1m": 30 at once, refilled
// at 30 per minute) or "off".
func ParseLimit(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "off") {
		return Limit{Off: true}, nil
	}
	count, per, ok := strings.Cut(s, "/")
	if !ok {
		return Limit{}, fmt.Errorf("%q: want <count>/<duration> (e.g. 30/1m) or off", s)
	}
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if err != nil {
		return Limit{}, fmt.Errorf("%q: count is not an integer", s)
	}
	d, err := time.ParseDuration(strings.TrimSpace(per))
	if err != nil {
		return Limit{}, fmt.Errorf("%q: period is not a duration (e.g. 1m, 10s)", s)
	}
	l := Limit{N: n, Per: d}
	if err := l.Validate(); err != nil {
		return Limit{}, fmt.Errorf("%q: %w", s, err)
	}
	return l, nil
}

// Verdict is a limiter's answer for one event.
type Verdict struct {
	// Limited: refuse the request.
	Limited bool
	// RetryAfter is how long until one event would be accepted (set when
	// Limited; at least one second, the unit of Retry-After).
	RetryAfter time.Duration
	// Crossed marks the first refusal since the key's bucket was last full.
	Crossed bool
}

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up, for the
// Retry-After header (RFC 9110 §10.2.3).
func (v Verdict) RetryAfterSeconds() int {
	return int((v.RetryAfter + time.Second - 1) / time.Second)
}

// shardCount splits a limiter's keys so that concurrent callers with
// different keys rarely share a lock.
const shardCount = 64

// Bounds of the number of keys a limiter tracks.
const (
	MinTracked = shardCount
	MaxTracked = 1 << 24
)

// entry is one key's bucket. tokens is as of at (nanoseconds since the
// limiter's epoch); it may be negative: failures counted by requests that
// were already under way when the bucket ran dry are paid back before the
// next acceptance, down to -N.
type entry struct {
	tokens  float64
	at      int64
	drained bool // tokens < 1 as of at; counted in Limiter.drained
	crossed bool // a refusal was reported since the bucket was last full
}

type shard[K comparable] struct {
	mu sync.Mutex
	m  map[K]entry
	_  [48]byte // keep shards on separate cache lines
}

// Limiter is a set of token buckets of one Limit, keyed by K. It is safe for
// concurrent use. The zero value is not usable; call New.
type Limiter[K comparable] struct {
	limit    Limit
	perNano  float64 // tokens refilled per nanosecond
	capacity float64
	perShard int
	epoch    time.Time
	seed     maphash.Seed
	// drained counts buckets below one token as of their last update: while
	// it is zero, no key can be refused.
	drained atomic.Int64
	tracked atomic.Int64
	shards  [shardCount]shard[K]
}

// New returns a limiter of l that tracks at most maxTracked keys (rounded
// down to a multiple of 64, at least 64). A limit that is Off gives a
// limiter that accepts everything and tracks nothing.
func New[K comparable](l Limit, maxTracked int) (*Limiter[K], error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if maxTracked < MinTracked || maxTracked > MaxTracked {
		return nil, fmt.Errorf("ratelimit: between %d and %d keys may be tracked, not %d", MinTracked, MaxTracked, maxTracked)
	}
	lim := &Limiter[K]{limit: l, epoch: time.Now(), seed: maphash.MakeSeed(), perShard: maxTracked / shardCount}
	if !l.Off {
		lim.capacity = float64(l.N)
		lim.perNano = float64(l.N) / float64(l.Per)
	}
	for i := range lim.shards {
		lim.shards[i].m = make(map[K]entry)
	}
	return lim, nil
}

// Limit is the limiter's shape.
func (l *Limiter[K]) Limit() Limit { return l.limit }

// Active reports whether any key may be refused now. While it is false,
// Check would accept every key; callers on a hot path ask it first.
func (l *Limiter[K]) Active() bool { return l.drained.Load() != 0 }

// Tracked is the number of keys held (buckets that are not full).
func (l *Limiter[K]) Tracked() int { return int(l.tracked.Load()) }

func (l *Limiter[K]) shardOf(k K) *shard[K] {
	return &l.shards[maphash.Comparable(l.seed, k)%shardCount]
}

func (l *Limiter[K]) nanos(now time.Time) int64 { return int64(now.Sub(l.epoch)) }

// refill brings e up to now. A clock that went back refills nothing.
func (l *Limiter[K]) refill(e *entry, now int64) {
	if now > e.at {
		e.tokens = math.Min(l.capacity, e.tokens+float64(now-e.at)*l.perNano)
		e.at = now
	}
	if e.tokens >= l.capacity {
		e.crossed = false // a full bucket starts a new episode
	}
}

// refuse is the Verdict for a bucket with fewer than one token.
func (l *Limiter[K]) refuse(e *entry) Verdict {
	wait := time.Duration(math.Ceil((1 - e.tokens) / l.perNano))
	v := Verdict{Limited: true, RetryAfter: max(wait, time.Second), Crossed: !e.crossed}
	e.crossed = true
	return v
}

// store writes e back under the shard's lock, keeping the counters exact,
// and forgets a full bucket.
func (l *Limiter[K]) store(sh *shard[K], k K, e entry, existed bool) {
	wasDrained := existed && sh.m[k].drained
	e.drained = e.tokens < 1
	switch {
	case e.tokens >= l.capacity: // refill cleared crossed
		if existed {
			delete(sh.m, k)
			l.tracked.Add(-1)
		}
	default:
		if !existed {
			if len(sh.m) >= l.perShard {
				l.evictOne(sh)
			}
			l.tracked.Add(1)
		}
		sh.m[k] = e
	}
	switch {
	case e.drained && !wasDrained:
		l.drained.Add(1)
	case !e.drained && wasDrained:
		l.drained.Add(-1)
	}
}

// evictOne makes room in a full shard: the fullest bucket goes (it holds the
// least that forgetting could forgive), found among a few, since scanning
// the whole shard on every new key would let a flood of new keys cost
// quadratic time.
func (l *Limiter[K]) evictOne(sh *shard[K]) {
	const sample = 8
	var victim K
	best, seen := math.Inf(-1), 0
	for k, e := range sh.m { // map order is randomised: a fair sample
		if e.tokens > best {
			victim, best = k, e.tokens
		}
		if seen++; seen == sample {
			break
		}
	}
	if seen == 0 {
		return
	}
	if sh.m[victim].drained {
		l.drained.Add(-1)
	}
	delete(sh.m, victim)
	l.tracked.Add(-1)
}

// Check refuses k while its bucket holds less than one token; it counts
// nothing. A key without a bucket is accepted without taking a lock only
// when Active is false.
func (l *Limiter[K]) Check(k K, now time.Time) Verdict {
	if l.limit.Off || !l.Active() {
		return Verdict{}
	}
	sh := l.shardOf(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[k]
	if !ok {
		return Verdict{}
	}
	l.refill(&e, l.nanos(now))
	var v Verdict
	if e.tokens < 1 {
		v = l.refuse(&e)
	}
	l.store(sh, k, e, true)
	return v
}

// Fail counts one failure of k, accepted or not.
func (l *Limiter[K]) Fail(k K, now time.Time) {
	l.apply(k, now, func(e *entry) Verdict {
		e.tokens = math.Max(e.tokens-1, -l.capacity)
		return Verdict{}
	})
}

// Spend takes one token from k's bucket, or refuses when there is none.
func (l *Limiter[K]) Spend(k K, now time.Time) Verdict {
	return l.apply(k, now, func(e *entry) Verdict {
		if e.tokens < 1 {
			return l.refuse(e)
		}
		e.tokens--
		return Verdict{}
	})
}

// apply runs f on k's bucket (a full one if k has none), refilled to now,
// under its shard's lock, and keeps the result.
func (l *Limiter[K]) apply(k K, now time.Time, f func(*entry) Verdict) Verdict {
	if l.limit.Off {
		return Verdict{}
	}
	t := l.nanos(now)
	sh := l.shardOf(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[k]
	if !ok {
		e = entry{tokens: l.capacity, at: t}
	}
	l.refill(&e, t)
	v := f(&e)
	l.store(sh, k, e, ok)
	return v
}

// Sweep refills every bucket to now and forgets the full ones, so memory
// and Active reflect only keys that are still being held back. Call it
// periodically; it takes each shard's lock in turn, never all at once.
func (l *Limiter[K]) Sweep(now time.Time) {
	if l.limit.Off {
		return
	}
	t := l.nanos(now)
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			l.refill(&e, t)
			l.store(sh, k, e, true)
		}
		sh.mu.Unlock()
	}
}
