package api

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"oakallow/store"
)

// The session cache: each replica keeps the sessions it authenticated
// recently, so a session read costs about what a key read costs (issue 9:
// at most 1.5×) instead of a PostgreSQL round trip.
//
// Correctness rests on invalidation, as the key cache's does: triggers on
// sessions, memberships, users and orgs (migration 017) announce every
// change that can make a cached answer wrong on the oakallow_sessions
// channel, whoever made it, and every replica's change listener drops the
// entries concerned. Three more rules keep a stale answer from outliving a
// change:
//
//   - A fill that began before an invalidation is not stored (the
//     generation check in put): otherwise a read of the old row racing the
//     notification would put the revoked session back.
//   - Entries are served only while the listener is connected and after it
//     dropped everything on (re)connecting, since notifications sent while
//     it was away are lost (suspend, resume).
//   - An entry is served for at most SessionsConfig.CacheTTL, and never past
//     the session's absolute end or idle timeout.
//
// The handlers that make such changes also drop the entries concerned on
// their own replica at once (forgetUser, forgetAll, inside their
// transaction), so the person who signed out or the admin who changed a
// role is answered from the database on their very next request; a fill
// racing that transaction's commit is dropped again by its notification.
//
// Entries are keyed by the SHA-256 of the token (the token itself is never
// kept) and the org and team the request named, because those select the
// membership the answer carries.

// sessionChannel is the NOTIFY channel of session changes (migration 017):
// payload "user:<user id>" or "all".
const sessionChannel = "oakallow_sessions"

// sessionKey is what one cached authentication answers.
type sessionKey struct {
	hash      [32]byte
	org, team string
}

// sessionEntry is AuthenticateSession's answer for one sessionKey, with the
// session's use on this replica.
type sessionEntry struct {
	rows    []store.AuthenticateSessionRow // 1 or 2 rows, as the query returned them
	expires int64                          // Unix ns: the session's absolute end
	fresh   int64                          // Unix ns: served until then (filled + CacheTTL)
	// seen is the last use known here (Unix ns, to the second): the
	// database's when filled, then this replica's.
	seen atomic.Int64
	// written is the last use written to sessions.last_seen_at (Unix ns).
	written atomic.Int64
	// client is the address and user agent of the first use after the
	// last write came due, written with it.
	client atomic.Pointer[sessionClient]
}

// sessionClient is the device facts written with a session's last use.
type sessionClient struct {
	at        int64 // Unix ns of the use they were seen at
	ip, agent string
}

// SessionCache holds recently authenticated sessions (see above).
type SessionCache struct {
	mu      sync.RWMutex
	entries map[sessionKey]*sessionEntry
	gen     uint64 // guarded by mu: bumped by every invalidation
	max     int
	ttl     time.Duration
	// live: the change listener is connected and the cache was emptied
	// when it connected, so every change since reaches it.
	live atomic.Bool
}

func newSessionCache(max int, ttl time.Duration) *SessionCache {
	return &SessionCache{entries: make(map[sessionKey]*sessionEntry), max: max, ttl: ttl}
}

// get returns the entry for k if it may still answer at now.
func (c *SessionCache) get(k sessionKey, now int64, idle time.Duration) *sessionEntry {
	if !c.live.Load() {
		return nil
	}
	c.mu.RLock()
	e := c.entries[k]
	c.mu.RUnlock()
	if e == nil || now >= e.fresh || now >= e.expires || now-e.seen.Load() >= int64(idle) {
		return nil
	}
	return e
}

// generation is read before the database is, and handed to put.
func (c *SessionCache) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// put stores e for k unless an invalidation happened since gen was read or
// the listener is away. A full cache first makes room: an entry past its
// freshness if one is found among the first few, else any.
func (c *SessionCache) put(k sessionKey, e *sessionEntry, gen uint64, now int64) {
	if c.max <= 0 || !c.live.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		var victim sessionKey
		probes := 0
		for vk, ve := range c.entries { // map order: a cheap random sample
			if probes == 0 || now >= ve.fresh {
				victim = vk
			}
			if probes++; now >= ve.fresh || probes == 16 {
				break
			}
		}
		delete(c.entries, victim)
	}
	c.entries[k] = e
}

// forgetUser drops every entry of the person's sessions.
func (c *SessionCache) forgetUser(userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for k, e := range c.entries {
		if e.rows[0].UserID == userID {
			delete(c.entries, k)
		}
	}
}

// forgetAll drops every entry.
func (c *SessionCache) forgetAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
}

// suspend stops serving entries (the listener lost its connection).
func (c *SessionCache) suspend() {
	c.live.Store(false)
	c.forgetAll()
}

// resume empties the cache and serves entries again (the listener is
// listening, so every change from now on reaches it).
func (c *SessionCache) resume() {
	c.forgetAll()
	c.live.Store(true)
}

// len is the number of entries (tests).
func (c *SessionCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// apply handles one notification of the sessions channel.
func (c *SessionCache) apply(payload string) {
	if id, ok := strings.CutPrefix(payload, "user:"); ok {
		c.forgetUser(id)
		return
	}
	// "all", and anything this version does not know: forgetting is safe.
	c.forgetAll()
}

// sessionChangeHandler applies session notifications; on every (re)connect
// it empties the cache and lets it serve again.
type sessionChangeHandler struct{ c *SessionCache }

func (h sessionChangeHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	h.c.apply(n.Payload)
	return nil
}

func (h sessionChangeHandler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	h.c.resume()
	return nil
}

// used marks a cache hit at now (Unix ns) from ip with agent: the use is
// kept to the second, and once a write of the last use is due
// (sessionTouchEvery after the last) the client's facts are kept for it,
// once per write.
func (e *sessionEntry) used(now int64, ip netip.Addr, agent string) {
	if now-e.seen.Load() >= int64(time.Second) {
		e.seen.Store(now)
	}
	w := e.written.Load()
	if now-w < int64(sessionTouchEvery) {
		return
	}
	if cl := e.client.Load(); cl == nil || cl.at <= w {
		e.client.Store(&sessionClient{at: now, ip: addrString(ip), agent: clip(agent, 512)})
	}
}

// sessionFlushEvery is how often the uses of cached sessions are written.
const sessionFlushEvery = 5 * time.Second

// trackSessionUse writes the last use of cached sessions every
// sessionFlushEvery, in one statement for all of them, until ctx ends; it
// also drops entries past their freshness so they free their memory.
func (c *SessionCache) trackSessionUse(ctx context.Context, st *store.Store, log *slog.Logger, now func() time.Time) {
	tick := time.NewTicker(sessionFlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.flushUse(context.WithoutCancel(ctx), st, log, now().UnixNano())
			return
		case <-tick.C:
		}
		c.flushUse(ctx, st, log, now().UnixNano())
	}
}

// flushUse writes the last use of every session whose write came due, and
// drops stale entries.
func (c *SessionCache) flushUse(ctx context.Context, st *store.Store, log *slog.Logger, now int64) {
	type due struct {
		at      int64
		cl      *sessionClient
		entries []*sessionEntry
	}
	bySession := map[string]*due{}
	c.mu.Lock()
	for k, e := range c.entries {
		if cl := e.client.Load(); cl != nil && cl.at > e.written.Load() {
			id := e.rows[0].ID
			d := bySession[id]
			if d == nil {
				d = &due{}
				bySession[id] = d
			}
			d.at = max(d.at, e.seen.Load())
			if d.cl == nil || cl.at > d.cl.at {
				d.cl = cl
			}
			d.entries = append(d.entries, e)
		}
		if now >= e.fresh {
			delete(c.entries, k) // its due use is in bySession already
		}
	}
	c.mu.Unlock()
	if len(bySession) == 0 {
		return
	}
	p := store.MarkSessionsSeenParams{}
	for id, d := range bySession {
		p.Ids = append(p.Ids, id)
		p.Ats = append(p.Ats, time.Unix(0, d.at).UTC())
		p.Ips = append(p.Ips, d.cl.ip)
		p.UserAgents = append(p.UserAgents, d.cl.agent)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := st.MarkSessionsSeen(ctx, p); err != nil {
		log.Warn("record when sessions were last used", "sessions", len(p.Ids), "err", err)
		return
	}
	for _, d := range bySession {
		for _, e := range d.entries {
			e.written.Store(d.at)
		}
	}
}
