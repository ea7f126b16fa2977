package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"

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
	return raw, sha256.Sum256([]byte(raw)), raw[:len(apiKeyPrefix)+6]
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
// soon as the notification arrives.
type KeyCache struct {
	st    *store.Store
	table atomic.Pointer[keyTable]
}

// NewKeyCache returns an empty cache; call Reload before serving.
func NewKeyCache(st *store.Store) *KeyCache {
	c := &KeyCache{st: st}
	empty := keyTable{}
	c.table.Store(&empty)
	return c
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
