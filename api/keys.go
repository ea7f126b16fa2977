package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
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
	// agentPrefix starts an agent identity's secret (SPEC §1).
	agentPrefix = "oak_agent_"
	agentLen    = len(agentPrefix) + 32
)

// GenerateAgentSecret returns a new agent identity secret ("oak_agent_" +
// 32 random hex chars), its SHA-256 (the only form stored) and a short
// display prefix.
func GenerateAgentSecret() (raw string, hash [32]byte, display string) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	raw = agentPrefix + hex.EncodeToString(b[:])
	return raw, sha256.Sum256([]byte(raw)), raw[:len(agentPrefix)+4]
}

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
	// PrincipalAgent is an agent identity (oak_agent_…): runtime calls and
	// the MCP connector, billed like a standard key; never setup, never a
	// decision.
	PrincipalAgent = "agent"
)

// Principal is the authenticated caller of a request: an API key of an org,
// or a person's session with the team and org the request selected.
type Principal struct {
	Kind      string // PrincipalAPIKey, PrincipalAgent or PrincipalUser
	KeyID     string // API keys and agent identities (the agent's id)
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
	case p.Kind == PrincipalAgent:
		return []string{PrincipalAgent}
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

// keyEntry is one active key or agent identity, with when it was last used.
type keyEntry struct {
	p Principal
	// expires is when an agent identity stops working (Unix nanoseconds; 0:
	// never). Expiry is checked per lookup, not left to the next reload.
	expires int64
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
	// reloading serialises Reload: without it a reload that read the
	// database before a revocation committed could store its table after
	// the revoking request's own reload, bringing the key back.
	reloading sync.Mutex
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

// Reload replaces the table with the database's current active keys and
// agent identities.
func (c *KeyCache) Reload(ctx context.Context) error {
	c.reloading.Lock()
	defer c.reloading.Unlock()
	rows, err := c.st.LoadActiveAPIKeys(ctx)
	if err != nil {
		return fmt.Errorf("load api keys: %w", err)
	}
	agents, err := c.st.LoadActiveAgentIdentities(ctx, time.Now())
	if err != nil {
		return fmt.Errorf("load agent identities: %w", err)
	}
	old := *c.table.Load()
	t := make(keyTable, len(rows)+len(agents))
	add := func(hash []byte, e *keyEntry) {
		var h [32]byte
		if len(hash) != len(h) {
			return
		}
		copy(h[:], hash)
		if prev, ok := old[h]; ok { // keep uses not yet written
			e.used.Store(prev.used.Load())
			e.flushed.Store(prev.flushed.Load())
		}
		t[h] = e
	}
	for _, r := range rows {
		add(r.Hash, &keyEntry{p: Principal{Kind: PrincipalAPIKey, KeyID: r.ID, OrgID: r.OrgID, TeamID: r.TeamID, Tier: r.Tier}})
	}
	for _, r := range agents {
		e := &keyEntry{p: Principal{Kind: PrincipalAgent, KeyID: r.ID, OrgID: r.OrgID, TeamID: r.TeamID}}
		if r.ExpiresAt != nil {
			e.expires = r.ExpiresAt.UnixNano()
		}
		add(r.Hash, e)
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
	var keys, agents usedSince
	for _, e := range *c.table.Load() {
		if u := e.used.Load(); u > e.flushed.Load() {
			if e.p.Kind == PrincipalAgent {
				agents.add(e, u)
			} else {
				keys.add(e, u)
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if len(keys.ids) > 0 {
		keys.flushed(c.st.MarkKeysUsed(ctx, store.MarkKeysUsedParams{Ids: keys.ids, Ats: keys.ats}), "api keys", log)
	}
	if len(agents.ids) > 0 {
		agents.flushed(c.st.MarkAgentIdentitiesUsed(ctx, store.MarkAgentIdentitiesUsedParams{Ids: agents.ids, Ats: agents.ats}), "agent identities", log)
	}
}

// usedSince collects credentials used since their last use was written.
type usedSince struct {
	ids     []string
	ats     []time.Time
	entries []*keyEntry
}

func (u *usedSince) add(e *keyEntry, minute int64) {
	u.ids, u.ats, u.entries = append(u.ids, e.p.KeyID), append(u.ats, time.Unix(minute*60, 0).UTC()), append(u.entries, e)
}

// flushed marks the uses written unless err says they were not.
func (u *usedSince) flushed(err error, what string, log *slog.Logger) {
	if err != nil {
		log.Warn("record when "+what+" were last used", "count", len(u.ids), "err", err)
		return
	}
	for i, e := range u.entries {
		e.flushed.Store(u.ats[i].Unix() / 60)
	}
}

// Lookup authenticates a raw key. The map lookup is on the SHA-256 of the
// presented key, so timing reveals nothing about stored keys.
func (c *KeyCache) Lookup(raw string) (Principal, bool) {
	if !(len(raw) == apiKeyLen && strings.HasPrefix(raw, apiKeyPrefix)) &&
		!(len(raw) == agentLen && strings.HasPrefix(raw, agentPrefix)) {
		return Principal{}, false
	}
	e, ok := (*c.table.Load())[sha256.Sum256([]byte(raw))]
	if !ok {
		return Principal{}, false
	}
	if e.expires != 0 && time.Now().UnixNano() >= e.expires {
		return Principal{}, false
	}
	if m := c.minute.Load(); m != 0 && e.used.Load() != m {
		e.used.Store(m)
	}
	return e.p, true
}
