package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"oakallow/store"
)

// Key tiers (SPEC §1).
const (
	TierManagement = "management"
	TierStandard   = "standard"
)

const (
	apiKeyPrefix = "oak_live_"
	apiKeyLen    = len(apiKeyPrefix) + 32
)

// GenerateAPIKey returns a new raw key ("oak_live_" + 32 random hex chars),
// its SHA-256 (the only form stored) and a short display prefix.
func GenerateAPIKey() (raw string, hash [32]byte, display string) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	raw = apiKeyPrefix + hex.EncodeToString(b[:])
	return raw, sha256.Sum256([]byte(raw)), raw[:displayPrefixLen]
}

// Principal kinds (also the audit log's actor kinds).
const (
	PrincipalAPIKey = "api_key"
	PrincipalUser   = "user"
)

// Principal is the authenticated caller of a request: an API key of an org,
// or a person's session with the team and org the request selected.
type Principal struct {
	Kind      string // PrincipalAPIKey or PrincipalUser
	KeyID     string // API keys
	UserID    string // sessions
	SessionID string // sessions
	OrgID     string // the key's org, or the org a session selected ("" when the operation needs none)
	TeamID    string
	Tier      string // API keys: TierManagement or TierStandard
	Role      string // sessions: the person's role in TeamID ("" when the operation needs no team)
	// Enrollment is set for an enrollment-only session (no passkey yet).
	Enrollment bool
	// Granted are the scopes an OAuth access token was granted (PrincipalOAuth).
	Granted []string
}

// ActorID is who acted, for audit entries and per-caller records (the key or
// the person).
func (p Principal) ActorID() string {
	if p.Kind == PrincipalUser {
		return p.UserID
	}
	return p.KeyID
}

// idempotencyOwner is whose Idempotency-Keys a request's key is one of: a
// key's own, or a person's in the selected org (the same key sent to two
// orgs is two requests).
func (p Principal) idempotencyOwner() string {
	if p.Kind == PrincipalUser {
		if p.OrgID == "" {
			return p.UserID + "/" + p.TeamID
		}
		return p.UserID + "/" + p.OrgID
	}
	return p.KeyID
}

// Scopes are the principal's security scopes as /openapi.json names them:
// a key's tier, or a session's role ("enrollment" while enrollment-only).
func (p Principal) Scopes() []string {
	switch {
	case p.Kind == PrincipalAPIKey:
		return []string{p.Tier}
	case p.Enrollment:
		return []string{scopeEnrollment}
	case p.Role != "":
		return []string{p.Role}
	}
	return nil
}

// principalFrom returns the caller attached by authenticate.
func principalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey).(Principal)
	return p, ok
}

// keyTable is an immutable snapshot of every active API key by hash.
type keyTable map[[32]byte]*keyEntry

// keyEntry is one active key, with when it was last used.
type keyEntry struct {
	p Principal
	// used is the last minute (Unix minutes) the key authenticated a
	// request; flushed the last one written to api_keys.last_used_at.
	used    atomic.Int64
	flushed atomic.Int64
}

// KeyCache holds the active API keys in memory so authentication costs one
// hash and one map lookup. It is reloaded whole on every key change
// notification and whenever the change listener (re)connects; a lookup miss
// is never answered from the database, so a revoked key stops working as
// soon as the notification arrives and one reload later.
type KeyCache struct {
	st    *store.Store
	table atomic.Pointer[keyTable]
	// reload holds one pending reload request: requests that arrive while
	// a reload runs cost one more reload after it, not one each.
	reload chan struct{}
	// minute is the current Unix minute, kept by TrackUse (0: not tracked),
	// so a lookup marks its key used without reading the clock.
	minute atomic.Int64
}

// NewKeyCache returns an empty cache; call Reload before serving, and run
// ReloadLoop for RequestReload to take effect.
func NewKeyCache(st *store.Store) *KeyCache {
	c := &KeyCache{st: st, reload: make(chan struct{}, 1)}
	empty := keyTable{}
	c.table.Store(&empty)
	return c
}

// RequestReload asks ReloadLoop for a reload and returns at once.
func (c *KeyCache) RequestReload() {
	select {
	case c.reload <- struct{}{}:
	default: // one is pending already, and it has not started
	}
}

// Key reloads that fail are retried from keyRetryMin, doubling up to
// keyRetryMax, until one succeeds: until then a revoked key still works.
const (
	keyRetryMin = 100 * time.Millisecond
	keyRetryMax = 5 * time.Second
)

// ReloadLoop reloads the table on each request until ctx ends, in its own
// goroutine so no other work (policy loads, the change listener) delays a
// revocation.
func (c *KeyCache) ReloadLoop(ctx context.Context, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.reload:
		}
		for wait := keyRetryMin; ; wait = min(2*wait, keyRetryMax) {
			err := c.Reload(ctx)
			if err == nil || ctx.Err() != nil {
				break
			}
			log.Warn("api key reload failed; retrying", "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// Reload replaces the table with the database's current active keys.
func (c *KeyCache) Reload(ctx context.Context) error {
	rows, err := c.st.LoadActiveAPIKeys(ctx)
	if err != nil {
		return fmt.Errorf("load api keys: %w", err)
	}
	old := *c.table.Load()
	t := make(keyTable, len(rows))
	for _, r := range rows {
		var h [32]byte
		if len(r.Hash) != len(h) {
			continue
		}
		copy(h[:], r.Hash)
		e := &keyEntry{p: Principal{Kind: PrincipalAPIKey, KeyID: r.ID, OrgID: r.OrgID, TeamID: r.TeamID, Tier: r.Tier}}
		if prev, ok := old[h]; ok { // keep uses not yet written
			e.used.Store(prev.used.Load())
			e.flushed.Store(prev.flushed.Load())
		}
		t[h] = e
	}
	c.table.Store(&t)
	return nil
}

// TrackUse keeps the minute lookups mark keys with, and writes the keys'
// last use to api_keys.last_used_at once a minute, until ctx ends. Marking
// costs a lookup two atomic loads (and a store once a minute per key); the
// write is one statement for every key used since the last.
func (c *KeyCache) TrackUse(ctx context.Context, now func() time.Time, log *slog.Logger) {
	c.minute.Store(now().Unix() / 60)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	lastFlush := now()
	for {
		select {
		case <-ctx.Done():
			c.flushUse(context.WithoutCancel(ctx), log)
			return
		case <-tick.C:
		}
		c.minute.Store(now().Unix() / 60)
		if now().Sub(lastFlush) >= time.Minute {
			lastFlush = now()
			c.flushUse(ctx, log)
		}
	}
}

// flushUse writes the last use of every key used since it was last written.
func (c *KeyCache) flushUse(ctx context.Context, log *slog.Logger) {
	var ids []string
	var ats []time.Time
	var entries []*keyEntry
	for _, e := range *c.table.Load() {
		if u := e.used.Load(); u > e.flushed.Load() {
			ids, ats, entries = append(ids, e.p.KeyID), append(ats, time.Unix(u*60, 0).UTC()), append(entries, e)
		}
	}
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.st.MarkKeysUsed(ctx, store.MarkKeysUsedParams{Ids: ids, Ats: ats}); err != nil {
		log.Warn("record when api keys were last used", "keys", len(ids), "err", err)
		return
	}
	for i, e := range entries {
		e.flushed.Store(ats[i].Unix() / 60)
	}
}

// Lookup authenticates a raw key. The map lookup is on the SHA-256 of the
// presented key, so timing reveals nothing about stored keys.
func (c *KeyCache) Lookup(raw string) (Principal, bool) {
	if len(raw) != apiKeyLen || !strings.HasPrefix(raw, apiKeyPrefix) {
		return Principal{}, false
	}
	e, ok := (*c.table.Load())[sha256.Sum256([]byte(raw))]
	if !ok {
		return Principal{}, false
	}
	if m := c.minute.Load(); m != 0 && e.used.Load() != m {
		e.used.Store(m)
	}
	return e.p, true
}
