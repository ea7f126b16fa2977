package devtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"google.golang.org/protobuf/types/known/durationpb"

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

// Namespace registers a new namespace on the shared test server and returns its name.
// Like a namespace an operator has just created for oakallow, it has no custom search
// attributes. It is left behind when the test ends (the server is in memory).
func Namespace(t testing.TB) string {
	t.Helper()
	srv := Temporal(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{HostPort: srv.Address(), Namespace: srv.Namespace(),
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatalf("devtest: dial temporal: %v", err)
	}
	defer c.Close()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "test-" + hex.EncodeToString(b)
	if _, err := c.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace:                        name,
		WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour),
	}); err != nil {
		t.Fatalf("devtest: register namespace: %v", err)
	}
	// Every service learns of the namespace at its next namespace reload.
	for {
		_, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: name})
		if err == nil {
			return name
		}
		select {
		case <-ctx.Done():
			t.Fatalf("devtest: namespace %s not ready: %v", name, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
