package devstack

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTuneGC: the stack's collector settings apply unless the environment sets its own.
// Not parallel: it changes the process's collector settings (and puts them back).
func TestTuneGC(t *testing.T) {
	prevPercent := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	})

	tests := []struct {
		name      string
		env       map[string]string
		wantGC    int
		wantLimit int64
	}{
		{name: "nothing set", env: map[string]string{}, wantGC: gcPercent, wantLimit: gcSoftLimit},
		{name: "GOGC set", env: map[string]string{"GOGC": "50"}, wantGC: 100, wantLimit: gcSoftLimit},
		{name: "GOMEMLIMIT set", env: map[string]string{"GOMEMLIMIT": "1GiB"}, wantGC: gcPercent, wantLimit: math.MaxInt64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			tuneGC(func(k string) string { return tc.env[k] })
			require.Equal(t, tc.wantGC, debug.SetGCPercent(100))
			require.Equal(t, tc.wantLimit, debug.SetMemoryLimit(math.MaxInt64))
		})
	}
}
