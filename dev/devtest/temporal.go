package devtest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"oakallow/dev/devenv"
	"oakallow/workflows"
)

var (
	tmOnce   sync.Once
	tmServer *devenv.Temporal
	tmErr    error
)

// Temporal returns the process-wide in-process Temporal server (in-memory
// persistence, oakallow's search attributes registered, no UI).
func Temporal(t testing.TB) *devenv.Temporal {
	t.Helper()
	tmOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		tmServer, tmErr = devenv.StartTemporal(ctx, devenv.TemporalConfig{
			UIPort:           -1,
			SearchAttributes: workflows.SearchAttributeTypes(),
			Logger:           slog.New(slog.DiscardHandler),
		})
	})
	if tmErr != nil {
		t.Fatalf("devtest: temporal: %v", tmErr)
	}
	return tmServer
}

func stopTemporal() {
	if tmServer != nil {
		_ = tmServer.Stop()
	}
}
