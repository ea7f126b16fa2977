package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newLimiter[K comparable](t *testing.T, l Limit, maxTracked int) *Limiter[K] {
	t.Helper()
	lim, err := New[K](l, maxTracked)
	require.NoError(t, err)
	return lim
}

func TestFailuresRefuseAfterTheBudget(t *testing.T) {
	t.Parallel()
	lim := newLimiter[string](t, Limit{N: 3, Per: 3 * time.Second}, 1024)
	require.False(t, lim.Active())
	for i := range 3 {
		require.False(t, lim.Check("a", t0).Limited, "failure %d is within the budget", i)
		lim.Fail("a", t0)
	}
	require.True(t, lim.Active())
	v := lim.Check("a", t0)
	require.True(t, v.Limited)
	require.True(t, v.Crossed, "the first refusal is the crossing")
	require.Equal(t, time.Second, v.RetryAfter, "one token comes back after Per/N")
	require.Equal(t, 1, v.RetryAfterSeconds())

	v = lim.Check("a", t0.Add(500*time.Millisecond))
	require.True(t, v.Limited)
	require.False(t, v.Crossed, "a crossing is reported once")
	require.False(t, lim.Check("b", t0).Limited, "other keys are unaffected")

	require.False(t, lim.Check("a", t0.Add(time.Second)).Limited, "one token refilled")
	lim.Fail("a", t0.Add(time.Second))
	v = lim.Check("a", t0.Add(time.Second))
	require.True(t, v.Limited)
	require.False(t, v.Crossed, "still the same episode: the bucket was never full again")
}

func TestCrossingRearmsOnlyWhenFull(t *testing.T) {
	t.Parallel()
	lim := newLimiter[string](t, Limit{N: 2, Per: 2 * time.Second}, 1024)
	lim.Fail("a", t0)
	lim.Fail("a", t0)
	require.True(t, lim.Check("a", t0).Crossed)
	// Full again after Per: forgotten, and the next episode is a new crossing.
	now := t0.Add(2 * time.Second)
	require.False(t, lim.Check("a", now).Limited)
	lim.Sweep(now)
	require.Zero(t, lim.Tracked(), "a full bucket is forgotten")
	require.False(t, lim.Active())
	lim.Fail("a", now)
	lim.Fail("a", now)
	v := lim.Check("a", now)
	require.True(t, v.Limited)
	require.True(t, v.Crossed)
}

func TestFailuresUnderWayArePaidBack(t *testing.T) {
	t.Parallel()
	lim := newLimiter[string](t, Limit{N: 2, Per: 2 * time.Second}, 1024)
	// Five requests passed Check together, then all failed.
	for range 5 {
		lim.Fail("a", t0)
	}
	v := lim.Check("a", t0)
	require.True(t, v.Limited)
	// -2 tokens (the floor is -N): three seconds until one is back.
	require.Equal(t, 3*time.Second, v.RetryAfter)
	require.True(t, lim.Check("a", t0.Add(2500*time.Millisecond)).Limited)
	require.False(t, lim.Check("a", t0.Add(3*time.Second)).Limited)
}

func TestSpendCapsAllEvents(t *testing.T) {
	t.Parallel()
	lim := newLimiter[string](t, Limit{N: 10, Per: time.Second}, 1024)
	for i := range 10 {
		require.False(t, lim.Spend("k", t0).Limited, "event %d", i)
	}
	v := lim.Spend("k", t0)
	require.True(t, v.Limited)
	require.True(t, v.Crossed)
	require.Equal(t, time.Second, v.RetryAfter, "Retry-After is never under a second")
	require.False(t, lim.Spend("k", t0.Add(100*time.Millisecond)).Limited)
	v = lim.Spend("k", t0.Add(100*time.Millisecond))
	require.True(t, v.Limited)
	require.False(t, v.Crossed)
}

func TestClockGoingBackRefillsNothing(t *testing.T) {
	t.Parallel()
	lim := newLimiter[string](t, Limit{N: 1, Per: time.Minute}, 1024)
	lim.Fail("a", t0)
	require.True(t, lim.Check("a", t0.Add(-time.Hour)).Limited)
	require.True(t, lim.Check("a", t0.Add(30*time.Second)).Limited)
	require.False(t, lim.Check("a", t0.Add(time.Minute)).Limited)
}

func TestTrackedKeysAreBounded(t *testing.T) {
	t.Parallel()
	lim := newLimiter[int](t, Limit{N: 5, Per: time.Minute}, 128)
	for k := range 10_000 {
		lim.Fail(k, t0)
	}
	require.LessOrEqual(t, lim.Tracked(), 128)
	n := 0
	for i := range lim.shards {
		n += len(lim.shards[i].m)
	}
	require.Equal(t, lim.Tracked(), n, "the counter matches the maps")
}

func TestDrainedCountStaysExact(t *testing.T) {
	t.Parallel()
	lim := newLimiter[int](t, Limit{N: 1, Per: time.Second}, 64)
	// Every key is drained at once; evictions of drained keys must be
	// uncounted, or Active would stay true forever.
	for k := range 1000 {
		lim.Fail(k, t0)
	}
	require.True(t, lim.Active())
	lim.Sweep(t0.Add(time.Second))
	require.False(t, lim.Active())
	require.Zero(t, lim.Tracked())
}

func TestOffLimitAcceptsEverything(t *testing.T) {
	t.Parallel()
	lim := newLimiter[string](t, Limit{Off: true}, 64)
	for range 100 {
		lim.Fail("a", t0)
		require.False(t, lim.Spend("a", t0).Limited)
	}
	require.False(t, lim.Check("a", t0).Limited)
	require.Zero(t, lim.Tracked())
}

func TestConcurrentUseKeepsCounts(t *testing.T) {
	t.Parallel()
	lim := newLimiter[int](t, Limit{N: 3, Per: time.Second}, 256)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := (g*7 + i) % 500
				now := t0.Add(time.Duration(i) * time.Millisecond)
				if !lim.Check(k, now).Limited {
					lim.Fail(k, now)
				}
				lim.Spend(k+1000, now)
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, lim.Tracked(), 256)
	lim.Sweep(t0.Add(time.Hour))
	require.Zero(t, lim.Tracked())
	require.False(t, lim.Active())
}

func TestParseLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Limit
		err  bool
	}{
		{in: "30/1m", want: Limit{N: 30, Per: time.Minute}},
		{in: " 100 / 1s ", want: Limit{N: 100, Per: time.Second}},
		{in: "OFF", want: Limit{Off: true}},
		{in: "30", err: true},
		{in: "x/1m", err: true},
		{in: "30/soon", err: true},
		{in: "0/1m", err: true},
		{in: "-1/1m", err: true},
		{in: "30/0s", err: true},
		{in: "30/48h", err: true},
		{in: "2000000/1s", err: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLimit(tc.in)
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			back, err := ParseLimit(got.String())
			require.NoError(t, err)
			require.Equal(t, got, back)
		})
	}
}

func TestNewRefusesTooFewTrackedKeys(t *testing.T) {
	t.Parallel()
	_, err := New[string](Limit{N: 1, Per: time.Second}, MinTracked-1)
	require.Error(t, err)
	_, err = New[string](Limit{N: 0, Per: time.Second}, MinTracked)
	require.Error(t, err)
}

func BenchmarkCheckInactive(b *testing.B) {
	lim, _ := New[string](Limit{N: 30, Per: time.Minute}, 1024)
	b.ReportAllocs()
	for b.Loop() {
		if lim.Check("203.0.113.9", t0).Limited {
			b.Fatal("limited")
		}
	}
}

func BenchmarkCheckActive(b *testing.B) {
	lim, _ := New[string](Limit{N: 1, Per: time.Minute}, 1024)
	for k := range 100 {
		lim.Fail(fmt.Sprint(k), t0)
	}
	b.ReportAllocs()
	for b.Loop() {
		if lim.Check("203.0.113.9", t0).Limited {
			b.Fatal("limited")
		}
	}
}
