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

// Principal is the authenticated caller of a request.
type Principal struct {
	Kind   string // "api_key"
	KeyID  string
	OrgID  string
	TeamID string
	Tier   string
}

// principalFrom returns the caller attached by authenticate.
func principalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey).(Principal)
	return p, ok
}

// keyTable is an immutable snapshot of every active API key by hash.
type keyTable map[[32]byte]Principal

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
	t := make(keyTable, len(rows))
	for _, r := range rows {
		var h [32]byte
		if len(r.Hash) != len(h) {
			continue
		}
		copy(h[:], r.Hash)
		t[h] = Principal{Kind: "api_key", KeyID: r.ID, OrgID: r.OrgID, TeamID: r.TeamID, Tier: r.Tier}
	}
	c.table.Store(&t)
	return nil
}

// Lookup authenticates a raw key. The map lookup is on the SHA-256 of the
// presented key, so timing reveals nothing about stored keys.
func (c *KeyCache) Lookup(raw string) (Principal, bool) {
	if len(raw) != apiKeyLen || !strings.HasPrefix(raw, apiKeyPrefix) {
		return Principal{}, false
	}
	p, ok := (*c.table.Load())[sha256.Sum256([]byte(raw))]
	return p, ok
}
