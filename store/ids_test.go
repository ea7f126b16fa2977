package store

import (
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewIDFormat(t *testing.T) {
	t.Parallel()
	id := NewID("chk")
	require.Regexp(t, regexp.MustCompile(`^chk_[2-7a-z]{26}$`), id)
}

// TestNewIDSortsByTime: ids made in a later millisecond sort after earlier
// ones, byte-wise (as PostgreSQL's C collation and the btree compare them).
func TestNewIDSortsByTime(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 2000 {
		ids = append(ids, newIDAt("aud", base.Add(time.Duration(i)*time.Millisecond)))
	}
	require.True(t, slices.IsSorted(ids), "ids made later must sort later")
	// Far apart in time too, including across a carry in the leading characters.
	early := newIDAt("aud", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	late := newIDAt("aud", time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC))
	require.Less(t, early, ids[0])
	require.Less(t, ids[len(ids)-1], late)
}

// TestNewIDRandomWithinAMillisecond: ids of the same millisecond differ in
// their random part.
func TestNewIDRandomWithinAMillisecond(t *testing.T) {
	t.Parallel()
	now := time.Now()
	seen := make(map[string]struct{}, 100_000)
	for range 100_000 {
		id := newIDAt("chk", now)
		_, dup := seen[id]
		require.False(t, dup, "duplicate id %s", id)
		seen[id] = struct{}{}
	}
}
